/* tools/tool_args.h - how clgrad-train, clgrad-soak and clgrad-backprop read numbers and
 * paths from the command line: the whole argument must be a number in the option's range
 * (no silent wrap of 4294967297 into an int, no "-1" seed turned into 2^64 - 1, no NaN
 * rate), and an output path must be writable before any work starts; every refusal names
 * the option, its range and the value. Header only, public API only.
 * Tests: tests/tools/test_cli.sh.
 */
#ifndef CLGRAD_TOOLS_TOOL_ARGS_H
#define CLGRAD_TOOLS_TOOL_ARGS_H

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An integer in [lo, hi] spelled as all of s (decimal, optional sign), into *out; else a
 * message "TOOL: OPT must be an integer in LO..HI, not 'S'" and false. */
static inline bool tool_parse_int(const char *tool, const char *opt, const char *s, long long lo, long long hi,
                                  long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "%s: %s must be an integer in %lld..%lld, not '%s'\n", tool, opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* An unsigned 64-bit integer, all of s, digits only (strtoull would take "-1" as 2^64 - 1). */
static inline bool tool_parse_u64(const char *tool, const char *opt, const char *s, unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (!end || *end != '\0' || errno == ERANGE) {
        fprintf(stderr, "%s: %s must be an integer in 0..%llu, not '%s'\n", tool, opt, ULLONG_MAX, s);
        return false;
    }
    *out = v;
    return true;
}

/* A finite real in [lo, hi] (hi may be INFINITY: no upper bound), all of s. */
static inline bool tool_parse_real(const char *tool, const char *opt, const char *s, double lo, double hi,
                                   double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || v < lo || v > hi) {
        if (isinf(hi))
            fprintf(stderr, "%s: %s must be a finite number >= %g, not '%s'\n", tool, opt, lo, s);
        else
            fprintf(stderr, "%s: %s must be a number in [%g, %g], not '%s'\n", tool, opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* Whether a file can be written at path later (by a temp file in its folder and a rename):
 * the folder exists and is writable, and path is not a folder. Checked before any work, so
 * a typo fails at once rather than after the first epoch. */
static inline bool tool_check_writable(const char *tool, const char *opt, const char *path) {
    struct stat st;
    if (!path[0]) {
        fprintf(stderr, "%s: %s needs a file name\n", tool, opt);
        return false;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: %s %s is a folder, not a file\n", tool, opt, path);
        return false;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir) {
            fprintf(stderr, "%s: %s %s: the path is too long\n", tool, opt, path);
            return false;
        }
        memcpy(dir, path, len ? len : 1); /* "/x" -> "/" */
        dir[len ? len : 1] = '\0';
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: %s %s: the folder %s does not exist\n", tool, opt, path, dir);
        return false;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "%s: %s %s: cannot write in the folder %s: %s\n", tool, opt, path, dir, strerror(errno));
        return false;
    }
    return true;
}

/* The per-step losses' CSV beside a metrics CSV: RUN.csv -> RUN.steps.csv (other names get
 * .steps.csv appended); malloc'd, NULL when out of memory. clgrad-train writes it, clgrad-plot
 * reads it. */
static inline char *tool_steps_path(const char *metrics) {
    size_t n = strlen(metrics);
    const size_t base = n >= 4 && strcmp(metrics + n - 4, ".csv") == 0 ? n - 4 : n;
    char *s = malloc(base + 11);
    if (s) {
        memcpy(s, metrics, base);
        strcpy(s + base, ".steps.csv");
    }
    return s;
}

#endif

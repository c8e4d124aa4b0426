/* tools/bench/main.c - clgrad-bench: clgrad's speed, side by side in one run with a reference.
 * One subcommand per area in the table below, each in its own file of tools/bench/ (gemm.c,
 * conv.c, train.c, launch.c), plus the timing helpers they share (bench.h).
 * Usage: clgrad-bench <subcommand> [options]; clgrad-bench help.
 */
#define _POSIX_C_SOURCE 200809L /* popen */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "../tool_clock.h"

double bench_now(void) { return tool_now_seconds(); }

void bench_pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct cJSON *bench_torch_json(const char *script, const char *env_prefix, const char *args) {
    char cmd[4400];
    const int len =
        snprintf(cmd, sizeof cmd, "%s/usr/bin/python3 '%s' --json %s 2>/dev/null", env_prefix, script, args);
    if (len < 0 || (size_t)len >= sizeof cmd || strchr(script, '\'')) return NULL; /* quoting would break */
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap), *grown;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0)
        if ((n += got) == cap - 1) {
            if (!(grown = realloc(buf, cap *= 2))) break; /* keep what fits; the parse fails cleanly */
            buf = grown;
        }
    pclose(p);
    if (!buf) return NULL;
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    return root;
}

typedef struct bench_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
    const char *what;
} bench_cmd;

/* A new subcommand: one file in tools/bench/, its entry in bench.h and here, its file in
 * tools/meson.build. */
static const bench_cmd commands[] = {
    {"gemm", bench_gemm, "GEMM paths (CLBlast default/tuned, packed kernel) against OpenBLAS"},
    {"conv", bench_conv, "conv2d forward/backward beside its GEMMs and CLBlast's im2col/convgemm"},
    {"train", bench_train, "training-step images/s of lenet and cnn beside PyTorch on the same CPU"},
    {"launch", bench_launch, "cost of one kernel launch, enqueued and replayed from a cl_khr_command_buffer"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: clgrad-bench <subcommand> [options]   (clgrad-bench <subcommand> --help)\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "clgrad-bench: unknown subcommand \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}

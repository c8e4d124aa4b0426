/* src/core/host.c - host helpers without a context or OpenCL (declared in src/core/host.h):
 * the caller-buffer formatter, strdup, the clock, mkdir -p, the one whole-file reader, FNV-1a.
 * Tests: tests/core/test_host.c (and through every reader in tests/io).
 */
#include "core/host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

void clg__fmt(char *buf, size_t len, const char *fmt, ...) {
    if (!buf || len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

char *clg__strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

double clg__now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool clg__mkdirs(const char *dir) {
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, dir, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

uint64_t clg__fnv1a(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

clg_status clg__read_file(const char *path, size_t cap, const char *what, unsigned char **data,
                             size_t *size, char *err, size_t err_len) {
    *data = NULL;
    *size = 0;
    /* Without blocking (a FIFO would hang the open) and a regular file only (/dev/zero would
     * be read up to the cap, a FIFO or a folder make no sense here). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st0;
    if (fd < 0 || fstat(fd, &st0) != 0 || !S_ISREG(st0.st_mode)) {
        if (fd >= 0) {
            close(fd);
            clg__fmt(err, err_len, "%s: %s is not a regular file", what, path);
        } else {
            clg__fmt(err, err_len, "%s: cannot open %s: %s", what, path, strerror(errno));
        }
        return CLG_IO_ERROR;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        clg__fmt(err, err_len, "%s: cannot open %s: %s", what, path, strerror(errno));
        return CLG_IO_ERROR;
    }
    /* The size from fstat is only a first guess for the buffer: the loop reads until EOF, so
     * a file that grows or shrinks meanwhile is still read consistently. */
    size_t capacity = 1 << 16;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uintmax_t)st.st_size < (uintmax_t)cap && (uintmax_t)st.st_size < SIZE_MAX)
        capacity = (size_t)st.st_size + 1; /* +1: EOF shows without a second grow */
    unsigned char *buf = malloc(capacity);
    if (!buf) {
        fclose(f);
        clg__fmt(err, err_len, "%s: %s: out of host memory for %zu bytes", what, path, capacity);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    /* Reading at most cap + 1 bytes tells "too large" without reading a huge file whole. */
    const size_t limit = cap < SIZE_MAX ? cap + 1 : SIZE_MAX;
    size_t len = 0;
    for (;;) {
        if (len == capacity) {
            if (capacity >= limit) {
                free(buf);
                fclose(f);
                clg__fmt(err, err_len, "%s: %s is larger than the %zu-byte cap", what, path, cap);
                return CLG_BAD_FORMAT;
            }
            size_t grown = capacity > limit / 2 ? limit : capacity * 2;
            unsigned char *nb = realloc(buf, grown);
            if (!nb) {
                free(buf);
                fclose(f);
                clg__fmt(err, err_len, "%s: %s: out of host memory for %zu bytes", what, path, grown);
                return CLG_OUT_OF_HOST_MEMORY;
            }
            buf = nb;
            capacity = grown;
        }
        size_t got = fread(buf + len, 1, capacity - len, f);
        len += got;
        if (len < capacity) { /* a short read: end of file or an error */
            if (ferror(f)) {
                int e = errno;
                free(buf);
                fclose(f);
                clg__fmt(err, err_len, "%s: cannot read %s: %s", what, path, strerror(e));
                return CLG_IO_ERROR;
            }
            break;
        }
    }
    fclose(f);
    buf[len] = '\0'; /* the loop ends on a short read, so len < capacity */
    *data = buf;
    *size = len;
    return CLG_OK;
}

clg_status clg__write_file_atomic(const char *path, const void *data, size_t len) {
    const size_t n = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(n);
    if (!tmp) return CLG_OUT_OF_HOST_MEMORY;
    clg__fmt(tmp, n, "%s.tmp", path);
    /* One temp name per path, so a killed writer leaves at most that one, which the next
     * write replaces; never through a symlink placed there. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    bool ok = fd >= 0;
    for (size_t done = 0; ok && done < len;) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        done += ok ? (size_t)n : 0;
    }
    ok = ok && fsync(fd) == 0;
    if (fd >= 0) ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && fd >= 0) unlink(tmp);
    free(tmp);
    return ok ? CLG_OK : CLG_IO_ERROR;
}

void clg__remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        const size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    } else {
        strcpy(dir, ".");
    }
    DIR *d = opendir(dir[0] ? dir : "/");
    if (!d) return;
    const size_t blen = strlen(base);
    for (struct dirent *e; (e = readdir(d));) {
        /* "<base>.tmp.<pid>" */
        if (strncmp(e->d_name, base, blen) || strncmp(e->d_name + blen, ".tmp.", 5)) continue;
        char *end;
        const long pid = strtol(e->d_name + blen + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir[0] ? dir : "", e->d_name);
        unlink(full);
    }
    closedir(d);
}

/* src/io/io_util.c - whole-file reading and the caller-buffer error formatter shared by the
 * readers in src/io (declared in src/io/io_util.h). No context and no OpenCL, so the fuzz
 * targets in tests/fuzz link it alone. Tested through tests/unit/test_io.c.
 */
#include "io/io_util.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

void clg__io_errf(char *err, size_t err_len, const char *fmt, ...) {
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

clg_status clg__io_read_file(const char *path, size_t cap, const char *what, unsigned char **data,
                             size_t *size, char *err, size_t err_len) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        clg__io_errf(err, err_len, "%s: cannot open %s: %s", what, path, strerror(errno));
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
        clg__io_errf(err, err_len, "%s: %s: out of host memory for %zu bytes", what, path, capacity);
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
                clg__io_errf(err, err_len, "%s: %s is larger than the %zu-byte cap", what, path, cap);
                return CLG_BAD_FORMAT;
            }
            size_t grown = capacity > limit / 2 ? limit : capacity * 2;
            unsigned char *nb = realloc(buf, grown);
            if (!nb) {
                free(buf);
                fclose(f);
                clg__io_errf(err, err_len, "%s: %s: out of host memory for %zu bytes", what, path, grown);
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
                clg__io_errf(err, err_len, "%s: cannot read %s: %s", what, path, strerror(e));
                return CLG_IO_ERROR;
            }
            break;
        }
    }
    fclose(f);
    *data = buf;
    *size = len;
    return CLG_OK;
}

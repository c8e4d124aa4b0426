/* src/io/file.c - how the readers of src/io open a file: without blocking (a FIFO cannot hang
 * the open), regular files only (/dev/zero, a FIFO or a folder is refused before a byte is
 * read), the size from fstat so a reader checks its header against it and reads only what
 * the header needs. Host only (tests/fuzz links it with the parsers). Used by safetensors.c
 * and idx.c; tests: tests/io/test_safetensors.c, test_idx.c (test_*_not_regular).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"

static const char *io_kind(mode_t m) {
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

clg_status io__open_regular(const char *path, const char *what, io_file *f, char *err, size_t err_len) {
    f->fd = -1;
    f->size = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, for ever. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        clg__fmt(err, err_len, "%s: cannot open %s: %s", what, path, strerror(errno));
        return CLG_IO_ERROR;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        clg__fmt(err, err_len, "%s: cannot stat %s: %s", what, path, strerror(e));
        return CLG_IO_ERROR;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        clg__fmt(err, err_len, "%s: %s is %s, not a regular file", what, path, io_kind(st.st_mode));
        return CLG_IO_ERROR;
    }
    /* Regular files ignore O_NONBLOCK; cleared all the same, for file systems that do not. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    f->fd = fd;
    f->size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    return CLG_OK;
}

clg_status io__read_at(const io_file *f, uint64_t offset, void *buf, size_t len, const char *what,
                       const char *path, char *err, size_t err_len) {
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done > ((size_t)1 << 30) ? (size_t)1 << 30 : len - done;
        ssize_t got = pread(f->fd, p + done, chunk, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            clg__fmt(err, err_len, "%s: cannot read %s: %s", what, path, strerror(errno));
            return CLG_IO_ERROR;
        }
        if (got == 0) { /* the file shrank after fstat */
            clg__fmt(err, err_len, "%s: %s ended at byte %llu, before the %llu its size said (changed while read?)",
                     what, path, (unsigned long long)(offset + done), (unsigned long long)(offset + len));
            return CLG_BAD_FORMAT;
        }
        done += (size_t)got;
    }
    return CLG_OK;
}

void io__close(io_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

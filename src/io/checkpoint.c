/* src/io/checkpoint.c - the device side of safetensors checkpoints: clg_safetensors_save
 * (header by cJSON, spaces to a multiple of 8, every value checked finite, written to
 * "<path>.tmp" under an flock, fsync'd and renamed) and clg_module_save / clg_module_load on
 * clg_module_state. The reader it relies on is src/io/safetensors.c.
 * Tests: tests/io/test_checkpoint.c, test_checkpoint_crash.c (kills, leftovers).
 */
#define _DEFAULT_SOURCE /* flock (BSD, also in glibc and musl) */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tensor/tensor.h"
#include "io/io.h"

/* Integers above 2^53 do not survive JSON readers that use doubles (cJSON, JavaScript). */
#define CKPT_MAX_OFFSET ((size_t)1 << 53)

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Files are little-endian: swaps each elem-byte value in place on a big-endian host. */
static void to_little_endian(unsigned char *p, size_t bytes, size_t elem) {
    if (host_is_little_endian()) return;
    for (size_t i = 0; i + elem <= bytes; i += elem)
        for (size_t a = i, b = i + elem - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The header JSON in entry order, offsets increasing, no gaps. */
static clg_status build_header(clg_context *ctx, const clg_named_tensor *entries, size_t n,
                               const clg_save_params *params, char **text) {
    *text = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_safetensors_save: out of host memory");
    if (params->n_metadata > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        bool ok = meta != NULL;
        for (size_t i = 0; ok && i < params->n_metadata; i++) {
            const char *k = params->metadata[2 * i], *v = params->metadata[2 * i + 1];
            if (!k || !v || cJSON_GetObjectItemCaseSensitive(meta, k)) {
                cJSON_Delete(root);
                return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                                 "clg_safetensors_save: metadata pair %zu is NULL or repeats a key", i);
            }
            ok = cJSON_AddStringToObject(meta, k, v) != NULL;
        }
        if (!ok) {
            cJSON_Delete(root);
            return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_safetensors_save: out of host memory");
        }
    }
    size_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const clg_tensor *t = entries[i].tensor;
        size_t bytes = clg_tensor_bytes(t);
        if (bytes > CKPT_MAX_OFFSET - offset) {
            cJSON_Delete(root);
            return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                             "clg_safetensors_save: the data passes 2^53 bytes at \"%s\"",
                             entries[i].name);
        }
        int ndim = clg_tensor_ndim(t);
        const int *dims = clg_tensor_shape(t);
        /* The Add* helpers attach as they create, so deleting root frees everything. */
        cJSON *e = cJSON_AddObjectToObject(root, entries[i].name);
        bool ok = e && cJSON_AddStringToObject(e, "dtype", clg_tensor_dtype(t) == CLG_F64 ? "F64" : "F32");
        cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL;
        ok = shape != NULL;
        for (int d = 0; ok && d < ndim; d++) ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber(dims[d]));
        cJSON *offs = ok ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = offs && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
        if (!ok) {
            cJSON_Delete(root);
            return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_safetensors_save: out of host memory");
        }
        offset += bytes;
    }
    *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*text) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_safetensors_save: out of host memory");
    return CLG_OK;
}

/* Checks what would make an unreadable file: NULLs, foreign tensors, reserved or repeated
 * names. */
static clg_status check_entries(clg_context *ctx, const clg_named_tensor *entries, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].name)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_safetensors_save: entry %zu has no name", i);
        clg_status st = clg__check(ctx, entries[i].tensor, "clg_safetensors_save", entries[i].name);
        if (st != CLG_OK) return st;
        if (strcmp(entries[i].name, "__metadata__") == 0)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                             "clg_safetensors_save: \"__metadata__\" is reserved, not a tensor name");
    }
    if (n < 2) return CLG_OK;
    const char **names = malloc(n * sizeof *names);
    if (!names) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_safetensors_save: out of host memory");
    for (size_t i = 0; i < n; i++) names[i] = entries[i].name;
    qsort(names, n, sizeof *names, cmp_name_ptr);
    clg_status st = CLG_OK;
    for (size_t i = 1; i < n && st == CLG_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_safetensors_save: duplicate name \"%s\"",
                           names[i]);
    free(names);
    return st;
}

/* Makes the rename itself durable; best effort, as some file systems refuse a folder fsync. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir) return;
        memcpy(dir, path, len ? len : 1); /* "/x" -> "/" */
        dir[len ? len : 1] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* The first value of a host copy (numel of dtype) that is NaN or infinite: true and *at. */
static bool find_nonfinite(const void *host, size_t numel, clg_dtype dtype, size_t *at, double *value) {
    for (size_t i = 0; i < numel; i++) {
        double v = dtype == CLG_F64 ? ((const double *)host)[i] : (double)((const float *)host)[i];
        if (!isfinite(v)) {
            *at = i;
            *value = v;
            return true;
        }
    }
    return false;
}

/* Same file (device and inode). */
static bool same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Creates and locks the temp file tmp for one save: *fd is a new, empty file that this save
 * created (O_EXCL) and holds an exclusive flock on, still named tmp. A temp file some earlier
 * save left (killed) is unlocked: it is removed and a new one made. One another save is
 * writing is locked: this waits until that save has renamed or removed it, then starts anew.
 * Where the file system has no flock, saves to one path are not serialised (last rename
 * wins, or the other's rename fails). */
static clg_status claim_temp(clg_context *ctx, const char *tmp, int *fd_out) {
    *fd_out = -1;
    for (int attempt = 0; attempt < 1000; attempt++) {
        bool created = true;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0 && errno == EEXIST) {
            created = false;
            fd = open(tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd < 0 && errno == ENOENT) continue; /* renamed or removed meanwhile */
        }
        if (fd < 0)
            return clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: cannot create %s: %s", tmp, strerror(errno));
        int r;
        while ((r = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
        }
        bool locked = r == 0;
        if (!locked && errno != ENOLCK && errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) {
            int e = errno;
            close(fd);
            return clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: cannot lock %s: %s", tmp, strerror(e));
        }
        /* Locked, but is it still the file called tmp? Another save may have renamed it into
         * place (or removed it) while this one waited. */
        struct stat mine, named;
        if (fstat(fd, &mine) != 0 || lstat(tmp, &named) != 0 || !same_file(&mine, &named)) {
            close(fd);
            continue;
        }
        if (!S_ISREG(mine.st_mode)) {
            close(fd);
            return clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: %s exists and is not a regular file", tmp);
        }
        if (!created) {
            /* Ours now, and no save is writing it: left by a save that died. A fresh file,
             * so its mode is this save's own. */
            if (unlink(tmp) != 0 && errno != ENOENT) {
                int e = errno;
                close(fd);
                return clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: cannot remove the stale %s: %s", tmp,
                                 strerror(e));
            }
            close(fd);
            continue;
        }
        *fd_out = fd;
        return CLG_OK;
    }
    return clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: %s keeps changing (other saves to the same path?)",
                     tmp);
}

CLG_API clg_save_params clg_save_default_params(void) {
    return (clg_save_params){.allow_nonfinite = false, .metadata = NULL, .n_metadata = 0};
}

CLG_API clg_status clg_safetensors_save(clg_context *ctx, const char *path, const clg_named_tensor *entries,
                                        size_t n) {
    return clg_safetensors_save_with(ctx, path, entries, n, clg_save_default_params());
}

CLG_API clg_status clg_safetensors_save_with(clg_context *ctx, const char *path, const clg_named_tensor *entries,
                                             size_t n, clg_save_params params) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!path || !*path || (!entries && n > 0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_safetensors_save: path or entries is NULL");
    clg_status st = check_entries(ctx, entries, n);
    if (st != CLG_OK) return st;

    char *header = NULL, *tmp = NULL;
    unsigned char *host = NULL;
    FILE *f = NULL;
    int fd = -1;
    bool created = false;
    if (params.n_metadata > 0 && !params.metadata)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_safetensors_save: metadata is NULL");
    st = build_header(ctx, entries, n, &params, &header);
    if (st != CLG_OK) return st;
    /* The reference writer pads the header with spaces so the data block starts 8-aligned. */
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) / 8 * 8;

    size_t max_bytes = 1;
    for (size_t i = 0; i < n; i++)
        if (clg_tensor_bytes(entries[i].tensor) > max_bytes) max_bytes = clg_tensor_bytes(entries[i].tensor);
    host = malloc(max_bytes);
    size_t tmp_len = strlen(path) + 8;
    tmp = malloc(tmp_len);
    if (!host || !tmp) {
        st = clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_safetensors_save: out of host memory");
        goto done;
    }
    /* One temp name per path, not per process: a save that is killed leaves at most this one
     * file, and the next save to the path removes it (claim_temp). */
    snprintf(tmp, tmp_len, "%s.tmp", path);
    struct stat old;
    bool keep_mode = lstat(path, &old) == 0 && S_ISREG(old.st_mode);
    st = claim_temp(ctx, tmp, &fd);
    if (st != CLG_OK) goto done;
    created = true;
    /* Saving over a file keeps its permission bits (not its owner: only root could). */
    if (keep_mode && fchmod(fd, old.st_mode & 07777) != 0) goto write_failed;
    f = fdopen(fd, "wb");
    if (!f) goto write_failed;
    unsigned char len_le[8];
    io__store_le64(len_le, (uint64_t)padded);
    bool ok = fwrite(len_le, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    if (!ok) goto write_failed;

    for (size_t i = 0; i < n; i++) {
        const clg_tensor *t = entries[i].tensor;
        size_t bytes = clg_tensor_bytes(t);
        st = clg_tensor_to_host(t, host, bytes);
        if (st != CLG_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", clg_context_errmsg(ctx));
            st = clg__fail(ctx, st, "clg_safetensors_save: reading \"%s\" from the device: %s",
                           entries[i].name, why);
            goto done;
        }
        size_t at;
        double bad;
        if (!params.allow_nonfinite &&
            find_nonfinite(host, clg_tensor_numel(t), clg_tensor_dtype(t), &at, &bad)) {
            st = clg__fail(ctx, CLG_INVALID_ARGUMENT,
                           "clg_safetensors_save: \"%s\" holds %s at element %zu: not saved, %s left as it "
                           "was (allow_nonfinite saves it anyway)",
                           entries[i].name, isnan(bad) ? "NaN" : bad > 0 ? "+inf" : "-inf", at, path);
            goto done;
        }
        to_little_endian(host, bytes, clg_dtype_size(clg_tensor_dtype(t)));
        if (fwrite(host, 1, bytes, f) != bytes) goto write_failed;
    }
    /* Data on disk before the rename, so the new name never points at a partial file; the
     * rename happens under the lock (claim_temp), the close after it. */
    if (fflush(f) != 0 || fsync(fd) != 0) goto write_failed;
    if (rename(tmp, path) != 0) {
        st = clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: cannot rename %s to %s: %s", tmp,
                       path, strerror(errno));
        goto done;
    }
    created = false; /* renamed: nothing to remove */
    int closed = fclose(f);
    f = NULL;
    fd = -1;
    if (closed != 0) { /* data and rename are already durable; a late error still counts */
        st = clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: closing %s: %s", path, strerror(errno));
        goto done;
    }
    sync_parent_dir(path);
    goto done;

write_failed:
    st = clg__fail(ctx, CLG_IO_ERROR, "clg_safetensors_save: cannot write %s: %s", tmp,
                   strerror(errno));
done:
    /* Removed while still locked, so no other save takes it for its own meanwhile; the
     * previous file at path is untouched. */
    if (st != CLG_OK && created) unlink(tmp);
    if (f)
        fclose(f);
    else if (fd >= 0)
        close(fd);
    free(tmp);
    free(host);
    cJSON_free(header);
    return st;
}

/* The module's state as a new array (*out, count in *n); the caller frees the array. */
static clg_status module_state(clg_context *ctx, const clg_module *m, const char *what,
                               clg_named_tensor **out, size_t *n) {
    *out = NULL;
    *n = clg_module_state(m, NULL, 0);
    *out = malloc((*n ? *n : 1) * sizeof **out);
    if (!*out) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", what);
    size_t got = clg_module_state(m, *out, *n);
    if (got < *n) *n = got;
    return CLG_OK;
}

CLG_API clg_status clg_module_save(clg_context *ctx, const clg_module *m, const char *path) {
    return clg_module_save_with(ctx, m, path, clg_save_default_params());
}

CLG_API clg_status clg_module_save_with(clg_context *ctx, const clg_module *m, const char *path,
                                        clg_save_params params) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!m || !path) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_save: module or path is NULL");
    clg_named_tensor *state;
    size_t n;
    clg_status st = module_state(ctx, m, "clg_module_save", &state, &n);
    if (st == CLG_OK) st = clg_safetensors_save_with(ctx, path, state, n, params);
    free(state);
    return st;
}

/* "(2, 3)"; a file's shape [] reads as "()". */
static const char *dims_str(int ndim, const int *shape, char *buf, size_t len) {
    size_t off = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ", %d" : "%d", shape[i]);
    if (off < len) snprintf(buf + off, len - off, ")");
    return buf;
}

/* Same shape, where a file scalar (shape []) counts as shape [1]. */
static bool shape_fits(const clg_st_entry *e, const clg_tensor *t) {
    int endim = e->ndim;
    const int one[1] = {1};
    const int *eshape = e->shape;
    if (endim == 0) {
        endim = 1;
        eshape = one;
    }
    if (endim != clg_tensor_ndim(t)) return false;
    for (int i = 0; i < endim; i++)
        if (eshape[i] != clg_tensor_shape(t)[i]) return false;
    return true;
}

/* File values (little-endian, maybe unaligned, F32 or F64) into host values of dtype. */
void io__st_values(const clg_st_entry *e, clg_dtype dtype, void *dst, size_t numel) {
    const unsigned char *p = e->data;
    size_t step = e->dtype == CLG_F64 ? 8 : 4;
    for (size_t i = 0; i < numel; i++, p += step) {
        double v = e->dtype == CLG_F64 ? io__f64_from_bits(io__load_le64(p))
                                       : (double)io__f32_from_bits(io__load_le32(p));
        if (dtype == CLG_F64)
            ((double *)dst)[i] = v;
        else if (e->dtype == CLG_F32)
            ((float *)dst)[i] = io__f32_from_bits(io__load_le32(p)); /* bit-exact, NaNs kept */
        else
            ((float *)dst)[i] = (float)v;
    }
}

static int cmp_entry_name(const void *a, const void *b) {
    const clg_st_entry *x = *(const clg_st_entry *const *)a, *y = *(const clg_st_entry *const *)b;
    return strcmp(x->name, y->name);
}

CLG_API clg_status clg_module_load(clg_context *ctx, clg_module *m, const char *path) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!m || !path) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_load: module or path is NULL");
    clg_named_tensor *state = NULL;
    size_t n = 0;
    clg_st_file file = {0};
    clg_st_entry **sorted = NULL;
    const clg_st_entry **match = NULL;
    bool *used = NULL;
    void *host = NULL;
    char why[600];
    clg_status st = clg_st_read(path, &file, why, sizeof why);
    if (st != CLG_OK) return clg__fail(ctx, st, "clg_module_load: %s", why);
    st = module_state(ctx, m, "clg_module_load", &state, &n);
    if (st != CLG_OK) goto done;

    size_t nf = file.n_entries;
    sorted = malloc((nf ? nf : 1) * sizeof *sorted);
    match = malloc((n ? n : 1) * sizeof *match);
    used = calloc(nf ? nf : 1, sizeof *used);
    if (!sorted || !match || !used) {
        st = clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_module_load: out of host memory");
        goto done;
    }
    for (size_t j = 0; j < nf; j++) sorted[j] = &file.entries[j];
    qsort(sorted, nf, sizeof *sorted, cmp_entry_name);

    /* Everything is checked before anything is written: a refused file leaves the module as
     * it was. */
    size_t max_bytes = 1;
    for (size_t i = 0; i < n; i++) {
        clg_st_entry key = {.name = (char *)state[i].name};
        const clg_st_entry *kp = &key;
        clg_st_entry **hit = bsearch(&kp, sorted, nf, sizeof *sorted, cmp_entry_name);
        if (!hit) {
            st = clg__fail(ctx, CLG_BAD_FORMAT, "clg_module_load: %s: the module's \"%s\" is not in the file",
                           path, state[i].name);
            goto done;
        }
        const clg_tensor *t = state[i].tensor;
        if (!shape_fits(*hit, t)) {
            char a[64], b[64];
            st = clg__fail(ctx, CLG_SHAPE_MISMATCH,
                           "clg_module_load: %s: \"%s\" has shape %s in the file but %s in the module",
                           path, state[i].name, dims_str((*hit)->ndim, (*hit)->shape, a, sizeof a),
                           dims_str(clg_tensor_ndim(t), clg_tensor_shape(t), b, sizeof b));
            goto done;
        }
        match[i] = *hit;
        used[*hit - file.entries] = true;
        if (clg_tensor_bytes(t) > max_bytes) max_bytes = clg_tensor_bytes(t);
    }
    for (size_t j = 0; j < nf; j++)
        if (!used[j]) {
            st = clg__fail(ctx, CLG_BAD_FORMAT,
                           "clg_module_load: %s: the file's \"%s\" is not in the module", path,
                           file.entries[j].name);
            goto done;
        }

    host = malloc(max_bytes);
    if (!host) {
        st = clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_module_load: out of host memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        clg_tensor *t = state[i].tensor;
        io__st_values(match[i], clg_tensor_dtype(t), host, clg_tensor_numel(t));
        st = clg_tensor_write(t, host, clg_tensor_bytes(t));
        if (st != CLG_OK) {
            snprintf(why, sizeof why, "%s", clg_context_errmsg(ctx));
            st = clg__fail(ctx, st, "clg_module_load: writing \"%s\": %s", state[i].name, why);
            goto done;
        }
    }
done:
    free(host);
    free(used);
    free(match);
    free(sorted);
    free(state);
    clg_st_file_free(&file);
    return st;
}

/* src/io/safetensors.c - the safetensors reader: an 8-byte little-endian header length, a
 * JSON header (parsed by cJSON) naming each tensor's dtype, shape and byte range, then the
 * data block. Host memory only, so it compiles alone for tests/fuzz/fuzz_safetensors.c (and,
 * with src/io/file.c, fuzz_safetensors_read.c). clg_st_read checks the length and the header
 * against the file's size before it reads the data.
 * The writer and module load/save (device side) are in src/io/checkpoint.c.
 * Tests: tests/io/test_safetensors.c.
 */
#include "clgrad/io.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "io/io.h"

/* The reference implementation refuses headers over 100 MB: a bigger one is hostile. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Integers above 2^53 do not survive cJSON's doubles; no real file gets near it. */
#define ST_MAX_INT 9007199254740992.0

#define ST_FAIL(status, ...)                                                                  \
    do {                                                                                      \
        clg__fmt(err, err_len, "safetensors: " __VA_ARGS__);                              \
        st = (status);                                                                        \
        goto done;                                                                            \
    } while (0)

/* A JSON number that is a whole number in [0, max]. */
static bool st_json_uint(const cJSON *j, double max, uint64_t *out) {
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!isfinite(d) || d < 0 || d > max || d != floor(d))
        return false;
    *out = (uint64_t)d;
    return true;
}

/* "(2, 3)" of an entry, for messages. */
static const char *st_shape_str(const clg_st_entry *e, char *buf, size_t len) {
    size_t off = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < e->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ", %d" : "%d", e->shape[i]);
    if (off < len)
        snprintf(buf + off, len - off, ")");
    return buf;
}

static int st_cmp_name(const void *a, const void *b) {
    const clg_st_entry *x = *(const clg_st_entry *const *)a, *y = *(const clg_st_entry *const *)b;
    return strcmp(x->name, y->name);
}

static int st_cmp_offset(const void *a, const void *b) {
    const clg_st_entry *x = *(const clg_st_entry *const *)a, *y = *(const clg_st_entry *const *)b;
    const unsigned char *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

/* One tensor entry of the header into e (name already set). is_i64 says the entry holds a
 * one-element I64 to convert once the whole file is known to be sound. */
static clg_status st_parse_entry(const cJSON *j, unsigned char *block, size_t block_size,
                                 clg_st_entry *e, bool *is_i64, char *err, size_t err_len) {
    clg_status st = CLG_OK;
    const char *name = e->name;
    if (!cJSON_IsObject(j))
        ST_FAIL(CLG_BAD_FORMAT, "entry \"%s\" is not an object", name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    if (!cJSON_IsString(dtype))
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": \"dtype\" is missing or not a string", name);
    size_t dsize;
    *is_i64 = false;
    if (strcmp(dtype->valuestring, "F32") == 0) {
        e->dtype = CLG_F32;
        dsize = 4;
    } else if (strcmp(dtype->valuestring, "F64") == 0) {
        e->dtype = CLG_F64;
        dsize = 8;
    } else if (strcmp(dtype->valuestring, "I64") == 0) {
        /* Only as PyTorch's one-element counters (num_batches_tracked); checked below. */
        *is_i64 = true;
        e->dtype = CLG_F64;
        dsize = 8;
    } else {
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": unsupported dtype \"%.32s\" (only F32 and F64)",
                name, dtype->valuestring);
    }

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    if (!cJSON_IsArray(shape))
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": \"shape\" is missing or not an array", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > CLG_MAX_DIMS)
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": shape has %d dims (at most %d)", name, ndim,
                CLG_MAX_DIMS);
    e->ndim = ndim;
    size_t numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!st_json_uint(d, (double)INT_MAX, &v))
            ST_FAIL(CLG_BAD_FORMAT,
                    "tensor \"%s\": shape entry %d is not an integer in [0, %d]", name, i, INT_MAX);
        e->shape[i] = (int)v;
        if (!clg__mul_size(numel, (size_t)v, &numel))
            ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": shape is too large (overflow)", name);
    }
    size_t need;
    if (!clg__mul_size(numel, dsize, &need))
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": shape is too large (overflow)", name);
    if (*is_i64 && numel != 1)
        ST_FAIL(CLG_BAD_FORMAT,
                "tensor \"%s\": unsupported dtype \"I64\" (only F32 and F64; I64 only as a "
                "one-element counter such as num_batches_tracked)", name);

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !st_json_uint(offs->child, ST_MAX_INT, &begin) ||
        !st_json_uint(offs->child->next, ST_MAX_INT, &end))
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": \"data_offsets\" must be two non-negative integers",
                name);
    if (end < begin)
        ST_FAIL(CLG_BAD_FORMAT, "tensor \"%s\": data_offsets end %llu is before begin %llu", name,
                (unsigned long long)end, (unsigned long long)begin);
    if (end > block_size)
        ST_FAIL(CLG_BAD_FORMAT,
                "tensor \"%s\": data_offsets end %llu is beyond the %zu-byte data block", name,
                (unsigned long long)end, block_size);
    if (end - begin != need) {
        char sb[64];
        ST_FAIL(CLG_BAD_FORMAT,
                "tensor \"%s\": data_offsets cover %llu bytes but shape %s of %s needs %zu", name,
                (unsigned long long)(end - begin), st_shape_str(e, sb, sizeof sb),
                *is_i64 ? "I64" : e->dtype == CLG_F32 ? "F32" : "F64", need);
    }
    e->data = block + begin;
    e->bytes = need;
done:
    return st;
}

/* Parses buf (size bytes), taking ownership of it: it becomes out->buffer, or is freed. */
static clg_status st_parse_owned(unsigned char *buf, size_t size, clg_st_file *out, char *err,
                                 size_t err_len) {
    clg_status st = CLG_OK;
    char *text = NULL;
    cJSON *root = NULL;
    clg_st_entry **order = NULL;
    bool *is_i64 = NULL;
    clg_st_file f = {.buffer = buf, .size = size};

    if (size < 8)
        ST_FAIL(CLG_BAD_FORMAT, "file is %zu bytes, too short for the 8-byte header length", size);
    uint64_t n = io__load_le64(buf);
    if (n > ST_MAX_HEADER)
        ST_FAIL(CLG_BAD_FORMAT, "header length %llu is over the 100 MB limit", (unsigned long long)n);
    if (n > size - 8)
        ST_FAIL(CLG_BAD_FORMAT, "header length %llu is more than the %zu bytes after it (truncated?)",
                (unsigned long long)n, size - 8);
    if (n < 2 || buf[8] != '{')
        ST_FAIL(CLG_BAD_FORMAT, "header does not start with '{'");

    /* JSON allows no raw control bytes (strings escape them), and cJSON would quietly take
     * any byte below 0x20 as whitespace: refuse them here, NUL included. */
    for (size_t i = 0; i < (size_t)n; i++) {
        unsigned char c = buf[8 + i];
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
            ST_FAIL(CLG_BAD_FORMAT, "header has control byte 0x%02x at byte %zu (not valid JSON)", c, i);
    }
    /* cJSON gets its own NUL-terminated copy: even a lexer bug then cannot read past it. */
    text = malloc((size_t)n + 1);
    if (!text)
        ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for a %llu-byte header",
                (unsigned long long)n);
    memcpy(text, buf + 8, (size_t)n);
    text[n] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        ST_FAIL(CLG_BAD_FORMAT, "header is not valid JSON (error near byte %zu of %llu)", at,
                (unsigned long long)n);
    }
    /* The reference writer pads with spaces; anything else after the object is corrupt. */
    for (const char *p = end; p < text + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            ST_FAIL(CLG_BAD_FORMAT, "header has bytes after its JSON object (at byte %zu)",
                    (size_t)(p - text));
    if (!cJSON_IsObject(root))
        ST_FAIL(CLG_BAD_FORMAT, "header is not a JSON object");

    unsigned char *block = buf + 8 + n;
    size_t block_size = size - 8 - (size_t)n;
    size_t count = 0;
    for (const cJSON *j = root->child; j; j = j->next)
        count++;
    f.entries = calloc(count ? count : 1, sizeof *f.entries);
    order = calloc(count ? count : 1, sizeof *order);
    is_i64 = calloc(count ? count : 1, sizeof *is_i64);
    if (!f.entries || !order || !is_i64)
        ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for %zu entries", count);

    int n_metadata = 0;
    for (const cJSON *j = root->child; j; j = j->next) {
        const char *name = j->string ? j->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (++n_metadata > 1)
                ST_FAIL(CLG_BAD_FORMAT, "duplicate name \"__metadata__\"");
            if (!cJSON_IsObject(j))
                ST_FAIL(CLG_BAD_FORMAT, "\"__metadata__\" is not an object");
            size_t nm = 0;
            for (const cJSON *m = j->child; m; m = m->next) {
                if (!cJSON_IsString(m))
                    ST_FAIL(CLG_BAD_FORMAT, "\"__metadata__\" value of \"%s\" is not a string",
                            m->string ? m->string : "");
                nm++;
            }
            f.metadata = calloc(2 * nm + 1, sizeof *f.metadata);
            if (!f.metadata) ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for the metadata");
            for (const cJSON *m = j->child; m; m = m->next) {
                char **kv = &f.metadata[2 * f.n_metadata];
                kv[0] = clg__strdup(m->string ? m->string : "");
                kv[1] = clg__strdup(m->valuestring);
                f.n_metadata++; /* counted now so both are freed on failure */
                if (!kv[0] || !kv[1]) ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for the metadata");
            }
            continue;
        }
        clg_st_entry *e = &f.entries[f.n_entries];
        e->name = malloc(strlen(name) + 1);
        if (!e->name)
            ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for a name");
        strcpy(e->name, name);
        order[f.n_entries] = e;
        f.n_entries++; /* counted now so the name is freed on failure */
        st = st_parse_entry(j, block, block_size, e, &is_i64[f.n_entries - 1], err, err_len);
        if (st != CLG_OK)
            goto done;
    }

    /* cJSON keeps duplicate keys; a file with two tensors of one name is ambiguous. */
    qsort(order, f.n_entries, sizeof *order, st_cmp_name);
    for (size_t i = 1; i < f.n_entries; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            ST_FAIL(CLG_BAD_FORMAT, "duplicate tensor name \"%s\"", order[i]->name);

    /* Ranges sorted by start: a range overlaps when it starts before the furthest end seen.
     * Empty tensors share no bytes with anything. */
    qsort(order, f.n_entries, sizeof *order, st_cmp_offset);
    const clg_st_entry *furthest = NULL;
    for (size_t i = 0; i < f.n_entries; i++) {
        const clg_st_entry *e = order[i];
        if (e->bytes == 0)
            continue;
        const unsigned char *b = e->data;
        if (furthest && b < (const unsigned char *)furthest->data + furthest->bytes) {
            size_t fb = (size_t)((const unsigned char *)furthest->data - block);
            size_t eb = (size_t)(b - block);
            ST_FAIL(CLG_BAD_FORMAT, "tensors \"%s\" [%zu, %zu) and \"%s\" [%zu, %zu) overlap",
                    furthest->name, fb, fb + furthest->bytes, e->name, eb, eb + e->bytes);
        }
        if (!furthest || b + e->bytes > (const unsigned char *)furthest->data + furthest->bytes)
            furthest = e;
    }

    /* I64 counters become F64 in place (same 8 bytes; the buffer is ours), so every reader of
     * entries sees F32 or F64 only. Exact below 2^53, far beyond any batch count. */
    for (size_t i = 0; i < f.n_entries; i++) {
        if (!is_i64[i])
            continue;
        unsigned char *p = block + ((const unsigned char *)f.entries[i].data - block);
        int64_t v = (int64_t)io__load_le64(p);
        io__store_le64(p, io__f64_bits((double)v));
    }

done:
    cJSON_Delete(root);
    free(text);
    free(order);
    free(is_i64);
    if (st == CLG_OK) {
        *out = f;
    } else {
        clg_st_file_free(&f);
    }
    return st;
}

CLG_API clg_status clg_st_parse(const void *data, size_t size, clg_st_file *out, char *err,
                                size_t err_len) {
    if (!out || (!data && size > 0)) {
        clg__fmt(err, err_len, "clg_st_parse: out is NULL, or data is NULL with size > 0");
        return CLG_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) {
        clg__fmt(err, err_len, "safetensors: out of host memory for %zu bytes", size);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    if (size)
        memcpy(copy, data, size);
    return st_parse_owned(copy, size, out, err, err_len);
}

/* How many bytes after the header the header's entries reach: the largest well-formed
 * data_offsets end. Only sizes the read; st_parse_owned checks everything, so anything odd
 * here just counts as 0. */
static uint64_t st_header_reach(const unsigned char *header, size_t n) {
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, header, n);
    text[n] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, NULL, 0);
    uint64_t reach = 0;
    for (const cJSON *j = root && cJSON_IsObject(root) ? root->child : NULL; j; j = j->next) {
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
        uint64_t end;
        if (cJSON_IsArray(offs) && cJSON_GetArraySize(offs) == 2 &&
            st_json_uint(offs->child->next, ST_MAX_INT, &end) && end > reach)
            reach = end;
    }
    cJSON_Delete(root);
    free(text);
    return reach;
}

/* Reads what a safetensors file needs and no more: a regular file only (a FIFO or /dev/zero
 * is refused before any byte is read), the 8-byte length and the header checked against the
 * file's size first, then only the data block the header's entries reach (bytes past it are
 * not read, as st_parse_owned would ignore them); a header that reaches past the end of the
 * file fails before any data is read. */
static clg_status st_read_capped(const char *path, unsigned char **buf_out, size_t *size_out, char *err,
                                 size_t err_len) {
    clg_status st = CLG_OK;
    unsigned char *buf = NULL;
    io_file f;
    *buf_out = NULL;
    *size_out = 0;
    st = io__open_regular(path, "safetensors", &f, err, err_len);
    if (st != CLG_OK) return st;
    unsigned char len_le[8];
    if (f.size < 8)
        ST_FAIL(CLG_BAD_FORMAT, "file is %llu bytes, too short for the 8-byte header length",
                (unsigned long long)f.size);
    if ((st = io__read_at(&f, 0, len_le, 8, "safetensors", path, err, err_len)) != CLG_OK) goto done;
    uint64_t n = io__load_le64(len_le);
    if (n > ST_MAX_HEADER)
        ST_FAIL(CLG_BAD_FORMAT, "header length %llu is over the 100 MB limit", (unsigned long long)n);
    if (n > f.size - 8)
        ST_FAIL(CLG_BAD_FORMAT, "header length %llu is more than the %llu bytes after it (truncated?)",
                (unsigned long long)n, (unsigned long long)(f.size - 8));
    buf = malloc(8 + (size_t)n + 1);
    if (!buf)
        ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for a %llu-byte header", (unsigned long long)n);
    memcpy(buf, len_le, 8);
    if ((st = io__read_at(&f, 8, buf + 8, (size_t)n, "safetensors", path, err, err_len)) != CLG_OK) goto done;
    uint64_t block = f.size - 8 - n, reach = st_header_reach(buf + 8, (size_t)n);
    if (reach > block) /* the data is not all there: nothing more is worth reading */
        ST_FAIL(CLG_BAD_FORMAT, "data_offsets reach byte %llu of the data block, but the file has %llu "
                "bytes after the header (truncated?)", (unsigned long long)reach, (unsigned long long)block);
    block = reach;
    uint64_t total = 8 + n + block;
    if (total > SIZE_MAX - 1)
        ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "a %llu-byte file does not fit in memory", (unsigned long long)total);
    if (block) {
        unsigned char *grown = realloc(buf, (size_t)total);
        if (!grown)
            ST_FAIL(CLG_OUT_OF_HOST_MEMORY, "out of host memory for %llu bytes", (unsigned long long)total);
        buf = grown;
        if ((st = io__read_at(&f, 8 + n, buf + 8 + n, (size_t)block, "safetensors", path, err, err_len)) != CLG_OK)
            goto done;
    }
    *buf_out = buf;
    *size_out = (size_t)total;
    buf = NULL;
done:
    free(buf);
    io__close(&f);
    return st;
}

CLG_API clg_status clg_st_read(const char *path, clg_st_file *out, char *err, size_t err_len) {
    if (!out || !path) {
        clg__fmt(err, err_len, "clg_st_read: path or out is NULL");
        return CLG_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t size;
    char why[512] = "";
    clg_status st = st_read_capped(path, &buf, &size, why, sizeof why);
    if (st == CLG_OK) st = st_parse_owned(buf, size, out, why, sizeof why);
    if (st != CLG_OK) { /* "safetensors: <path>: <reason>", the path once */
        const char *reason = strncmp(why, "safetensors: ", 13) == 0 ? why + 13 : why;
        if (strstr(reason, path))
            clg__fmt(err, err_len, "safetensors: %s", reason);
        else
            clg__fmt(err, err_len, "safetensors: %s: %s", path, reason);
    }
    return st;
}

CLG_API void clg_st_file_free(clg_st_file *f) {
    if (!f)
        return;
    for (size_t i = 0; i < 2 * f->n_metadata; i++)
        free(f->metadata[i]);
    free(f->metadata);
    f->metadata = NULL;
    f->n_metadata = 0;
    for (size_t i = 0; i < f->n_entries; i++)
        free(f->entries[i].name);
    free(f->entries);
    free(f->buffer);
    memset(f, 0, sizeof *f);
}

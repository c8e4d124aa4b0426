/* tests/io/test_checkpoint.c - saving and loading on a device (src/io/checkpoint.c):
 * clg_safetensors_save round trips and failures (atomic, no temp files left, non-finite
 * values refused, modes kept, symlinks replaced), module
 * save/load round trips, rejected checkpoints, and a batch norm as PyTorch saves it.
 */
#include "io_test.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- helpers */

static unsigned char *read_all(const char *path, size_t *len) {
    unsigned char *buf;
    char err[256];
    assert_int_equal(clg__read_file(path, SIZE_MAX, "test", &buf, len, err, sizeof err), CLG_OK);
    return buf;
}

/* Names in dir that contain ".tmp" (left-over temp files of a save: "<path>.tmp", and the
 * "<path>.tmp.<pid>" of older versions). */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------- safetensors: save (device) */

typedef struct saved_tensor {
    const char *name;
    clg_dtype dtype;
    int ndim;
    int shape[4];
} saved_tensor;

/* Creates tensors with values i * 0.37 - k (exact in f32 up to rounding, distinct). */
static size_t make_tensors(clg_context *ctx, const saved_tensor *spec, size_t n, clg_named_tensor *out,
                           void **host) {
    size_t made = 0;
    for (size_t k = 0; k < n; k++) {
        size_t numel = 1;
        for (int d = 0; d < spec[k].ndim; d++) numel *= (size_t)spec[k].shape[d];
        void *h = malloc(numel * 8);
        assert_non_null(h);
        for (size_t i = 0; i < numel; i++) {
            double v = (double)i * 0.37 - (double)k;
            if (spec[k].dtype == CLG_F64)
                ((double *)h)[i] = v;
            else
                ((float *)h)[i] = (float)v;
        }
        clg_tensor *t = NULL;
        clg_status st = clg_tensor_from_host(ctx, spec[k].dtype, spec[k].ndim, spec[k].shape, h, &t);
        if (st == CLG_UNSUPPORTED) { /* no fp64 on this device: f64 entries are left out */
            free(h);
            continue;
        }
        REF_OK(ctx, st);
        out[made] = (clg_named_tensor){spec[k].name, t, true};
        host[made] = h;
        made++;
    }
    return made;
}

static void free_tensors(clg_named_tensor *e, void **host, size_t n) {
    for (size_t i = 0; i < n; i++) {
        clg_tensor_free(e[i].tensor);
        free(host[i]);
    }
}

static void test_st_save_round_trip(void **state) {
    clg_context *ctx = *state;
    const saved_tensor spec[] = {
        {"conv1.weight", CLG_F32, 4, {3, 2, 3, 3}},
        {"conv1.bias", CLG_F32, 1, {3}},
        {"fc.weight", CLG_F64, 2, {4, 5}},
        {"fc.bias", CLG_F64, 1, {4}},
        {"x", CLG_F64, 4, {1, 2, 1, 3}},
        {"name with \"quotes\" and \\ slash", CLG_F32, 3, {1, 1, 1}},
    };
    clg_named_tensor e[6];
    void *host[6];
    size_t n = make_tensors(ctx, spec, 6, e, host);
    assert_true(n >= 3);
    char path[256], err[512] = "";
    tmp_path(path, sizeof path, "round.safetensors");
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, n));
    assert_int_equal(count_tmp_files(tmp_root), 0);

    size_t flen;
    unsigned char *file = read_all(path, &flen);
    uint64_t hlen = io__load_le64(file);
    assert_int_equal(hlen % 8, 0); /* padded, so the data block is 8-aligned */
    assert_int_equal(file[8], '{');
    free(file);

    clg_st_file f;
    clg_status st = clg_st_read(path, &f, err, sizeof err);
    if (st != CLG_OK) fail_msg("%s", err);
    assert_int_equal(f.n_entries, n);
    const unsigned char *prev_end = NULL;
    for (size_t i = 0; i < n; i++) {
        const clg_st_entry *s = &f.entries[i]; /* written, and kept, in the given order */
        assert_string_equal(s->name, e[i].name);
        assert_int_equal(s->dtype, clg_tensor_dtype(e[i].tensor));
        assert_int_equal(s->ndim, clg_tensor_ndim(e[i].tensor));
        for (int d = 0; d < s->ndim; d++) assert_int_equal(s->shape[d], clg_tensor_shape(e[i].tensor)[d]);
        assert_int_equal(s->bytes, clg_tensor_bytes(e[i].tensor));
        assert_memory_equal(s->data, host[i], s->bytes); /* bit-exact (little-endian host) */
        if (prev_end) assert_ptr_equal(s->data, prev_end); /* offsets increase, no gaps */
        prev_end = (const unsigned char *)s->data + s->bytes;
    }
    assert_ptr_equal(prev_end, f.buffer + f.size);
    clg_st_file_free(&f);
    free_tensors(e, host, n);
}

static void test_st_save_failures(void **state) {
    clg_context *ctx = *state;
    const saved_tensor spec[] = {{"a", CLG_F32, 2, {64, 64}}, {"b", CLG_F32, 1, {5}}};
    clg_named_tensor e[2];
    void *host[2];
    size_t n = make_tensors(ctx, spec, 2, e, host);
    assert_int_equal(n, 2);
    char path[256], err[512];

    /* The folder does not exist: clean failure, nothing created. */
    tmp_path(path, sizeof path, "no-such-dir/x.safetensors");
    assert_int_equal(clg_safetensors_save(ctx, path, e, n), CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "cannot create"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "no-such-dir"));

    /* Over an existing file: replaced. */
    tmp_path(path, sizeof path, "over.safetensors");
    write_file(path, "old contents", 12);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    clg_st_file f;
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 1);
    clg_st_file_free(&f);
    size_t old_len;
    unsigned char *old = read_all(path, &old_len);

    /* A write that fails half-way (the file-size limit stands in for a full disk): the
     * previous checkpoint survives byte for byte, and no temp file is left behind. */
    struct rlimit saved_lim, small_lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_lim), 0);
    small_lim = saved_lim;
    small_lim.rlim_cur = 1000; /* "a" alone is 16 KiB */
    void (*saved_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small_lim), 0);
    clg_status st = clg_safetensors_save(ctx, path, e, n);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved_lim), 0);
    signal(SIGXFSZ, saved_sig);
    assert_int_equal(st, CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "cannot write"));
    size_t now_len;
    unsigned char *now = read_all(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);
    assert_int_equal(count_tmp_files(tmp_root), 0);

    /* The rename fails (a non-empty folder holds the name): the folder and what is in it
     * survive, and the temp file is gone. */
    char dir[256], inner[300];
    tmp_path(dir, sizeof dir, "taken");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(inner, sizeof inner, "%s/keep", dir);
    write_file(inner, "keep", 4);
    assert_int_equal(clg_safetensors_save(ctx, dir, e, n), CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "cannot rename"));
    assert_int_equal(access(inner, R_OK), 0);
    assert_int_equal(count_tmp_files(tmp_root), 0);

    /* Entries that would make an unreadable file. */
    clg_named_tensor dup[2] = {{"same", e[0].tensor, true}, {"same", e[1].tensor, true}};
    assert_int_equal(clg_safetensors_save(ctx, path, dup, 2), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "duplicate name \"same\""));
    clg_named_tensor meta[1] = {{"__metadata__", e[0].tensor, true}};
    assert_int_equal(clg_safetensors_save(ctx, path, meta, 1), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "reserved"));
    clg_named_tensor null_t[1] = {{"t", NULL, true}};
    assert_int_equal(clg_safetensors_save(ctx, path, null_t, 1), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_safetensors_save(ctx, NULL, e, n), CLG_INVALID_ARGUMENT);
    /* None of these touched the old file. */
    now = read_all(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);
    free(old);

    /* Zero entries is a valid, empty checkpoint. */
    REF_OK(ctx, clg_safetensors_save(ctx, path, NULL, 0));
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 0);
    clg_st_file_free(&f);
    free_tensors(e, host, n);
}

/* NaN or an infinity in any tensor fails the save before the file at path is touched (a
 * diverged run never replaces a good checkpoint); allow_nonfinite writes them bit for bit. */
static void test_st_save_nonfinite(void **state) {
    clg_context *ctx = *state;
    const saved_tensor spec[] = {{"good", CLG_F32, 1, {4}}, {"bad", CLG_F32, 2, {3, 5}}, {"bad64", CLG_F64, 1, {6}}};
    clg_named_tensor e[3];
    void *host[3] = {0};
    size_t n = make_tensors(ctx, spec, 3, e, host);
    assert_true(n >= 2);
    char path[256], err[512] = "";
    tmp_path(path, sizeof path, "finite.safetensors");
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, n));
    size_t old_len;
    unsigned char *old = read_all(path, &old_len);

    const float bad_f32[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"NaN", "+inf", "-inf"};
    for (int k = 0; k < 3; k++) {
        float *h = host[1];
        h[7] = bad_f32[k];
        REF_OK(ctx, clg_tensor_write(e[1].tensor, h, clg_tensor_bytes(e[1].tensor)));
        assert_int_equal(clg_safetensors_save(ctx, path, e, n), CLG_INVALID_ARGUMENT);
        char want[128];
        snprintf(want, sizeof want, "\"bad\" holds %s at element 7", names[k]);
        if (!strstr(clg_context_errmsg(ctx), want)) fail_msg("%s", clg_context_errmsg(ctx));
        assert_non_null(strstr(clg_context_errmsg(ctx), "allow_nonfinite"));
        size_t now_len;
        unsigned char *now = read_all(path, &now_len);
        assert_int_equal(now_len, old_len);
        assert_memory_equal(now, old, old_len);
        free(now);
        assert_int_equal(count_tmp_files(tmp_root), 0);
        h[7] = 0.5f;
        REF_OK(ctx, clg_tensor_write(e[1].tensor, h, clg_tensor_bytes(e[1].tensor)));
    }
    if (n == 3) { /* f64 too (where the device has it) */
        double *h = host[2];
        h[5] = -INFINITY;
        REF_OK(ctx, clg_tensor_write(e[2].tensor, h, clg_tensor_bytes(e[2].tensor)));
        assert_int_equal(clg_safetensors_save(ctx, path, e, n), CLG_INVALID_ARGUMENT);
        assert_non_null(strstr(clg_context_errmsg(ctx), "\"bad64\" holds -inf at element 5"));
    }
    /* Opted out: written as they are, NaN bits kept. */
    float *h = host[1];
    h[0] = NAN;
    REF_OK(ctx, clg_tensor_write(e[1].tensor, h, clg_tensor_bytes(e[1].tensor)));
    clg_save_params p = clg_save_default_params();
    assert_false(p.allow_nonfinite);
    p.allow_nonfinite = true;
    REF_OK(ctx, clg_safetensors_save_with(ctx, path, e, n, p));
    clg_st_file f;
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_memory_equal(f.entries[1].data, host[1], clg_tensor_bytes(e[1].tensor));
    clg_st_file_free(&f);
    free(old);
    free_tensors(e, host, n);
}

static mode_t file_mode(const char *path) {
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode;
}

/* What a save does to what is already there: a file keeps its permission bits, a symlink is
 * replaced (its target untouched), a temp file left by a killed save is replaced, a symlink
 * at the temp name is refused (never followed). */
static void test_st_save_over_existing(void **state) {
    clg_context *ctx = *state;
    const saved_tensor spec[] = {{"w", CLG_F32, 1, {8}}};
    clg_named_tensor e[1];
    void *host[1] = {0};
    assert_int_equal(make_tensors(ctx, spec, 1, e, host), 1);
    char path[256], tmp[300], target[256], err[512] = "";
    clg_st_file f;

    /* A new file: the creation mode less the umask, as fopen. */
    tmp_path(path, sizeof path, "modes.safetensors");
    unlink(path);
    mode_t mask = umask(022);
    umask(mask);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    assert_int_equal(file_mode(path) & 07777, 0666 & ~mask);
    /* Over a file: its permission bits stay. */
    assert_int_equal(chmod(path, 0640), 0);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    assert_true(S_ISREG(file_mode(path)));
    assert_int_equal(file_mode(path) & 07777, 0640);
    assert_int_equal(chmod(path, 0600), 0);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    assert_int_equal(file_mode(path) & 07777, 0600);

    /* A temp file left by a killed save (any content, any mode) is replaced, and gone after. */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    write_file(tmp, "half a checkpoint", 17);
    assert_int_equal(chmod(tmp, 0400), 0);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(file_mode(path) & 07777, 0600);
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    clg_st_file_free(&f);

    /* A symlink at path: replaced by the new file; what it pointed to stays as it was. */
    tmp_path(target, sizeof target, "link-target");
    write_file(target, "not a checkpoint", 16);
    tmp_path(path, sizeof path, "link.safetensors");
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    assert_true(S_ISREG(file_mode(path)));
    size_t tlen;
    unsigned char *t = read_all(target, &tlen);
    assert_int_equal(tlen, 16);
    assert_memory_equal(t, "not a checkpoint", 16);
    free(t);
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    clg_st_file_free(&f);

    /* A symlink at the temp name is not followed: the save fails, the target stays. */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(clg_safetensors_save(ctx, path, e, 1), CLG_IO_ERROR);
    t = read_all(target, &tlen);
    assert_int_equal(tlen, 16);
    free(t);
    unlink(tmp);
    assert_int_equal(count_tmp_files(tmp_root), 0);
    free_tensors(e, host, 1);
}

/* ---------------------------------------------------------------- module load/save (device) */

/* conv1 (1 -> conv_out, 3x3) -> bn1 -> [fc (8 -> 3)], every state tensor then filled with
 * values that depend on fill (so two models differ everywhere, running stats included). */
static clg_module *build_model(clg_context *ctx, int conv_out, bool with_fc, double fill) {
    clg_module *seq = NULL, *conv = NULL, *bn = NULL, *fc = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    REF_OK(ctx, clg_conv2d_module_create(ctx, "conv1", 1, conv_out, 3, 3, clg_conv2d_default_params(),
                                         true, 7, &conv));
    REF_OK(ctx, clg_sequential_add(seq, conv));
    REF_OK(ctx, clg_batch_norm2d_module_create(ctx, "bn1", conv_out, 1e-5, 0.1, &bn));
    REF_OK(ctx, clg_sequential_add(seq, bn));
    if (with_fc) {
        REF_OK(ctx, clg_linear_module_create(ctx, "fc", 8, 3, true, 9, &fc));
        REF_OK(ctx, clg_sequential_add(seq, fc));
    }
    clg_named_tensor st[16];
    size_t n = clg_module_state(seq, st, 16);
    for (size_t k = 0; k < n; k++) {
        size_t numel = clg_tensor_numel(st[k].tensor);
        float *h = malloc(numel * sizeof *h);
        assert_non_null(h);
        for (size_t i = 0; i < numel; i++) h[i] = (float)sin(fill + (double)(k * 100 + i));
        REF_OK(ctx, clg_tensor_write(st[k].tensor, h, numel * sizeof *h));
        free(h);
    }
    return seq;
}

/* All state values of m, as doubles, concatenated in state order; *n gets the count. */
static double *state_values(const clg_module *m, size_t *n) {
    clg_named_tensor st[16];
    size_t ns = clg_module_state(m, st, 16), total = 0;
    for (size_t k = 0; k < ns; k++) total += clg_tensor_numel(st[k].tensor);
    double *all = malloc(total * sizeof *all);
    assert_non_null(all);
    size_t at = 0;
    for (size_t k = 0; k < ns; k++) {
        double *v = ref_to_host_f64(st[k].tensor);
        memcpy(all + at, v, clg_tensor_numel(st[k].tensor) * sizeof *v);
        at += clg_tensor_numel(st[k].tensor);
        free(v);
    }
    *n = total;
    return all;
}

static void test_module_save_load_round_trip(void **state) {
    clg_context *ctx = *state;
    clg_module *a = build_model(ctx, 4, true, 0.0), *b = build_model(ctx, 4, true, 0.5);
    char path[256], err[512] = "";
    tmp_path(path, sizeof path, "model.safetensors");
    REF_OK(ctx, clg_module_save(ctx, a, path));

    /* The file holds the state_dict names, in order, as F32 (num_batches_tracked as [1]). */
    clg_named_tensor st[16];
    size_t ns = clg_module_state(a, st, 16);
    assert_int_equal(ns, 9);
    clg_st_file f;
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, ns);
    for (size_t k = 0; k < ns; k++) {
        assert_string_equal(f.entries[k].name, st[k].name);
        assert_int_equal(f.entries[k].dtype, CLG_F32);
    }
    const clg_st_entry *nbt = st_find(&f, "bn1.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(nbt->ndim, 1);
    assert_int_equal(nbt->shape[0], 1);
    clg_st_file_free(&f);

    size_t na, nb;
    double *va = state_values(a, &na), *vb = state_values(b, &nb);
    assert_int_equal(na, nb);
    assert_true(memcmp(va, vb, na * sizeof *va) != 0);
    free(vb);
    REF_OK(ctx, clg_module_load(ctx, b, path));
    vb = state_values(b, &nb);
    assert_memory_equal(va, vb, na * sizeof *va); /* bit-exact */
    free(va);
    free(vb);

    /* Into an f64 copy of the model: every f32 value converts exactly. */
    clg_module *c = build_model(ctx, 4, true, 0.25);
    clg_status s64 = clg_module_to_dtype(c, CLG_F64);
    if (s64 == CLG_OK) {
        REF_OK(ctx, clg_module_load(ctx, c, path));
        va = state_values(a, &na);
        double *vc = state_values(c, &nb);
        assert_memory_equal(va, vc, na * sizeof *va);
        free(va);
        free(vc);
        /* And back: an F64 file into an f32 model rounds each value to float. */
        tmp_path(path, sizeof path, "model64.safetensors");
        clg_named_tensor sc[16];
        size_t nc = clg_module_state(c, sc, 16);
        for (size_t k = 0; k < nc; k++) {
            size_t numel = clg_tensor_numel(sc[k].tensor);
            double *h = malloc(numel * sizeof *h);
            assert_non_null(h);
            for (size_t i = 0; i < numel; i++) h[i] = 1.0 / (3.0 + (double)(k * 10 + i));
            REF_OK(ctx, clg_tensor_write(sc[k].tensor, h, numel * sizeof *h));
            free(h);
        }
        REF_OK(ctx, clg_module_save(ctx, c, path));
        assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
        assert_int_equal(f.entries[0].dtype, CLG_F64);
        clg_st_file_free(&f);
        REF_OK(ctx, clg_module_load(ctx, b, path));
        double *want = state_values(c, &na);
        vb = state_values(b, &nb);
        for (size_t i = 0; i < na; i++) assert_true(vb[i] == (double)(float)want[i]);
        free(want);
        free(vb);
    } else {
        assert_int_equal(s64, CLG_UNSUPPORTED);
    }
    clg_module_free(a);
    clg_module_free(b);
    clg_module_free(c);
}

static void test_module_load_rejects(void **state) {
    clg_context *ctx = *state;
    clg_module *small = build_model(ctx, 4, false, 0.0), *full = build_model(ctx, 4, true, 1.0),
               *wide = build_model(ctx, 5, false, 2.0);
    char small_path[256], full_path[256];
    tmp_path(small_path, sizeof small_path, "small.safetensors");
    tmp_path(full_path, sizeof full_path, "full.safetensors");
    REF_OK(ctx, clg_module_save(ctx, small, small_path));
    REF_OK(ctx, clg_module_save(ctx, full, full_path));
    size_t n0, n1;
    double *before = state_values(full, &n0);

    /* The file lacks fc: named, and the module keeps every value it had. */
    assert_int_equal(clg_module_load(ctx, full, small_path), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "\"fc.weight\" is not in the file"));
    double *after = state_values(full, &n1);
    assert_memory_equal(before, after, n0 * sizeof *before);
    free(after);
    /* The file has fc, the module does not. */
    assert_int_equal(clg_module_load(ctx, small, full_path), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "the file's \"fc.weight\" is not in the module"));
    /* Same names, other shapes: both shapes in the message. */
    assert_int_equal(clg_module_load(ctx, wide, small_path), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx),
                           "\"conv1.weight\" has shape (4, 1, 3, 3) in the file but (5, 1, 3, 3) in the module"));
    /* No file, a bad file: the reader's reason, under the module call. */
    char path[256];
    tmp_path(path, sizeof path, "absent.safetensors");
    assert_int_equal(clg_module_load(ctx, small, path), CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "clg_module_load: "));
    assert_non_null(strstr(clg_context_errmsg(ctx), path));
    tmp_path(path, sizeof path, "garbage.safetensors");
    write_file(path, "\x10\0\0\0\0\0\0\0not json at all!", 24);
    assert_int_equal(clg_module_load(ctx, small, path), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "does not start with '{'"));
    /* A device write that fails is reported with the tensor's name. */
    clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, 1);
    clg_status st = clg_module_load(ctx, full, full_path);
    clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, 0);
    assert_int_equal(st, CLG_OPENCL_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "clg_module_load: writing \"conv1.weight\""));
    assert_int_equal(clg_module_load(ctx, NULL, full_path), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_save(ctx, full, NULL), CLG_INVALID_ARGUMENT);
    free(before);
    clg_module_free(small);
    clg_module_free(full);
    clg_module_free(wide);
}

/* A batch norm as PyTorch saves it: num_batches_tracked an I64 of shape [] (or [1]), and a
 * weight stored as an F32 scalar-shaped [] where the module has (1). */
static void test_module_load_pytorch_batchnorm(void **state) {
    clg_context *ctx = *state;
    clg_module *bn = NULL;
    REF_OK(ctx, clg_batch_norm2d_module_create(ctx, "bn1", 1, 1e-5, 0.1, &bn));
    const char *shapes[2] = {"[]", "[1]"};
    for (int v = 0; v < 2; v++) {
        unsigned char data[24];
        io__store_le32(data + 0, io__f32_bits(1.5f));   /* weight */
        io__store_le32(data + 4, io__f32_bits(-0.5f));  /* bias */
        io__store_le32(data + 8, io__f32_bits(0.25f));  /* running_mean */
        io__store_le32(data + 12, io__f32_bits(2.0f));  /* running_var */
        io__store_le64(data + 16, (uint64_t)(1234 + v)); /* num_batches_tracked */
        char json[600];
        snprintf(json, sizeof json,
                 "{\"__metadata__\":{\"format\":\"pt\"},"
                 "\"bn1.weight\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                 "\"bn1.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                 "\"bn1.running_mean\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                 "\"bn1.running_var\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
                 "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":%s,\"data_offsets\":[16,24]}}",
                 shapes[v]);
        size_t len;
        unsigned char *b = st_build(json, data, sizeof data, &len);
        char path[256];
        tmp_path(path, sizeof path, "torch_bn.safetensors");
        write_file(path, b, len);
        free(b);
        REF_OK(ctx, clg_module_load(ctx, bn, path));
        size_t n;
        double *vals = state_values(bn, &n);
        assert_int_equal(n, 5);
        assert_true(vals[0] == 1.5 && vals[1] == -0.5 && vals[2] == 0.25 && vals[3] == 2.0);
        assert_true(vals[4] == 1234.0 + v);
        free(vals);
    }
    clg_module_free(bn);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_save_round_trip),
        cmocka_unit_test(test_st_save_failures),
        cmocka_unit_test(test_st_save_nonfinite),
        cmocka_unit_test(test_st_save_over_existing),
        cmocka_unit_test(test_module_save_load_round_trip),
        cmocka_unit_test(test_module_load_rejects),
        cmocka_unit_test(test_module_load_pytorch_batchnorm),
    };
    if (make_tmp_root(NULL) != 0) return 1;
    const int failed = cmocka_run_group_tests_name("checkpoint", tests, ref_group_setup, ref_group_teardown);
    remove_tmp_root(NULL);
    return failed;
}

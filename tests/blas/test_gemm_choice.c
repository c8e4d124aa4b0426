/* tests/blas/test_gemm_choice.c - which GEMM path runs (src/blas/choose.c, the table in
 * src/blas/gemm.c) and the tuning file (src/blas/tune.c): the table's names, forcing each
 * path by name, the deterministic rule with the cache off, measured choices written at
 * clg_context_free and not before, an injected build fault surfacing and never recorded, and
 * the file's round trip (times by path name; older formats, other devices and broken files
 * ignored with a log line). The products themselves: test_gemm.c, test_gemm_packed.c.
 */
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas/tuning.h"

static clg_tensor *rand1d(clg_context *ctx, clg_dtype dt, size_t len, uint64_t seed) {
    const int shape[1] = {(int)len};
    return ref_rand(ctx, dt, 1, shape, seed, -1.0, 1.0);
}

/* One tight f32 product C = A op(B) + C through clg_gemm, checked against the host loop. */
static clg_status gemm_checked(clg_context *ctx, bool ta, bool tb, size_t m, size_t n, size_t k, uint64_t seed) {
    clg_tensor *a = rand1d(ctx, CLG_F32, m * k, seed), *b = rand1d(ctx, CLG_F32, k * n, seed + 1);
    clg_tensor *c = rand1d(ctx, CLG_F32, m * n, seed + 2);
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b), *want = ref_to_host_f64(c);
    const size_t lda = ta ? m : k, ldb = tb ? k : n;
    ref_gemm(ta, tb, m, n, k, 1.0, ah, lda, bh, ldb, 1.0, want, n);
    const clg_status st = clg_gemm(ctx, ta, tb, m, n, k, 1.0, a, 0, lda, b, 0, ldb, 1.0, c, 0, n);
    if (st == CLG_OK) {
        double *got = ref_to_host_f64(c);
        ref_assert_close(got, want, m * n, 1e-4, 2e-6 * (double)k, "gemm");
        free(got);
    }
    free(ah), free(bh), free(want);
    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
    return st;
}

static clg_context *new_context(const char *cache_dir) {
    clg_context_params p = clg_context_default_params();
    p.cache_dir = cache_dir;
    clg_context *ctx = NULL;
    char err[512] = "";
    if (clg_context_create(&p, &ctx, err, sizeof err) != CLG_OK) fail_msg("clg_context_create: %s", err);
    return ctx;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

/* The path the rule gives a device without measurements: ours on a CPU, CLBlast elsewhere. */
static const char *rule_path(clg_context *ctx) {
    clg_device_info info;
    REF_OK(ctx, clg_context_device_info(ctx, &info));
    return info.type == CL_DEVICE_TYPE_CPU ? "packed" : "clblast";
}

/* Every entry's name is unique, forcing each by name runs it, and a name that is no path is
 * refused with the name in the message. */
static void test_path_table(void **state) {
    clg_context *ctx = *state;
    const size_t n = clg_blas_path_count();
    assert_true(n >= 2 && n <= CLG_BLAS_MAX_PATHS);
    assert_null(clg_blas_path_name(n));
    bool seen_clblast = false, seen_packed = false;
    for (size_t i = 0; i < n; i++) {
        const char *name = clg_blas_path_name(i);
        assert_non_null(name);
        assert_true(strlen(name) > 0 && strlen(name) < CLG_BLAS_NAME_LEN);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(name, clg_blas_path_name(j))) fail_msg("path name \"%s\" twice in the table", name);
        seen_clblast |= !strcmp(name, "clblast");
        seen_packed |= !strcmp(name, "packed");
        REF_OK(ctx, clg_blas_force_path(ctx, name));
        assert_string_equal(clg_blas_forced_path(ctx), name);
        for (int t = 0; t < 4; t++)
            REF_OK(ctx, gemm_checked(ctx, t & 1, t >> 1, 37, 29, 41, 100 + (uint64_t)t));
    }
    assert_true(seen_clblast && seen_packed);
    REF_OK(ctx, clg_blas_force_path(ctx, "auto"));
    assert_string_equal(clg_blas_forced_path(ctx), "auto");
    REF_EXPECT(ctx, clg_blas_force_path(ctx, "fastest"), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "fastest"));
    assert_string_equal(clg_blas_forced_path(ctx), "auto");
}

/* With the cache off and nothing measured, two fresh contexts choose the same path for every
 * class (the rule, not a timing), and a context with a cache folder writes no file. */
static void test_choice_deterministic(void **state) {
    (void)state;
    static const size_t shapes[][5] = {{64, 64, 64, 0, 0}, {32, 9, 50176, 0, 1}, {288, 12544, 64, 1, 0},
                                       {7, 33, 130, 1, 1}, {1, 1, 1, 0, 0},      {64, 10, 128, 0, 1}};
    const char *first[sizeof shapes / sizeof shapes[0]];
    for (int run = 0; run < 2; run++) {
        clg_context *ctx = new_context("off");
        const char *rule = rule_path(ctx);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const char *name = NULL;
            REF_OK(ctx, clg_blas_chosen_path(ctx, CLG_F32, shapes[i][3], shapes[i][4], shapes[i][0], shapes[i][1],
                                             shapes[i][2], &name));
            assert_string_equal(name, rule);
            if (run == 0) first[i] = name;
            else assert_string_equal(name, first[i]);
        }
        REF_OK(ctx, gemm_checked(ctx, false, true, 45, 50, 60, 7));
        clg_context_free(ctx);
    }
    char dir[] = "/tmp/clgrad-choice-XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    clg_context *ctx = new_context(dir);
    REF_OK(ctx, gemm_checked(ctx, false, false, 45, 50, 60, 9));
    REF_OK(ctx, gemm_checked(ctx, true, false, 200, 100, 30, 11));
    assert_true(clg_blas_tune_file(ctx, path, sizeof path));
    clg_context_free(ctx);
    if (exists(path)) fail_msg("%s written by a run that measured nothing", path);
    rmdir(dir);
}

/* A measured choice lives in memory: the file appears at clg_context_free, with the times by
 * path name, and the next context takes the choice without measuring. */
static void test_choices_written_at_free(void **state) {
    (void)state;
    char dir[] = "/tmp/clgrad-choice-XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    clg_context *ctx = new_context(dir);
    assert_true(clg_blas_tune_file(ctx, path, sizeof path));
    clg_tensor *a = rand1d(ctx, CLG_F32, 64 * 64, 1), *b = rand1d(ctx, CLG_F32, 64 * 64, 2);
    clg_blas_times t;
    REF_OK(ctx, clg_blas_measure(ctx, CLG_F32, false, false, 64, 48, 40, clg_tensor_cl_mem(a), 0, 40,
                                 clg_tensor_cl_mem(b), 0, 48, &t));
    const char *winner = clg_blas_path_name(t.winner);
    for (size_t i = 0; i < clg_blas_path_count(); i++)
        assert_true(t.seconds[i] > 0 && t.seconds[i] >= t.seconds[t.winner]);
    const clg_gemm_class cls = clg_blas_class(CLG_F32, false, false, 64, 48, 40);
    const char *got = NULL;
    REF_OK(ctx, clg_blas_lookup_choice(ctx, cls, &got));
    assert_string_equal(got, winner);
    REF_OK(ctx, gemm_checked(ctx, false, false, 64, 48, 40, 3)); /* runs on the measured path */
    if (exists(path)) fail_msg("%s written before clg_context_free", path);
    clg_tensor_free(a), clg_tensor_free(b);
    clg_context_free(ctx);
    if (!exists(path)) fail_msg("%s not written at clg_context_free", path);

    ctx = new_context(dir);
    assert_false(clg_blas_tuning_applied(ctx)); /* read on first use, not at creation */
    REF_OK(ctx, clg_blas_lookup_choice(ctx, cls, &got));
    assert_true(clg_blas_tuning_applied(ctx));
    assert_string_equal(got, winner);
    clg_tune_data *d = calloc(1, sizeof *d);
    assert_non_null(d);
    REF_OK(ctx, clg_blas_tune_read(ctx, d));
    assert_int_equal(d->n_choices, 1);
    assert_string_equal(d->choices[0].path, winner);
    assert_int_equal(d->choices[0].n_times, clg_blas_path_count());
    for (size_t i = 0; i < d->choices[0].n_times; i++) {
        size_t p = 0;
        while (p < clg_blas_path_count() && strcmp(clg_blas_path_name(p), d->choices[0].times[i].path))
            p++;
        assert_true(p < clg_blas_path_count());
        /* cJSON prints 15 significant digits when they read back within its epsilon */
        assert_true(fabs(d->choices[0].times[i].seconds - t.seconds[p]) <= 1e-12 * t.seconds[p]);
    }
    clg_context_free(ctx);
    free(d);
    remove(path);
    rmdir(dir);
}

/* An injected build fault in the first GEMM of a class (automatic choice) comes back as
 * CLG_BUILD_FAILED, is recorded nowhere (no choice, no file, the path not dropped), and the
 * next GEMM runs on the rule's path. The same for an explicit measurement. */
static void test_failing_path_not_recorded(void **state) {
    (void)state;
    char dir[] = "/tmp/clgrad-choice-XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    clg_context *ctx = new_context(dir);
    assert_true(clg_blas_tune_file(ctx, path, sizeof path));
    const char *rule = rule_path(ctx);
    if (strcmp(rule, "packed") != 0) {
        print_message("the rule takes %s here, which builds no program of ours: fault not reachable\n", rule);
        clg_context_free(ctx);
        rmdir(dir);
        return;
    }
    const clg_gemm_class cls = clg_blas_class(CLG_F32, false, true, 45, 50, 60);
    /* the tensor programs built first (on CLBlast), so that the next build is the packed one */
    REF_OK(ctx, clg_blas_force_path(ctx, "clblast"));
    REF_OK(ctx, gemm_checked(ctx, false, true, 45, 50, 60, 5));
    REF_OK(ctx, clg_blas_force_path(ctx, "auto"));
    clg_context_inject_fault(ctx, CLG_FAULT_BUILD, 1);
    REF_EXPECT(ctx, gemm_checked(ctx, false, true, 45, 50, 60, 5), CLG_BUILD_FAILED);
    assert_non_null(strstr(clg_context_errmsg(ctx), "injected"));
    const char *got = "x", *chosen = NULL;
    REF_OK(ctx, clg_blas_lookup_choice(ctx, cls, &got));
    assert_null(got);
    clg_context_free(ctx);

    ctx = new_context(dir);
    clg_tensor *a = rand1d(ctx, CLG_F32, 64 * 64, 1), *b = rand1d(ctx, CLG_F32, 64 * 64, 2);
    REF_OK(ctx, clg_blas_force_path(ctx, "clblast"));
    REF_OK(ctx, gemm_checked(ctx, false, true, 45, 50, 60, 5));
    REF_OK(ctx, clg_blas_force_path(ctx, "auto"));
    clg_context_inject_fault(ctx, CLG_FAULT_BUILD, 1);
    clg_blas_times t;
    REF_EXPECT(ctx, clg_blas_measure(ctx, CLG_F32, false, true, 45, 50, 60, clg_tensor_cl_mem(a), 0, 60,
                                     clg_tensor_cl_mem(b), 0, 60, &t),
               CLG_BUILD_FAILED);
    REF_OK(ctx, clg_blas_lookup_choice(ctx, cls, &got));
    assert_null(got);
    REF_OK(ctx, clg_blas_save_choices(ctx)); /* nothing measured: nothing to write */
    if (exists(path)) fail_msg("%s written after a failed measurement", path);
    /* the path was not dropped: the rule still takes it and it runs */
    REF_OK(ctx, clg_blas_chosen_path(ctx, CLG_F32, false, true, 45, 50, 60, &chosen));
    assert_string_equal(chosen, "packed");
    REF_OK(ctx, gemm_checked(ctx, false, true, 45, 50, 60, 5));
    clg_tensor_free(a), clg_tensor_free(b);
    clg_context_free(ctx);
    if (exists(path)) fail_msg("%s written by contexts whose only measurement failed", path);
    rmdir(dir);
}

typedef struct log_lines {
    char text[4096];
} log_lines;

static void keep_log(void *user, clg_log_level level, const char *message) {
    log_lines *l = user;
    (void)level;
    const size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof l->text - used, "%s\n", message);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The tuning file: written for this device, read back and applied by a new context in the
 * same folder on its first GEMM; ignored (the GEMM still runs) when it is of the older format,
 * malformed or made for another device, each with a line in the log; CLGRAD_GEMM_TUNING=off
 * skips it. */
static void test_tuning_file(void **state) {
    (void)state;
    char dir[] = "/tmp/clgrad-tune-test-XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    clg_context *ctx = new_context(dir);
    clg_tune_data *d = calloc(1, sizeof *d), *back = calloc(1, sizeof *back);
    assert_non_null(d);
    assert_non_null(back);
    /* CLBlast's routine switch-over: a complete parameter set of its own */
    d->n_clblast = 1;
    strcpy(d->clblast[0].kernel, "GemmRoutine");
    d->clblast[0].dt = CLG_F64; /* f64: leaves the f32 speed of other tests alone */
    d->clblast[0].n = 1;
    strcpy(d->clblast[0].names[0], "XGEMM_MIN_INDIRECT_SIZE");
    d->clblast[0].values[0] = 192;
    d->packed[0] = (clg_packed_config){4, 3, 8};
    const clg_gemm_class cls = clg_blas_class(CLG_F32, true, false, 100, 200, 300);
    const char *other = strcmp(rule_path(ctx), "packed") ? "packed" : "clblast"; /* not the rule's */
    d->choices[0] = (clg_tune_choice){.cls = cls, .n_times = 2};
    snprintf(d->choices[0].path, sizeof d->choices[0].path, "%s", other);
    d->choices[0].times[0] = (struct clg_tune_time){"clblast", 2e-3};
    d->choices[0].times[1] = (struct clg_tune_time){"packed", 1e-3};
    d->n_choices = 1;
    REF_OK(ctx, clg_blas_tune_write(ctx, d, path, sizeof path));
    assert_non_null(strstr(path, dir));
    clg_context_free(ctx);

    ctx = new_context(dir);
    const char *got = NULL;
    REF_OK(ctx, clg_blas_chosen_path(ctx, CLG_F32, true, false, 100, 200, 300, &got));
    assert_true(clg_blas_tuning_applied(ctx));
    assert_string_equal(got, other);
    clg_packed_config cfg;
    REF_OK(ctx, clg_blas_packed_config(ctx, CLG_F32, &cfg));
    assert_int_equal(cfg.nr, 8);
    REF_OK(ctx, clg_blas_tune_read(ctx, back));
    assert_int_equal(back->n_clblast, 1);
    assert_string_equal(back->clblast[0].names[0], "XGEMM_MIN_INDIRECT_SIZE");
    assert_int_equal(back->clblast[0].values[0], 192);
    assert_int_equal(back->n_choices, 1);
    assert_int_equal(back->choices[0].n_times, 2);
    assert_string_equal(back->choices[0].times[0].path, "clblast");
    assert_true(back->choices[0].times[0].seconds == 2e-3);
    REF_OK(ctx, gemm_checked(ctx, true, false, 100, 200, 300, 11)); /* the recorded path runs, right */
    clg_context_free(ctx);

    /* off: nothing applied */
    setenv("CLGRAD_GEMM_TUNING", "off", 1);
    ctx = new_context(dir);
    REF_OK(ctx, clg_blas_lookup_choice(ctx, cls, &got));
    unsetenv("CLGRAD_GEMM_TUNING");
    assert_false(clg_blas_tuning_applied(ctx));
    assert_null(got);
    clg_context_free(ctx);

    /* the older format, another device's file under this name, truncated JSON: each refused on
     * read and ignored on first use, with the reason in the log */
    static const char *const bad[] = {
        "{\"format\": 1, \"device\": \"x\", \"driver\": \"1\", \"choices\": []}",
        "{\"format\": 2, \"device\": \"some other device\", \"driver\": \"1\", \"choices\": []}",
        "{\"format\": 2, \"device\": ",
    };
    static const char *const why[] = {"format 1", "another device", "malformed"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        log_lines lines = {""};
        clg_context_params p = clg_context_default_params();
        p.cache_dir = dir;
        p.log = keep_log;
        p.log_user = &lines;
        ctx = NULL;
        REF_OK(ctx, clg_context_create(&p, &ctx, NULL, 0));
        REF_OK(ctx, gemm_checked(ctx, true, false, 100, 200, 300, 13));
        assert_false(clg_blas_tuning_applied(ctx));
        if (!strstr(lines.text, "ignoring GEMM tuning") || !strstr(lines.text, why[i]))
            fail_msg("bad file %zu: the log lacks \"%s\": %s", i, why[i], lines.text);
        assert_int_equal(clg_blas_tune_read(ctx, back), CLG_BAD_FORMAT);
        clg_context_free(ctx);
    }

    /* a CLBlast kernel name that does not exist is an error on apply */
    ctx = new_context(dir);
    strcpy(d->clblast[0].kernel, "NoSuchKernel");
    assert_int_equal(clg_blas_clblast_override(ctx, &d->clblast[0]), CLG_BLAS_ERROR);
    clg_context_free(ctx);
    remove(path);
    rmdir(dir);
    free(d);
    free(back);
}

int main(void) {
    unsetenv("CLGRAD_GEMM"); /* the rule is under test, not a forced path */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_choice_deterministic),
        cmocka_unit_test(test_choices_written_at_free),
        cmocka_unit_test(test_failing_path_not_recorded),
        cmocka_unit_test(test_tuning_file),
    };
    return cmocka_run_group_tests(tests, ref_group_setup, ref_group_teardown);
}

/* tests/nn/test_faults.c - fault injection (clg_context_inject_fault, src/core/context.c)
 * swept over every device allocation, program build and enqueue of a full training step of
 * a tiny cnn (tiny_model.c): each injected failure must come back as an error status from a
 * public call, leave nothing allocated (pool bytes in use back to where they were), and the
 * next step on the same context must succeed. Runs under ASan too (tests/sanitize.sh).
 *
 * What a caller does after a failed step (tiny_step does it): free the tensors it holds for
 * the step (input, output, loss; this drops the graph they carry) and zero the gradients
 * (clg_optimizer_zero_grad), since a failed backward may have written some gradients and
 * not others. A failed optimizer step may have moved some parameters and not others; the
 * model stays usable. Programs whose build failed are built again on next use. Both kernel
 * styles (CLGRAD_KERNEL_STYLE per group: tiny_context makes the contexts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ref.h"
#include "ref_style.h"
#include "tiny_model.h"

/* The GEMM path is forced in every sweep (tiny_context): each path's events are swept on
 * their own, and a forced path never falls back to the other, so every event count is the
 * same in every run. */
static clg_context *new_context(const char *gemm_path) {
    clg_context *ctx = NULL;
    char err[2048] = "";
    clg_status st = tiny_context(gemm_path, &ctx, err, sizeof err);
    if (st != CLG_OK) fail_msg("clg_context_create: %s: %s", clg_status_name(st), err);
    return ctx;
}

static size_t in_use(const clg_context *ctx) { return clg_context_pool_stats(ctx).bytes_in_use; }

/* Events of kind seen so far (disarms any pending fault). */
static uint64_t seen(clg_context *ctx, clg_fault_kind kind) { return clg_context_inject_fault(ctx, kind, 0); }

static const char *kind_name(clg_fault_kind k) {
    return k == CLG_FAULT_ALLOC ? "alloc" : k == CLG_FAULT_BUILD ? "build" : "enqueue";
}

/* The statuses a fault of each kind may surface as. */
static bool status_fits(clg_fault_kind kind, clg_status st) {
    switch (kind) {
    case CLG_FAULT_ALLOC: return st == CLG_OUT_OF_DEVICE_MEMORY;
    case CLG_FAULT_BUILD: return st == CLG_BUILD_FAILED;
    case CLG_FAULT_ENQUEUE: return st == CLG_OPENCL_ERROR || st == CLG_BLAS_ERROR;
    }
    return false;
}

/* Model creation plus its first step, as an application starts training: the phase with
 * the most allocations (weights, gradients, Adam state) and, on a fresh context, every
 * program build. On failure *t is empty. */
static clg_status create_and_step(clg_context *ctx, tiny_model *t, int step) {
    clg_status st = tiny_create(ctx, 7, t);
    if (st == CLG_OK) st = tiny_step(ctx, t, step, NULL);
    return st;
}

/* Checks one armed run: it failed with a status of the right kind whose message is the
 * injected one, and the n-th event was reached. */
static void check_failed(clg_context *ctx, clg_fault_kind kind, uint64_t n, uint64_t total,
                         clg_status st, uint64_t before, const char *phase, const char *path) {
    const uint64_t events = seen(ctx, kind) - before;
    if (st == CLG_OK)
        fail_msg("%s fault %llu of %llu (%s, gemm %s): the step succeeded; the failure was swallowed",
                 kind_name(kind), (unsigned long long)n, (unsigned long long)total, phase, path);
    if (events < n)
        fail_msg("%s fault %llu of %llu (%s, gemm %s): failed with %s before reaching it: %s", kind_name(kind),
                 (unsigned long long)n, (unsigned long long)total, phase, path, clg_status_name(st),
                 clg_context_errmsg(ctx));
    if (!status_fits(kind, st) || !strstr(clg_context_errmsg(ctx), "injected fault"))
        fail_msg("%s fault %llu of %llu (%s, gemm %s): came back as %s: %s", kind_name(kind),
                 (unsigned long long)n, (unsigned long long)total, phase, path, clg_status_name(st),
                 clg_context_errmsg(ctx));
}

/* Allocations and enqueues: one warm context. Phase "first": model creation + first step
 * with the pool emptied, so every buffer comes from the driver. Phase "steady": a later
 * step of a trained model (no allocations there: the pool serves them). */
static void sweep_warm(clg_context *ctx, clg_fault_kind kind, const char *path) {
    /* Warm-up: programs built, GEMM paths known. */
    tiny_model t;
    REF_OK(ctx, create_and_step(ctx, &t, 0));
    tiny_free(&t);
    const size_t base = in_use(ctx);

    clg_context_pool_trim(ctx);
    uint64_t before = seen(ctx, kind);
    REF_OK(ctx, create_and_step(ctx, &t, 0));
    const uint64_t first = seen(ctx, kind) - before;
    tiny_free(&t);
    assert_true(kind != CLG_FAULT_ALLOC || first > 0);

    for (uint64_t n = 1; n <= first; n++) {
        clg_context_pool_trim(ctx);
        before = clg_context_inject_fault(ctx, kind, n);
        clg_status st = create_and_step(ctx, &t, 0);
        check_failed(ctx, kind, n, first, st, before, "first step", path);
        if (!t.model) REF_OK(ctx, tiny_create(ctx, 7, &t));
        REF_OK(ctx, tiny_step(ctx, &t, 1, NULL));
        tiny_free(&t);
        if (in_use(ctx) != base)
            fail_msg("%s fault %llu (first step, gemm %s): %zu bytes in use after, %zu before", kind_name(kind),
                     (unsigned long long)n, path, in_use(ctx), base);
    }

    REF_OK(ctx, create_and_step(ctx, &t, 0));
    REF_OK(ctx, tiny_step(ctx, &t, 1, NULL));
    const size_t base_model = in_use(ctx);
    before = seen(ctx, kind);
    REF_OK(ctx, tiny_step(ctx, &t, 2, NULL));
    const uint64_t steady = seen(ctx, kind) - before;
    assert_true(kind != CLG_FAULT_ENQUEUE || steady > 10);
    for (uint64_t n = 1; n <= steady; n++) {
        before = clg_context_inject_fault(ctx, kind, n);
        clg_status st = tiny_step(ctx, &t, (int)n + 2, NULL);
        check_failed(ctx, kind, n, steady, st, before, "steady step", path);
        REF_OK(ctx, tiny_step(ctx, &t, (int)n + 3, NULL));
        if (in_use(ctx) != base_model)
            fail_msg("%s fault %llu (steady step, gemm %s): %zu bytes in use after, %zu before", kind_name(kind),
                     (unsigned long long)n, path, in_use(ctx), base_model);
    }
    tiny_free(&t);
    assert_int_equal(in_use(ctx), base);
    print_message("%s faults, gemm %s: %llu in model creation + first step, %llu in a steady step\n",
                  kind_name(kind), path, (unsigned long long)first, (unsigned long long)steady);
}

static void run_warm(clg_fault_kind kind, const char *path) {
    clg_context *ctx = new_context(path);
    sweep_warm(ctx, kind, path);
    clg_context_free(ctx);
}

static void test_alloc_clblast(void **state) { (void)state; run_warm(CLG_FAULT_ALLOC, "clblast"); }
static void test_alloc_packed(void **state) { (void)state; run_warm(CLG_FAULT_ALLOC, "packed"); }
static void test_enqueue_clblast(void **state) { (void)state; run_warm(CLG_FAULT_ENQUEUE, "clblast"); }
static void test_enqueue_packed(void **state) { (void)state; run_warm(CLG_FAULT_ENQUEUE, "packed"); }

/* Builds happen once per program per context: each n gets a fresh context. The packed path
 * is forced so that its program is among the builds (CLBlast builds its own programs, in a
 * process-wide cache the switch does not reach). */
static void test_build(void **state) {
    (void)state;
    const char *path = "packed";
    clg_context *ctx = new_context(path);
    tiny_model t;
    REF_OK(ctx, create_and_step(ctx, &t, 0));
    const uint64_t total = seen(ctx, CLG_FAULT_BUILD);
    tiny_free(&t);
    clg_context_free(ctx);
    assert_true(total >= 5);
    for (uint64_t n = 1; n <= total; n++) {
        ctx = new_context(path);
        uint64_t before = clg_context_inject_fault(ctx, CLG_FAULT_BUILD, n);
        clg_status st = create_and_step(ctx, &t, 0);
        check_failed(ctx, CLG_FAULT_BUILD, n, total, st, before, "fresh context", path);
        if (!t.model) REF_OK(ctx, tiny_create(ctx, 7, &t));
        REF_OK(ctx, tiny_step(ctx, &t, 1, NULL));
        tiny_free(&t);
        assert_int_equal(in_use(ctx), 0);
        clg_context_free(ctx);
    }
    print_message("build faults: %llu programs in model creation + first step\n", (unsigned long long)total);
}

/* Loading a checkpoint: a failed device write part-way leaves a partly loaded module (the
 * header says so); the call reports it, and loading again restores every tensor. */
static void test_load(void **state) {
    (void)state;
    clg_context *ctx = new_context("clblast");
    tiny_model src, dst;
    REF_OK(ctx, tiny_create(ctx, 7, &src));
    REF_OK(ctx, tiny_create(ctx, 8, &dst));
    char dir[] = "/tmp/clgrad-faults-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    REF_OK(ctx, clg_module_save(ctx, src.model, path));
    uint64_t before = seen(ctx, CLG_FAULT_ENQUEUE);
    REF_OK(ctx, clg_module_load(ctx, dst.model, path));
    const uint64_t total = seen(ctx, CLG_FAULT_ENQUEUE) - before;
    assert_true(total >= 5);
    const size_t base = in_use(ctx);
    for (uint64_t n = 1; n <= total; n++) {
        before = clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, n);
        clg_status st = clg_module_load(ctx, dst.model, path);
        check_failed(ctx, CLG_FAULT_ENQUEUE, n, total, st, before, "module load", "clblast");
        REF_OK(ctx, clg_module_load(ctx, dst.model, path));
        assert_int_equal(in_use(ctx), base);
    }
    /* Every tensor holds the file's values again. */
    clg_named_tensor a[16], b[16];
    size_t na = clg_module_state(src.model, a, 16), nb = clg_module_state(dst.model, b, 16);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        size_t bytes = clg_tensor_bytes(a[i].tensor);
        unsigned char *x = malloc(bytes), *y = malloc(bytes);
        assert_true(x && y);
        REF_OK(ctx, clg_tensor_to_host(a[i].tensor, x, bytes));
        REF_OK(ctx, clg_tensor_to_host(b[i].tensor, y, bytes));
        assert_memory_equal(x, y, bytes);
        free(x);
        free(y);
    }
    remove(path);
    rmdir(dir);
    tiny_free(&src);
    tiny_free(&dst);
    clg_context_free(ctx);
}

/* The switch itself: n counts from the next event, 0 disarms, a fired fault disarms. */
static void test_switch(void **state) {
    (void)state;
    clg_context *ctx = new_context("clblast");
    const int shape[1] = {16};
    clg_tensor *a = NULL;
    uint64_t s0 = clg_context_inject_fault(ctx, CLG_FAULT_ALLOC, 2);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &a)); /* event 1 */
    clg_tensor *b = NULL;
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &b), CLG_OUT_OF_DEVICE_MEMORY);
    assert_null(b);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &b)); /* fired once: disarmed */
    assert_int_equal(seen(ctx, CLG_FAULT_ALLOC), s0 + 3);
    clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, 1);
    clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, 0);
    REF_OK(ctx, clg_tensor_fill(a, 1.0)); /* disarmed by 0 */
    assert_int_equal(clg_context_inject_fault(ctx, (clg_fault_kind)7, 1), 0); /* unknown kind */
    assert_int_equal(clg_context_inject_fault(NULL, CLG_FAULT_ALLOC, 1), 0);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch),
        cmocka_unit_test(test_alloc_clblast),
        cmocka_unit_test(test_alloc_packed),
        cmocka_unit_test(test_enqueue_clblast),
        cmocka_unit_test(test_enqueue_packed),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_load),
    };
    return REF_RUN_BOTH_STYLES_ENV("faults", tests);
}

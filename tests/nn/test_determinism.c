/* tests/nn/test_determinism.c - same seed, same device, same data order -> bit-identical
 * weights: the tiny cnn (tiny_model.c) trained for a few steps twice in one process, each
 * time on its own context, then every state tensor (parameters and batch-norm buffers) and
 * every step's loss compared bit for bit (memcmp). Once per GEMM path forced, and once in
 * automatic mode, whose choice is a fixed rule or a saved measurement (src/blas/choose.c),
 * never a timing taken on the spot, so two contexts take the same path. Both kernel styles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "ref_style.h"
#include "tiny_model.h"

#define STEPS 5
#define MAX_STATE 16

typedef struct run_result {
    double loss[STEPS];
    size_t n;
    char names[MAX_STATE][64];
    size_t bytes[MAX_STATE];
    unsigned char *data[MAX_STATE];
} run_result;

static void result_free(run_result *r) {
    for (size_t i = 0; i < r->n; i++) free(r->data[i]);
}

/* Trains STEPS steps on a fresh context and copies out everything. */
static void train(const char *gemm_path, uint64_t seed, run_result *r) {
    memset(r, 0, sizeof *r);
    clg_context *ctx = NULL;
    char err[2048] = "";
    clg_status st = tiny_context(gemm_path, &ctx, err, sizeof err);
    if (st != CLG_OK) fail_msg("clg_context_create: %s: %s", clg_status_name(st), err);

    tiny_model t;
    REF_OK(ctx, tiny_create(ctx, seed, &t));
    for (int s = 0; s < STEPS; s++) REF_OK(ctx, tiny_step(ctx, &t, s, &r->loss[s]));
    clg_named_tensor e[MAX_STATE];
    r->n = clg_module_state(t.model, e, MAX_STATE);
    assert_true(r->n > 0 && r->n <= MAX_STATE);
    for (size_t i = 0; i < r->n; i++) {
        snprintf(r->names[i], sizeof r->names[i], "%s", e[i].name);
        r->bytes[i] = clg_tensor_bytes(e[i].tensor);
        r->data[i] = malloc(r->bytes[i]);
        assert_non_null(r->data[i]);
        REF_OK(ctx, clg_tensor_to_host(e[i].tensor, r->data[i], r->bytes[i]));
    }
    tiny_free(&t);
    clg_context_free(ctx);
}

/* Index of the first differing state tensor, or -1 when all are bit-identical. */
static int first_difference(const run_result *a, const run_result *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->names[i], b->names[i]);
        assert_int_equal(a->bytes[i], b->bytes[i]);
        if (memcmp(a->data[i], b->data[i], a->bytes[i]) != 0) return (int)i;
    }
    return -1;
}

static void check_path(const char *path) {
    run_result a, b, c;
    train(path, 11, &a);
    train(path, 11, &b);
    train(path, 12, &c); /* another seed: proves the comparison can see a difference */
    if (memcmp(a.loss, b.loss, sizeof a.loss) != 0) {
        for (int s = 0; s < STEPS; s++)
            print_message("step %d: loss %.17g vs %.17g\n", s, a.loss[s], b.loss[s]);
        fail_msg("gemm %s: the losses of two identical runs differ", path);
    }
    int d = first_difference(&a, &b);
    if (d >= 0) fail_msg("gemm %s: \"%s\" differs between two identical runs", path, a.names[d]);
    assert_true(first_difference(&a, &c) >= 0);
    assert_true(a.loss[STEPS - 1] != a.loss[0]); /* it trained */
    print_message("gemm %s: %zu state tensors bit-identical after %d steps (loss %.6f -> %.6f)\n", path, a.n,
                  STEPS, a.loss[0], a.loss[STEPS - 1]);
    result_free(&a);
    result_free(&b);
    result_free(&c);
}

static void test_clblast(void **state) { (void)state; check_path("clblast"); }
static void test_packed(void **state) { (void)state; check_path("packed"); }
static void test_auto(void **state) { (void)state; check_path("auto"); }

/* Across the two paths nothing is promised (their sums run in different orders); this
 * reports whether they happen to agree on this device. */
static void test_paths_compared(void **state) {
    (void)state;
    run_result a, b;
    train("clblast", 11, &a);
    train("packed", 11, &b);
    int d = first_difference(&a, &b);
    if (d < 0 && !memcmp(a.loss, b.loss, sizeof a.loss))
        print_message("clblast and packed paths: bit-identical on this device\n");
    else
        print_message("clblast and packed paths differ (first: \"%s\"; final loss %.17g vs %.17g)\n",
                      d >= 0 ? a.names[d] : "loss", a.loss[STEPS - 1], b.loss[STEPS - 1]);
    result_free(&a);
    result_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clblast),
        cmocka_unit_test(test_packed),
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_paths_compared),
    };
    return REF_RUN_BOTH_STYLES_ENV("determinism", tests);
}

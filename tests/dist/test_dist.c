/* tests/dist/test_dist.c - data-parallel training over MPI (src/dist/dist.c), run by meson under
 * `mpirun -np 2`: the deterministic sum, rank 0's state broadcast, a gradient present on one
 * rank only, and 2 ranks x batch 32 against 1 process x batch 64 for LeNet over 10 SGD steps
 * with momentum (tools/models.c's LeNet), and the same for the cnn with synchronized batch norm
 * (and, so that this check can fail, the cnn without it differing). With --kill or --abort it is
 * the failure check of
 * tests/dist/failure.sh: rank 1 dies (SIGKILL) or aborts with a message mid-training.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "clgrad/dist.h"
#include "models.h"

enum { BATCH = 64, STEPS = 10, PIX = 28 * 28 };
static clg_dist *dist;
static int fail_mode; /* 1: rank 1 kills itself at step 3; 2: rank 1 aborts there */

static int32_t labels[BATCH];
static float images[BATCH * PIX];

static void make_data(void) {
    uint64_t z = 2024;
    for (int i = 0; i < BATCH * PIX; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        images[i] = (float)(z >> 40) / (float)(1 << 24);
    }
    for (int i = 0; i < BATCH; i++)
        labels[i] = i % 10;
}

/* One SGD step on images[first, first + n) (in m's dtype); grads averaged over the ranks when d is given. */
static void train_step(clg_context *ctx, clg_module *m, clg_optimizer *opt, int first, int n, clg_dist *d) {
    const int shape[4] = {n, 1, 28, 28};
    clg_tensor *x, *y, *loss;
    if (clg_module_dtype(m) == CLG_F64) { /* the cnn test's models */
        double *h = malloc((size_t)n * PIX * sizeof *h);
        assert_non_null(h);
        for (size_t i = 0; i < (size_t)n * PIX; i++)
            h[i] = images[(size_t)first * PIX + i];
        REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F64, 4, shape, h, &x));
        free(h);
    } else {
        REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 4, shape, images + (size_t)first * PIX, &x));
    }
    REF_OK(ctx, clg_module_forward(ctx, m, x, &y));
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, y, labels + first, (size_t)n, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    if (d) {
        clg_tensor *params[32];
        const size_t np = clg_module_parameters(m, params, 32);
        REF_OK(ctx, clg_dist_average_grads(d, ctx, params, np));
    }
    REF_OK(ctx, clg_optimizer_step(opt));
    clg_optimizer_zero_grad(opt);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void test_sum(void **state) {
    (void)state;
    const int r = clg_dist_rank(dist), w = clg_dist_world_size(dist);
    double v[5];
    for (int i = 0; i < 5; i++)
        v[i] = 0.1 * (r + 1) + i;
    assert_int_equal(clg_dist_sum(dist, v, 5), CLG_OK);
    for (int i = 0; i < 5; i++) {
        double want = 0;
        for (int k = 0; k < w; k++)
            want += 0.1 * (k + 1) + i;
        assert_true(fabs(v[i] - want) <= 1e-15 * fabs(want) * w);
    }
}

static size_t lenet_state(clg_module *m, double *out, size_t cap) {
    clg_named_tensor e[32];
    const size_t n = clg_module_state(m, e, 32);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        double *h = ref_to_host_f64(e[i].tensor);
        for (size_t j = 0; j < clg_tensor_numel(e[i].tensor) && k < cap; j++)
            out[k++] = h[j];
        free(h);
    }
    return k;
}

static void test_big_batch(void **state) {
    clg_context *ctx = *state;
    const int r = clg_dist_rank(dist), w = clg_dist_world_size(dist);
    assert_int_equal(BATCH % w, 0);
    const model_entry *le = model_find("lenet");
    assert_non_null(le);
    clg_module *m, *ref;
    REF_OK(ctx, le->build(ctx, 1 + (uint64_t)r, &m)); /* different on each rank until the broadcast */
    REF_OK(ctx, le->build(ctx, 1, &ref));
    REF_OK(ctx, clg_dist_broadcast_module(dist, ctx, m));
    clg_optimizer *opt, *ropt;
    REF_OK(ctx, model_optimizer_create(ctx, m, "sgd", 0.05, 0.9, 0, &opt));
    REF_OK(ctx, model_optimizer_create(ctx, ref, "sgd", 0.05, 0.9, 0, &ropt));
    const int local = BATCH / w;
    for (int s = 0; s < STEPS; s++) {
        if (fail_mode && r == 1 && s == 3) {
            if (fail_mode == 1) raise(SIGKILL);
            clg_dist_abort(dist, 3, "injected failure at step 3");
        }
        train_step(ctx, m, opt, r * local, local, dist);
        train_step(ctx, ref, ropt, 0, BATCH, NULL);
    }
    enum { CAP = 70000 };
    double *a = malloc(CAP * sizeof *a), *b = malloc(CAP * sizeof *b);
    const size_t n = lenet_state(m, a, CAP);
    assert_int_equal(lenet_state(ref, b, CAP), n);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    printf("rank %d: %d ranks x batch %d vs 1 x %d after %d steps: max |diff| %.3g (max |w| %.3g)\n", r, w, local,
           BATCH, STEPS, worst, scale);
    /* f32: the two runs differ in GEMM sum lengths (32 vs 64 rows) and in the order of the two
     * half-batch means: a few f32 ulps per step, relative to the weights' scale. */
    assert_true(worst <= 1e-6 * scale);
    /* the replicas agree bit for bit: the min and max of every value over the ranks match */
    double *lo = malloc(n * sizeof *lo);
    memcpy(lo, a, n * sizeof *lo);
    assert_int_equal(MPI_Allreduce(MPI_IN_PLACE, lo, (int)n, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD), MPI_SUCCESS);
    assert_memory_equal(lo, a, n * sizeof *lo);
    free(lo);
    free(a);
    free(b);
    clg_optimizer_free(opt);
    clg_optimizer_free(ropt);
    clg_module_free(m);
    clg_module_free(ref);
}

/* tools/models.c's cnn layer by layer without its dropout (p 0.25 before fc2): dropout's masks
 * are drawn per element of the batch it sees, so 2 ranks x 32 and 1 x 64 cannot draw the same
 * ones; everything else as the catalogue's (same layers, names, init seeds). */
#define ADD(expr)                                                                                            \
    do {                                                                                                     \
        if (st == CLG_OK && (st = (expr)) == CLG_OK) st = clg_sequential_add(seq, m);                        \
    } while (0)
static clg_status cnn_without_dropout(clg_context *ctx, uint64_t seed, clg_module **out) {
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    const clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
    clg_conv2d_params pad1 = clg_conv2d_default_params();
    pad1.pad_h = pad1.pad_w = 1;
    ADD(clg_conv2d_module_create(ctx, "conv1", 1, 32, 3, 3, pad1, true, seed + 1, &m));
    ADD(clg_batch_norm2d_module_create(ctx, "bn1", 32, 1e-5, 0.1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_conv2d_module_create(ctx, "conv2", 32, 64, 3, 3, pad1, true, seed + 2, &m));
    ADD(clg_batch_norm2d_module_create(ctx, "bn2", 64, 1e-5, 0.1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_flatten_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc1", 64 * 7 * 7, 128, true, seed + 3, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc2", 128, 10, true, seed + 5, &m));
    if (st != CLG_OK) {
        clg_module_free(seq);
        return st;
    }
    *out = seq;
    return CLG_OK;
}
#undef ADD

/* m's state (parameters and buffers, running stats included) as doubles, entry by entry. */
typedef struct state_values {
    size_t n, entries;
    size_t start[40]; /* entry i is values[start[i], start[i + 1]) */
    const char *name[40];
    double *values;
} state_values;

static void get_state(clg_module *m, state_values *s) {
    clg_named_tensor e[40];
    s->entries = clg_module_state(m, e, 40);
    assert_true(s->entries < 40);
    s->n = 0;
    for (size_t i = 0; i < s->entries; i++)
        s->n += clg_tensor_numel(e[i].tensor);
    s->values = malloc(s->n * sizeof *s->values);
    assert_non_null(s->values);
    size_t k = 0;
    for (size_t i = 0; i < s->entries; i++) {
        double *h = ref_to_host_f64(e[i].tensor);
        s->start[i] = k;
        s->name[i] = e[i].name;
        memcpy(s->values + k, h, clg_tensor_numel(e[i].tensor) * sizeof *h);
        k += clg_tensor_numel(e[i].tensor);
        free(h);
    }
    s->start[s->entries] = k;
}

/* The largest max |a - b| / max |b| over the state's entries (each entry against its own
 * scale, so small ones like biases and running means count as much as fc1's weights). */
static double state_diff(const state_values *a, const state_values *b, const char **where) {
    assert_int_equal(a->n, b->n);
    double worst = 0;
    for (size_t i = 0; i < b->entries; i++) {
        double d = 0, scale = 0;
        for (size_t j = b->start[i]; j < b->start[i + 1]; j++) {
            d = fmax(d, fabs(a->values[j] - b->values[j]));
            scale = fmax(scale, fabs(b->values[j]));
        }
        const double rel = scale > 0 ? d / scale : d;
        if (!(rel <= worst)) {
            worst = rel;
            *where = b->name[i];
        }
    }
    return worst;
}

/* The cnn trained 10 SGD steps by 2 ranks x batch 32 and by 1 x 64 on every rank: equal to
 * 1e-6 relative with synchronized batch norm; without it, each replica normalises by its own
 * half batch's statistics and the runs differ by far more (the check can fail).
 * In f64: in f32 the two runs' few-ulp differences (GEMM and statistics sums of other lengths
 * and orders) flip near-ties of ReLU and max pool among the cnn's 1.6M conv1 activations a
 * step, and one flip moves a gradient by a whole element's share: measured, 2e-6 of each
 * tensor's scale for 8 steps, then 1e-3 after a flip, so an f32 check would fail without a
 * bug. f64's rounding is 5e8 times finer, so what is left is the semantics (1e-14 measured). */
static void test_cnn_sync_batch_norm(void **state) {
    clg_context *ctx = *state;
    const int r = clg_dist_rank(dist), w = clg_dist_world_size(dist), local = BATCH / w;
    clg_module *ref;
    clg_optimizer *ropt;
    REF_OK(ctx, cnn_without_dropout(ctx, 1, &ref));
    REF_OK(ctx, clg_module_to_dtype(ref, CLG_F64));
    REF_OK(ctx, model_optimizer_create(ctx, ref, "sgd", 0.05, 0.9, 0, &ropt));
    for (int s = 0; s < STEPS; s++)
        train_step(ctx, ref, ropt, 0, BATCH, NULL);
    state_values want, got[2];
    get_state(ref, &want);
    double diff[2];
    for (int sync = 1; sync >= 0; sync--) {
        clg_module *m;
        clg_optimizer *opt;
        REF_OK(ctx, cnn_without_dropout(ctx, 1 + (uint64_t)r, &m)); /* rank 0's after the broadcast */
        REF_OK(ctx, clg_module_to_dtype(m, CLG_F64));
        REF_OK(ctx, clg_dist_broadcast_module(dist, ctx, m));
        if (sync) assert_int_equal(clg_dist_sync_batch_norm(dist, m), 2);
        REF_OK(ctx, model_optimizer_create(ctx, m, "sgd", 0.05, 0.9, 0, &opt));
        uint64_t bytes0, bytes1;
        double sec0, sec1;
        clg_dist_stats(dist, &bytes0, &sec0);
        for (int s = 0; s < STEPS; s++)
            train_step(ctx, m, opt, r * local, local, dist);
        clg_dist_stats(dist, &bytes1, &sec1);
        get_state(m, &got[sync]);
        const char *where = "";
        diff[sync] = state_diff(&got[sync], &want, &where);
        printf(
            "rank %d: cnn %s sync batch norm, %d ranks x batch %d vs 1 x %d after %d steps: max |diff| / max "
            "|value| %.3g (%s); %.0f bytes sent per step\n",
            r, sync ? "with" : "without", w, local, BATCH, STEPS, diff[sync], where,
            (double)(bytes1 - bytes0) / STEPS);
        clg_optimizer_free(opt);
        clg_module_free(m);
    }
    assert_true(diff[1] <= 1e-6);
    if (w > 1) assert_true(diff[0] > 1e-6);
    /* the synchronized replicas agree bit for bit, running stats included */
    double *lo = malloc(got[1].n * sizeof *lo);
    assert_non_null(lo);
    memcpy(lo, got[1].values, got[1].n * sizeof *lo);
    assert_int_equal(MPI_Allreduce(MPI_IN_PLACE, lo, (int)got[1].n, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    assert_memory_equal(lo, got[1].values, got[1].n * sizeof *lo);
    free(lo);
    for (int i = 0; i < 2; i++)
        free(got[i].values);
    free(want.values);
    clg_optimizer_free(ropt);
    clg_module_free(ref);
}

static void test_grad_on_one_rank(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {3};
    clg_tensor *p;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &p));
    REF_OK(ctx, clg_tensor_set_requires_grad(p, true));
    if (clg_dist_rank(dist) == 1) {
        clg_tensor *g;
        REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &g));
        REF_OK(ctx, clg_backward_grad(ctx, p, g));
        clg_tensor_free(g);
    }
    assert_int_equal(clg_dist_average_grads(dist, ctx, &p, 1), clg_dist_world_size(dist) > 1 ? CLG_INVALID_STATE : CLG_OK);
    clg_tensor_free(p);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--kill") == 0) fail_mode = 1;
        if (strcmp(argv[i], "--abort") == 0) fail_mode = 2;
    }
    char err[256] = "";
    if (clg_dist_create(MPI_COMM_WORLD, &dist, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "test_dist: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    make_data();
    int rc;
    if (fail_mode) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_big_batch)};
        rc = cmocka_run_group_tests_name("dist failure", tests, ref_group_setup, ref_group_teardown);
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_sum),
            cmocka_unit_test(test_big_batch),
            cmocka_unit_test(test_cnn_sync_batch_norm),
            cmocka_unit_test(test_grad_on_one_rank),
        };
        rc = cmocka_run_group_tests_name("dist", tests, ref_group_setup, ref_group_teardown);
    }
    /* every rank's verdict: a failure anywhere fails the run */
    MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    clg_dist_free(dist);
    MPI_Finalize();
    return rc ? 1 : 0;
}

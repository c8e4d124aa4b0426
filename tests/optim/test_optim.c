/* tests/optim/test_optim.c - SGD and Adam / AdamW (src/optim/, cl/optim/): three steps
 * against a host reference of PyTorch's formulas in double (f64 and f32 parameters, grads
 * from a small graph), parameters without a gradient, set_lr, zero_grad, bad arguments,
 * and the first SGD / Adam step of tests/fixtures/small_cnn.safetensors (PyTorch 1.13).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim_test.h"
#include "ref_style.h"
#include "optim/optim.h" /* a parameter's reference count */

/* ---------------------------------------------------------------- host reference */

/* PyTorch's per-parameter state, in double. */
typedef struct ref_state {
    double *buf, *m, *v; /* momentum buffer (SGD); exp_avg, exp_avg_sq (Adam) */
    int steps;
} ref_state;

typedef struct ref_case {
    const char *name;
    bool adam;
    clg_sgd_params sgd;
    clg_adam_params ad;
} ref_case;

/* torch.optim.SGD, single-tensor path. */
static void ref_sgd(const clg_sgd_params *h, double lr, double *p, const double *g, ref_state *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double d = g[i];
        if (h->weight_decay != 0) d = d + h->weight_decay * p[i];
        if (h->momentum != 0) {
            s->buf[i] = s->steps == 0 ? d : h->momentum * s->buf[i] + (1 - h->dampening) * d;
            d = h->nesterov ? d + h->momentum * s->buf[i] : s->buf[i];
        }
        p[i] = p[i] - lr * d;
    }
    s->steps++;
}

/* torch.optim.Adam / AdamW, single-tensor path; state steps counted per parameter. */
static void ref_adam(const clg_adam_params *h, double lr, double *p, const double *g, ref_state *s,
                     size_t n) {
    const int t = ++s->steps;
    const double bc1 = 1 - pow(h->beta1, t), bc2 = 1 - pow(h->beta2, t);
    const double step_size = lr / bc1, bc2_sqrt = sqrt(bc2);
    for (size_t i = 0; i < n; i++) {
        double gi = g[i];
        if (h->decoupled_weight_decay)
            p[i] *= 1 - lr * h->weight_decay;
        else if (h->weight_decay != 0)
            gi = gi + h->weight_decay * p[i];
        s->m[i] = h->beta1 * s->m[i] + (1 - h->beta1) * gi;
        s->v[i] = h->beta2 * s->v[i] + (1 - h->beta2) * gi * gi;
        const double denom = sqrt(s->v[i]) / bc2_sqrt + h->eps;
        p[i] = p[i] - step_size * s->m[i] / denom;
    }
}

/* ---------------------------------------------------------------- three steps vs the reference */

enum { NP = 3, LATE = 1 };
static const int NDIM[NP] = {2, 1, 4};
static const int SHAPES[NP][4] = {{3, 4}, {5}, {2, 1, 2, 3}};

/* grad of sum((p * c)^2) is 2 c^2 p: it changes with p, so every step sees a new gradient. */
static void set_grad(clg_context *ctx, clg_tensor *p, const clg_tensor *c) {
    clg_tensor *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_mul(ctx, p, c, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor_free(loss);
    clg_tensor_free(y);
}

/* Params 0 and 2 get a gradient every step; param LATE only from step 3, so steps 1-2 must
 * leave it alone (and still update the params after it) and step 3 is its first (fresh
 * momentum buffer, Adam's t = 1). The learning rate changes before step 3. */
static void run_case(clg_context *ctx, const ref_case *rc, clg_dtype dt) {
    const double rtol = dt == CLG_F64 ? 1e-12 : 1e-6, atol = dt == CLG_F64 ? 1e-14 : 1e-7;
    clg_tensor *p[NP], *c[NP];
    double *host[NP];
    ref_state st[NP];
    size_t n[NP];
    for (int j = 0; j < NP; j++) {
        p[j] = ref_rand(ctx, dt, NDIM[j], SHAPES[j], 100 + (uint64_t)j, -1.5, 1.5);
        c[j] = ref_rand(ctx, dt, NDIM[j], SHAPES[j], 200 + (uint64_t)j, 0.2, 1.2);
        REF_OK(ctx, clg_tensor_set_requires_grad(p[j], true));
        n[j] = clg_tensor_numel(p[j]);
        host[j] = ref_to_host_f64(p[j]);
        st[j] = (ref_state){calloc(n[j], sizeof(double)), calloc(n[j], sizeof(double)),
                            calloc(n[j], sizeof(double)), 0};
    }
    clg_optimizer *opt = NULL;
    if (rc->adam)
        REF_OK(ctx, clg_adam_create(ctx, p, NP, rc->ad, &opt));
    else
        REF_OK(ctx, clg_sgd_create(ctx, p, NP, rc->sgd, &opt));
    double lr = rc->adam ? rc->ad.lr : rc->sgd.lr;
    assert_true(clg_optimizer_lr(opt) == lr);
    for (int step = 1; step <= 3; step++) {
        if (step == 3) {
            lr *= 0.5;
            clg_optimizer_set_lr(opt, lr);
            assert_true(clg_optimizer_lr(opt) == lr);
        }
        clg_optimizer_zero_grad(opt);
        for (int j = 0; j < NP; j++)
            assert_null(clg_tensor_grad(p[j]));
        const bool late_active = step == 3;
        for (int j = 0; j < NP; j++)
            if (j != LATE || late_active) set_grad(ctx, p[j], c[j]);
        if (!late_active) assert_null(clg_tensor_grad(p[LATE]));
        for (int j = 0; j < NP; j++) {
            if (j == LATE && !late_active) continue;
            /* the reference steps with the device's own gradient */
            double *g = ref_to_host_f64(clg_tensor_grad(p[j]));
            if (rc->adam)
                ref_adam(&rc->ad, lr, host[j], g, &st[j], n[j]);
            else
                ref_sgd(&rc->sgd, lr, host[j], g, &st[j], n[j]);
            free(g);
        }
        REF_OK(ctx, clg_optimizer_step(opt));
        for (int j = 0; j < NP; j++) {
            char what[160];
            snprintf(what, sizeof what, "%s %s step %d param %d", rc->name, clg_dtype_name(dt), step, j);
            double *got = ref_to_host_f64(p[j]);
            if (j == LATE && !late_active) /* untouched: bit for bit */
                assert_memory_equal(got, host[j], n[j] * sizeof(double));
            else
                ref_assert_close(got, host[j], n[j], rtol, atol, what);
            free(got);
        }
    }
    clg_optimizer_free(opt);
    for (int j = 0; j < NP; j++) {
        clg_tensor_free(p[j]);
        clg_tensor_free(c[j]);
        free(host[j]);
        free(st[j].buf);
        free(st[j].m);
        free(st[j].v);
    }
}

static ref_case sgd_case(const char *name, double momentum, double dampening, double wd, bool nesterov) {
    clg_sgd_params h = clg_sgd_default_params();
    h.lr = 0.05;
    h.momentum = momentum;
    h.dampening = dampening;
    h.weight_decay = wd;
    h.nesterov = nesterov;
    return (ref_case){.name = name, .adam = false, .sgd = h};
}

static ref_case adam_case(const char *name, double wd, bool decoupled) {
    clg_adam_params h = clg_adam_default_params();
    h.lr = 0.02;
    h.beta1 = 0.8;
    h.beta2 = 0.95;
    h.eps = 1e-6;
    h.weight_decay = wd;
    h.decoupled_weight_decay = decoupled;
    return (ref_case){.name = name, .adam = true, .ad = h};
}

static void run_both(clg_context *ctx, ref_case rc) {
    run_case(ctx, &rc, CLG_F64);
    run_case(ctx, &rc, CLG_F32);
}

static void test_sgd_plain(void **state) { run_both(*state, sgd_case("sgd", 0, 0, 0, false)); }
static void test_sgd_momentum(void **state) { run_both(*state, sgd_case("sgd momentum", 0.9, 0, 0, false)); }
static void test_sgd_dampening(void **state) {
    run_both(*state, sgd_case("sgd momentum+dampening", 0.9, 0.3, 0, false));
}
static void test_sgd_nesterov(void **state) { run_both(*state, sgd_case("sgd nesterov", 0.8, 0, 0, true)); }
static void test_sgd_weight_decay(void **state) {
    run_both(*state, sgd_case("sgd weight decay", 0, 0, 0.1, false));
    run_both(*state, sgd_case("sgd momentum+weight decay", 0.9, 0.1, 0.1, false));
}
static void test_adam(void **state) {
    run_both(*state, adam_case("adam", 0, false));
    /* PyTorch's defaults too */
    ref_case rc = {.name = "adam defaults", .adam = true, .ad = clg_adam_default_params()};
    run_both(*state, rc);
}
static void test_adam_weight_decay(void **state) {
    run_both(*state, adam_case("adam weight decay", 0.1, false));
}
static void test_adamw(void **state) { run_both(*state, adam_case("adamw", 0.1, true)); }

/* ---------------------------------------------------------------- behaviour */

/* set_lr: plain SGD moves by exactly -lr * g with the new rate; a bad rate fails the step
 * and moves nothing; zero_grad leaves nothing to step. */
static void test_set_lr_and_zero_grad(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {4};
    const double p0[4] = {1, -2, 3, 0.5}, g0[4] = {0.5, 0.25, -1, 2};
    clg_tensor *p = ref_tensor_f64(ctx, 1, shape, p0), *g = ref_tensor_f64(ctx, 1, shape, g0);
    REF_OK(ctx, clg_tensor_set_requires_grad(p, true));
    clg_sgd_params h = clg_sgd_default_params();
    h.lr = 0.5;
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_sgd_create(ctx, &p, 1, h, &opt));
    REF_OK(ctx, clg_backward_grad(ctx, p, g));
    clg_optimizer_set_lr(opt, 0.25);
    REF_OK(ctx, clg_optimizer_step(opt));
    double want[4], *got = ref_to_host_f64(p);
    for (int i = 0; i < 4; i++)
        want[i] = p0[i] - 0.25 * g0[i];
    ref_assert_close(got, want, 4, 0, 0, "sgd after set_lr");
    free(got);

    clg_optimizer_set_lr(opt, -1.0);
    assert_int_equal(clg_optimizer_step(opt), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "learning rate"));
    got = ref_to_host_f64(p);
    ref_assert_close(got, want, 4, 0, 0, "a failed step moves nothing");
    free(got);

    clg_optimizer_set_lr(opt, 0.25);
    clg_optimizer_zero_grad(opt);
    assert_null(clg_tensor_grad(p));
    REF_OK(ctx, clg_optimizer_step(opt));
    got = ref_to_host_f64(p);
    ref_assert_close(got, want, 4, 0, 0, "no gradient: no move");
    free(got);
    clg_optimizer_free(opt);
    clg_tensor_free(p);
    clg_tensor_free(g);
}

/* The optimizer holds a reference to each parameter and drops it in free. */
static void test_references(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {3};
    clg_tensor *p = ref_rand(ctx, CLG_F32, 1, shape, 7, -1, 1);
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_adam_create(ctx, &p, 1, clg_adam_default_params(), &opt));
    assert_int_equal(p->refcount, 2);
    clg_optimizer_free(opt);
    assert_int_equal(p->refcount, 1);
    clg_optimizer_free(NULL);
    clg_tensor_free(p);
}

static void expect_bad(clg_context *ctx, clg_status st, clg_optimizer *opt, const char *needle) {
    assert_int_equal(st, CLG_INVALID_ARGUMENT);
    assert_null(opt);
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_arguments(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {3};
    clg_tensor *a = ref_rand(ctx, CLG_F64, 1, shape, 1, -1, 1),
               *b = ref_rand(ctx, CLG_F64, 1, shape, 2, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
    clg_tensor *sum = NULL;
    REF_OK(ctx, clg_add(ctx, a, b, &sum)); /* not a leaf */
    clg_tensor *ps[2] = {a, b}, *dup[2] = {a, a}, *withnull[2] = {a, NULL}, *nonleaf[2] = {a, sum};
    const clg_sgd_params s0 = clg_sgd_default_params();
    const clg_adam_params a0 = clg_adam_default_params();
    clg_optimizer *opt = NULL;
    /* opt is set to a non-NULL sentinel first: a failed create must write NULL. */
#define EXPECT_BAD(call, needle)                                                                             \
    do {                                                                                                     \
        opt = (clg_optimizer *)&opt;                                                                         \
        clg_status st_ = (call);                                                                             \
        expect_bad(ctx, st_, opt, needle);                                                                   \
    } while (0)
    clg_sgd_params s;
    clg_adam_params h;

    EXPECT_BAD(clg_sgd_create(ctx, NULL, 2, s0, &opt), "params is NULL");
    EXPECT_BAD(clg_sgd_create(ctx, ps, 0, s0, &opt), "n = 0");
    EXPECT_BAD(clg_adam_create(ctx, withnull, 2, a0, &opt), "params[1] is NULL");
    EXPECT_BAD(clg_adam_create(ctx, dup, 2, a0, &opt), "repeats");
    EXPECT_BAD(clg_sgd_create(ctx, nonleaf, 2, s0, &opt), "not a leaf");
    assert_int_equal(clg_sgd_create(ctx, ps, 2, s0, NULL), CLG_INVALID_ARGUMENT);

    s = s0, s.lr = -0.1;
    EXPECT_BAD(clg_sgd_create(ctx, ps, 2, s, &opt), "learning rate");
    s = s0, s.lr = NAN;
    EXPECT_BAD(clg_sgd_create(ctx, ps, 2, s, &opt), "learning rate");
    s = s0, s.momentum = -0.5;
    EXPECT_BAD(clg_sgd_create(ctx, ps, 2, s, &opt), "momentum");
    s = s0, s.weight_decay = -1e-4;
    EXPECT_BAD(clg_sgd_create(ctx, ps, 2, s, &opt), "weight_decay");
    s = s0, s.nesterov = true; /* momentum 0 */
    EXPECT_BAD(clg_sgd_create(ctx, ps, 2, s, &opt), "nesterov");
    s = s0, s.nesterov = true, s.momentum = 0.9, s.dampening = 0.1;
    EXPECT_BAD(clg_sgd_create(ctx, ps, 2, s, &opt), "nesterov");

    h = a0, h.lr = -1e-3;
    EXPECT_BAD(clg_adam_create(ctx, ps, 2, h, &opt), "learning rate");
    h = a0, h.beta1 = 1.0;
    EXPECT_BAD(clg_adam_create(ctx, ps, 2, h, &opt), "beta1");
    h = a0, h.beta1 = -0.1;
    EXPECT_BAD(clg_adam_create(ctx, ps, 2, h, &opt), "beta1");
    h = a0, h.beta2 = 1.5;
    EXPECT_BAD(clg_adam_create(ctx, ps, 2, h, &opt), "beta2");
    h = a0, h.eps = -1e-8;
    EXPECT_BAD(clg_adam_create(ctx, ps, 2, h, &opt), "eps");
    h = a0, h.weight_decay = -0.01;
    EXPECT_BAD(clg_adam_create(ctx, ps, 2, h, &opt), "weight_decay");

    /* the edges PyTorch accepts */
    s = s0, s.nesterov = true, s.momentum = 0.9, s.lr = 0;
    REF_OK(ctx, clg_sgd_create(ctx, ps, 2, s, &opt));
    clg_optimizer_free(opt);
    h = a0, h.beta1 = 0, h.beta2 = 0, h.eps = 0;
    REF_OK(ctx, clg_adam_create(ctx, ps, 2, h, &opt));
    clg_optimizer_free(opt);

    assert_int_equal(clg_optimizer_step(NULL), CLG_INVALID_ARGUMENT);
#undef EXPECT_BAD
    clg_tensor_free(sum);
    clg_tensor_free(a);
    clg_tensor_free(b);
}

/* ---------------------------------------------------------------- PyTorch fixture */

static const char *const CNN_PARAMS[] = {"conv1.weight", "conv1.bias", "bn1.weight",
                                         "bn1.bias",     "fc.weight",  "fc.bias"};
enum { N_CNN = sizeof CNN_PARAMS / sizeof CNN_PARAMS[0] };

/* A malloc'd copy of prefix + name (the data may be unaligned in the file). */
static double *st_f64(const clg_st_file *f, const char *prefix, const char *name, size_t *n,
                      const clg_st_entry **entry) {
    char full[96];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const clg_st_entry *e = NULL;
    double *v = optim_fixture_f64(f, full, &e);
    *n = e->bytes / sizeof(double);
    if (entry) *entry = e;
    return v;
}

/* Loads init.* as parameters with grad.* as their gradients, takes one step, and compares
 * with PyTorch's parameters after that step (want_prefix). */
static void fixture_first_step(clg_context *ctx, const clg_st_file *f, bool adam, const char *want_prefix) {
    clg_tensor *p[N_CNN];
    for (int j = 0; j < N_CNN; j++) {
        size_t n;
        const clg_st_entry *e;
        double *init = st_f64(f, "init.", CNN_PARAMS[j], &n, &e);
        double *grad = st_f64(f, "grad.", CNN_PARAMS[j], &n, NULL);
        p[j] = ref_tensor_f64(ctx, e->ndim, e->shape, init);
        clg_tensor *g = ref_tensor_f64(ctx, e->ndim, e->shape, grad);
        REF_OK(ctx, clg_tensor_set_requires_grad(p[j], true));
        REF_OK(ctx, clg_backward_grad(ctx, p[j], g)); /* a leaf: writes g into p's grad */
        clg_tensor_free(g);
        free(init);
        free(grad);
    }
    clg_optimizer *opt = NULL;
    if (adam) {
        clg_adam_params h = clg_adam_default_params();
        h.lr = 0.01;
        REF_OK(ctx, clg_adam_create(ctx, p, N_CNN, h, &opt));
    } else {
        clg_sgd_params h = clg_sgd_default_params();
        h.lr = 0.1, h.momentum = 0.9, h.weight_decay = 1e-4;
        REF_OK(ctx, clg_sgd_create(ctx, p, N_CNN, h, &opt));
    }
    REF_OK(ctx, clg_optimizer_step(opt));
    for (int j = 0; j < N_CNN; j++) {
        size_t n;
        double *want = st_f64(f, want_prefix, CNN_PARAMS[j], &n, NULL);
        assert_int_equal(n, clg_tensor_numel(p[j]));
        double *got = ref_to_host_f64(p[j]);
        char what[96];
        snprintf(what, sizeof what, "%s%s", want_prefix, CNN_PARAMS[j]);
        ref_assert_close(got, want, n, 1e-12, 1e-14, what);
        free(got);
        free(want);
    }
    clg_optimizer_free(opt);
    for (int j = 0; j < N_CNN; j++)
        clg_tensor_free(p[j]);
}

static void test_pytorch_small_cnn(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    optim_fixture_read_file(&f, "small_cnn.safetensors");
    fixture_first_step(ctx, &f, false, "sgd1.");
    fixture_first_step(ctx, &f, true, "adam1.");
    clg_st_file_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_dampening),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adam_weight_decay),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_set_lr_and_zero_grad),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_pytorch_small_cnn),
    };
    return REF_RUN_BOTH_STYLES("optim", tests);
}

/* tests/ref/ref.c - the helpers every test executable shares (declared in tests/ref/ref.h):
 * the per-group context, array comparison with a message that names the first mismatch,
 * host copies of tensors and the f64 central-difference gradient check. Naive op
 * references live beside it in ref_<stem>.c. Used by every folder of tests/.
 */
#include "ref.h"
#include "core/core.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- test filter */

/* CLGRAD_TEST_SKIP: test cases not to run, as patterns (* and ?, as cmocka's) separated by
 * spaces. The oclgrind suite (tests/meson.build) uses it for the cases too slow under a
 * simulator. cmocka takes one skip pattern: a single one is also handed to it before main, for
 * executables that run their groups without ref_run_group; a list is applied by ref_run_group
 * (REF_RUN_BOTH_STYLES*), which every test of that suite runs through. */
__attribute__((constructor)) static void ref_skip_filter(void) {
    const char *skip = getenv("CLGRAD_TEST_SKIP");
    if (skip && *skip && !strchr(skip, ' ')) cmocka_set_skip_filter(skip);
}

/* p (up to p_end) against all of s: '*' any run, '?' any one character. */
static bool glob_match(const char *p, const char *p_end, const char *s) {
    for (; p < p_end; p++, s++) {
        if (*p == '*') {
            for (const char *t = s;; t++) {
                if (glob_match(p + 1, p_end, t)) return true;
                if (!*t) return false;
            }
        }
        if (!*s || (*p != '?' && *p != *s)) return false;
    }
    return !*s;
}

bool ref_test_skipped(const char *name) {
    const char *skip = getenv("CLGRAD_TEST_SKIP");
    for (const char *p = skip ? skip : ""; *p;) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        if (end > p && glob_match(p, end, name)) return true;
        p = end;
    }
    return false;
}

int ref_run_group(const char *group, const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup,
                  CMFixtureFunction teardown) {
    struct CMUnitTest *run = calloc(n ? n : 1, sizeof *run);
    if (!run) return 1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ref_test_skipped(tests[i].name)) printf("[  SKIPPED ] %s (CLGRAD_TEST_SKIP)\n", tests[i].name);
        else run[k++] = tests[i];
    }
    const int failed = _cmocka_run_group_tests(group, run, k, setup, teardown);
    free(run);
    return failed;
}

/* ---------------------------------------------------------------- group context */

int ref_group_setup(void **state) { return ref_group_setup_params(state, clg_context_default_params()); }

int ref_group_setup_params(void **state, clg_context_params p) {
    clg_context *ctx = NULL;
    char err[2048] = "";
    clg_status st = clg_context_create(&p, &ctx, err, sizeof err);
    if (st != CLG_OK || ctx == NULL) {
        /* A missing device is a broken test machine, not a reason to skip: say so loudly. */
        const char *dev = getenv("CLGRAD_DEVICE");
        fprintf(stderr,
                "ref_group_setup: cannot create a clgrad context (CLGRAD_DEVICE=%s): %s: %s\n"
                "  these tests need an OpenCL device (on Debian: apt-get install pocl-opencl-icd)\n",
                dev ? dev : "(unset)", clg_status_name(st), err);
        *state = NULL;
        return -1;
    }
    /* CLGRAD_TEST_NO_FP64=1: the context acts as a device without fp64 (the f64 tests must
     * skip with a message, not fail; tests/core/test_no_fp64 runs suites this way). */
    const char *no_fp64 = getenv("CLGRAD_TEST_NO_FP64");
    if (no_fp64 && !strcmp(no_fp64, "1")) ctx->info.fp64 = false;
    *state = ctx;
    return 0;
}

void ref_skip_without_fp64(const clg_context *ctx, clg_status st) {
    clg_device_info info;
    if (st != CLG_UNSUPPORTED || !ctx || clg_context_device_info(ctx, &info) != CLG_OK || info.fp64) return;
    if (!strstr(clg_context_errmsg(ctx), "fp64")) return;
    print_message("[  SKIP    ] f64 on %s, which has no fp64: %s\n", info.name, clg_context_errmsg(ctx));
    /* The group's context goes on to the next test: leave no fault armed. */
    for (int k = CLG_FAULT_ALLOC; k <= CLG_FAULT_ENQUEUE; k++)
        clg_context_inject_fault((clg_context *)ctx, (clg_fault_kind)k, 0);
    skip();
}

int ref_group_teardown(void **state) {
    clg_context_free((clg_context *)*state);
    *state = NULL;
    return 0;
}

/* ---------------------------------------------------------------- comparison */

/* Both comparisons share one loop over doubles; a float array is read through `get`. */
typedef double (*ref_get_fn)(const void *arr, size_t i);
static double get_d(const void *arr, size_t i) { return ((const double *)arr)[i]; }
static double get_f(const void *arr, size_t i) { return (double)((const float *)arr)[i]; }

static void assert_close_impl(const void *got, const void *want, ref_get_fn get, size_t n, double rtol,
                              double atol, const char *what) {
    size_t bad = 0, first = 0, worst = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        const double g = get(got, i), w = get(want, i);
        const double lim = atol + rtol * fabs(w);
        const double d = fabs(g - w);
        /* NaN in either fails: !(d <= lim) catches it where (d > lim) would not. */
        if (!(d <= lim)) {
            if (bad == 0) first = i;
            bad++;
            const double excess = isnan(d) ? INFINITY : d / (lim > 0 ? lim : 1e-300);
            if (excess > worst_excess) {
                worst_excess = excess;
                worst = i;
            }
        }
    }
    if (bad) {
        fail_msg("%s: %zu of %zu elements differ (rtol %g, atol %g); first at [%zu]: got %.17g "
                 "want %.17g (diff %.3g); worst at [%zu]: got %.17g want %.17g (diff %.3g)",
                 what ? what : "arrays", bad, n, rtol, atol, first, get(got, first), get(want, first),
                 fabs(get(got, first) - get(want, first)), worst, get(got, worst), get(want, worst),
                 fabs(get(got, worst) - get(want, worst)));
    }
}

void ref_assert_close(const double *got, const double *want, size_t n, double rtol, double atol,
                      const char *what) {
    assert_close_impl(got, want, get_d, n, rtol, atol, what);
}

void ref_assert_close_f(const float *got, const float *want, size_t n, double rtol, double atol,
                        const char *what) {
    assert_close_impl(got, want, get_f, n, rtol, atol, what);
}

/* ---------------------------------------------------------------- host copies */

double *ref_to_host_f64(const clg_tensor *t) {
    assert_non_null(t);
    clg_context *ctx = clg_tensor_context(t);
    const size_t n = clg_tensor_numel(t);
    double *out = malloc((n ? n : 1) * sizeof *out);
    assert_non_null(out);
    if (clg_tensor_dtype(t) == CLG_F64) {
        REF_OK(ctx, clg_tensor_to_host(t, out, n * sizeof(double)));
    } else {
        float *tmp = malloc((n ? n : 1) * sizeof *tmp);
        assert_non_null(tmp);
        clg_status st = clg_tensor_to_host(t, tmp, n * sizeof(float));
        if (st != CLG_OK) {
            free(tmp);
            free(out);
            fail_msg("ref_to_host_f64: %s: %s", clg_status_name(st), clg_context_errmsg(ctx));
        }
        for (size_t i = 0; i < n; i++)
            out[i] = tmp[i];
        free(tmp);
    }
    return out;
}

clg_tensor *ref_tensor_f64(clg_context *ctx, int ndim, const int *shape, const double *data) {
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F64, ndim, shape, data, &t));
    return t;
}

clg_tensor *ref_rand(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, uint64_t seed, double lo,
                     double hi) {
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_rand_uniform(ctx, dt, ndim, shape, lo, hi, seed, &t));
    return t;
}

clg_tensor *ref_rand_f64(clg_context *ctx, int ndim, const int *shape, uint64_t seed, double lo, double hi) {
    return ref_rand(ctx, CLG_F64, ndim, shape, seed, lo, hi);
}

/* ---------------------------------------------------------------- gradient check */

/* Writes host doubles into t whatever its dtype. */
static clg_status write_f64(clg_tensor *t, const double *v, size_t n) {
    if (clg_tensor_dtype(t) == CLG_F64) return clg_tensor_write(t, v, n * sizeof(double));
    float *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return CLG_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (float)v[i];
    clg_status st = clg_tensor_write(t, tmp, n * sizeof(float));
    free(tmp);
    return st;
}

/* loss = sum(r * f(inputs)) on the host, with grad recording off. */
static clg_status numeric_loss(clg_context *ctx, ref_fn f, clg_tensor *const *inputs, int n, void *user,
                               const double *r, size_t ny, double *loss) {
    clg_tensor *y = NULL;
    clg_status st = f(ctx, inputs, n, &y, user);
    if (st != CLG_OK) return st;
    if (clg_tensor_numel(y) != ny) {
        clg_tensor_free(y);
        return CLG_SHAPE_MISMATCH;
    }
    double *yh = malloc(ny * sizeof *yh);
    float *yf = clg_tensor_dtype(y) == CLG_F32 ? malloc(ny * sizeof *yf) : NULL;
    if (!yh || (clg_tensor_dtype(y) == CLG_F32 && !yf)) {
        free(yh);
        free(yf);
        clg_tensor_free(y);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    if (yf) {
        st = clg_tensor_to_host(y, yf, ny * sizeof(float));
        for (size_t i = 0; st == CLG_OK && i < ny; i++)
            yh[i] = yf[i];
    } else {
        st = clg_tensor_to_host(y, yh, ny * sizeof(double));
    }
    /* long double: the check differences two nearby losses, so keep their rounding small. */
    long double s = 0;
    for (size_t i = 0; st == CLG_OK && i < ny; i++)
        s += (long double)r[i] * yh[i];
    *loss = (double)s;
    free(yh);
    free(yf);
    clg_tensor_free(y);
    return st;
}

void ref_gradcheck(clg_context *ctx, ref_fn f, clg_tensor *const *inputs, int n, void *user, double h,
                   double tol, const char *what) {
    char failure[1024] = "";
    if (!what) what = "gradcheck";
    if (h <= 0) h = 1e-6;
    assert_non_null(ctx);
    assert_non_null(f);
    assert_true(n > 0 && n <= 16);

    const bool was_enabled = clg_set_grad_enabled(ctx, true);
    for (int i = 0; i < n; i++)
        if (inputs[i]) clg_tensor_zero_grad(inputs[i]);

    clg_tensor *y = NULL, *r = NULL;
    double *rh = NULL, *x = NULL, *analytic = NULL;
    size_t ny = 0;

    clg_status st = f(ctx, inputs, n, &y, user);
    if (st != CLG_OK) {
        snprintf(failure, sizeof failure, "%s: forward -> %s: %s", what, clg_status_name(st),
                 clg_context_errmsg(ctx));
        goto done;
    }
    ny = clg_tensor_numel(y);
    /* r fixed by seed, so a failure reproduces; away from 0 so no output is ignored. */
    st = clg_tensor_rand_uniform(ctx, clg_tensor_dtype(y), clg_tensor_ndim(y), clg_tensor_shape(y), 0.5, 1.5,
                                 0x5eedULL, &r);
    if (st != CLG_OK) {
        snprintf(failure, sizeof failure, "%s: rand r -> %s: %s", what, clg_status_name(st),
                 clg_context_errmsg(ctx));
        goto done;
    }
    rh = ref_to_host_f64(r);
    st = clg_backward_grad(ctx, y, r);
    if (st != CLG_OK) {
        snprintf(failure, sizeof failure, "%s: clg_backward_grad -> %s: %s", what, clg_status_name(st),
                 clg_context_errmsg(ctx));
        goto done;
    }
    clg_tensor_free(y);
    y = NULL;

    /* The numeric forwards must not record a graph (and must not touch .grad). */
    clg_set_grad_enabled(ctx, false);
    for (int i = 0; i < n && !failure[0]; i++) {
        clg_tensor *in = inputs[i];
        if (!in || !clg_tensor_requires_grad(in)) continue;
        const size_t nx = clg_tensor_numel(in);
        const clg_tensor *g = clg_tensor_grad(in);
        if (g) {
            if (clg_tensor_numel(g) != nx) {
                snprintf(failure, sizeof failure, "%s: input %d: grad has %zu elements, input %zu", what, i,
                         clg_tensor_numel(g), nx);
                break;
            }
            analytic = ref_to_host_f64(g);
        } else {
            /* No gradient reached this input: that is right only if y does not depend on it,
             * which the numeric side then confirms with zeros. */
            analytic = calloc(nx, sizeof *analytic);
            assert_non_null(analytic);
        }
        x = ref_to_host_f64(in);
        for (size_t j = 0; j < nx; j++) {
            const double x0 = x[j];
            double lp = 0, lm = 0;
            x[j] = x0 + h;
            st = write_f64(in, x, nx);
            if (st == CLG_OK) st = numeric_loss(ctx, f, inputs, n, user, rh, ny, &lp);
            x[j] = x0 - h;
            if (st == CLG_OK) st = write_f64(in, x, nx);
            if (st == CLG_OK) st = numeric_loss(ctx, f, inputs, n, user, rh, ny, &lm);
            x[j] = x0;
            clg_status st2 = write_f64(in, x, nx);
            if (st == CLG_OK) st = st2;
            if (st != CLG_OK) {
                snprintf(failure, sizeof failure, "%s: numeric forward for input %d [%zu] -> %s: %s", what, i,
                         j, clg_status_name(st), clg_context_errmsg(ctx));
                break;
            }
            const double numeric = (lp - lm) / (2 * h);
            const double diff = fabs(analytic[j] - numeric);
            if (!(diff <= tol * (1 + fabs(numeric)))) {
                snprintf(failure, sizeof failure,
                         "%s: input %d element %zu of %zu: analytic %.10g, numeric %.10g "
                         "(diff %.3g > tol %g * (1 + |numeric|), h %g)",
                         what, i, j, nx, analytic[j], numeric, diff, tol, h);
                break;
            }
        }
        free(x);
        x = NULL;
        free(analytic);
        analytic = NULL;
    }

done:
    clg_set_grad_enabled(ctx, was_enabled);
    free(x);
    free(analytic);
    free(rh);
    clg_tensor_free(r);
    clg_tensor_free(y);
    if (failure[0]) fail_msg("%s", failure);
}

void ref_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const double *a, size_t lda,
              const double *b, size_t ldb, double beta, double *c, size_t ldc) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            long double acc = 0;
            for (size_t p = 0; p < k; p++) {
                const double av = ta ? a[p * lda + i] : a[i * lda + p];
                const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += (long double)av * bv;
            }
            double *cij = &c[i * ldc + j];
            *cij = beta == 0 ? (double)(alpha * acc) : (double)(alpha * acc + (long double)beta * *cij);
        }
}

/* ---------------------------------------------------------------- files */
void ref_rm_rf(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char child[4096];
                snprintf(child, sizeof child, "%s/%s", path, e->d_name);
                ref_rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

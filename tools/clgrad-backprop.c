/* tools/clgrad-backprop.c - the worked conv2d example, step by step, on a real device: one
 * 4x4 image, one 2x2 kernel, loss = sum of squared outputs, plain gradient descent. Prints
 * every stage in words, with each weight's gradient written out as its sum of
 * pixel × blame terms. Public API only; the op is src/ops/conv2d.c, its test
 * tests/ops/test_conv2d.c (the same numbers, asserted).
 * Usage: clgrad-backprop [--device D] [--lr 1e-5] [--steps 1]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad.h>

#include "tool_args.h"

#define IH 4
#define IW 4
#define KS 2
#define OS (IH - KS + 1)

static const double x_init[IH][IW] = {{10, 20, 30, 40}, {30, 40, 50, 60}, {20, 30, 40, 50}, {10, 20, 30, 40}};
static const double w_init[KS][KS] = {{0.5, 0.3}, {0.2, 0.1}};

typedef struct run {
    clg_context *ctx;
    clg_dtype dt;
    clg_tensor *x, *w; /* x (1, 1, 4, 4), w (1, 1, 2, 2) */
} run;

static int die(const run *r, clg_status st, const char *what) {
    fprintf(stderr, "clgrad-backprop: %s failed: %s: %s\n", what, clg_status_name(st),
            r->ctx ? clg_context_errmsg(r->ctx) : "");
    return 1;
}

/* Host values of a tensor as doubles (n of them). */
static clg_status get(const clg_tensor *t, double *out, size_t n) {
    if (clg_tensor_dtype(t) == CLG_F64) return clg_tensor_to_host(t, out, n * sizeof *out);
    float tmp[IH * IW];
    clg_status st = clg_tensor_to_host(t, tmp, n * sizeof *tmp);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[i];
    return st;
}

static clg_status put(clg_tensor *t, const double *v, size_t n) {
    if (clg_tensor_dtype(t) == CLG_F64) return clg_tensor_write(t, v, n * sizeof *v);
    float tmp[IH * IW];
    for (size_t i = 0; i < n; i++)
        tmp[i] = (float)v[i];
    return clg_tensor_write(t, tmp, n * sizeof *tmp);
}

static void print_grid(const char *indent, const double *v, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        printf("%s[", indent);
        for (int j = 0; j < cols; j++)
            printf("%s%9.6g", j ? " " : "", v[i * cols + j]);
        printf(" ]\n");
    }
}

/* One step: forward, loss, backward, update. Verbose explains every stage. *loss_before
 * is the loss at the weights the step started from. */
static int step(run *r, double lr, bool verbose, double *loss_before) {
    const clg_conv2d_params p = clg_conv2d_default_params();
    clg_tensor *y = NULL, *loss = NULL;
    double x[IH * IW], w[KS * KS], yv[OS * OS], dy[OS * OS], g[KS * KS];
    clg_status st;
    clg_tensor_zero_grad(r->w);
    if ((st = clg_conv2d(r->ctx, r->x, r->w, NULL, p, &y)) != CLG_OK) return die(r, st, "conv2d");
    if ((st = clg_sum_of_squares(r->ctx, y, &loss)) != CLG_OK ||
        (st = clg_tensor_item(loss, loss_before)) != CLG_OK || (st = get(y, yv, OS * OS)) != CLG_OK ||
        (st = get(r->x, x, IH * IW)) != CLG_OK || (st = get(r->w, w, KS * KS)) != CLG_OK) {
        clg_tensor_free(y);
        clg_tensor_free(loss);
        return die(r, st, "forward");
    }
    /* The graph carries the blame back: loss -> y -> w. */
    st = clg_backward(r->ctx, loss);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    if (st != CLG_OK) return die(r, st, "backward");
    const clg_tensor *grad = clg_tensor_grad(r->w);
    if (!grad) return die(r, CLG_INVALID_STATE, "backward (no gradient reached the kernel)");
    if ((st = get(grad, g, KS * KS)) != CLG_OK) return die(r, st, "reading the gradient");
    for (int i = 0; i < OS * OS; i++)
        dy[i] = 2 * yv[i];

    if (verbose) {
        printf("1. Forward. The kernel slides over the image; each output is the sum of the\n"
               "   four pixels under it, each times the kernel weight on top of it. Top-left:\n"
               "   y[0][0] = %g×%g + %g×%g + %g×%g + %g×%g = %g\n",
               x[0], w[0], x[1], w[1], x[IW], w[2], x[IW + 1], w[3], yv[0]);
        printf("   The output (3x3):\n");
        print_grid("     ", yv, OS, OS);
        printf("\n2. Loss. The target is all zeros, so the loss is the sum of every output "
               "squared:\n   loss = ");
        for (int i = 0; i < OS * OS; i++)
            printf("%s%g²", i ? " + " : "", yv[i]);
        printf(" = %.10g\n", *loss_before);
        printf("\n3. Blame scores. How much the loss moves per unit change of each output:\n"
               "   dL/dy = 2 × y (the derivative of y²):\n");
        print_grid("     ", dy, OS, OS);
        printf("\n4. Weight gradients. A weight touched one pixel at each of the 9 positions "
               "the\n   kernel visited; its gradient is the sum of pixel × blame over those "
               "positions\n   (computed on the device, the terms written out here):\n");
        for (int a = 0; a < KS; a++)
            for (int b = 0; b < KS; b++) {
                printf("   dL/dw[%d][%d] = ", a, b);
                for (int i = 0; i < OS; i++)
                    for (int j = 0; j < OS; j++)
                        printf("%s%g×%g", i + j ? " + " : "", x[(i + a) * IW + j + b], dy[i * OS + j]);
                printf(" = %.10g\n", g[a * KS + b]);
            }
        printf("\n5. Update. Each weight takes a small step against its gradient,\n"
               "   w_new = w - lr × dL/dw with lr = %g:\n",
               lr);
        for (int i = 0; i < KS * KS; i++)
            printf("   w[%d][%d] = %g - %g × %.10g = %.6g\n", i / KS, i % KS, w[i], lr, g[i],
                   w[i] - lr * g[i]);
    }
    for (int i = 0; i < KS * KS; i++)
        w[i] -= lr * g[i];
    if ((st = put(r->w, w, KS * KS)) != CLG_OK) return die(r, st, "writing the new kernel");
    return 0;
}

/* The loss at the current weights, without recording a graph. */
static int eval_loss(run *r, double *out) {
    const bool was = clg_set_grad_enabled(r->ctx, false);
    clg_tensor *y = NULL, *loss = NULL;
    clg_status st = clg_conv2d(r->ctx, r->x, r->w, NULL, clg_conv2d_default_params(), &y);
    if (st == CLG_OK) st = clg_sum_of_squares(r->ctx, y, &loss);
    if (st == CLG_OK) st = clg_tensor_item(loss, out);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_set_grad_enabled(r->ctx, was);
    return st == CLG_OK ? 0 : die(r, st, "evaluating the loss");
}

static int usage(FILE *f) {
    fprintf(f, "usage: clgrad-backprop [--device D] [--lr RATE] [--steps N]\n"
               "  --device D   gpu, cpu, P:D or part of a device name (default: CLGRAD_DEVICE, "
               "else the first GPU)\n"
               "  --lr RATE    learning rate, finite >= 0 (default 1e-5)\n"
               "  --steps N    gradient-descent steps, 1..1000000; the loss is shown after each (default 1)\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv) {
    static const char *T = "clgrad-backprop";
    const char *device = NULL;
    double lr = 1e-5;
    long long steps = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (strcmp(a, "--device") && strcmp(a, "--lr") && strcmp(a, "--steps")) {
            fprintf(stderr, "%s: unknown option '%s'\n", T, a);
            return usage(stderr);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", T, a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--device")) {
            device = v;
        } else if (!strcmp(a, "--lr")) {
            /* a negative rate climbs the loss, a NaN one poisons the kernel: not the example */
            if (!tool_parse_real(T, "--lr", v, 0, INFINITY, &lr)) return 2;
        } else if (!tool_parse_int(T, "--steps", v, 1, 1000000, &steps)) {
            return 2;
        }
    }

    run r = {0};
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    char err[1024] = "";
    clg_status st = clg_context_create(&cp, &r.ctx, err, sizeof err);
    if (st != CLG_OK) {
        fprintf(stderr, "clgrad-backprop: no device: %s: %s\n", clg_status_name(st), err);
        return 1;
    }
    clg_device_info info;
    memset(&info, 0, sizeof info);
    if (clg_context_device_info(r.ctx, &info) != CLG_OK) strcpy(info.name, "?");
    /* double precision where the device has it, so the printed numbers are the exact ones */
    r.dt = info.fp64 ? CLG_F64 : CLG_F32;
    const int xs[4] = {1, 1, IH, IW}, ws[4] = {1, 1, KS, KS};
    int rc = 1;
    if ((st = clg_tensor_zeros(r.ctx, r.dt, 4, xs, &r.x)) != CLG_OK ||
        (st = clg_tensor_zeros(r.ctx, r.dt, 4, ws, &r.w)) != CLG_OK ||
        (st = put(r.x, &x_init[0][0], IH * IW)) != CLG_OK ||
        (st = put(r.w, &w_init[0][0], KS * KS)) != CLG_OK ||
        (st = clg_tensor_set_requires_grad(r.w, true)) != CLG_OK) {
        die(&r, st, "setting up the tensors");
        goto out;
    }
    printf("Backpropagation through one convolution, on %s (%s, %s)\n\n", info.name, info.platform_name,
           clg_dtype_name(r.dt));
    printf("The input image (4x4):\n");
    print_grid("     ", &x_init[0][0], IH, IW);
    printf("The kernel (2x2), the weights we will learn:\n");
    print_grid("     ", &w_init[0][0], KS, KS);
    printf("Goal: make every output 0, i.e. minimise loss = sum of the outputs squared.\n\n");

    double before = 0, after = 0;
    for (long long s = 1; s <= steps; s++) {
        if (step(&r, lr, s == 1, &before)) goto out;
        if (eval_loss(&r, &after)) goto out;
        if (s == 1) {
            double w[KS * KS];
            if ((st = get(r.w, w, KS * KS)) != CLG_OK) {
                die(&r, st, "reading the kernel");
                goto out;
            }
            printf("   The new kernel:\n");
            print_grid("     ", w, KS, KS);
            printf("\n6. New loss. The same forward pass with the new kernel:\n"
                   "   loss = %.10g (was %.10g)\n",
                   after, before);
            if (steps > 1) printf("\nMore steps, the loss after each:\n");
        }
        if (steps > 1) printf("   step %lld: loss %.10g -> %.10g\n", s, before, after);
    }
    rc = 0;
out:
    clg_tensor_free(r.x);
    clg_tensor_free(r.w);
    clg_context_free(r.ctx);
    return rc;
}

/* tools/example-custom.c - a user-defined module on the public API: a residual MLP block
 * (y = relu(x + fc2(relu(fc1(x))))) as a clg_module_def with two named children, used twice
 * in a sequential; prints the model's state names (PyTorch's: "1.fc1.weight"), then trains it
 * with Adam on the XOR-of-signs points of example-embed.c. Exits 0 only if the loss fell.
 * Build against an installed clgrad: cc example-custom.c $(pkg-config --cflags --libs clgrad)
 */
#include <stdint.h>
#include <stdio.h>

#include <clgrad.h>

/* The block's forward: its children by name; every tensor made here is freed here (the graph
 * keeps what backward needs). */
static clg_status residual_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    clg_tensor *h = NULL, *a = NULL, *b = NULL, *s = NULL;
    clg_status st = clg_module_forward(ctx, clg_module_get_child(m, "fc1"), x, &h);
    if (st == CLG_OK) st = clg_relu(ctx, h, &a);
    if (st == CLG_OK) st = clg_module_forward(ctx, clg_module_get_child(m, "fc2"), a, &b);
    if (st == CLG_OK) st = clg_add(ctx, x, b, &s);
    if (st == CLG_OK) st = clg_relu(ctx, s, out);
    clg_tensor_free(h), clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(s);
    return st;
}

/* The definition lives as long as its modules: a static const object. */
static const clg_module_def residual_def = {.kind = "residual", .forward = residual_forward};

/* A block of width w; its two layers draw their weights from seeds 2 seed and 2 seed + 1. */
static clg_status residual_create(clg_context *ctx, int w, uint64_t seed, clg_module **out) {
    clg_module *m = NULL, *fc = NULL;
    clg_status st = clg_module_create(ctx, &residual_def, NULL, &m); /* unnamed: the sequential names it */
    if (st == CLG_OK && (st = clg_linear_module_create(ctx, NULL, w, w, true, 2 * seed, &fc)) == CLG_OK)
        st = clg_module_add_child(m, "fc1", fc); /* the parent owns fc from here, even on failure */
    if (st == CLG_OK && (st = clg_linear_module_create(ctx, NULL, w, w, true, 2 * seed + 1, &fc)) == CLG_OK)
        st = clg_module_add_child(m, "fc2", fc);
    if (st != CLG_OK) clg_module_free(m), m = NULL;
    *out = m;
    return st;
}

int main(void) {
    clg_context *ctx = NULL;
    char err[1024] = "";
    if (clg_context_create(NULL, &ctx, err, sizeof err) != CLG_OK)
        return fprintf(stderr, "no device: %s\n", err), 1;
    clg_module *net = NULL, *m = NULL;
    clg_optimizer *opt = NULL;
    clg_tensor *x = NULL;
    float pts[256 * 2];
    int32_t labels[256];
    uint64_t r = 7;
    for (int i = 0; i < 512; i++) { /* points in [-1, 1)^2, class: the signs differ */
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        pts[i] = (float)((double)(r >> 11) / 4503599627370496.0 - 1.0);
        if (i % 2) labels[i / 2] = (pts[i - 1] > 0) != (pts[i] > 0);
    }
    const int xs[2] = {256, 2};
    double first = 0, last = 0;
    clg_status st = clg_tensor_from_host(ctx, CLG_F32, 2, xs, pts, &x);
    if (st == CLG_OK) st = clg_sequential_create(ctx, &net); /* 0: fc in, 1-2: blocks, 3: fc out */
    if (st == CLG_OK && (st = clg_linear_module_create(ctx, NULL, 2, 16, true, 1, &m)) == CLG_OK)
        st = clg_sequential_add(net, m);
    for (uint64_t b = 0; b < 2 && st == CLG_OK; b++)
        if ((st = residual_create(ctx, 16, 10 + b, &m)) == CLG_OK) st = clg_sequential_add(net, m);
    if (st == CLG_OK && (st = clg_linear_module_create(ctx, NULL, 16, 2, true, 2, &m)) == CLG_OK)
        st = clg_sequential_add(net, m);
    clg_named_tensor e[32];
    const size_t n = st == CLG_OK ? clg_module_named_parameters(net, e, 32) : 0;
    for (size_t i = 0; i < n; i++)
        printf("%-14s (%d values)\n", e[i].name, (int)clg_tensor_numel(e[i].tensor));
    clg_tensor *params[32];
    clg_adam_params ap = clg_adam_default_params();
    ap.lr = 0.02;
    if (st == CLG_OK) st = clg_adam_create(ctx, params, clg_module_parameters(net, params, 32), ap, &opt);
    for (int step = 0; step < 60 && st == CLG_OK; step++) {
        clg_tensor *logits = NULL, *loss = NULL;
        clg_module_zero_grad(net);
        st = clg_module_forward(ctx, net, x, &logits);
        if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, logits, labels, 256, &loss);
        if (st == CLG_OK) st = clg_backward(ctx, loss);
        if (st == CLG_OK) st = clg_optimizer_step(opt);
        if (st == CLG_OK) st = clg_tensor_item(loss, step ? &last : &first);
        clg_tensor_free(loss), clg_tensor_free(logits);
    }
    if (st != CLG_OK)
        fprintf(stderr, "example-custom: %s: %s\n", clg_status_name(st), clg_context_errmsg(ctx));
    else
        printf("%zu parameters; loss %.4f -> %.4f\n", clg_module_parameter_count(net), first, last);
    clg_optimizer_free(opt), clg_module_free(net), clg_tensor_free(x), clg_context_free(ctx);
    return st == CLG_OK && last < first ? 0 : 1;
}

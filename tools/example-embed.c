/* tools/example-embed.c - how to embed clgrad in a C program, on the public API only:
 * build a two-layer model (linear -> relu -> linear), train it with Adam on synthetic data
 * (which quadrant pair a 2-D point lies in: the XOR of the signs of its coordinates), print
 * the falling loss, free everything. Exits 0 only if the loss fell.
 * Build against an installed clgrad: cc example-embed.c $(pkg-config --cflags --libs clgrad)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <clgrad.h>

#define N_POINTS 256
#define HIDDEN 16
#define STEPS 60

/* Every clgrad call returns a status; on failure the context says what went wrong. */
#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        clg_status st_ = (call);                                                                             \
        if (st_ != CLG_OK) {                                                                                 \
            fprintf(stderr, "example-embed: %s failed: %s: %s\n", #call, clg_status_name(st_),               \
                    ctx ? clg_context_errmsg(ctx) : "");                                                     \
            goto cleanup;                                                                                    \
        }                                                                                                    \
    } while (0)

/* A tiny private generator, so the data are the same on every run and platform. */
static double next_uniform(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* [-1, 1) */
}

/* Hands a freshly created layer to the container, which owns it from then on (even when
 * adding fails), so the caller's pointer is cleared either way. */
static clg_status add_layer(clg_module *model, clg_status created, clg_module **layer) {
    if (created != CLG_OK) return created;
    clg_module *l = *layer;
    *layer = NULL;
    return clg_sequential_add(model, l);
}

int main(void) {
    clg_context *ctx = NULL;
    clg_module *model = NULL, *layer = NULL; /* layer: created, not yet added */
    clg_optimizer *opt = NULL;
    clg_tensor *x = NULL;
    int ok = 0;

    /* 1. A context on the default device (CLGRAD_DEVICE chooses another). */
    char err[1024] = "";
    clg_context_params cp = clg_context_default_params();
    if (clg_context_create(&cp, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "example-embed: no OpenCL device: %s\n", err);
        return 1;
    }
    clg_device_info info;
    CHECK(clg_context_device_info(ctx, &info));
    printf("device: %s\n", info.name);

    /* 2. Synthetic data: points in [-1, 1)^2, class 1 when the signs of x and y differ. A
     *    linear model cannot separate this; one hidden layer can. */
    float points[N_POINTS * 2]; // (N, 2)
    int32_t labels[N_POINTS];   // (N)
    uint64_t seed = 42;
    for (int i = 0; i < N_POINTS; i++) {
        points[2 * i] = (float)next_uniform(&seed);
        points[2 * i + 1] = (float)next_uniform(&seed);
        labels[i] = (points[2 * i] > 0) != (points[2 * i + 1] > 0);
    }
    const int xshape[2] = {N_POINTS, 2};
    CHECK(clg_tensor_from_host(ctx, CLG_F32, 2, xshape, points, &x));

    /* 3. The model: a sequential container owns its layers (and frees them). Each layer is
     *    created with PyTorch's default initialisation from a seed. */
    CHECK(clg_sequential_create(ctx, &model));
    CHECK(add_layer(model, clg_linear_module_create(ctx, "fc1", 2, HIDDEN, true, 1, &layer), &layer));
    CHECK(add_layer(model, clg_relu_module_create(ctx, &layer), &layer));
    CHECK(add_layer(model, clg_linear_module_create(ctx, "fc2", HIDDEN, 2, true, 2, &layer), &layer));

    /* 4. An optimizer over the model's trainable parameters (borrowed from the model). */
    clg_tensor *params[8];
    size_t n_params = clg_module_parameters(model, params, 8);
    clg_adam_params ap = clg_adam_default_params();
    ap.lr = 0.05;
    CHECK(clg_adam_create(ctx, params, n_params, ap, &opt));

    /* 5. Training: zero the gradients, forward, loss, backward, step. Tensors returned by
     *    ops belong to the caller; the graph keeps what backward needs by itself. */
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        clg_tensor *logits = NULL, *loss = NULL;
        clg_optimizer_zero_grad(opt);
        clg_status st = clg_module_forward(ctx, model, x, &logits);
        if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, logits, labels, N_POINTS, &loss);
        if (st == CLG_OK) st = clg_backward(ctx, loss);
        if (st == CLG_OK) st = clg_optimizer_step(opt);
        double value = 0;
        if (st == CLG_OK) st = clg_tensor_item(loss, &value); /* reading a value waits for the device */
        clg_tensor_free(loss);
        clg_tensor_free(logits);
        CHECK(st);
        if (step == 0) first = value;
        last = value;
        if (step % 10 == 0 || step == STEPS - 1) printf("step %3d  loss %.4f\n", step, value);
    }

    /* 6. Evaluation: no graph is recorded, and the accuracy is counted on the host. */
    clg_set_grad_enabled(ctx, false);
    clg_module_train(model, false);
    clg_tensor *logits = NULL;
    CHECK(clg_module_forward(ctx, model, x, &logits));
    float out[N_POINTS * 2]; // (N, 2)
    clg_status st = clg_tensor_to_host(logits, out, sizeof out);
    clg_tensor_free(logits);
    CHECK(st);
    int correct = 0;
    for (int i = 0; i < N_POINTS; i++)
        correct += (out[2 * i + 1] > out[2 * i]) == (labels[i] == 1);
    printf("loss %.4f -> %.4f, training accuracy %.3f\n", first, last, (double)correct / N_POINTS);
    ok = last < first;

cleanup:
    /* 7. Everything created has one free; the model frees its layers. */
    clg_optimizer_free(opt);
    clg_module_free(model);
    clg_tensor_free(x);
    clg_context_free(ctx);
    return ok ? 0 : 1;
}

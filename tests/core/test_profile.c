/* tests/core/test_profile.c - the profiler (src/core/profile.c): refused on a context without
 * timestamps; on one with them, a linear layer's forward, backward and an SGD step are recorded
 * by op and phase with their launch counts; stopping stops recording; reset forgets; the trace
 * is Chrome trace JSON with a host and a device track; results are bit-identical with the
 * profiler on and off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ref.h"

/* y = x w^T + b, loss = sum(y^2), backward, one SGD step; the updated weights into w_out. */
static void train_step(clg_context *ctx, double *w_out) {
    const int xs[2] = {4, 3}, ws[2] = {2, 3}, bs[1] = {2};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, xs, 1, -1, 1), *w = ref_rand(ctx, CLG_F32, 2, ws, 2, -1, 1);
    clg_tensor *b = ref_rand(ctx, CLG_F32, 1, bs, 3, -1, 1), *y, *loss;
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    REF_OK(ctx, clg_linear(ctx, x, w, b, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor *params[2] = {w, b};
    clg_optimizer *opt;
    REF_OK(ctx, clg_sgd_create(ctx, params, 2, clg_sgd_default_params(), &opt));
    REF_OK(ctx, clg_optimizer_step(opt));
    double *h = ref_to_host_f64(w);
    memcpy(w_out, h, 6 * sizeof *h);
    free(h);
    clg_optimizer_free(opt);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(b);
    clg_tensor_free(w);
    clg_tensor_free(x);
}

static const clg_profile_row *find(const clg_profile_row *rows, size_t n, const char *name, const char *phase) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name) && !strcmp(rows[i].phase, phase)) return &rows[i];
    return NULL;
}

static void test_needs_timestamps(void **state) {
    clg_context *ctx = *state; /* the group's context: made without params.profiling */
    assert_int_equal(clg_profiler_start(ctx), CLG_INVALID_STATE);
    assert_non_null(strstr(clg_context_errmsg(ctx), "CLGRAD_PROFILE"));
    size_t n = 9;
    REF_OK(ctx, clg_profiler_summary(ctx, NULL, 0, &n));
    assert_int_equal(n, 0);
}

static void test_records_by_op_and_phase(void **state) {
    (void)state;
    clg_context_params p = clg_context_default_params();
    p.profiling = true;
    clg_context *ctx = NULL;
    char err[512];
    assert_int_equal(clg_context_create(&p, &ctx, err, sizeof err), CLG_OK);
    double plain[6], profiled[6];
    train_step(ctx, plain); /* builds the programs; not recorded */
    REF_OK(ctx, clg_profiler_start(ctx));
    train_step(ctx, profiled);
    assert_memory_equal(plain, profiled, sizeof plain);
    clg_profile_row rows[64];
    size_t n = 0;
    REF_OK(ctx, clg_profiler_summary(ctx, rows, 64, &n));
    assert_true(n > 0 && n <= 64);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].launches > 0);
        assert_true(rows[i].device_ms >= 0 && rows[i].enqueue_ms >= 0 && rows[i].host_gap_ms >= 0);
        if (i > 0) assert_true(rows[i - 1].device_ms >= rows[i].device_ms);
        total += rows[i].launches;
    }
    assert_non_null(find(rows, n, "sgd", "optimizer"));
    bool fwd = false, bwd = false;
    for (size_t i = 0; i < n; i++) {
        fwd |= !strcmp(rows[i].phase, "forward");
        bwd |= !strcmp(rows[i].phase, "backward");
    }
    assert_true(fwd && bwd);

    /* stopped: nothing more is recorded */
    clg_profiler_stop(ctx);
    train_step(ctx, profiled);
    size_t n2 = 0;
    clg_profile_row rows2[64];
    REF_OK(ctx, clg_profiler_summary(ctx, rows2, 64, &n2));
    uint64_t total2 = 0;
    for (size_t i = 0; i < n2; i++)
        total2 += rows2[i].launches;
    assert_true(total2 == total);

    /* the trace: a JSON object whose traceEvents hold complete events on both tracks */
    char dir[] = "/tmp/clgrad-profile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/trace.json", dir);
    REF_OK(ctx, clg_profiler_write_trace(ctx, path));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[1 << 20];
    const size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    int host = 0, device = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "traceEvents")) {
        const cJSON *ph = cJSON_GetObjectItem(e, "ph"), *tid = cJSON_GetObjectItem(e, "tid");
        if (!cJSON_IsString(ph) || strcmp(ph->valuestring, "X")) continue;
        assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "name")));
        assert_true(cJSON_GetObjectItem(e, "dur")->valuedouble >= 0);
        host += tid->valueint == 1;
        device += tid->valueint == 2;
    }
    assert_int_equal(host, (int)total);
    assert_true(device > 0 && device <= host);
    cJSON_Delete(root);
    remove(path);
    ref_rm_rf(dir);

    clg_profiler_reset(ctx);
    REF_OK(ctx, clg_profiler_summary(ctx, rows, 64, &n));
    assert_int_equal(n, 0);
    clg_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_needs_timestamps),
        cmocka_unit_test(test_records_by_op_and_phase),
    };
    return cmocka_run_group_tests_name("profile", tests, ref_group_setup, ref_group_teardown);
}

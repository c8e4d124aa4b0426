/* tests/core/context_test.h - helpers shared by tests/core/test_context.c and
 * tests/core/test_program_cache.c: environment variables set and restored, a context made
 * with a given device, cache folder and kernel folder, and a small job proving it works.
 */
#ifndef CLGRAD_TESTS_CORE_CONTEXT_TEST_H
#define CLGRAD_TESTS_CORE_CONTEXT_TEST_H

#include "ref.h"

#include <stdlib.h>
#include <string.h>

/* setenv/unsetenv with the old value kept, so a test leaves the environment as it found it. */
typedef struct saved_env {
    const char *name;
    char *value; /* NULL: was unset */
} saved_env;

static inline saved_env env_set(const char *name, const char *value) {
    saved_env s = {name, NULL};
    const char *old = getenv(name);
    if (old) {
        s.value = malloc(strlen(old) + 1);
        assert_non_null(s.value);
        strcpy(s.value, old);
    }
    if (value)
        assert_int_equal(setenv(name, value, 1), 0);
    else
        assert_int_equal(unsetenv(name), 0);
    return s;
}

static inline void env_restore(saved_env *s) {
    if (s->value)
        setenv(s->name, s->value, 1);
    else
        unsetenv(s->name);
    free(s->value);
    s->value = NULL;
}

static inline clg_context *make_ctx(const char *device, const char *cache_dir, const char *kernel_dir) {
    clg_context_params p = clg_context_default_params();
    p.device = device;
    p.cache_dir = cache_dir;
    p.kernel_dir = kernel_dir;
    clg_context *ctx = NULL;
    char err[2048] = "";
    clg_status st = clg_context_create(&p, &ctx, err, sizeof err);
    if (st != CLG_OK)
        fail_msg("clg_context_create(device %s) -> %s: %s", device ? device : "NULL", clg_status_name(st),
                 err);
    assert_non_null(ctx);
    return ctx;
}

/* A small job that needs a kernel (fill) and a round trip: proves a context still works. */
static inline void check_ctx_works(clg_context *ctx) {
    const int shape[2] = {3, 5};
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &t));
    REF_OK(ctx, clg_tensor_fill(t, 2.5));
    float h[15];
    REF_OK(ctx, clg_tensor_to_host(t, h, sizeof h));
    for (int i = 0; i < 15; i++)
        assert_true(h[i] == 2.5f);
    clg_tensor_free(t);
}

#endif

/* tests/core/test_host.c - host helpers and launch limits of the core floor: clg__read_file
 * refuses FIFOs and devices without blocking; clg__write_file_atomic replaces a file whole and
 * never writes through a symlink at its temp name; clg__remove_stale_temps removes the temp
 * files of writers that died and keeps those of live ones; clg__launch refuses a launch whose
 * rounded size passes the kernels' int index; random tensors refuse nonsense parameters.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ref.h"
#include "core/core.h"

static char dir[64];

static void path_in(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", dir, name); }

static void test_read_file_refuses_special_files(void **state) {
    (void)state;
    char fifo[128], err[256];
    path_in(fifo, sizeof fifo, "fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    unsigned char *data = (unsigned char *)1;
    size_t size = 9;
    assert_int_equal(clg__read_file(fifo, 1 << 20, "test", &data, &size, err, sizeof err), CLG_IO_ERROR);
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(data);
    assert_int_equal(clg__read_file("/dev/zero", 1 << 20, "test", &data, &size, err, sizeof err), CLG_IO_ERROR);
    assert_int_equal(clg__read_file(dir, 1 << 20, "test", &data, &size, err, sizeof err), CLG_IO_ERROR);
    unlink(fifo);
}

static void test_write_file_atomic(void **state) {
    (void)state;
    char path[128], tmp[160], target[128], err[256];
    path_in(path, sizeof path, "out.json");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(clg__write_file_atomic(path, "first", 5), CLG_OK);
    assert_int_equal(clg__write_file_atomic(path, "second!", 7), CLG_OK);
    unsigned char *data;
    size_t size;
    assert_int_equal(clg__read_file(path, 100, "test", &data, &size, err, sizeof err), CLG_OK);
    assert_int_equal(size, 7);
    assert_memory_equal(data, "second!", 7);
    free(data);
    assert_int_equal(access(tmp, F_OK), -1); /* nothing left behind */
    /* a symlink planted at the temp name is not followed */
    path_in(target, sizeof target, "victim");
    FILE *f = fopen(target, "w");
    assert_non_null(f);
    fputs("keep", f);
    fclose(f);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(clg__write_file_atomic(path, "third", 5), CLG_IO_ERROR);
    assert_int_equal(clg__read_file(target, 100, "test", &data, &size, err, sizeof err), CLG_OK);
    assert_memory_equal(data, "keep", 4);
    free(data);
    unlink(tmp);
    unlink(target);
    unlink(path);
}

static void touch(const char *p) {
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
}

static void test_remove_stale_temps(void **state) {
    (void)state;
    pid_t child = fork();
    if (child == 0) _exit(0);
    assert_true(child > 0);
    assert_int_equal(waitpid(child, NULL, 0), child); /* its pid now names no process */
    char path[128], dead[192], mine[192], other[192];
    path_in(path, sizeof path, "cache.bin");
    snprintf(dead, sizeof dead, "%s.tmp.%ld", path, (long)child);
    snprintf(mine, sizeof mine, "%s.tmp.%ld", path, (long)getpid());
    snprintf(other, sizeof other, "%s.tmp.%ld", path, (long)getppid()); /* alive */
    touch(dead);
    touch(mine);
    touch(other);
    clg__remove_stale_temps(path);
    assert_int_equal(access(dead, F_OK), -1);
    assert_int_equal(access(mine, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    unlink(mine);
    unlink(other);
}

static void test_launch_past_int_index(void **state) {
    clg_context *ctx = *state;
    cl_kernel k;
    REF_OK(ctx, clg__kernel_dt(ctx, "tensor/tensor", "axpby", CLG_F32, NULL, &k));
    const size_t global = (size_t)INT_MAX, local = 64;
    const clg_karg none[1] = {{0, NULL}};
    assert_int_equal(clg__launch(ctx, k, 1, &global, &local, none, 0, "huge"), CLG_UNSUPPORTED);
    assert_non_null(strstr(clg_context_errmsg(ctx), "past the kernels' int index"));
    REF_OK(ctx, clg_context_finish(ctx)); /* nothing was enqueued; the queue is fine */
}

static void test_random_parameters(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {4};
    clg_tensor *t = NULL;
    assert_int_equal(clg_tensor_rand_uniform(ctx, CLG_F32, 1, shape, 1, 0, 1, &t), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_tensor_rand_uniform(ctx, CLG_F32, 1, shape, NAN, 1, 1, &t), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_tensor_rand_uniform(ctx, CLG_F32, 1, shape, 0, INFINITY, 1, &t), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_tensor_rand_normal(ctx, CLG_F32, 1, shape, 0, -1, 1, &t), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "std"));
    assert_int_equal(clg_tensor_rand_normal(ctx, CLG_F32, 1, shape, NAN, 1, 1, &t), CLG_INVALID_ARGUMENT);
    assert_null(t);
    REF_OK(ctx, clg_tensor_rand_normal(ctx, CLG_F32, 1, shape, 0, 0, 1, &t)); /* std 0: all the mean */
    clg_tensor_free(t);
}

static int setup(void **state) {
    snprintf(dir, sizeof dir, "/tmp/clgrad-host-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    return ref_group_setup(state);
}

static int teardown(void **state) {
    ref_rm_rf(dir);
    return ref_group_teardown(state);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_file_refuses_special_files),
        cmocka_unit_test(test_write_file_atomic),
        cmocka_unit_test(test_remove_stale_temps),
        cmocka_unit_test(test_launch_past_int_index),
        cmocka_unit_test(test_random_parameters),
    };
    return cmocka_run_group_tests_name("host", tests, setup, teardown);
}

/* tests/core/test_threads.c - contexts created from several threads at once in a process that
 * has not touched OpenCL yet (the first device enumeration, src/core/device.c, runs under a
 * once-guard: drivers initialise lazily and racing threads crashed or saw "devices: none").
 * Each round is a fresh process (this program re-run with --child), so every round is a cold
 * start; rounds repeat because the race did not show every time.
 */
#include "ref.h"

#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

#define THREADS 4
#define ROUNDS 6

static pthread_barrier_t start_line;

typedef struct worker {
    int id;
    clg_status status;
    char err[1024];
} worker;

/* Create a context (the process's first OpenCL call for all threads at once), fill a tensor
 * and read it back, free. */
static void *work(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(&start_line);
    clg_context_params p = clg_context_default_params();
    p.cache_dir = "off";
    clg_context *ctx = NULL;
    w->status = clg_context_create(&p, &ctx, w->err, sizeof w->err);
    if (w->status != CLG_OK) return NULL;
    const int shape[1] = {257};
    clg_tensor *t = NULL;
    float h[257];
    w->status = clg_tensor_zeros(ctx, CLG_F32, 1, shape, &t);
    if (w->status == CLG_OK) w->status = clg_tensor_fill(t, (double)w->id);
    if (w->status == CLG_OK) w->status = clg_tensor_to_host(t, h, sizeof h);
    if (w->status != CLG_OK) snprintf(w->err, sizeof w->err, "%s", clg_context_errmsg(ctx));
    for (int i = 0; w->status == CLG_OK && i < 257; i++)
        if (h[i] != (float)w->id) {
            w->status = CLG_INVALID_ARGUMENT;
            snprintf(w->err, sizeof w->err, "element %d is %g, want %d", i, h[i], w->id);
        }
    clg_tensor_free(t);
    clg_context_free(ctx);
    return NULL;
}

static int child(void) {
    worker w[THREADS];
    pthread_t th[THREADS];
    if (pthread_barrier_init(&start_line, NULL, THREADS) != 0) return 2;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.id = i + 1, .status = CLG_OK};
        if (pthread_create(&th[i], NULL, work, &w[i]) != 0) return 2;
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].status != CLG_OK) {
            fprintf(stderr, "thread %d: %s: %s\n", i, clg_status_name(w[i].status), w[i].err);
            bad = 1;
        }
    }
    pthread_barrier_destroy(&start_line);
    return bad;
}

static const char *self_path;

static void test_first_contexts_from_threads(void **state) {
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        char *args[] = {(char *)self_path, "--child", NULL};
        pid_t pid;
        int rc = posix_spawn(&pid, self_path, NULL, NULL, args, environ);
        if (rc != 0) fail_msg("posix_spawn(%s): %s", self_path, strerror(rc));
        int wst = 0;
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        if (WIFSIGNALED(wst))
            fail_msg("round %d: a fresh process with %d threads creating contexts died of signal %d", round, THREADS,
                     WTERMSIG(wst));
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
            fail_msg("round %d: a fresh process with %d threads creating contexts failed (exit %d; its stderr says why)",
                     round, THREADS, WEXITSTATUS(wst));
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--child")) return child();
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_contexts_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

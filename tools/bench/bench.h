/* tools/bench/bench.h - what the clgrad-bench subcommands share: the timing helpers of
 * main.c and one entry point per subcommand (gemm.c, conv.c, train.c), listed in main.c's
 * table. Each entry gets argv[0] = its own name.
 */
#ifndef CLGRAD_TOOLS_BENCH_H
#define CLGRAD_TOOLS_BENCH_H

/* Monotonic clock, seconds. */
double bench_now(void);
void bench_pause_ms(long ms);
/* Sorts v (n > 0) and returns its median. */
double bench_median(double *v, int n);
int bench_cmp_double(const void *a, const void *b);

/* PyTorch at its best on these VMs, a prefix for the shell command that runs
 * tools/torch_baseline.py: OpenBLAS picks its own (AVX-512) kernels instead of the image's AVX2
 * override; glibc keeps big buffers instead of returning them every step (a first touch costs
 * ~11 us per 4 KiB page here); OpenBLAS single-threaded under torch's 2 threads, so the two
 * thread pools do not fight over the cores. The other run uses no prefix: PyTorch as installed. */
#define BENCH_TORCH_BEST_ENV                                                                                 \
    "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE MALLOC_MMAP_THRESHOLD_=4000000000 "                        \
    "MALLOC_TRIM_THRESHOLD_=10000000000 OPENBLAS_NUM_THREADS=1 "

struct cJSON;
/* Runs `ENV_PREFIX /usr/bin/python3 'SCRIPT' --json ARGS` (stderr dropped) and returns its
 * output parsed (free with cJSON_Delete), or NULL when it could not run or printed no JSON
 * (no torch, a bad script): the callers then show PyTorch as not available. */
struct cJSON *bench_torch_json(const char *script, const char *env_prefix, const char *args);

int bench_gemm(int argc, char **argv);
int bench_conv(int argc, char **argv);
int bench_train(int argc, char **argv);
int bench_launch(int argc, char **argv);

#endif

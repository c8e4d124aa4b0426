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

int bench_gemm(int argc, char **argv);
int bench_conv(int argc, char **argv);
int bench_train(int argc, char **argv);

#endif

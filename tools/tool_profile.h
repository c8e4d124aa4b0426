/* tools/tool_profile.h - the profile table the tools print (clgrad-train --profile,
 * clgrad-bench train --profile): per op and phase, per step, device time first, and the Chrome
 * trace at path. Public API only. Header only.
 */
#ifndef CLGRAD_TOOL_PROFILE_H
#define CLGRAD_TOOL_PROFILE_H

#include <stdio.h>

#include <clgrad.h>

/* What the profiler recorded over `steps` steps (nothing printed for none). */
static inline void tool_print_profile(clg_context *ctx, const char *tool, const char *path, long long steps) {
    clg_profile_row rows[256];
    size_t n = 0;
    clg_status st = clg_profiler_summary(ctx, rows, 256, &n);
    if (st != CLG_OK) {
        fprintf(stderr, "%s: profile: %s\n", tool, clg_context_errmsg(ctx));
        return;
    }
    if (steps < 1) return;
    if (n > 256) n = 256;
    const double k = 1.0 / (double)steps;
    double dev = 0, enq = 0, gap = 0, launches = 0;
    for (size_t i = 0; i < n; i++)
        dev += rows[i].device_ms, enq += rows[i].enqueue_ms, gap += rows[i].host_gap_ms, launches += (double)rows[i].launches;
    printf("profile, per step over %lld steps: %.1f launches, device %.2f ms, enqueue %.2f ms, host between launches "
           "%.2f ms (waits included)\n%-28s %-9s %9s %10s %7s %10s %10s\n",
           steps, launches * k, dev * k, enq * k, gap * k, "op", "phase", "launches", "device ms", "share", "enqueue ms",
           "gap ms");
    for (size_t i = 0; i < n; i++)
        printf("%-28s %-9s %9.1f %10.3f %6.1f%% %10.3f %10.3f\n", rows[i].name, rows[i].phase,
               (double)rows[i].launches * k, rows[i].device_ms * k, dev > 0 ? 100 * rows[i].device_ms / dev : 0,
               rows[i].enqueue_ms * k, rows[i].host_gap_ms * k);
    if (clg_profiler_write_trace(ctx, path) == CLG_OK)
        printf("profile trace: %s (Perfetto, chrome://tracing)\n", path);
    else
        fprintf(stderr, "%s: %s: %s\n", tool, path, clg_context_errmsg(ctx));
}

#endif

/* tools/tool_clock.h - the one clock the command-line tools share (they use the public API
 * only, so not the library's own): seconds on the monotonic clock. Header only.
 */
#ifndef CLGRAD_TOOLS_TOOL_CLOCK_H
#define CLGRAD_TOOLS_TOOL_CLOCK_H

#include <time.h>

static inline double tool_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif

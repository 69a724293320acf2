/* bench_util.h: what every engine benchmark needs: a monotonic clock and a
 * small, seedable generator (xorshift64), so that each run's points are the
 * same. A bench that wants other points defines BENCH_SEED before the
 * include. Header-only: each bench is one file. */
#ifndef TPS_BENCH_UTIL_H
#define TPS_BENCH_UTIL_H

#include <time.h>

#ifndef BENCH_SEED
#define BENCH_SEED 0x2545F4914F6CDD1DULL
#endif

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [0, 1), 53 random bits. */
static unsigned long long bench_state = BENCH_SEED;
static inline double uniform(void)
{
    bench_state ^= bench_state << 13;
    bench_state ^= bench_state >> 7;
    bench_state ^= bench_state << 17;
    return (double)(bench_state >> 11) / 9007199254740992.0;
}

#endif

/* testdata.h: what the C tests draw their data from: a reproducible random
 * stream (xorshift64: no libc rand() state shared with the code under test)
 * and Franke's test function, the classic smooth field for scattered-data
 * interpolation. Each test file seeds its own stream. */
#ifndef TPS_TEST_DATA_H
#define TPS_TEST_DATA_H

#include <math.h>

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static inline double franke(double x, double y)
{
    return 0.75 * exp(-(pow(9 * x - 2, 2) + pow(9 * y - 2, 2)) / 4) +
           0.75 * exp(-pow(9 * x + 1, 2) / 49 - (9 * y + 1) / 10) +
           0.5 * exp(-(pow(9 * x - 7, 2) + pow(9 * y - 3, 2)) / 4) -
           0.2 * exp(-pow(9 * x - 4, 2) - pow(9 * y - 7, 2));
}

#endif

/* check.h: the C tests' one assertion: count, and on failure say where and
 * why, then go on (a test reports every failure, not just the first). Every
 * return value is checked; a NaN where a number is expected is a failure. */
#ifndef TPS_TEST_CHECK_H
#define TPS_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

static int failures = 0, checks = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        ++checks;                                                           \
        if (!(cond)) {                                                      \
            ++failures;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

/* The larger of a and b, NaN when either is: an error measure that meets a
 * NaN stays NaN and fails its bound (CHECK(err <= bound) is false for NaN),
 * where fmax would drop the NaN and let the comparison pass. */
static inline double max_nan(double a, double b)
{
    return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
}

#endif

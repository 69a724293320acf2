/* log_table.cuh: the FP64 kernels' log (gpu/global.cu, gpu/local.cu). */
#ifndef TPS_GPU_LOG_TABLE_CUH
#define TPS_GPU_LOG_TABLE_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

namespace tps_gpu {

/* CUDA's double log() is a ~28-instruction routine and dominated the FP64
 * kernel (2.9e11 pairs/s on an H100, 1.1x a naive kernel). This one, after
 * the table method of ARM's optimized-routines log: x = 2^k z with z in
 * [0.6875, 1.375), the top 7 bits of z's mantissa pick c_i (the middle of
 * one of 128 subintervals), r = z / c_i - 1 = fma(z, 1/c_i, -1) with
 * |r| < 2^-8, and
 *     log x = k ln2 + log c_i + log1p(r),  log1p(r) = r - r^2/2 + ... - r^6/6
 * (the first omitted term is below 2.1e-18). About 11 FP64 operations and
 * one 16-byte shared-memory load. Its absolute error is ~1e-16; the DOUBLE
 * path promises 1e-9 x value range of the CPU path, tested. */
constexpr int LOG_TABLE_BITS = 7;
constexpr int LOG_TABLE_SIZE = 1 << LOG_TABLE_BITS;
constexpr unsigned long long LOG_OFF = 0x3fe6000000000000ULL;

struct LogTable {
    double2 entry[LOG_TABLE_SIZE]; /* x: 1/c_i, y: -log(1/c_i) */
};

inline LogTable make_log_table()
{
    LogTable t;
    for (int i = 0; i < LOG_TABLE_SIZE; ++i) {
        unsigned long long lo = LOG_OFF + ((unsigned long long)i << (52 - LOG_TABLE_BITS));
        unsigned long long hi = lo + (1ULL << (52 - LOG_TABLE_BITS));
        double zlo, zhi;
        memcpy(&zlo, &lo, 8);
        memcpy(&zhi, &hi, 8);
        const double invc = 2.0 / (zlo + zhi);
        t.entry[i].x = invc;
        t.entry[i].y = (double)(-logl((long double)invc));
    }
    return t;
}

__device__ __forceinline__ double table_log(double x, const double2 *__restrict__ table)
{
    const long long ix = __double_as_longlong(x);
    const long long tmp = ix - (long long)LOG_OFF;
    const int i = int((tmp >> (52 - LOG_TABLE_BITS)) & (LOG_TABLE_SIZE - 1));
    const int k = int(tmp >> 52);
    const double z = __longlong_as_double(ix - (tmp & (0xfffLL << 52)));
    const double2 t = table[i];
    const double r = fma(z, t.x, -1.0);
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double kd = double(k);
    const double r2 = r * r;
    double p = -1.0 / 6.0;
    p = fma(r, p, 1.0 / 5.0);
    p = fma(r, p, -1.0 / 4.0);
    p = fma(r, p, 1.0 / 3.0);
    p = fma(r, p, -0.5);
    return fma(kd, ln2_hi, t.y) + (fma(r2, p, r) + kd * ln2_lo);
}

} // namespace tps_gpu

#endif

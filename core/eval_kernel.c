/* eval_kernel.c: sum_i w_i r^2 log(r^2) for tiles of pixels, in double.
 *
 * Compiled three times (generic SSE2, AVX2+FMA, AVX-512) with
 * TPS_KERNEL_ISA naming the variant; evaluate.c picks one at run time.
 * Written with GCC/Clang vector extensions so the same source serves every
 * width, and with a hand-made log: libm's scalar log would stop the loop
 * from vectorising, and glibc's vector log (libmvec) is only accurate to
 * 4 ulp. The log follows fdlibm's e_log.c: reduce to z in [sqrt(2)/2,
 * sqrt(2)), s = (z-1)/(z+1), log z = 2 atanh s by a polynomial in s^2.
 * r^2 log r^2 comes out within 1.8 ulp (autotest/c/test_engine.c measures
 * it against logl). The loop is bound by how many vector operations issue,
 * so every operation counts: see docs/design.md. */
#include "eval.h"

#include <stdint.h>
#include <string.h>

#define CONCAT2(a, b) a##_##b
#define CONCAT(a, b) CONCAT2(a, b)
#define KERNEL_NAME CONCAT(tps_kernel, TPS_KERNEL_ISA)

#if defined(__AVX512F__)
#define VLEN 8
#elif defined(__AVX2__)
#define VLEN 4
#else
#define VLEN 2
#endif
/* Each tile is TILE_VECS vectors: several independent dependency chains
 * hide the latency of the division and the polynomial. */
#ifndef TILE_VECS
#define TILE_VECS (TPS_KERNEL_TILE / VLEN)
#endif
#define TILE_PIXELS (TILE_VECS * VLEN)
_Static_assert(TPS_KERNEL_TILE % TILE_PIXELS == 0, "callers pad to TPS_KERNEL_TILE");

typedef double vd __attribute__((vector_size(VLEN * 8)));
typedef uint64_t vu __attribute__((vector_size(VLEN * 8)));
typedef int64_t vi __attribute__((vector_size(VLEN * 8)));

static inline vd splat(double x)
{
    vd r;
    for (int k = 0; k < VLEN; ++k)
        r[k] = x;
    return r;
}

static inline vu splatu(uint64_t x)
{
    vu r;
    for (int k = 0; k < VLEN; ++k)
        r[k] = x;
    return r;
}

static inline vd load(const double *p)
{
    vd r;
    memcpy(&r, p, sizeof r);
    return r;
}

static inline void store(double *p, vd x)
{
    memcpy(p, &x, sizeof x);
}

/* Added to every r^2 (fused into the FMA that forms it, so it costs
 * nothing): a pixel exactly on a data point then gives 1e-300 log 1e-300
 * ~ -7e-298, i.e. 0, instead of 0 * -inf, and the bit tricks of the log
 * only ever see normal numbers. For any r^2 above ~1e-284 it is below half
 * an ulp and changes nothing. */
#define TINY 1e-300

#if defined(__AVX512F__)
#include <immintrin.h>

/* x = 2^k z with z in [sqrt(2)/2, sqrt(2)] (the upper end only by rounding,
 * which the polynomial tolerates): two AVX-512 instructions. */
static inline void reduce(vd x, vd *k, vd *z)
{
    *k = (vd)_mm512_getexp_pd((__m512d)(x * 1.4142135623730951));
    *z = (vd)_mm512_scalef_pd((__m512d)x, (__m512d)(-*k));
}

#else
/* x = 2^k z with z in [sqrt(2)/2, sqrt(2)), by integer operations on the
 * bits (AVX2 has no getexp, and no 64-bit integer to double conversion). */
static inline void reduce(vd x, vd *k, vd *z)
{
    const uint64_t sqrt_half_bits = 0x3fe6a09e667f3bcdULL;
    const uint64_t one_bits = 0x3ff0000000000000ULL;
    vu ix = (vu)x;
    vu shifted = ix + splatu(one_bits - sqrt_half_bits);
    vu biased_k = shifted >> 52;
    *k = (vd)(biased_k | splatu(0x4330000000000000ULL)) - splat(4503599627370496.0 + 1023.0);
    *z = (vd)(ix - ((shifted & splatu(0xfff0000000000000ULL)) - splatu(one_bits)));
}

#endif

/* r2 * log(r2) for normal r2 > 0. */
static inline vd r2_log_r2(vd x)
{
    vd k, z;
    reduce(x, &k, &z);
    /* fdlibm's e_log.c: log z = f - s (f - R), f = z - 1, s = f / (2 + f),
     * R = s^2 P(s^2) its minimax polynomial (error < 2^-58.45), |s| <=
     * 0.1716, and ln 2 split in two so that k ln2 is exact. fdlibm switches
     * to a longer form for 1 + f in (1.38, 1.42); measured over 10^6 points
     * there, the short form is 1.72 ulp at worst (r^2 log r^2, the long one
     * 1.63) and 10-15% faster. A shorter s (2 + R) form was 2.9 ulp off. */
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                 Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                 Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    vd f = z - 1.0;
    vd s = f / (z + 1.0);
    vd s2 = s * s;
    vd p = Lg6 + s2 * Lg7;
    p = Lg5 + s2 * p;
    p = Lg4 + s2 * p;
    p = Lg3 + s2 * p;
    p = Lg2 + s2 * p;
    p = Lg1 + s2 * p;
    vd R = s2 * p;
    vd log_x = k * ln2_hi - ((s * (f - R) - k * ln2_lo) - f);
    return x * log_x;
}

/* r^2 (+ TINY) from a tile of targets to point (ui, vi). On rows of a
 * north-up grid every target of a tile has the same v: then dy^2 is one
 * scalar per point and the vector work drops by two operations. */
static inline __attribute__((always_inline)) vd distance2(vd pu, vd pv, double ui, double vi,
                                                          double dy2, int same_v)
{
    vd dx = pu - ui;
    if (same_v)
        return dx * dx + dy2;
    vd dy = pv - vi;
    return dx * dx + (dy * dy + TINY);
}

/* One band: the accumulators of a tile stay in registers. */
static inline __attribute__((always_inline)) void tile_one_band(const tps_kernel_job *job,
                                                                size_t k0, size_t i0, size_t i1,
                                                                int same_v)
{
    vd pu[TILE_VECS], pv[TILE_VECS], acc[TILE_VECS];
    for (int t = 0; t < TILE_VECS; ++t) {
        pu[t] = load(job->pu + k0 + (size_t)t * VLEN);
        pv[t] = load(job->pv + k0 + (size_t)t * VLEN);
        acc[t] = load(job->acc + k0 + (size_t)t * VLEN);
    }
    const double *su = job->su, *sv = job->sv, *w = job->w[0];
    const double v0 = job->pv[k0];
    for (size_t i = i0; i < i1; ++i) {
        const double dv = v0 - sv[i], dy2 = dv * dv + TINY;
        const vd wi = splat(w[i]);
        for (int t = 0; t < TILE_VECS; ++t)
            acc[t] += wi * r2_log_r2(distance2(pu[t], pv[t], su[i], sv[i], dy2, same_v));
    }
    for (int t = 0; t < TILE_VECS; ++t)
        store(job->acc + k0 + (size_t)t * VLEN, acc[t]);
}

/* Several bands: the distance term is computed once per pair and shared. */
static inline __attribute__((always_inline)) void tile_many_bands(const tps_kernel_job *job,
                                                                  size_t k0, size_t i0, size_t i1,
                                                                  int same_v)
{
    vd pu[TILE_VECS], pv[TILE_VECS];
    for (int t = 0; t < TILE_VECS; ++t) {
        pu[t] = load(job->pu + k0 + (size_t)t * VLEN);
        pv[t] = load(job->pv + k0 + (size_t)t * VLEN);
    }
    const double *su = job->su, *sv = job->sv;
    const size_t nb = job->n_bands, m = job->m;
    const double v0 = job->pv[k0];
    for (size_t i = i0; i < i1; ++i) {
        const double dv = v0 - sv[i], dy2 = dv * dv + TINY;
        vd phi[TILE_VECS];
        for (int t = 0; t < TILE_VECS; ++t)
            phi[t] = r2_log_r2(distance2(pu[t], pv[t], su[i], sv[i], dy2, same_v));
        for (size_t b = 0; b < nb; ++b) {
            const vd wi = splat(job->w[b][i]);
            double *acc = job->acc + b * m + k0;
            for (int t = 0; t < TILE_VECS; ++t)
                store(acc + (size_t)t * VLEN, load(acc + (size_t)t * VLEN) + wi * phi[t]);
        }
    }
}

static void tiles(const tps_kernel_job *job, size_t i0, size_t i1, int same_v)
{
    for (size_t k0 = 0; k0 < job->m; k0 += TILE_PIXELS) {
        if (job->n_bands == 1)
            tile_one_band(job, k0, i0, i1, same_v);
        else
            tile_many_bands(job, k0, i0, i1, same_v);
    }
}

void KERNEL_NAME(const tps_kernel_job *job)
{
    memset(job->acc, 0, sizeof(double) * job->m * job->n_bands);
    for (size_t i0 = 0; i0 < job->n_src; i0 += TPS_KERNEL_POINT_BLOCK) {
        size_t i1 = i0 + TPS_KERNEL_POINT_BLOCK < job->n_src ? i0 + TPS_KERNEL_POINT_BLOCK : job->n_src;
        if (job->same_v)
            tiles(job, i0, i1, 1);
        else
            tiles(job, i0, i1, 0);
    }
}

/* fp64_sum.cuh: PRECISION=DOUBLE's sums for a thread's PIX pixels, and its
 * value: one definition for the DOUBLE kernel (gpu/global.cu) and MIXED's
 * fallback to DOUBLE (gpu/mixed.cu), so that a block MIXED recomputes has
 * DOUBLE's bytes whatever the pixels' mapping to threads. */
#ifndef TPS_GPU_FP64_SUM_CUH
#define TPS_GPU_FP64_SUM_CUH

#include "common.cuh"
#include "log_table.cuh"

namespace tps_gpu {

/* acc[b][p] = sum_i w_b,i r^2 log r^2 over the n_pad points uv (padding
 * has weight 0), in point order, tile by tile through the block's shared
 * arrays s_u, s_v, s_w (the whole block must call it: it synchronises).
 * s_log: the log table, already in shared memory. SAME_V: every pixel of
 * the thread has the same v, so dy^2 is computed once per point. */
template <int NB, bool SAME_V>
__device__ __forceinline__ void fp64_sums(const double2 *__restrict__ uv,
                                          const double *__restrict__ w, size_t w_stride,
                                          size_t n_pad, const double2 *s_log, double *s_u,
                                          double *s_v, double (*s_w)[TILE], const double pu[PIX],
                                          const double pv[PIX], double acc[NB][PIX])
{
    for (int b = 0; b < NB; ++b)
        for (int p = 0; p < PIX; ++p)
            acc[b][p] = 0.0;
    for (size_t t0 = 0; t0 < n_pad; t0 += TILE) {
        __syncthreads();
        for (int k = threadIdx.x; k < TILE; k += THREADS) {
            const double2 q = uv[t0 + k];
            s_u[k] = q.x;
            s_v[k] = q.y;
            for (int b = 0; b < NB; ++b)
                s_w[b][k] = w[b * w_stride + t0 + k];
        }
        __syncthreads();
#pragma unroll 2
        for (int k = 0; k < TILE; ++k) {
            const double qu = s_u[k], qv = s_v[k];
            const double dy0 = pv[0] - qv, dy0_2 = fma(dy0, dy0, 1e-300);
            for (int p = 0; p < PIX; ++p) {
                const double dx = pu[p] - qu, dy = pv[p] - qv;
                /* + 1e-300: a pixel on a point gives ~0 instead of 0 * -inf. */
                const double r2 = fma(dx, dx, SAME_V ? dy0_2 : fma(dy, dy, 1e-300));
                const double phi = r2 * table_log(r2, s_log);
                for (int b = 0; b < NB; ++b)
                    acc[b][p] = fma(s_w[b][k], phi, acc[b][p]);
            }
        }
    }
}

/* A pixel's value from its kernel sum and the band's affine part. */
__device__ __forceinline__ double pixel_value(double sum, const double affine[3], double u,
                                              double v)
{
    return sum + affine[0] + affine[1] * u + affine[2] * v;
}

} // namespace tps_gpu

#endif

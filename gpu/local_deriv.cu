/* local_deriv.cu: the derivatives of a LOCAL model on the GPU. */
#include "local.cuh"
#include "log_table.cuh"

#include <math_constants.h>

using namespace tps_gpu;

namespace {

/* Derivatives of a local model's band a.first_band (core/local.c,
 * run_local_deriv_chunk, has the formulas): per pixel, over its patches,
 * S = sum w_p, N = sum w_p f_p and their gradients and laplacians, from the
 * patch splines' analytic derivatives and the bumps' (0 along an axis on
 * which the pixel lies outside the points' box, where the weights are
 * taken clamped); planes 0, 1, 2 of o receive df/du, df/dv and lap f in the
 * model's scaled units (NaN at a data point of nonzero weight for lap f, and
 * where S = 0). FP64, one band per pass. */
__device__ __forceinline__ void bump3(double t, double b[3])
{
    const double s = 1.0 - t * t;
    if (s > 0.0) {
        b[0] = s * s * s;
        b[1] = -6.0 * t * s * s;
        b[2] = 6.0 * s * (5.0 * t * t - 1.0);
    } else {
        b[0] = b[1] = b[2] = 0.0;
    }
}

__global__ void __launch_bounds__(THREADS) evaluate_local_deriv(LocalArgs a, GridArgs g, OutArgs o)
{
    __shared__ double s_u[TILE], s_v[TILE], s_w[TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    for (int k = threadIdx.x; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = a.log_table[k];
    const int col = blockIdx.x * LOCAL_TW + int(threadIdx.x) % LOCAL_TW;
    const int row_base = blockIdx.y * LOCAL_TH + int(threadIdx.x) / LOCAL_TW * PIX;
    double pu[PIX], pv[PIX], qu[PIX], qv[PIX];
    double S[PIX], Su[PIX], Sv[PIX], Sl[PIX], N[PIX], Nu[PIX], Nv[PIX], Nl[PIX];
    bool free_u[PIX], free_v[PIX];
    local_pixels(a, g, col, row_base, pu, pv, qu, qv);
    for (int p = 0; p < PIX; ++p) {
        free_u[p] = pu[p] >= a.bu0 && pu[p] <= a.bu1;
        free_v[p] = pv[p] >= a.bv0 && pv[p] <= a.bv1;
        S[p] = Su[p] = Sv[p] = Sl[p] = N[p] = Nu[p] = Nv[p] = Nl[p] = 0.0;
    }
    const size_t tile = size_t(a.tile_row0 + int(blockIdx.y)) * size_t(a.tiles_x) + blockIdx.x;
    for (unsigned e = a.tile_start[tile]; e < a.tile_start[tile + 1]; ++e) {
        const LocalPatch pt = a.patches[a.tile_patch[e]];
        double w[PIX], wu[PIX], wv[PIX], wl[PIX], lu[PIX], lv[PIX];
        int any = 0;
        for (int p = 0; p < PIX; ++p) {
            double bu[3], bv[3];
            bump3((qu[p] - pt.cx) / pt.hx, bu);
            bump3((qv[p] - pt.cy) / pt.hy, bv);
            w[p] = bu[0] * bv[0];
            wu[p] = free_u[p] ? bu[1] / pt.hx * bv[0] : 0.0;
            wv[p] = free_v[p] ? bu[0] * bv[1] / pt.hy : 0.0;
            wl[p] = (free_u[p] ? bu[2] / (pt.hx * pt.hx) * bv[0] : 0.0) +
                    (free_v[p] ? bu[0] * bv[2] / (pt.hy * pt.hy) : 0.0);
            any |= w[p] > 0.0;
            lu[p] = (pu[p] - pt.pcx) / pt.ps;
            lv[p] = (pv[p] - pt.pcy) / pt.ps;
        }
        if (!__syncthreads_or(any))
            continue;
        double val[PIX], gu[PIX], gv[PIX], lap[PIX];
        for (int p = 0; p < PIX; ++p)
            val[p] = gu[p] = gv[p] = lap[p] = 0.0;
        for (unsigned long long t0 = 0; t0 < pt.n; t0 += TILE) {
            __syncthreads();
            for (int k = threadIdx.x; k < TILE; k += THREADS) {
                const bool in = t0 + k < pt.n;
                const double2 q = in ? a.uv[pt.offset + t0 + k] : make_double2(0.0, 0.0);
                s_u[k] = q.x;
                s_v[k] = q.y;
                s_w[k] = in ? a.w[size_t(a.first_band) * a.w_stride + pt.offset + t0 + k] : 0.0;
            }
            __syncthreads();
            const int count = pt.n - t0 < TILE ? int(pt.n - t0) : TILE;
            for (int k = 0; k < count; ++k) {
                const double h = s_w[k];
                if (h == 0.0) /* a point missing in this band */
                    continue;
                for (int p = 0; p < PIX; ++p) {
                    const double du = lu[p] - s_u[k], dv = lv[p] - s_v[k];
                    const double sq = du * du + dv * dv;
                    if (sq > 0.0) {
                        const double log_s = table_log(sq, s_log);
                        const double gk = 2.0 * h * (log_s + 1.0);
                        gu[p] += gk * du;
                        gv[p] += gk * dv;
                        lap[p] += 4.0 * h * log_s;
                        val[p] += h * sq * log_s;
                    } else {
                        lap[p] = CUDART_NAN;
                    }
                }
            }
        }
        const double *af = a.affine + (size_t(a.tile_patch[e]) * a.n_model_bands + a.first_band) * 3;
        const double inv = 1.0 / pt.ps;
        for (int p = 0; p < PIX; ++p) {
            if (!(w[p] > 0.0))
                continue;
            const double f = val[p] + af[0] + af[1] * lu[p] + af[2] * lv[p];
            const double fu = (gu[p] + af[1]) * inv, fv = (gv[p] + af[2]) * inv;
            const double fl = lap[p] * inv * inv;
            S[p] += w[p];
            Su[p] += wu[p];
            Sv[p] += wv[p];
            Sl[p] += wl[p];
            N[p] += w[p] * f;
            Nu[p] += wu[p] * f + w[p] * fu;
            Nv[p] += wv[p] * f + w[p] * fv;
            Nl[p] += wl[p] * f + 2.0 * (wu[p] * fu + wv[p] * fv) + w[p] * fl;
        }
    }
    if (col >= g.ncols)
        return;
    for (int p = 0; p < PIX; ++p) {
        if (row_base + p >= a.rows)
            break;
        const size_t index = size_t(row_base + p) * size_t(g.ncols) + size_t(col);
        double out[3] = {CUDART_NAN, CUDART_NAN, CUDART_NAN};
        if (S[p] > 0.0) {
            const double f = N[p] / S[p];
            out[0] = (Nu[p] - f * Su[p]) / S[p];
            out[1] = (Nv[p] - f * Sv[p]) / S[p];
            out[2] = (Nl[p] - 2.0 * (out[0] * Su[p] + out[1] * Sv[p]) - f * Sl[p]) / S[p];
        }
        for (int q = 0; q < 3; ++q)
            store<double>(o.plane[q], index, out[q]);
    }
}

cudaError_t launch_deriv(const LocalArgs &c, const GridArgs &g, const OutArgs &o, int nb,
                         dim3 blocks, cudaStream_t stream)
{
    (void)nb;
    evaluate_local_deriv<<<blocks, THREADS, 0, stream>>>(c, g, o);
    return cudaGetLastError();
}

} // namespace

extern "C" int tps_gpu_local_deriv_sums(tps_gpu_local *m, const tps_gpu_grid *grid, size_t band,
                                        double *sums, size_t max_bytes, char *err, size_t errlen)
{
    /* Three FP64 planes, given consecutive (fake) band numbers so that the
     * chunk loop launches them as one group; the kernel reads band `band`. */
    const size_t pixels = grid->ncols * grid->nrows;
    tps_output planes[3];
    for (int q = 0; q < 3; ++q)
        planes[q] = tps_output{band + size_t(q), sums + size_t(q) * pixels, TPS_FLOAT64,
                               sizeof(double), ptrdiff_t(sizeof(double) * grid->ncols),
                               TPS_QUANTITY_VALUE};
    return local_run(m, grid, 3, planes, launch_deriv, max_bytes, err, errlen);
}

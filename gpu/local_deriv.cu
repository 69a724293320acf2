/* local_deriv.cu: the sums a LOCAL model's quantities need, on the GPU: the
 * blend's f and its derivatives (core/blend.h has the formulas, and the very
 * functions core/cpu_local_deriv.c runs on the CPU). Per pixel, over its
 * candidate patches (the value kernel's tiles and lists, gpu/local.cu): the
 * patch spline's sums over its points (core/sums.h, with the table log of
 * the value kernels), its bump weight's derivatives (0 along an axis on
 * which the pixel lies outside the points' box, where the weights are taken
 * clamped), both added into the blend's sums S and N; at the end the
 * blend's derivatives in the model's scaled units, affine parts included
 * (NaN at a data point of nonzero weight for the second derivatives, and
 * where S = 0). FP64, one band per pass. */
#include "local.cuh"
#include "log_table.cuh"

using namespace tps_gpu;

namespace {

constexpr int MAX_PLANES = 7; /* all of tps_derivs */

/* NEEDS: the blend's sums computed, a superset of a.needs (the planes
 * written). Two builds: the gradient and the laplacian (the registers of
 * the kernel before second derivatives existed), and everything. */
template <unsigned NEEDS>
__global__ void __launch_bounds__(THREADS)
    evaluate_local_deriv(LocalArgs a, GridArgs g, double *out, size_t stride)
{
    /* What each patch spline gives: tps_blend_spline_needs(NEEDS). */
    constexpr unsigned SPLINE =
        NEEDS | TPS_NEEDS_VALUE |
        ((NEEDS & (TPS_NEEDS_LAPLACIAN | TPS_NEEDS_HESSIAN)) ? unsigned(TPS_NEEDS_GRADIENT) : 0u);
    __shared__ double s_u[TILE], s_v[TILE], s_w[TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    for (int k = threadIdx.x; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = a.log_table[k];
    const int col = blockIdx.x * LOCAL_TW + int(threadIdx.x) % LOCAL_TW;
    const int row_base = blockIdx.y * LOCAL_TH + int(threadIdx.x) / LOCAL_TW * PIX;
    double pu[PIX], pv[PIX], qu[PIX], qv[PIX];
    bool free_u[PIX], free_v[PIX];
    tps_blend blend[PIX];
    local_pixels(a, g, col, row_base, pu, pv, qu, qv);
    for (int p = 0; p < PIX; ++p) {
        free_u[p] = pu[p] >= a.bu0 && pu[p] <= a.bu1;
        free_v[p] = pv[p] >= a.bv0 && pv[p] <= a.bv1;
        tps_blend_zero(&blend[p]);
    }
    const size_t tile = size_t(a.tile_row0 + int(blockIdx.y)) * size_t(a.tiles_x) + blockIdx.x;
    for (unsigned e = a.tile_start[tile]; e < a.tile_start[tile + 1]; ++e) {
        const LocalPatch pt = a.patches[a.tile_patch[e]];
        double lu[PIX], lv[PIX];
        int any = 0;
        for (int p = 0; p < PIX; ++p) {
            any |= tps_bump((qu[p] - pt.cx) / pt.hx) * tps_bump((qv[p] - pt.cy) / pt.hy) > 0.0;
            lu[p] = (pu[p] - pt.pcx) / pt.ps;
            lv[p] = (pv[p] - pt.pcy) / pt.ps;
        }
        if (!__syncthreads_or(any))
            continue;
        tps_derivs spline[PIX];
        for (int p = 0; p < PIX; ++p)
            tps_derivs_zero(&spline[p]);
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
                    if (sq > 0.0)
                        tps_term_add(&spline[p], SPLINE, h, du, dv, sq, table_log(sq, s_log));
                    else
                        tps_term_on_point(&spline[p]);
                }
            }
        }
        const double *af =
            a.affine + (size_t(a.tile_patch[e]) * a.n_model_bands + a.first_band) * 3;
        const double inv = 1.0 / pt.ps;
        for (int p = 0; p < PIX; ++p) {
            tps_derivs w;
            tps_patch_weight(&w, NEEDS, pt.cx, pt.cy, pt.hx, pt.hy, qu[p], qv[p], free_u[p],
                             free_v[p]);
            if (!(w.f > 0.0))
                continue;
            tps_derivs_add_affine(&spline[p], af, lu[p], lv[p]);
            tps_derivs_from_frame(&spline[p], inv);
            tps_blend_add(&blend[p], NEEDS, &w, &spline[p]);
        }
    }
    if (col >= g.ncols)
        return;
    for (int p = 0; p < PIX; ++p) {
        if (row_base + p >= a.rows)
            break;
        tps_derivs d;
        tps_derivs_zero(&d);
        tps_blend_finish(&blend[p], NEEDS, &d);
        tps_derivs_put(&d, a.needs, out, stride,
                       size_t(row_base + p) * size_t(g.ncols) + size_t(col));
    }
}

/* The planes of this chunk lie one after another from o.plane[0]
 * (gpu/staging.cuh), nb of them, c.rows x ncols doubles each. */
cudaError_t launch_deriv(const LocalArgs &c, const GridArgs &g, const OutArgs &o, int nb,
                         dim3 blocks, cudaStream_t stream)
{
    (void)nb;
    double *out = static_cast<double *>(o.plane[0]);
    const size_t stride = size_t(c.rows) * size_t(g.ncols);
    if (c.needs & TPS_NEEDS_HESSIAN)
        evaluate_local_deriv<TPS_NEEDS_VALUE | TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN |
                             TPS_NEEDS_HESSIAN><<<blocks, THREADS, 0, stream>>>(c, g, out, stride);
    else
        evaluate_local_deriv<TPS_NEEDS_VALUE | TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN>
            <<<blocks, THREADS, 0, stream>>>(c, g, out, stride);
    return cudaGetLastError();
}

} // namespace

extern "C" tps_status tps_gpu_local_deriv_sums(tps_gpu_local *m, const tps_window *grid,
                                               size_t band, unsigned needs, double *sums,
                                               size_t max_bytes, tps_error *err)
{
    /* FP64 planes, given consecutive (fake) band numbers so that the chunk
     * loop launches them as one group; the kernel reads band `band`. */
    const size_t pixels = grid->ncols * grid->nrows;
    const int n_planes = tps_needs_planes(needs);
    tps_output planes[MAX_PLANES];
    for (int q = 0; q < n_planes; ++q)
        planes[q] = tps_output{band + size_t(q), sums + size_t(q) * pixels, TPS_FLOAT64,
                               sizeof(double), ptrdiff_t(sizeof(double) * grid->ncols),
                               TPS_QUANTITY_VALUE};
    return local_run(m, grid, size_t(n_planes), planes, launch_deriv, size_t(n_planes), needs,
                     max_bytes, err);
}

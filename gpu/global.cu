/*
 * global.cu: a global model on the GPU. One device copy of the model's
 * points and weights; per request only the grid's description (origin,
 * steps, size) travels to the device, and the values come back through the
 * request loop of gpu/staging.cuh.
 *
 * The kernel follows NVIDIA's n-body sample: a block of threads loads a
 * tile of points into shared memory, every thread then runs its PIX pixels
 * against every point of the tile, in FP64 (TPS_PRECISION_DOUBLE) with the
 * table-driven log of log_table.cuh. PRECISION=MIXED has its own kernel
 * (gpu/mixed.cu) and its own copy of the points (core/mixed.h's layout),
 * uploaded here with the FP64 one.
 *
 * The CUDA runtime is linked statically, so the plugin loads on machines
 * with no CUDA installed.
 */
#include "fault.cuh"
#include "fp64_sum.cuh"
#include "global.cuh"
#include "log_table.cuh"
#include "staging.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

using namespace tps_gpu;

namespace {

/* Pixel centres of this thread, from absolute grid indices in the same
 * order as the CPU path (row term first). */
__device__ __forceinline__ void pixel_centres(const GridArgs &g, int col[PIX], double pu[PIX],
                                              double pv[PIX])
{
    for (int p = 0; p < PIX; ++p) {
        col[p] = blockIdx.x * (THREADS * PIX) + p * THREADS + threadIdx.x;
        cell_centre(g, col[p] < g.ncols ? col[p] : g.ncols - 1, blockIdx.y, &pu[p], &pv[p]);
    }
}

template <int NB>
__device__ __forceinline__ void write_pixels(const GridArgs &g, const OutArgs &o,
                                             const int col[PIX], const double pu[PIX],
                                             const double pv[PIX], const double acc[NB][PIX])
{
    for (int p = 0; p < PIX; ++p) {
        if (col[p] >= g.ncols)
            continue;
        const size_t index = size_t(blockIdx.y) * size_t(g.ncols) + size_t(col[p]);
        for (int b = 0; b < NB; ++b) {
            const double value = pixel_value(acc[b][p], o.affine[b], pu[p], pv[p]);
            if (o.is_double[b])
                store<double>(o.plane[b], index, value);
            else
                store<float>(o.plane[b], index, value);
        }
    }
}

/* uv: n_pad points; w: NB rows of n_pad half-weights (padding has weight 0). */
/* SAME_V: every pixel of a thread has the same v (a row of a north-up
 * grid), so dy^2 is computed once per point instead of once per pixel. */
template <int NB, bool SAME_V>
__global__ void __launch_bounds__(THREADS) evaluate_fp64(const double2 *__restrict__ uv,
                                                        const double *__restrict__ w,
                                                        size_t w_stride, size_t n_pad,
                                                        const double2 *__restrict__ log_table,
                                                        GridArgs g, OutArgs o)
{
    __shared__ double s_u[TILE], s_v[TILE], s_w[NB][TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    for (int k = threadIdx.x; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = log_table[k];
    int col[PIX];
    double pu[PIX], pv[PIX], acc[NB][PIX];
    pixel_centres(g, col, pu, pv);
    fp64_sums<NB, SAME_V>(uv, w, w_stride, n_pad, s_log, s_u, s_v, s_w, pu, pv, acc);
    write_pixels<NB>(g, o, col, pu, pv, acc);
}

} // namespace

namespace tps_gpu {

template <int NB>
static cudaError_t launch(const tps_gpu_model *m, const int *bands, const GridArgs &g,
                          const OutArgs &o, int rows, cudaStream_t stream)
{
    /* The caller groups consecutive model bands only: they are consecutive
     * rows of the weight matrix. */
    const dim3 grid((g.ncols + THREADS * PIX - 1) / (THREADS * PIX), rows);
    const double *w = m->w + bands[0] * m->n_pad;
    if (g.w.cv == 0.0)
        evaluate_fp64<NB, true><<<grid, THREADS, 0, stream>>>(m->uv, w, m->n_pad, m->n_pad,
                                                               m->log_table, g, o);
    else
        evaluate_fp64<NB, false><<<grid, THREADS, 0, stream>>>(m->uv, w, m->n_pad, m->n_pad,
                                                                m->log_table, g, o);
    return cudaGetLastError();
}

cudaError_t launch_global(const tps_gpu_model *m, tps_precision precision, const MixedGuard &guard,
                          const int *bands, int nb, const GridArgs &g, const OutArgs &o, int rows,
                          cudaStream_t stream)
{
    if (precision == TPS_PRECISION_MIXED)
        return launch_mixed(m, guard, bands, nb, g, o, rows, stream);
    switch (nb) {
    case 1: return launch<1>(m, bands, g, o, rows, stream);
    case 2: return launch<2>(m, bands, g, o, rows, stream);
    case 3: return launch<3>(m, bands, g, o, rows, stream);
    default: return launch<4>(m, bands, g, o, rows, stream);
    }
}

} // namespace tps_gpu

namespace {

/* cudaMalloc + cudaMemcpy of `bytes` from host into *dst. */
template <typename T>
cudaError_t upload(T **dst, const void *src, size_t bytes)
{
    cudaError_t e = cudaMalloc(dst, bytes ? bytes : 1);
    if (e == cudaSuccess && bytes)
        e = cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice);
    return e;
}

/* Device bytes of MIXED's copy of the points (core/mixed.h's layout). */
size_t mixed_bytes(const tps_mixed_layout *L)
{
    return L->n_pad * (sizeof(float2) + 2 * sizeof(float) * L->n_bands) +
           (L->n_tiles + L->n_groups) * (4 + L->n_bands * TPS_MIXED_COEF) * sizeof(double) +
           L->n_groups * L->n_bands * 4 * sizeof(double);
}

cudaError_t upload_mixed(tps_gpu_model *m, const tps_mixed_layout *L)
{
    MixedModel &x = m->mixed;
    x.n_pad = L->n_pad;
    x.n_tiles = L->n_tiles;
    const size_t nb = L->n_bands, coef = TPS_MIXED_COEF * sizeof(double);
    cudaError_t e;
    if ((e = upload(&x.q, L->q, L->n_pad * sizeof(float2))) != cudaSuccess ||
        (e = upload(&x.w, L->w, L->n_pad * nb * sizeof(float))) != cudaSuccess ||
        (e = upload(&x.wlo, L->wlo, L->n_pad * nb * sizeof(float))) != cudaSuccess ||
        (e = upload(&x.tile, L->tile, L->n_tiles * 4 * sizeof(double))) != cudaSuccess ||
        (e = upload(&x.group, L->group, L->n_groups * 4 * sizeof(double))) != cudaSuccess ||
        (e = upload(&x.tile_coef, L->tile_coef, L->n_tiles * nb * coef)) != cudaSuccess ||
        (e = upload(&x.group_coef, L->group_coef, L->n_groups * nb * coef)) != cudaSuccess ||
        (e = upload(&x.group_near, L->group_near, L->n_groups * nb * 4 * sizeof(double))) !=
            cudaSuccess)
        return e;
    return cudaSuccess;
}

} // namespace

extern "C" void tps_gpu_model_destroy(tps_gpu_model *m)
{
    if (!m)
        return;
    cudaFree(m->uv);
    cudaFree(m->w);
    cudaFree(m->log_table);
    MixedModel &x = m->mixed;
    cudaFree(x.q);
    cudaFree(x.w);
    cudaFree(x.wlo);
    cudaFree(x.tile);
    cudaFree(x.group);
    cudaFree(x.tile_coef);
    cudaFree(x.group_coef);
    cudaFree(x.group_near);
    free(x.abs_h);
    free(x.range);
    free(m->affine);
    free(m);
}

extern "C" tps_gpu_model *tps_gpu_model_create(size_t n, const double *u, const double *v,
                                              size_t n_bands, const double *const *half_weights,
                                              const double (*affine)[3],
                                              const double *band_range,
                                              const tps_mixed_layout *mixed, size_t max_bytes,
                                              tps_error *err)
{
    if (tps_gpu_probe(err) != 0)
        return nullptr;
    {
        const size_t np = (n + TILE - 1) / TILE * TILE;
        const size_t need = np * sizeof(double2) + np * n_bands * sizeof(double) +
                            sizeof(LogTable) + mixed_bytes(mixed);
        if (max_bytes && need > max_bytes) {
            unavailable(err,
                     "the model's device copy needs %zu bytes of GPU memory, more than the %zu "
                     "allowed", need, max_bytes);
            return nullptr;
        }
    }
    cudaSetDevice(0);
    tps_gpu_model *m = static_cast<tps_gpu_model *>(calloc(1, sizeof *m));
    if (!m) {
        unavailable(err, "out of host memory");
        return nullptr;
    }
    m->n = n;
    m->n_pad = (n + TILE - 1) / TILE * TILE;
    m->n_bands = n_bands;
    const size_t np = m->n_pad;
    /* Host staging in the device layout; padding points sit at the origin
     * with weight 0, so they add exactly nothing. */
    double2 *uv = static_cast<double2 *>(calloc(np, sizeof(double2)));
    double *w = static_cast<double *>(calloc(np * n_bands, sizeof(double)));
    m->affine = static_cast<double(*)[3]>(malloc(sizeof(double[3]) * n_bands));
    m->mixed.abs_h = static_cast<double *>(calloc(n_bands, sizeof(double)));
    m->mixed.range = static_cast<double *>(calloc(n_bands, sizeof(double)));
    cudaError_t e = cudaSuccess;
    if (!uv || !w || !m->affine || !m->mixed.abs_h || !m->mixed.range) {
        unavailable(err, "out of host memory");
        e = cudaErrorMemoryAllocation;
    } else {
        for (size_t i = 0; i < n; ++i)
            uv[i] = make_double2(u[i], v[i]);
        for (size_t b = 0; b < n_bands; ++b) {
            for (size_t i = 0; i < n; ++i)
                w[b * np + i] = half_weights[b][i];
            memcpy(m->affine[b], affine[b], sizeof affine[b]);
            m->mixed.range[b] = band_range[b];
            m->mixed.abs_h[b] = mixed->abs_h[b];
        }
        const LogTable log_table = make_log_table();
        if (tps_gpu_fault_upload()) {
            e = cudaErrorMemoryAllocation;
            fail(err, "cannot upload the model to the GPU (injected fault)", e);
        } else if ((e = upload(&m->uv, uv, np * sizeof(double2))) != cudaSuccess ||
                   (e = upload(&m->w, w, np * n_bands * sizeof(double))) != cudaSuccess ||
                   (e = upload(&m->log_table, log_table.entry, sizeof(LogTable))) !=
                       cudaSuccess ||
                   (e = upload_mixed(m, mixed)) != cudaSuccess) {
            fail(err, "cannot upload the model to the GPU", e);
        }
    }
    free(uv);
    free(w);
    if (e != cudaSuccess) {
        cudaGetLastError();
        tps_gpu_model_destroy(m);
        return nullptr;
    }
    return m;
}

extern "C" tps_status tps_gpu_evaluate_grid(tps_gpu_model *m, const tps_window *grid,
                                            size_t n_outputs, const tps_output *outputs,
                                            tps_precision precision, const tps_gpu_guard *guard,
                                            size_t max_bytes, tps_error *err)
{
    const bool mixed = precision == TPS_PRECISION_MIXED;
    MixedGuard mg;
    mg.tolerance = guard && guard->tolerance > 0.0 ? guard->tolerance : TPS_DEFAULT_TOLERANCE;
    mg.force_every = guard ? guard->force_every : 0;
    auto launch_group = [m, precision, &mg](const GridArgs &g, OutArgs &o, const int *bands,
                                            int nb, int rows, cudaStream_t stream) {
        for (int b = 0; b < nb; ++b)
            memcpy(o.affine[b], m->affine[bands[b]], sizeof o.affine[b]);
        return launch_global(m, precision, mg, bands, nb, g, o, rows, stream);
    };
    GuardCounters counters = {0, 0, 0, 0};
    const tps_status st =
        evaluate_chunks(grid, n_outputs, outputs, max_bytes, mixed ? TPS_MIXED_BLOCK_ROWS : 1,
                        MAX_NB, launch_group, err, mixed ? &counters : nullptr);
    if (st == TPS_OK && mixed && guard && guard->stats) {
        tps_eval_stats *s = guard->stats;
        s->mixed_blocks += size_t(counters.blocks);
        s->fallback_blocks += size_t(counters.fallback);
        s->check_failures += size_t(counters.violations);
        double rel;
        memcpy(&rel, &counters.max_rel_bits, sizeof rel);
        if (rel > s->max_error_estimate)
            s->max_error_estimate = rel;
    }
    return st;
}

/*
 * global.cu: a global model on the GPU. One device copy of the model's
 * points and weights; per request only the grid's description (origin,
 * steps, size) travels to the device, and the values come back through the
 * request loop of gpu/staging.cuh.
 *
 * The kernel follows NVIDIA's n-body sample: a block of threads loads a
 * tile of points into shared memory, every thread then runs its PIX pixels
 * against every point of the tile. Two arithmetics:
 *   FP64  (TPS_PRECISION_DOUBLE) with the table-driven log of log_table.cuh;
 *   MIXED (TPS_PRECISION_MIXED) distances in FP32 on the centred, scaled
 *         coordinates, log2 by the special-function unit (lg2.approx), ln 2
 *         folded into the weights, FP32 sums over one tile of points added
 *         into FP64 accumulators.
 *
 * The CUDA runtime is linked statically, so the plugin loads on machines
 * with no CUDA installed.
 */
#include "fault.cuh"
#include "global.cuh"
#include "log_table.cuh"
#include "staging.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

using namespace tps_gpu;

namespace {

/* MIXED's log centring (docs/design.md, "PRECISION=MIXED"): each pixel
 * evaluates sum_i w_i r_i^2 (log2 r_i^2 + L) with L = -(log2 m + 2), m its
 * mean squared distance to the points, and subtracts L sum_i w_i r_i^2, a
 * quadratic in the pixel from the FP32 weights' moments, in FP64. */
struct MixedArgs {
    double mu, mv, spread;          /* points' mean, mean squared distance to it */
    double moment[MAX_NB][4];       /* sum w, sum w u, sum w v, sum w (u^2 + v^2) */
};

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
            const double value =
                acc[b][p] + o.affine[b][0] + o.affine[b][1] * pu[p] + o.affine[b][2] * pv[p];
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
    write_pixels<NB>(g, o, col, pu, pv, acc);
}

template <int NB, bool SAME_V>
__global__ void __launch_bounds__(THREADS) evaluate_mixed(const float2 *__restrict__ uv,
                                                         const float *__restrict__ w,
                                                         size_t w_stride, size_t n_pad,
                                                         GridArgs g, OutArgs o, MixedArgs c)
{
    __shared__ float s_u[TILE], s_v[TILE], s_w[NB][TILE];
    int col[PIX];
    double pu[PIX], pv[PIX], acc[NB][PIX];
    float su[PIX], sv[PIX];
    pixel_centres(g, col, pu, pv);
    /* Centring the log (docs/design.md, "PRECISION=MIXED"): the thread
     * evaluates s log2 s with s = a^2 r^2, i.e. a^2 r^2 (log2 r^2 + L),
     * L = log2 a^2 = -(log2 m + 2), m the mean squared distance from its
     * pixels to the points. Far from the points the terms are then several
     * times smaller than r^2 log2 r^2, and the rounding of r^2 is
     * multiplied by log r^2 + 1 + L ln 2 instead of log r^2 + 1: this halves
     * the worst error. The scaling is free: a multiplies the coordinates
     * inside the FMA that forms the differences. */
    double mean_u = 0.0, mean_v = 0.0;
    for (int p = 0; p < PIX; ++p) {
        mean_u += pu[p];
        mean_v += pv[p];
    }
    const double du = mean_u / PIX - c.mu, dv = mean_v / PIX - c.mv;
    const float a = exp2f(-0.5f * (__log2f(float(fma(du, du, fma(dv, dv, c.spread)))) + 2.0f));
    for (int p = 0; p < PIX; ++p) {
        su[p] = a * float(pu[p]);
        sv[p] = a * float(pv[p]);
        for (int b = 0; b < NB; ++b)
            acc[b][p] = 0.0;
    }

    for (size_t t0 = 0; t0 < n_pad; t0 += TILE) {
        __syncthreads();
        for (int k = threadIdx.x; k < TILE; k += THREADS) {
            const float2 q = uv[t0 + k];
            s_u[k] = q.x;
            s_v[k] = q.y;
            for (int b = 0; b < NB; ++b)
                s_w[b][k] = w[b * w_stride + t0 + k];
        }
        __syncthreads();
        /* Compensated (Kahan) FP32 sums over the tile: the terms cancel
         * (sum |w phi| is ~100x the values for wiggly data), and plain FP32
         * sums of 256 terms doubled MIXED's error in our measurements. */
        float part[NB][PIX], comp[NB][PIX];
        for (int b = 0; b < NB; ++b)
            for (int p = 0; p < PIX; ++p)
                part[b][p] = comp[b][p] = 0.0f;
#pragma unroll 4
        for (int k = 0; k < TILE; ++k) {
            const float qu = s_u[k], qv = s_v[k];
            const float dy0 = fmaf(-a, qv, sv[0]), dy0_2 = fmaf(dy0, dy0, 1e-30f);
            for (int p = 0; p < PIX; ++p) {
                const float dx = fmaf(-a, qu, su[p]), dy = fmaf(-a, qv, sv[p]);
                const float s2 = fmaf(dx, dx, SAME_V ? dy0_2 : fmaf(dy, dy, 1e-30f));
                const float phi = s2 * __log2f(s2); /* lg2.approx; ln 2 is in the weights */
                for (int b = 0; b < NB; ++b) {
                    const float y = fmaf(s_w[b][k], phi, -comp[b][p]);
                    const float t = part[b][p] + y;
                    comp[b][p] = (t - part[b][p]) - y;
                    part[b][p] = t;
                }
            }
        }
        for (int b = 0; b < NB; ++b)
            for (int p = 0; p < PIX; ++p)
                acc[b][p] += double(part[b][p]) - double(comp[b][p]);
    }
    /* sum w r^2 log2 r^2 = (sum w s log2 s) / a^2 - L sum w r^2, the last
     * sum a quadratic in the pixel (at su / a, where the differences put
     * it) from the FP32 weights' moments, all in FP64. */
    const double a2 = double(a) * double(a), L = log2(a2);
    for (int p = 0; p < PIX; ++p) {
        const double qu = double(su[p]) / double(a), qv = double(sv[p]) / double(a);
        const double q2 = fma(qu, qu, qv * qv);
        for (int b = 0; b < NB; ++b) {
            const double *mo = c.moment[b];
            const double sum_w_r2 =
                fma(mo[0], q2, fma(-2.0 * qu, mo[1], fma(-2.0 * qv, mo[2], mo[3])));
            acc[b][p] = acc[b][p] / a2 - L * sum_w_r2;
        }
    }
    write_pixels<NB>(g, o, col, pu, pv, acc);
}

} // namespace

namespace tps_gpu {

template <int NB>
static cudaError_t launch(const tps_gpu_model *m, tps_precision precision, const int *bands,
                          const GridArgs &g, const OutArgs &o, int rows, cudaStream_t stream)
{
    /* The caller groups consecutive model bands only: they are consecutive
     * rows of the weight matrix. */
    const dim3 grid((g.ncols + THREADS * PIX - 1) / (THREADS * PIX), rows);
    const bool same_v = g.w.cv == 0.0;
    const float2 *uv32 = m->uv32;
    const float *w32 = m->w32 + bands[0] * m->n_pad;
    const double *w = m->w + bands[0] * m->n_pad;
    MixedArgs c;
    c.mu = m->mu;
    c.mv = m->mv;
    c.spread = m->spread;
    for (int b = 0; b < NB; ++b)
        memcpy(c.moment[b], m->moment[bands[0] + b], sizeof c.moment[b]);
    if (precision == TPS_PRECISION_MIXED && same_v)
        evaluate_mixed<NB, true><<<grid, THREADS, 0, stream>>>(uv32, w32, m->n_pad, m->n_pad, g, o, c);
    else if (precision == TPS_PRECISION_MIXED)
        evaluate_mixed<NB, false><<<grid, THREADS, 0, stream>>>(uv32, w32, m->n_pad, m->n_pad, g, o, c);
    else if (same_v)
        evaluate_fp64<NB, true><<<grid, THREADS, 0, stream>>>(m->uv, w, m->n_pad, m->n_pad,
                                                               m->log_table, g, o);
    else
        evaluate_fp64<NB, false><<<grid, THREADS, 0, stream>>>(m->uv, w, m->n_pad, m->n_pad,
                                                                m->log_table, g, o);
    return cudaGetLastError();
}

cudaError_t launch_global(const tps_gpu_model *m, tps_precision precision, const int *bands,
                          int nb, const GridArgs &g, const OutArgs &o, int rows,
                          cudaStream_t stream)
{
    switch (nb) {
    case 1: return launch<1>(m, precision, bands, g, o, rows, stream);
    case 2: return launch<2>(m, precision, bands, g, o, rows, stream);
    case 3: return launch<3>(m, precision, bands, g, o, rows, stream);
    default: return launch<4>(m, precision, bands, g, o, rows, stream);
    }
}

} // namespace tps_gpu

extern "C" void tps_gpu_model_destroy(tps_gpu_model *m)
{
    if (!m)
        return;
    cudaFree(m->uv);
    cudaFree(m->w);
    cudaFree(m->uv32);
    cudaFree(m->w32);
    cudaFree(m->log_table);
    free(m->affine);
    free(m->moment);
    free(m);
}

extern "C" tps_gpu_model *tps_gpu_model_create(size_t n, const double *u, const double *v,
                                              size_t n_bands, const double *const *half_weights,
                                              const double (*affine)[3], size_t max_bytes,
                                              tps_error *err)
{
    if (tps_gpu_probe(err) != 0)
        return nullptr;
    {
        const size_t np = (n + TILE - 1) / TILE * TILE;
        const size_t need = np * (sizeof(double2) + sizeof(float2)) +
                            np * n_bands * (sizeof(double) + sizeof(float)) + sizeof(LogTable);
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
    float2 *uv32 = static_cast<float2 *>(calloc(np, sizeof(float2)));
    double *w = static_cast<double *>(calloc(np * n_bands, sizeof(double)));
    float *w32 = static_cast<float *>(calloc(np * n_bands, sizeof(float)));
    m->affine = static_cast<double(*)[3]>(malloc(sizeof(double[3]) * n_bands));
    m->moment = static_cast<double(*)[4]>(calloc(n_bands, sizeof(double[4])));
    cudaError_t e = cudaSuccess;
    if (!uv || !uv32 || !w || !w32 || !m->affine || !m->moment) {
        unavailable(err, "out of host memory");
        e = cudaErrorMemoryAllocation;
    } else {
        const double ln2 = 0.69314718055994530942;
        for (size_t i = 0; i < n; ++i) {
            uv[i] = make_double2(u[i], v[i]);
            uv32[i] = make_float2(float(u[i]), float(v[i]));
        }
        double su = 0, sv = 0, ss = 0;
        for (size_t i = 0; i < n; ++i) {
            su += u[i];
            sv += v[i];
        }
        m->mu = su / double(n);
        m->mv = sv / double(n);
        for (size_t i = 0; i < n; ++i)
            ss += (u[i] - m->mu) * (u[i] - m->mu) + (v[i] - m->mv) * (v[i] - m->mv);
        m->spread = ss / double(n);
        for (size_t b = 0; b < n_bands; ++b) {
            /* The moments of the weights as the kernel sees them (FP32
             * weights and coordinates, products exact in FP64). */
            double *mo = m->moment[b];
            for (size_t i = 0; i < n; ++i) {
                w[b * np + i] = half_weights[b][i];
                w32[b * np + i] = float(half_weights[b][i] * ln2);
                const double wf = w32[b * np + i], uf = uv32[i].x, vf = uv32[i].y;
                mo[0] += wf;
                mo[1] += wf * uf;
                mo[2] += wf * vf;
                mo[3] += wf * fma(uf, uf, vf * vf);
            }
            memcpy(m->affine[b], affine[b], sizeof affine[b]);
        }
        const char *what = "cannot upload the model to the GPU";
        const LogTable log_table = make_log_table();
        if (tps_gpu_fault_upload()) {
            e = cudaErrorMemoryAllocation;
            fail(err, "cannot upload the model to the GPU (injected fault)", e);
        } else if ((e = cudaMalloc(&m->uv, np * sizeof(double2))) != cudaSuccess ||
            (e = cudaMalloc(&m->w, np * n_bands * sizeof(double))) != cudaSuccess ||
            (e = cudaMalloc(&m->uv32, np * sizeof(float2))) != cudaSuccess ||
            (e = cudaMalloc(&m->w32, np * n_bands * sizeof(float))) != cudaSuccess ||
            (e = cudaMemcpy(m->uv, uv, np * sizeof(double2), cudaMemcpyHostToDevice)) !=
                cudaSuccess ||
            (e = cudaMemcpy(m->w, w, np * n_bands * sizeof(double), cudaMemcpyHostToDevice)) !=
                cudaSuccess ||
            (e = cudaMemcpy(m->uv32, uv32, np * sizeof(float2), cudaMemcpyHostToDevice)) !=
                cudaSuccess ||
            (e = cudaMemcpy(m->w32, w32, np * n_bands * sizeof(float), cudaMemcpyHostToDevice)) !=
                cudaSuccess ||
            (e = cudaMalloc(&m->log_table, sizeof(LogTable))) != cudaSuccess ||
            (e = cudaMemcpy(m->log_table, log_table.entry, sizeof(LogTable),
                            cudaMemcpyHostToDevice)) != cudaSuccess)
            fail(err, what, e);
    }
    free(uv);
    free(uv32);
    free(w);
    free(w32);
    if (e != cudaSuccess) {
        cudaGetLastError();
        tps_gpu_model_destroy(m);
        return nullptr;
    }
    return m;
}

extern "C" tps_status tps_gpu_evaluate_grid(tps_gpu_model *m, const tps_window *grid,
                                            size_t n_outputs, const tps_output *outputs,
                                            tps_precision precision, size_t max_bytes,
                                            tps_error *err)
{
    auto launch_group = [m, precision](const GridArgs &g, OutArgs &o, const int *bands, int nb,
                                       int rows, cudaStream_t stream) {
        for (int b = 0; b < nb; ++b)
            memcpy(o.affine[b], m->affine[bands[b]], sizeof o.affine[b]);
        return launch_global(m, precision, bands, nb, g, o, rows, stream);
    };
    return evaluate_chunks(grid, n_outputs, outputs, max_bytes, 1, MAX_NB, launch_group, err);
}

/*
 * tps_gpu.cu: the GPU backend. One device copy of a model's points and
 * weights; per request only the grid's description (origin, steps, size)
 * travels to the device, and the values come back through pinned staging
 * buffers, chunk by chunk, while the next chunk computes.
 *
 * The kernel follows NVIDIA's n-body sample: a block of threads loads a
 * tile of points into shared memory, every thread then runs its PIX pixels
 * against every point of the tile. Two arithmetics:
 *   FP64  (TPS_PRECISION_DOUBLE) with CUDA's double log;
 *   MIXED (TPS_PRECISION_MIXED) distances in FP32 on the centred, scaled
 *         coordinates, log2 by the special-function unit (lg2.approx), ln 2
 *         folded into the weights, FP32 sums over one tile of points added
 *         into FP64 accumulators.
 *
 * No CUDA error ever leaves this file as anything but a message: the engine
 * turns it into an error or a CPU fallback. The CUDA runtime is linked
 * statically, so the plugin loads on machines with no CUDA installed.
 */
#include "gpu_backend.h"

#include <algorithm>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <math.h>
#include <new>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

namespace {

constexpr int THREADS = 128; /* threads per block */
constexpr int PIX = 4;       /* pixels per thread: amortises the shared-memory reads */
constexpr int TILE = 256;    /* points per shared-memory tile */
constexpr int MAX_NB = 4;    /* bands per pass over the points */
/* Bytes of results per chunk: a chunk's transfer and host copy overlap the
 * next chunk's kernel. */
constexpr size_t CHUNK_BYTES = size_t(16) << 20;

int fail(char *err, size_t errlen, const char *what, cudaError_t e)
{
    snprintf(err, errlen, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return -1;
}

/* ---- fault injection (tests only) ------------------------------------------
 * TPS_GPU_INJECT_FAULT=upload|launch|trap makes the next device copy fail
 * as if out of memory, a kernel launch fail, or a kernel trap on the device
 * (a sticky error that kills the CUDA context, as a real device fault does),
 * so that tests can prove every such failure ends in a clear error or a CPU
 * fallback, never a wrong block (docs/reliability.md). */
enum Fault { FAULT_NONE, FAULT_UPLOAD, FAULT_LAUNCH, FAULT_TRAP };

Fault injected_fault()
{
    const char *f = getenv("TPS_GPU_INJECT_FAULT");
    if (!f)
        return FAULT_NONE;
    if (strcmp(f, "upload") == 0)
        return FAULT_UPLOAD;
    if (strcmp(f, "launch") == 0)
        return FAULT_LAUNCH;
    return strcmp(f, "trap") == 0 ? FAULT_TRAP : FAULT_NONE;
}

__global__ void trap_kernel()
{
    __trap();
}

/* ---- probe ---------------------------------------------------------------- */

pthread_once_t probe_once = PTHREAD_ONCE_INIT;
int probe_status = -1;
char probe_message[512];
char device_name[512];

void probe_device()
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver) {
        int runtime = 0;
        cudaRuntimeGetVersion(&runtime);
        snprintf(probe_message, sizeof probe_message,
                 "no usable GPU: no NVIDIA driver found, or one older than this build's CUDA %d.%d "
                 "runtime needs (cudaErrorInsufficientDriver)", runtime / 1000, runtime % 1000 / 10);
        cudaGetLastError();
        return;
    }
    if (e != cudaSuccess) {
        fail(probe_message, sizeof probe_message, "no usable GPU", e);
        cudaGetLastError();
        return;
    }
    if (count == 0) {
        snprintf(probe_message, sizeof probe_message, "no usable GPU: no CUDA device found");
        return;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
        fail(probe_message, sizeof probe_message, "no usable GPU: cannot query device 0", e);
        return;
    }
    snprintf(device_name, sizeof device_name, "%s, %.1f GiB, compute capability %d.%d",
             prop.name, double(prop.totalGlobalMem) / 1073741824.0, prop.major, prop.minor);
    /* Starting the context here makes the first evaluation's time honest
     * and catches a device we have no machine code or PTX for. */
    e = cudaFree(nullptr);
    if (e != cudaSuccess) {
        fail(probe_message, sizeof probe_message, "no usable GPU: cannot start a CUDA context", e);
        return;
    }
    probe_status = 0;
}

/* ---- a table-driven FP64 log ------------------------------------------------ */

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

LogTable make_log_table()
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

/* ---- kernels -------------------------------------------------------------- */

struct GridArgs {
    double u0, v0, cu, cv, ru, rv;
    long long first_col, first_row;
    int ncols;
    int row0; /* first row of this chunk within the window */
};

struct OutArgs {
    void *plane[MAX_NB];    /* device planes of this chunk, row-major, ncols wide */
    int is_double[MAX_NB];
    double affine[MAX_NB][3];
};

/* MIXED's log centring (docs/design.md, "PRECISION=MIXED"): each pixel
 * evaluates sum_i w_i r_i^2 (log2 r_i^2 + L) with L = -(log2 m + 2), m its
 * mean squared distance to the points, and subtracts L sum_i w_i r_i^2, a
 * quadratic in the pixel from the FP32 weights' moments, in FP64. */
struct MixedArgs {
    double mu, mv, spread;          /* points' mean, mean squared distance to it */
    double moment[MAX_NB][4];       /* sum w, sum w u, sum w v, sum w (u^2 + v^2) */
};

template <typename T>
__device__ __forceinline__ void store(void *plane, size_t index, double value)
{
    static_cast<T *>(plane)[index] = static_cast<T>(value);
}

/* Pixel centres of this thread, from absolute grid indices in the same
 * order as the CPU path (row term first). */
__device__ __forceinline__ void pixel_centres(const GridArgs &g, int col[PIX], double pu[PIX],
                                              double pv[PIX])
{
    const long long j = g.first_row + g.row0 + blockIdx.y;
    const double row_u = g.u0 + double(j) * g.ru, row_v = g.v0 + double(j) * g.rv;
    for (int p = 0; p < PIX; ++p) {
        col[p] = blockIdx.x * (THREADS * PIX) + p * THREADS + threadIdx.x;
        const long long i = g.first_col + (col[p] < g.ncols ? col[p] : g.ncols - 1);
        pu[p] = row_u + double(i) * g.cu;
        pv[p] = row_v + double(i) * g.cv;
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

/* ---- local models ----------------------------------------------------------
 * A block covers a tile of LOCAL_TW x LOCAL_TH pixels (each thread one
 * column, PIX rows) and visits the tile's candidate patches, listed on the
 * host in patch order, so that each pixel sums its patches in the order of
 * the CPU path (core/local.c) whatever window or chunk it falls in. */
constexpr int LOCAL_TW = 32;
constexpr int LOCAL_TH = THREADS / LOCAL_TW * PIX;

struct LocalPatch {
    double cx, cy, hx, hy, pcx, pcy, ps;
    unsigned long long offset, n;
};

struct LocalArgs {
    const LocalPatch *patches;
    const double2 *uv;      /* every patch's points, patch after patch */
    const double *w;        /* model band b's half-weights at w + b * w_stride */
    size_t w_stride;
    const double *affine;   /* [patch][model band][3] */
    int n_model_bands, first_band;
    const unsigned *tile_start, *tile_patch;
    int tiles_x, tile_row0, rows; /* rows: of this chunk */
    double bu0, bv0, bu1, bv1;
    const double2 *log_table;
};

__device__ __forceinline__ double bump(double t)
{
    const double s = 1.0 - t * t;
    return s > 0.0 ? s * s * s : 0.0;
}

/* A local kernel thread's pixels: column col, rows row_base.. (clamped
 * into the window), their centres as pixel_centres computes them (row term
 * first, as the CPU path) and clamped into the points' box (q: where the
 * weights are taken). */
__device__ __forceinline__ void local_pixels(const LocalArgs &a, const GridArgs &g, int col,
                                             int row_base, double pu[PIX], double pv[PIX],
                                             double qu[PIX], double qv[PIX])
{
    const long long i = g.first_col + (col < g.ncols ? col : g.ncols - 1);
    for (int p = 0; p < PIX; ++p) {
        const int r = row_base + p < a.rows ? row_base + p : a.rows - 1;
        const long long j = g.first_row + g.row0 + r;
        pu[p] = (g.u0 + double(j) * g.ru) + double(i) * g.cu;
        pv[p] = (g.v0 + double(j) * g.rv) + double(i) * g.cv;
        qu[p] = fmin(fmax(pu[p], a.bu0), a.bu1);
        qv[p] = fmin(fmax(pv[p], a.bv0), a.bv1);
    }
}

template <int NB>
__global__ void __launch_bounds__(THREADS) evaluate_local(LocalArgs a, GridArgs g, OutArgs o)
{
    __shared__ double s_u[TILE], s_v[TILE], s_w[NB][TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    for (int k = threadIdx.x; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = a.log_table[k];
    const int col = blockIdx.x * LOCAL_TW + int(threadIdx.x) % LOCAL_TW;
    const int row_base = blockIdx.y * LOCAL_TH + int(threadIdx.x) / LOCAL_TW * PIX;
    double pu[PIX], pv[PIX], qu[PIX], qv[PIX], acc[NB][PIX], wsum[PIX];
    local_pixels(a, g, col, row_base, pu, pv, qu, qv);
    for (int p = 0; p < PIX; ++p) {
        wsum[p] = 0.0;
        for (int b = 0; b < NB; ++b)
            acc[b][p] = 0.0;
    }
    const size_t tile = size_t(a.tile_row0 + int(blockIdx.y)) * size_t(a.tiles_x) + blockIdx.x;
    for (unsigned e = a.tile_start[tile]; e < a.tile_start[tile + 1]; ++e) {
        const LocalPatch pt = a.patches[a.tile_patch[e]];
        double wk[PIX], lu[PIX], lv[PIX];
        int any = 0;
        for (int p = 0; p < PIX; ++p) {
            wk[p] = bump((qu[p] - pt.cx) / pt.hx) * bump((qv[p] - pt.cy) / pt.hy);
            any |= wk[p] > 0.0;
            lu[p] = (pu[p] - pt.pcx) / pt.ps;
            lv[p] = (pv[p] - pt.pcy) / pt.ps;
        }
        if (!__syncthreads_or(any))
            continue;
        double sum[NB][PIX];
        for (int b = 0; b < NB; ++b)
            for (int p = 0; p < PIX; ++p)
                sum[b][p] = 0.0;
        for (unsigned long long t0 = 0; t0 < pt.n; t0 += TILE) {
            __syncthreads();
            for (int k = threadIdx.x; k < TILE; k += THREADS) {
                const bool in = t0 + k < pt.n;
                const double2 q = in ? a.uv[pt.offset + t0 + k] : make_double2(0.0, 0.0);
                s_u[k] = q.x;
                s_v[k] = q.y;
                for (int b = 0; b < NB; ++b)
                    s_w[b][k] = in ? a.w[size_t(a.first_band + b) * a.w_stride + pt.offset + t0 + k]
                                   : 0.0;
            }
            __syncthreads();
            const int count = pt.n - t0 < TILE ? int(pt.n - t0) : TILE;
            for (int k = 0; k < count; ++k) {
                const double su = s_u[k], sv = s_v[k];
                for (int p = 0; p < PIX; ++p) {
                    const double dx = lu[p] - su, dy = lv[p] - sv;
                    const double r2 = fma(dx, dx, fma(dy, dy, 1e-300));
                    const double phi = r2 * table_log(r2, s_log);
                    for (int b = 0; b < NB; ++b)
                        sum[b][p] = fma(s_w[b][k], phi, sum[b][p]);
                }
            }
        }
        for (int p = 0; p < PIX; ++p) {
            if (!(wk[p] > 0.0))
                continue;
            for (int b = 0; b < NB; ++b) {
                const double *af =
                    a.affine + (size_t(a.tile_patch[e]) * a.n_model_bands + a.first_band + b) * 3;
                acc[b][p] += wk[p] * (sum[b][p] + af[0] + af[1] * lu[p] + af[2] * lv[p]);
            }
            wsum[p] += wk[p];
        }
    }
    if (col >= g.ncols)
        return;
    for (int p = 0; p < PIX; ++p) {
        if (row_base + p >= a.rows)
            break;
        const size_t index = size_t(row_base + p) * size_t(g.ncols) + size_t(col);
        for (int b = 0; b < NB; ++b) {
            /* wsum > 0 inside the box by construction; NaN only for NaN targets. */
            const double value = wsum[p] > 0.0 ? acc[b][p] / wsum[p] : CUDART_NAN;
            if (o.is_double[b])
                store<double>(o.plane[b], index, value);
            else
                store<float>(o.plane[b], index, value);
        }
    }
}

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

template <int NB>
cudaError_t launch(const tps_gpu_model *m, tps_precision precision, const int *bands,
                   const GridArgs &g, const OutArgs &o, int rows, cudaStream_t stream);

} // namespace

/* ---- the device model ----------------------------------------------------- */

struct tps_gpu_model {
    size_t n, n_pad, n_bands;
    double2 *uv;   /* n_pad */
    double *w;     /* n_bands rows of n_pad half-weights */
    float2 *uv32;
    float *w32;    /* half-weights x ln 2 (MIXED evaluates log2) */
    double2 *log_table; /* LOG_TABLE_SIZE entries for table_log */
    double (*affine)[3];
    double mu, mv, spread;  /* MIXED's log centring: the points' mean and spread */
    double (*moment)[4];    /* per band: sum w32, w32 u32, w32 v32, w32 (u32^2 + v32^2) */
};

namespace {

template <int NB>
cudaError_t launch(const tps_gpu_model *m, tps_precision precision, const int *bands,
                   const GridArgs &g, const OutArgs &o, int rows, cudaStream_t stream)
{
    /* The caller groups consecutive model bands only: they are consecutive
     * rows of the weight matrix. */
    const dim3 grid((g.ncols + THREADS * PIX - 1) / (THREADS * PIX), rows);
    const bool same_v = g.cv == 0.0;
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

/* Per-request resources, pooled: two slots (stream, device chunk, pinned
 * chunk) so that one chunk's transfer and copy-out overlap the next
 * chunk's kernel. A request takes a workspace, so concurrent requests from
 * several threads each have their own streams: no lock around launches. */
struct Workspace {
    cudaStream_t stream[2] = {nullptr, nullptr};
    void *device[2] = {nullptr, nullptr};
    void *pinned[2] = {nullptr, nullptr};
    size_t capacity = 0;
    Workspace *next = nullptr;
};

pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
Workspace *pool = nullptr;

void free_buffers(Workspace *ws)
{
    for (int s = 0; s < 2; ++s) {
        cudaFree(ws->device[s]);
        cudaFreeHost(ws->pinned[s]);
        ws->device[s] = ws->pinned[s] = nullptr;
    }
    ws->capacity = 0;
}

void destroy_workspace(Workspace *ws)
{
    free_buffers(ws);
    for (int s = 0; s < 2; ++s)
        if (ws->stream[s])
            cudaStreamDestroy(ws->stream[s]);
    delete ws;
}

Workspace *acquire_workspace(size_t bytes, char *err, size_t errlen)
{
    pthread_mutex_lock(&pool_lock);
    Workspace *ws = pool;
    if (ws)
        pool = ws->next;
    pthread_mutex_unlock(&pool_lock);
    cudaError_t e = cudaSuccess;
    if (!ws) {
        ws = new (std::nothrow) Workspace;
        if (!ws) {
            snprintf(err, errlen, "out of host memory");
            return nullptr;
        }
        for (int s = 0; s < 2 && e == cudaSuccess; ++s)
            e = cudaStreamCreateWithFlags(&ws->stream[s], cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            fail(err, errlen, "cannot create a CUDA stream", e);
            destroy_workspace(ws);
            return nullptr;
        }
    }
    if (ws->capacity < bytes) {
        free_buffers(ws);
        for (int s = 0; s < 2 && e == cudaSuccess; ++s) {
            e = cudaMalloc(&ws->device[s], bytes);
            if (e == cudaSuccess)
                e = cudaHostAlloc(&ws->pinned[s], bytes, cudaHostAllocDefault);
        }
        if (e != cudaSuccess) {
            fail(err, errlen, "cannot allocate the transfer buffers", e);
            destroy_workspace(ws);
            return nullptr;
        }
        ws->capacity = bytes;
    }
    return ws;
}

void release_workspace(Workspace *ws)
{
    pthread_mutex_lock(&pool_lock);
    ws->next = pool;
    pool = ws;
    pthread_mutex_unlock(&pool_lock);
}

size_t type_size(tps_type type)
{
    return type == TPS_FLOAT64 ? sizeof(double) : sizeof(float);
}

/* One chunk of rows: where its planes are, for the copy out. */
struct Chunk {
    size_t row0 = 0, rows = 0;
    bool pending = false;
};

/* Rows [row0, row0 + rows) from a pinned chunk into the caller's buffers. */
void copy_out(const Workspace *ws, int slot, const Chunk &c, size_t ncols, size_t n_outputs,
              const tps_output *outputs)
{
    const char *src = static_cast<const char *>(ws->pinned[slot]);
    for (size_t k = 0; k < n_outputs; ++k) {
        const tps_output &o = outputs[k];
        const size_t elem = type_size(o.type);
        for (size_t r = 0; r < c.rows; ++r) {
            char *dst = static_cast<char *>(o.data) + ptrdiff_t(c.row0 + r) * o.line_stride;
            const char *line = src + r * ncols * elem;
            if (o.pixel_stride == ptrdiff_t(elem)) {
                memcpy(dst, line, ncols * elem);
            } else {
                for (size_t i = 0; i < ncols; ++i)
                    memcpy(dst + ptrdiff_t(i) * o.pixel_stride, line + i * elem, elem);
            }
        }
        src += c.rows * ncols * elem;
    }
}

} // namespace

extern "C" int tps_gpu_probe(char *err, size_t errlen)
{
    pthread_once(&probe_once, probe_device);
    if (probe_status != 0)
        snprintf(err, errlen, "%s", probe_message);
    return probe_status;
}

extern "C" const char *tps_gpu_name(void)
{
    pthread_once(&probe_once, probe_device);
    return probe_status == 0 ? device_name : "";
}

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

/* For gpu/tps_gpu_deriv.cu: the FP64 arrays, without its knowing this struct. */
extern "C" void tps_gpu_model_fp64_arrays(const tps_gpu_model *m, const void **uv,
                                          const double **w, size_t *n_pad, size_t *n_bands)
{
    *uv = m->uv;
    *w = m->w;
    *n_pad = m->n_pad;
    *n_bands = m->n_bands;
}

extern "C" tps_gpu_model *tps_gpu_model_create(size_t n, const double *u, const double *v,
                                              size_t n_bands, const double *const *half_weights,
                                              const double (*affine)[3], size_t max_bytes,
                                              char *err, size_t errlen)
{
    if (tps_gpu_probe(err, errlen) != 0)
        return nullptr;
    {
        const size_t np = (n + TILE - 1) / TILE * TILE;
        const size_t need = np * (sizeof(double2) + sizeof(float2)) +
                            np * n_bands * (sizeof(double) + sizeof(float)) + sizeof(LogTable);
        if (max_bytes && need > max_bytes) {
            snprintf(err, errlen,
                     "the model's device copy needs %zu bytes of GPU memory, more than the %zu "
                     "allowed", need, max_bytes);
            return nullptr;
        }
    }
    cudaSetDevice(0);
    tps_gpu_model *m = static_cast<tps_gpu_model *>(calloc(1, sizeof *m));
    if (!m) {
        snprintf(err, errlen, "out of host memory");
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
        snprintf(err, errlen, "out of host memory");
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
        if (injected_fault() == FAULT_UPLOAD) {
            e = cudaErrorMemoryAllocation;
            fail(err, errlen, "cannot upload the model to the GPU (TPS_GPU_INJECT_FAULT)", e);
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
            fail(err, errlen, what, e);
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

namespace {

/* The request loop shared by global and local models: the window is cut
 * into chunks of rows (a multiple of row_align); while chunk i+1 computes on
 * one stream, chunk i's results are copied to pinned memory on the other
 * and then into the caller's buffers. launch_group(g, o, bands, nb, rows,
 * stream) fills o.affine and launches the kernel for nb consecutive bands. */
template <typename LaunchGroup>
int evaluate_chunks(const tps_gpu_grid *grid, size_t n_outputs, const tps_output *outputs,
                    size_t max_bytes, size_t row_align, LaunchGroup launch_group, char *err,
                    size_t errlen)
{
    if (n_outputs == 0 || grid->ncols == 0 || grid->nrows == 0)
        return 0;
    if (grid->ncols > size_t(INT32_MAX) / 2) {
        snprintf(err, errlen, "window too wide for the GPU path (%zu columns)", grid->ncols);
        return -1;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess)
        return fail(err, errlen, "cannot select the GPU", e);

    size_t bytes_per_row = 0;
    for (size_t k = 0; k < n_outputs; ++k)
        bytes_per_row += grid->ncols * type_size(outputs[k].type);
    size_t chunk_rows = CHUNK_BYTES / bytes_per_row;
    if (chunk_rows < 1)
        chunk_rows = 1;
    if (chunk_rows > grid->nrows)
        chunk_rows = grid->nrows;
    if (chunk_rows > 65535) /* gridDim.y */
        chunk_rows = 65535;
    if (chunk_rows > row_align)
        chunk_rows -= chunk_rows % row_align;
    /* Two device chunks (the pinned host ones are host memory). */
    if (max_bytes && 2 * bytes_per_row > max_bytes) {
        snprintf(err, errlen,
                 "the transfer buffers need %zu bytes of GPU memory, more than the %zu allowed",
                 2 * bytes_per_row, max_bytes);
        return -1;
    }
    if (max_bytes && 2 * chunk_rows * bytes_per_row > max_bytes)
        chunk_rows = max_bytes / (2 * bytes_per_row);
    if (chunk_rows > row_align)
        chunk_rows -= chunk_rows % row_align;
    /* Chunks start on multiples of row_align (the local kernel's tile rows). */
    if (chunk_rows < row_align && chunk_rows < grid->nrows) {
        chunk_rows = row_align < grid->nrows ? row_align : grid->nrows;
        if (max_bytes && 2 * chunk_rows * bytes_per_row > max_bytes) {
            snprintf(err, errlen,
                     "the transfer buffers need %zu bytes of GPU memory, more than the %zu "
                     "allowed", 2 * chunk_rows * bytes_per_row, max_bytes);
            return -1;
        }
    }
    Workspace *ws = acquire_workspace(chunk_rows * bytes_per_row, err, errlen);
    if (!ws)
        return -1;

    GridArgs g;
    g.u0 = grid->u0;
    g.v0 = grid->v0;
    g.cu = grid->cu;
    g.cv = grid->cv;
    g.ru = grid->ru;
    g.rv = grid->rv;
    g.first_col = (long long)grid->first_col;
    g.first_row = (long long)grid->first_row;
    g.ncols = int(grid->ncols);

    Chunk chunks[2];
    int status = 0;
    size_t slot_index = 0;
    for (size_t row0 = 0; row0 < grid->nrows && status == 0; row0 += chunk_rows, ++slot_index) {
        const int s = int(slot_index % 2);
        if (chunks[s].pending) {
            if ((e = cudaStreamSynchronize(ws->stream[s])) != cudaSuccess) {
                status = fail(err, errlen, "GPU evaluation failed", e);
                break;
            }
            copy_out(ws, s, chunks[s], grid->ncols, n_outputs, outputs);
            chunks[s].pending = false;
        }
        const size_t rows = grid->nrows - row0 < chunk_rows ? grid->nrows - row0 : chunk_rows;
        g.row0 = int(row0);
        /* Planes of this chunk, one after another, in the caller's band order. */
        char *plane = static_cast<char *>(ws->device[s]);
        for (size_t k0 = 0; k0 < n_outputs && status == 0;) {
            /* Group consecutive model bands, up to MAX_NB, in one pass. */
            int bands[MAX_NB];
            int nb = 0;
            OutArgs o;
            memset(&o, 0, sizeof o);
            while (k0 + nb < n_outputs && nb < MAX_NB &&
                   (nb == 0 || outputs[k0 + nb].band == outputs[k0].band + size_t(nb))) {
                const tps_output &out = outputs[k0 + nb];
                bands[nb] = int(out.band);
                o.plane[nb] = plane;
                o.is_double[nb] = out.type == TPS_FLOAT64;
                plane += rows * grid->ncols * type_size(out.type);
                ++nb;
            }
            const Fault fault = injected_fault();
            if (fault == FAULT_TRAP)
                trap_kernel<<<1, 1, 0, ws->stream[s]>>>();
            e = fault == FAULT_LAUNCH ? cudaErrorLaunchFailure
                                      : launch_group(g, o, bands, nb, int(rows), ws->stream[s]);
            if (e != cudaSuccess)
                status = fail(err, errlen, "cannot launch the GPU kernel", e);
            k0 += size_t(nb);
        }
        if (status != 0)
            break;
        const size_t chunk_bytes = size_t(plane - static_cast<char *>(ws->device[s]));
        e = cudaMemcpyAsync(ws->pinned[s], ws->device[s], chunk_bytes, cudaMemcpyDeviceToHost,
                            ws->stream[s]);
        if (e != cudaSuccess) {
            status = fail(err, errlen, "cannot copy GPU results", e);
            break;
        }
        chunks[s].row0 = row0;
        chunks[s].rows = rows;
        chunks[s].pending = true;
    }
    /* Drain in order: the older chunk first. */
    for (size_t k = 0; k < 2; ++k) {
        const int s = int((slot_index + k) % 2);
        if (!chunks[s].pending)
            continue;
        e = cudaStreamSynchronize(ws->stream[s]);
        if (e != cudaSuccess && status == 0)
            status = fail(err, errlen, "GPU evaluation failed", e);
        if (status == 0)
            copy_out(ws, s, chunks[s], grid->ncols, n_outputs, outputs);
    }
    if (status != 0) {
        /* A sticky error (an illegal address) poisons the context: keep
         * nothing of it around; the engine reports or falls back. */
        cudaGetLastError();
        destroy_workspace(ws);
        return -1;
    }
    release_workspace(ws);
    return 0;
}

} // namespace

extern "C" int tps_gpu_evaluate_grid(tps_gpu_model *m, const tps_gpu_grid *grid,
                                     size_t n_outputs, const tps_output *outputs,
                                     tps_precision precision, size_t max_bytes, char *err,
                                     size_t errlen)
{
    auto launch_group = [m, precision](const GridArgs &g, OutArgs &o, const int *bands, int nb,
                                       int rows, cudaStream_t stream) {
        for (int b = 0; b < nb; ++b)
            memcpy(o.affine[b], m->affine[bands[b]], sizeof o.affine[b]);
        switch (nb) {
        case 1: return launch<1>(m, precision, bands, g, o, rows, stream);
        case 2: return launch<2>(m, precision, bands, g, o, rows, stream);
        case 3: return launch<3>(m, precision, bands, g, o, rows, stream);
        default: return launch<4>(m, precision, bands, g, o, rows, stream);
        }
    };
    return evaluate_chunks(grid, n_outputs, outputs, max_bytes, 1, launch_group, err, errlen);
}

/* For bench/bench_gpu.cu only (not part of the engine's API): the kernels
 * alone, into device memory, `repeats` times, timed with CUDA events; the
 * median milliseconds of one evaluation of the whole grid in *ms. */

/* ---- local models: the device copy and requests ----------------------------- */

struct tps_gpu_local {
    size_t n_patches, n_entries, n_bands;
    LocalPatch *patches;     /* device */
    double2 *uv;             /* device, n_entries */
    double *w;               /* device, n_bands rows of n_entries */
    double *affine;          /* device, [patch][band][3] */
    double2 *log_table;      /* device */
    /* Host: the patches' supports and the lookup grid, to list each tile's
     * candidate patches. */
    std::vector<double> support; /* cx, cy, hx, hy per patch */
    tps_gpu_lookup lookup;
    std::vector<size_t> cell_start, cell_patch;
};

extern "C" void tps_gpu_local_destroy(tps_gpu_local *m)
{
    if (!m)
        return;
    cudaFree(m->patches);
    cudaFree(m->uv);
    cudaFree(m->w);
    cudaFree(m->affine);
    cudaFree(m->log_table);
    delete m;
}

extern "C" tps_gpu_local *tps_gpu_local_create(size_t n_patches, const tps_gpu_patch *patches,
                                              size_t n_bands, const tps_gpu_lookup *lookup,
                                              size_t max_bytes, char *err, size_t errlen)
{
    if (tps_gpu_probe(err, errlen) != 0)
        return nullptr;
    size_t entries = 0;
    for (size_t p = 0; p < n_patches; ++p)
        entries += patches[p].n;
    const size_t need = n_patches * (sizeof(LocalPatch) + n_bands * 3 * sizeof(double)) +
                        entries * (sizeof(double2) + n_bands * sizeof(double)) + sizeof(LogTable);
    if (max_bytes && need > max_bytes) {
        snprintf(err, errlen,
                 "the local model's device copy needs %zu bytes of GPU memory, more than the "
                 "%zu allowed", need, max_bytes);
        return nullptr;
    }
    tps_gpu_local *m = new (std::nothrow) tps_gpu_local();
    if (!m) {
        snprintf(err, errlen, "out of host memory");
        return nullptr;
    }
    cudaError_t e = injected_fault() == FAULT_UPLOAD ? cudaErrorMemoryAllocation : cudaSetDevice(0);
    try {
        m->n_patches = n_patches;
        m->n_entries = entries;
        m->n_bands = n_bands;
        m->lookup = *lookup;
        const size_t cells = lookup->gx * lookup->gy;
        m->cell_start.assign(lookup->cell_start, lookup->cell_start + cells + 1);
        m->cell_patch.assign(lookup->cell_patch, lookup->cell_patch + lookup->cell_start[cells]);
        m->lookup.cell_start = m->cell_start.data();
        m->lookup.cell_patch = m->cell_patch.data();
        m->support.resize(4 * n_patches);
        std::vector<LocalPatch> lp(n_patches);
        std::vector<double2> uv(entries ? entries : 1);
        std::vector<double> w(n_bands * (entries ? entries : 1)), affine(n_patches * n_bands * 3);
        size_t off = 0;
        for (size_t p = 0; p < n_patches; ++p) {
            const tps_gpu_patch &pt = patches[p];
            lp[p] = LocalPatch{pt.cx, pt.cy, pt.hx, pt.hy, pt.pcx, pt.pcy, pt.ps, off, pt.n};
            const double sup[4] = {pt.cx, pt.cy, pt.hx, pt.hy};
            std::copy(sup, sup + 4, m->support.begin() + 4 * p);
            for (size_t k = 0; k < pt.n; ++k) {
                uv[off + k] = make_double2(pt.u[k], pt.v[k]);
                for (size_t b = 0; b < n_bands; ++b)
                    w[b * entries + off + k] = pt.hw[b][k];
            }
            for (size_t b = 0; b < n_bands; ++b)
                std::copy(pt.affine[b], pt.affine[b] + 3, affine.begin() + (p * n_bands + b) * 3);
            off += pt.n;
        }
        const LogTable log_table = make_log_table();
        if (e == cudaSuccess &&
            ((e = cudaMalloc(&m->patches, lp.size() * sizeof(LocalPatch))) != cudaSuccess ||
             (e = cudaMalloc(&m->uv, uv.size() * sizeof(double2))) != cudaSuccess ||
             (e = cudaMalloc(&m->w, w.size() * sizeof(double))) != cudaSuccess ||
             (e = cudaMalloc(&m->affine, affine.size() * sizeof(double))) != cudaSuccess ||
             (e = cudaMalloc(&m->log_table, sizeof(LogTable))) != cudaSuccess ||
             (e = cudaMemcpy(m->patches, lp.data(), lp.size() * sizeof(LocalPatch),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->uv, uv.data(), uv.size() * sizeof(double2),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->w, w.data(), w.size() * sizeof(double),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->affine, affine.data(), affine.size() * sizeof(double),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->log_table, log_table.entry, sizeof(LogTable),
                             cudaMemcpyHostToDevice)) != cudaSuccess))
            ;
    } catch (const std::bad_alloc &) {
        snprintf(err, errlen, "out of host memory for the local model's device copy");
        tps_gpu_local_destroy(m);
        return nullptr;
    }
    if (e != cudaSuccess) {
        fail(err, errlen, "cannot upload the local model to the GPU", e);
        cudaGetLastError();
        tps_gpu_local_destroy(m);
        return nullptr;
    }
    return m;
}

namespace {

size_t lookup_cell(double x, double x0, double d, size_t n)
{
    const double c = floor((x - x0) / d);
    if (!(c > 0.0))
        return 0;
    return c >= double(n) ? n - 1 : size_t(c);
}

/* Each LOCAL_TW x LOCAL_TH tile's candidate patches (a superset of those
 * whose support meets the tile's pixels, clamped into the box), sorted:
 * tile_start (tiles + 1 entries) and tile_patch, CSR. */
void list_tile_patches(const tps_gpu_local *m, const tps_gpu_grid *grid, size_t tiles_x,
                       size_t tiles_y, std::vector<unsigned> &tile_start,
                       std::vector<unsigned> &tile_patch)
{
    const tps_gpu_lookup &lk = m->lookup;
    tile_start.assign(tiles_x * tiles_y + 1, 0);
    tile_patch.clear();
    std::vector<unsigned> cand;
    for (size_t ty = 0; ty < tiles_y; ++ty)
        for (size_t tx = 0; tx < tiles_x; ++tx) {
            const double c0 = double(grid->first_col + tx * LOCAL_TW);
            const double c1 = double(grid->first_col + std::min(grid->ncols, (tx + 1) * LOCAL_TW) - 1);
            const double r0 = double(grid->first_row + ty * LOCAL_TH);
            const double r1 = double(grid->first_row + std::min(grid->nrows, (ty + 1) * LOCAL_TH) - 1);
            double u0 = INFINITY, u1 = -INFINITY, v0 = INFINITY, v1 = -INFINITY;
            const double cs[2] = {c0, c1}, rs[2] = {r0, r1};
            for (double c : cs)
                for (double r : rs) {
                    const double u = std::min(std::max(grid->u0 + r * grid->ru + c * grid->cu, lk.bu0), lk.bu1);
                    const double v = std::min(std::max(grid->v0 + r * grid->rv + c * grid->cv, lk.bv0), lk.bv1);
                    u0 = std::min(u0, u);
                    u1 = std::max(u1, u);
                    v0 = std::min(v0, v);
                    v1 = std::max(v1, v);
                }
            cand.clear();
            if (u0 <= u1 && v0 <= v1) {
                const size_t i0 = lookup_cell(u0, lk.bu0, lk.gdu, lk.gx);
                const size_t i1 = lookup_cell(u1, lk.bu0, lk.gdu, lk.gx);
                const size_t j0 = lookup_cell(v0, lk.bv0, lk.gdv, lk.gy);
                const size_t j1 = lookup_cell(v1, lk.bv0, lk.gdv, lk.gy);
                for (size_t j = j0; j <= j1; ++j)
                    for (size_t i = i0; i <= i1; ++i) {
                        const size_t c = j * lk.gx + i;
                        for (size_t k = lk.cell_start[c]; k < lk.cell_start[c + 1]; ++k) {
                            const size_t p = lk.cell_patch[k];
                            const double *sp = &m->support[4 * p];
                            /* The support against the tile's box. */
                            if (sp[0] + sp[2] > u0 && sp[0] - sp[2] < u1 && sp[1] + sp[3] > v0 &&
                                sp[1] - sp[3] < v1)
                                cand.push_back(unsigned(p));
                        }
                    }
                std::sort(cand.begin(), cand.end());
                cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
            }
            tile_patch.insert(tile_patch.end(), cand.begin(), cand.end());
            tile_start[ty * tiles_x + tx + 1] = unsigned(tile_patch.size());
        }
}

} // namespace

namespace {

/* deriv: one band, outputs[0..2] receive df/du, df/dv, lap f (FP64). */
int local_evaluate(tps_gpu_local *m, const tps_gpu_grid *grid, size_t n_outputs,
                   const tps_output *outputs, bool deriv, size_t max_bytes, char *err,
                   size_t errlen)
{
    if (n_outputs == 0 || grid->ncols == 0 || grid->nrows == 0)
        return 0;
    if (grid->ncols > size_t(INT32_MAX) / 2 || grid->nrows > size_t(INT32_MAX) / 2) {
        snprintf(err, errlen, "window too large for the GPU path (%zu x %zu)", grid->ncols,
                 grid->nrows);
        return -1;
    }
    const size_t tiles_x = (grid->ncols + LOCAL_TW - 1) / LOCAL_TW;
    const size_t tiles_y = (grid->nrows + LOCAL_TH - 1) / LOCAL_TH;
    std::vector<unsigned> tile_start, tile_patch;
    try {
        list_tile_patches(m, grid, tiles_x, tiles_y, tile_start, tile_patch);
    } catch (const std::bad_alloc &) {
        snprintf(err, errlen, "out of host memory for the patch lists");
        return -1;
    }
    if (tile_patch.size() >= size_t(UINT32_MAX)) {
        snprintf(err, errlen, "window too large for the GPU path's patch lists");
        return -1;
    }
    const size_t list_bytes = (tile_start.size() + tile_patch.size() + 1) * sizeof(unsigned);
    if (max_bytes && list_bytes >= max_bytes) {
        snprintf(err, errlen, "the patch lists need %zu bytes of GPU memory, more than the %zu "
                 "allowed", list_bytes, max_bytes);
        return -1;
    }
    cudaError_t e = cudaSetDevice(0);
    unsigned *d_lists = nullptr;
    if (e == cudaSuccess)
        e = cudaMalloc(&d_lists, list_bytes);
    if (e == cudaSuccess)
        e = cudaMemcpy(d_lists, tile_start.data(), tile_start.size() * sizeof(unsigned),
                       cudaMemcpyHostToDevice);
    if (e == cudaSuccess && !tile_patch.empty())
        e = cudaMemcpy(d_lists + tile_start.size(), tile_patch.data(),
                       tile_patch.size() * sizeof(unsigned), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        fail(err, errlen, "cannot upload the patch lists", e);
        cudaFree(d_lists);
        cudaGetLastError();
        return -1;
    }
    LocalArgs a;
    a.patches = m->patches;
    a.uv = m->uv;
    a.w = m->w;
    a.w_stride = m->n_entries;
    a.affine = m->affine;
    a.n_model_bands = int(m->n_bands);
    a.first_band = 0;
    a.tile_start = d_lists;
    a.tile_patch = d_lists + tile_start.size();
    a.tiles_x = int(tiles_x);
    a.bu0 = m->lookup.bu0;
    a.bv0 = m->lookup.bv0;
    a.bu1 = m->lookup.bu1;
    a.bv1 = m->lookup.bv1;
    a.log_table = m->log_table;
    auto launch_group = [&a, deriv](const GridArgs &g, OutArgs &o, const int *bands, int nb,
                                    int rows, cudaStream_t stream) {
        LocalArgs c = a;
        c.first_band = bands[0];
        c.rows = rows;
        c.tile_row0 = g.row0 / LOCAL_TH; /* chunks start on tile rows */
        const dim3 blocks((g.ncols + LOCAL_TW - 1) / LOCAL_TW, (rows + LOCAL_TH - 1) / LOCAL_TH);
        if (deriv)
            evaluate_local_deriv<<<blocks, THREADS, 0, stream>>>(c, g, o);
        else
            switch (nb) {
            case 1: evaluate_local<1><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
            case 2: evaluate_local<2><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
            case 3: evaluate_local<3><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
            default: evaluate_local<4><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
            }
        return cudaGetLastError();
    };
    const int status = evaluate_chunks(grid, n_outputs, outputs,
                                       max_bytes ? max_bytes - list_bytes : 0, LOCAL_TH,
                                       launch_group, err, errlen);
    cudaFree(d_lists);
    return status;
}

} // namespace

extern "C" int tps_gpu_local_evaluate_grid(tps_gpu_local *m, const tps_gpu_grid *grid,
                                           size_t n_outputs, const tps_output *outputs,
                                           size_t max_bytes, char *err, size_t errlen)
{
    return local_evaluate(m, grid, n_outputs, outputs, false, max_bytes, err, errlen);
}

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
    return local_evaluate(m, grid, 3, planes, true, max_bytes, err, errlen);
}

extern "C" int tps_gpu_time_kernel(tps_gpu_model *m, const tps_gpu_grid *grid, size_t n_bands,
                                   tps_precision precision, int repeats, double *ms, char *err,
                                   size_t errlen)
{
    if (n_bands < 1 || n_bands > size_t(MAX_NB) || n_bands > m->n_bands) {
        snprintf(err, errlen, "1 to %d bands", MAX_NB);
        return -1;
    }
    const size_t rows = grid->nrows > 65535 ? 65535 : grid->nrows;
    void *out = nullptr;
    cudaError_t e = cudaMalloc(&out, rows * grid->ncols * sizeof(float) * n_bands);
    if (e != cudaSuccess)
        return fail(err, errlen, "cudaMalloc", e);
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    GridArgs g = {grid->u0, grid->v0, grid->cu, grid->cv, grid->ru, grid->rv,
                  (long long)grid->first_col, (long long)grid->first_row, int(grid->ncols), 0};
    OutArgs o;
    memset(&o, 0, sizeof o);
    int bands[MAX_NB];
    for (size_t b = 0; b < n_bands; ++b) {
        bands[b] = int(b);
        o.plane[b] = static_cast<float *>(out) + b * rows * grid->ncols;
    }
    double *samples = new double[repeats > 0 ? repeats : 1];
    int status = 0;
    for (int r = -1; r < repeats && status == 0; ++r) { /* r = -1: warm-up */
        cudaEventRecord(t0);
        for (size_t row0 = 0; row0 < grid->nrows && e == cudaSuccess; row0 += rows) {
            g.row0 = int(row0);
            const int n = int(grid->nrows - row0 < rows ? grid->nrows - row0 : rows);
            switch (n_bands) {
            case 1: e = launch<1>(m, precision, bands, g, o, n, nullptr); break;
            case 2: e = launch<2>(m, precision, bands, g, o, n, nullptr); break;
            case 3: e = launch<3>(m, precision, bands, g, o, n, nullptr); break;
            default: e = launch<4>(m, precision, bands, g, o, n, nullptr); break;
            }
        }
        cudaEventRecord(t1);
        if (e == cudaSuccess)
            e = cudaEventSynchronize(t1);
        if (e != cudaSuccess) {
            status = fail(err, errlen, "kernel", e);
            break;
        }
        float elapsed = 0.0f;
        cudaEventElapsedTime(&elapsed, t0, t1);
        if (r >= 0)
            samples[r] = elapsed;
    }
    if (status == 0) {
        /* median */
        for (int i = 1; i < repeats; ++i)
            for (int j = i; j > 0 && samples[j - 1] > samples[j]; --j) {
                double t = samples[j];
                samples[j] = samples[j - 1];
                samples[j - 1] = t;
            }
        *ms = samples[repeats / 2];
    }
    delete[] samples;
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaFree(out);
    return status;
}

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

#include <cuda_runtime.h>
#include <math.h>
#include <new>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                                                         GridArgs g, OutArgs o)
{
    __shared__ float s_u[TILE], s_v[TILE], s_w[NB][TILE];
    int col[PIX];
    double pu[PIX], pv[PIX], acc[NB][PIX];
    float fu[PIX], fv[PIX];
    pixel_centres(g, col, pu, pv);
    for (int p = 0; p < PIX; ++p) {
        fu[p] = float(pu[p]);
        fv[p] = float(pv[p]);
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
            const float dy0 = fv[0] - qv, dy0_2 = fmaf(dy0, dy0, 1e-30f);
            for (int p = 0; p < PIX; ++p) {
                const float dx = fu[p] - qu, dy = fv[p] - qv;
                const float r2 = fmaf(dx, dx, SAME_V ? dy0_2 : fmaf(dy, dy, 1e-30f));
                const float phi = r2 * __log2f(r2); /* lg2.approx; ln 2 is in the weights */
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
    write_pixels<NB>(g, o, col, pu, pv, acc);
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
    if (precision == TPS_PRECISION_MIXED && same_v)
        evaluate_mixed<NB, true><<<grid, THREADS, 0, stream>>>(uv32, w32, m->n_pad, m->n_pad, g, o);
    else if (precision == TPS_PRECISION_MIXED)
        evaluate_mixed<NB, false><<<grid, THREADS, 0, stream>>>(uv32, w32, m->n_pad, m->n_pad, g, o);
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
    cudaError_t e = cudaSuccess;
    if (!uv || !uv32 || !w || !w32 || !m->affine) {
        snprintf(err, errlen, "out of host memory");
        e = cudaErrorMemoryAllocation;
    } else {
        const double ln2 = 0.69314718055994530942;
        for (size_t i = 0; i < n; ++i) {
            uv[i] = make_double2(u[i], v[i]);
            uv32[i] = make_float2(float(u[i]), float(v[i]));
        }
        for (size_t b = 0; b < n_bands; ++b) {
            for (size_t i = 0; i < n; ++i) {
                w[b * np + i] = half_weights[b][i];
                w32[b * np + i] = float(half_weights[b][i] * ln2);
            }
            memcpy(m->affine[b], affine[b], sizeof affine[b]);
        }
        const char *what = "cannot upload the model to the GPU";
        const LogTable log_table = make_log_table();
        if ((e = cudaMalloc(&m->uv, np * sizeof(double2))) != cudaSuccess ||
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

extern "C" int tps_gpu_evaluate_grid(tps_gpu_model *m, const tps_gpu_grid *grid,
                                     size_t n_outputs, const tps_output *outputs,
                                     tps_precision precision, size_t max_bytes, char *err,
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
    /* Two device chunks (the pinned host ones are host memory). */
    if (max_bytes && 2 * bytes_per_row > max_bytes) {
        snprintf(err, errlen,
                 "the transfer buffers need %zu bytes of GPU memory, more than the %zu allowed",
                 2 * bytes_per_row, max_bytes);
        return -1;
    }
    if (max_bytes && 2 * chunk_rows * bytes_per_row > max_bytes)
        chunk_rows = max_bytes / (2 * bytes_per_row);
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
                memcpy(o.affine[nb], m->affine[out.band], sizeof o.affine[nb]);
                plane += rows * grid->ncols * type_size(out.type);
                ++nb;
            }
            switch (nb) {
            case 1: e = launch<1>(m, precision, bands, g, o, int(rows), ws->stream[s]); break;
            case 2: e = launch<2>(m, precision, bands, g, o, int(rows), ws->stream[s]); break;
            case 3: e = launch<3>(m, precision, bands, g, o, int(rows), ws->stream[s]); break;
            default: e = launch<4>(m, precision, bands, g, o, int(rows), ws->stream[s]); break;
            }
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

/* For bench/bench_gpu.cu only (not part of the engine's API): the kernels
 * alone, into device memory, `repeats` times, timed with CUDA events; the
 * median milliseconds of one evaluation of the whole grid in *ms. */
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

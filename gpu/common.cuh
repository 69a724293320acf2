/* common.cuh: what the GPU backend's files share: the launch geometry, the
 * grid and output arguments of the kernels, and CUDA errors as messages.
 * No CUDA error ever leaves gpu/ as anything but a message: the engine
 * turns it into an error or a CPU fallback. */
#ifndef TPS_GPU_COMMON_CUH
#define TPS_GPU_COMMON_CUH

#include "error.h"
#include "gpu_backend.h"
#include "grid.h"

#include <cuda_runtime.h>
#include <stdio.h>

namespace tps_gpu {

constexpr int THREADS = 128; /* threads per block */
constexpr int PIX = 4;       /* pixels per thread: amortises the shared-memory reads */
constexpr int TILE = 256;    /* points per shared-memory tile */
constexpr int MAX_NB = 4;    /* bands per pass over the points */

/* What the backend cannot do (too large, out of memory, no GPU...): the
 * engine evaluates on the CPU instead, or reports it under DEVICE=GPU. */
inline tps_status unavailable(tps_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
inline tps_status unavailable(tps_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tps_error_setv(err, TPS_ERR_DEVICE_UNAVAILABLE, fmt, ap);
    va_end(ap);
    return TPS_ERR_DEVICE_UNAVAILABLE;
}

/* A CUDA error as the backend reports it. */
inline tps_status fail(tps_error *err, const char *what, cudaError_t e)
{
    return unavailable(err, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* A kernel's window: the request's (core/grid.h), cut into chunks of rows. */
struct GridArgs {
    tps_window w;
    int ncols; /* w.ncols, as an int */
    int row0;  /* first row of this chunk within the window */
};

/* The centre of window cell (col, row0 + r) of g (core/grid.h's formula:
 * the CPU's bytes). */
__device__ __forceinline__ void cell_centre(const GridArgs &g, long long col, long long r,
                                            double *u, double *v)
{
    tps_cell_centre(&g.w, double((long long)g.w.first_col + col),
                    double((long long)g.w.first_row + g.row0 + r), u, v);
}

/* What MIXED's guard reports (gpu/mixed.cu), summed over a request's
 * launches: blocks evaluated, recomputed in DOUBLE, failed self-checks, and
 * the largest error bound relative to the band's range (the bits of a
 * non-negative double, which order as the values do). */
struct GuardCounters {
    unsigned long long blocks, fallback, violations, max_rel_bits;
};

struct OutArgs {
    void *plane[MAX_NB];    /* device planes of this chunk, row-major, ncols wide */
    int is_double[MAX_NB];
    double affine[MAX_NB][3];
    GuardCounters *counters; /* MIXED: the request's counters (device), else unused */
};

template <typename T>
__device__ __forceinline__ void store(void *plane, size_t index, double value)
{
    static_cast<T *>(plane)[index] = static_cast<T>(value);
}

} // namespace tps_gpu

#endif

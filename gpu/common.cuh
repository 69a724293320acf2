/* common.cuh: what the GPU backend's files share: the launch geometry, the
 * grid and output arguments of the kernels, and CUDA errors as messages.
 * No CUDA error ever leaves gpu/ as anything but a message: the engine
 * turns it into an error or a CPU fallback. */
#ifndef TPS_GPU_COMMON_CUH
#define TPS_GPU_COMMON_CUH

#include "gpu_backend.h"

#include <cuda_runtime.h>
#include <stdio.h>

namespace tps_gpu {

constexpr int THREADS = 128; /* threads per block */
constexpr int PIX = 4;       /* pixels per thread: amortises the shared-memory reads */
constexpr int TILE = 256;    /* points per shared-memory tile */
constexpr int MAX_NB = 4;    /* bands per pass over the points */

inline int fail(char *err, size_t errlen, const char *what, cudaError_t e)
{
    snprintf(err, errlen, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return -1;
}

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

} // namespace tps_gpu

#endif

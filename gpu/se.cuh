/* se.cuh: the standard error's device copy of a factorisation
 * (tps_gpu_se), shared by se.cu (the exact blocks) and se_tiles.cu (tiles
 * in low rank). */
#ifndef TPS_GPU_SE_CUH
#define TPS_GPU_SE_CUH

#include "common.cuh"

#include <cublas_v2.h>
#include <mutex>

namespace tps_gpu {

constexpr int SE_MAX_M = 3 + TPS_MAX_COVARIATES;

/* The cuBLAS functions both use, bound by se.cu when a copy is created. */
struct SeBlas {
    cublasStatus_t (*create)(cublasHandle_t *) = nullptr;
    cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
    cublasStatus_t (*dgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const double *, const double *, int, const double *, int,
                            const double *, double *, int) = nullptr;
};
extern SeBlas se_blas;
/* Binds se_blas (once; se_blas.cu), or says why cuBLAS cannot be used. */
tps_status se_blas_need(tps_error *err);

/* phi(r) = r^2 log r = 0.5 r^2 log r^2 (0 at r = 0), as core/se_tile.c */
__device__ __forceinline__ double se_phi(double du, double dv)
{
    const double r2 = du * du + dv * dv;
    return r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
}

/* se_tiles.cu's buffers (Z, D and the groups' work), freed with the copy. */
struct SeTiles;
void se_tiles_free(SeTiles *tiles);

} // namespace tps_gpu

struct tps_gpu_se {
    int n, m, nm;
    double *u = nullptr, *v = nullptr, *vr = nullptr, *f = nullptr, *r = nullptr,
           *m11 = nullptr, *linv = nullptr;
    size_t bytes = 0; /* device memory held: the factorisation's, then the tiles' too */
    std::mutex lock;  /* one request at a time: the handle, stream and buffers */
    cublasHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
    tps_gpu::SeTiles *tiles = nullptr; /* made on the first tiled request */
};

#endif

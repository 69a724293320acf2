/*
 * tps_gpu_solve.cu: the O(N^3) part of the dense solve on the GPU, by the
 * same method as core/solve.c (null-space projection, then Cholesky):
 *   1. K + lambda I is formed on the device (O(N^2) kernels),
 *   2. the three Householder reflectors of P = [1 u v], computed on the host,
 *      are applied from both sides as rank-2 updates,
 *   3. cuSOLVER factors the trailing (N-3) x (N-3) block (dpotrf) and solves
 *      (dpotrs) for the projected right-hand sides.
 * Everything of O(N) stays on the host (core/solve.c).
 *
 * cuSOLVER is loaded with dlopen when first needed, so the plugin has no
 * link-time dependency on it: without it (or without enough device memory)
 * the engine solves on the CPU.
 */
#include "gpu_backend.h"

#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

struct Cusolver {
    void *lib = nullptr;
    cusolverStatus_t (*create)(cusolverDnHandle_t *) = nullptr;
    cusolverStatus_t (*destroy)(cusolverDnHandle_t) = nullptr;
    cusolverStatus_t (*potrf_buffer_size)(cusolverDnHandle_t, cublasFillMode_t, int, double *,
                                          int, int *) = nullptr;
    cusolverStatus_t (*potrf)(cusolverDnHandle_t, cublasFillMode_t, int, double *, int, double *,
                              int, int *) = nullptr;
    cusolverStatus_t (*potrs)(cusolverDnHandle_t, cublasFillMode_t, int, int, const double *, int,
                              double *, int, int *) = nullptr;
    char error[512] = "";
};

pthread_once_t load_once = PTHREAD_ONCE_INIT;
Cusolver cusolver;

template <typename F>
bool bind(F *fn, const char *name)
{
    *fn = reinterpret_cast<F>(dlsym(cusolver.lib, name));
    if (!*fn)
        snprintf(cusolver.error, sizeof cusolver.error, "cuSOLVER has no %s", name);
    return *fn != nullptr;
}

void load_cusolver()
{
    /* The soname first (LD_LIBRARY_PATH, ld.so.conf), then the toolkit's
     * usual home. */
    const char *names[] = {"libcusolver.so.12", "/usr/local/cuda/lib64/libcusolver.so.12"};
    for (const char *name : names)
        if ((cusolver.lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr)
            break;
    if (!cusolver.lib) {
        snprintf(cusolver.error, sizeof cusolver.error, "cannot load cuSOLVER (libcusolver.so.12): %s",
                 dlerror());
        return;
    }
    if (!bind(&cusolver.create, "cusolverDnCreate") || !bind(&cusolver.destroy, "cusolverDnDestroy") ||
        !bind(&cusolver.potrf_buffer_size, "cusolverDnDpotrf_bufferSize") ||
        !bind(&cusolver.potrf, "cusolverDnDpotrf") || !bind(&cusolver.potrs, "cusolverDnDpotrs")) {
        dlclose(cusolver.lib);
        cusolver.lib = nullptr;
    }
}

/* Lower and upper triangles of K + lambda I, phi(r) = r^2 log r. */
__global__ void fill_matrix(double *a, const double *u, const double *v, int n, double lambda)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i >= n)
        return;
    double value = lambda;
    if (i != j) {
        const double du = u[i] - u[j], dv = v[i] - v[j];
        const double r2 = du * du + dv * dv;
        value = r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
    }
    a[size_t(j) * n + i] = value;
}

/* y = A q for the symmetric A: y_j = column j . q (columns are contiguous). */
__global__ void symmetric_times(const double *a, const double *q, double *y, int n)
{
    __shared__ double partial[256];
    const int j = blockIdx.x;
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += a[size_t(j) * n + i] * q[i];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
        if (threadIdx.x < width)
            partial[threadIdx.x] += partial[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        y[j] = partial[0];
}

/* A <- A - q y^T - y q^T. */
__global__ void rank2_update(double *a, const double *q, const double *y, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i < n)
        a[size_t(j) * n + i] -= q[i] * y[j] + y[i] * q[j];
}

const char *status_name(cusolverStatus_t s)
{
    switch (s) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUSOLVER_STATUS_INVALID_VALUE: return "invalid value";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "internal error";
    default: return "error";
    }
}

} // namespace

extern "C" int tps_gpu_solve_available(char *err, size_t errlen)
{
    if (tps_gpu_probe(err, errlen) != 0)
        return -1;
    pthread_once(&load_once, load_cusolver);
    if (!cusolver.lib) {
        snprintf(err, errlen, "%s", cusolver.error);
        return -1;
    }
    return 0;
}

extern "C" int tps_gpu_factor_solve(size_t n, const double *u, const double *v, double lambda,
                                    const double *reflectors, const double tau[3], size_t n_rhs,
                                    double *rhs, double *first_columns, size_t max_bytes,
                                    char *err, size_t errlen)
{
    if (tps_gpu_solve_available(err, errlen) != 0)
        return TPS_GPU_SOLVE_UNAVAILABLE;
    if (n > 46340 || n < 4) { /* n^2 must fit an int for cuSOLVER's 32-bit API */
        snprintf(err, errlen, "%zu points is outside the GPU solve's range", n);
        return TPS_GPU_SOLVE_UNAVAILABLE;
    }
    cudaSetDevice(0);
    const int ni = int(n), m = ni - 3;
    const size_t matrix_bytes = n * n * sizeof(double);
    if (max_bytes && matrix_bytes > max_bytes) {
        snprintf(err, errlen, "the GPU solve of %zu points needs %zu bytes of GPU memory, more "
                 "than the %zu allowed", n, matrix_bytes, max_bytes);
        return TPS_GPU_SOLVE_UNAVAILABLE;
    }
    size_t free_bytes = 0, total_bytes = 0;
    cudaError_t e = cudaMemGetInfo(&free_bytes, &total_bytes);
    if (e != cudaSuccess || free_bytes < matrix_bytes + n * (n_rhs + 8) * sizeof(double) + (64u << 20)) {
        snprintf(err, errlen, "the GPU has %zu bytes free, the solve of %zu points needs %zu",
                 free_bytes, n, matrix_bytes);
        cudaGetLastError();
        return TPS_GPU_SOLVE_UNAVAILABLE;
    }

    double *d_a = nullptr, *d_u = nullptr, *d_v = nullptr, *d_q = nullptr, *d_y = nullptr,
           *d_b = nullptr, *d_work = nullptr;
    int *d_info = nullptr;
    double *q = (double *)malloc(n * sizeof(double)), *y = (double *)malloc(n * sizeof(double));
    cusolverDnHandle_t handle = nullptr;
    double *b22 = nullptr;
    int status = TPS_GPU_SOLVE_FAILED, lwork = 0, info = 0;
    cusolverStatus_t cs = CUSOLVER_STATUS_SUCCESS;
    const dim3 grid((unsigned)((n + 255) / 256), (unsigned)n);
#define CHECK_CUDA(call, what)                      \
    if ((e = (call)) != cudaSuccess) {              \
        snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e)); \
        goto done;                                  \
    }
    if (!q || !y) {
        snprintf(err, errlen, "out of host memory");
        goto done;
    }
    CHECK_CUDA(cudaMalloc(&d_a, matrix_bytes), "cudaMalloc");
    CHECK_CUDA(cudaMalloc(&d_u, n * sizeof(double)), "cudaMalloc");
    CHECK_CUDA(cudaMalloc(&d_v, n * sizeof(double)), "cudaMalloc");
    CHECK_CUDA(cudaMalloc(&d_q, n * sizeof(double)), "cudaMalloc");
    CHECK_CUDA(cudaMalloc(&d_y, n * sizeof(double)), "cudaMalloc");
    CHECK_CUDA(cudaMalloc(&d_b, size_t(m) * n_rhs * sizeof(double)), "cudaMalloc");
    CHECK_CUDA(cudaMalloc(&d_info, sizeof(int)), "cudaMalloc");
    CHECK_CUDA(cudaMemcpy(d_u, u, n * sizeof(double), cudaMemcpyHostToDevice), "upload");
    CHECK_CUDA(cudaMemcpy(d_v, v, n * sizeof(double), cudaMemcpyHostToDevice), "upload");

    fill_matrix<<<grid, 256>>>(d_a, d_u, d_v, ni, lambda);
    CHECK_CUDA(cudaGetLastError(), "fill kernel");
    /* A <- H_j A H_j, j = 1..3: y = A q, y' = tau y - (tau^2 q.y / 2) q,
     * A <- A - q y'^T - y' q^T (core/solve.c does the same on the CPU). */
    for (int j = 0; j < 3; ++j) {
        memset(q, 0, n * sizeof(double));
        q[j] = 1.0;
        memcpy(q + j + 1, reflectors + size_t(j) * n + j + 1, (n - j - 1) * sizeof(double));
        CHECK_CUDA(cudaMemcpy(d_q, q, n * sizeof(double), cudaMemcpyHostToDevice), "upload");
        symmetric_times<<<ni, 256>>>(d_a, d_q, d_y, ni);
        CHECK_CUDA(cudaGetLastError(), "matrix-vector kernel");
        CHECK_CUDA(cudaMemcpy(y, d_y, n * sizeof(double), cudaMemcpyDeviceToHost), "download");
        double beta = 0.0;
        for (size_t i = 0; i < n; ++i)
            beta += q[i] * y[i];
        const double c = 0.5 * tau[j] * tau[j] * beta;
        for (size_t i = 0; i < n; ++i)
            y[i] = tau[j] * y[i] - c * q[i];
        CHECK_CUDA(cudaMemcpy(d_y, y, n * sizeof(double), cudaMemcpyHostToDevice), "upload");
        rank2_update<<<grid, 256>>>(d_a, d_q, d_y, ni);
        CHECK_CUDA(cudaGetLastError(), "rank-2 kernel");
    }
    /* Q2^T A Q1, for the affine part: the first three columns. */
    CHECK_CUDA(cudaMemcpy(first_columns, d_a, 3 * n * sizeof(double), cudaMemcpyDeviceToHost),
               "download");

    if ((cs = cusolver.create(&handle)) != CUSOLVER_STATUS_SUCCESS) {
        snprintf(err, errlen, "cusolverDnCreate: %s", status_name(cs));
        goto done;
    }
    b22 = d_a + 3 * n + 3;
    if ((cs = cusolver.potrf_buffer_size(handle, CUBLAS_FILL_MODE_LOWER, m, b22, ni, &lwork)) !=
        CUSOLVER_STATUS_SUCCESS) {
        snprintf(err, errlen, "cusolverDnDpotrf_bufferSize: %s", status_name(cs));
        goto done;
    }
    CHECK_CUDA(cudaMalloc(&d_work, size_t(lwork) * sizeof(double)), "cudaMalloc");
    if ((cs = cusolver.potrf(handle, CUBLAS_FILL_MODE_LOWER, m, b22, ni, d_work, lwork, d_info)) !=
        CUSOLVER_STATUS_SUCCESS) {
        snprintf(err, errlen, "cusolverDnDpotrf: %s", status_name(cs));
        goto done;
    }
    CHECK_CUDA(cudaMemcpy(&info, d_info, sizeof(int), cudaMemcpyDeviceToHost), "download");
    if (info != 0) {
        snprintf(err, errlen, "Cholesky failed at pivot %d", info);
        status = TPS_GPU_SOLVE_NOT_POSITIVE_DEFINITE;
        goto done;
    }
    for (size_t r = 0; r < n_rhs; ++r)
        CHECK_CUDA(cudaMemcpy(d_b + r * m, rhs + r * n + 3, size_t(m) * sizeof(double),
                              cudaMemcpyHostToDevice), "upload");
    if ((cs = cusolver.potrs(handle, CUBLAS_FILL_MODE_LOWER, m, int(n_rhs), b22, ni, d_b, m,
                             d_info)) != CUSOLVER_STATUS_SUCCESS) {
        snprintf(err, errlen, "cusolverDnDpotrs: %s", status_name(cs));
        goto done;
    }
    for (size_t r = 0; r < n_rhs; ++r)
        CHECK_CUDA(cudaMemcpy(rhs + r * n + 3, d_b + r * m, size_t(m) * sizeof(double),
                              cudaMemcpyDeviceToHost), "download");
    status = 0;
#undef CHECK_CUDA
done:
    if (handle)
        cusolver.destroy(handle);
    cudaFree(d_a);
    cudaFree(d_u);
    cudaFree(d_v);
    cudaFree(d_q);
    cudaFree(d_y);
    cudaFree(d_b);
    cudaFree(d_work);
    cudaFree(d_info);
    free(q);
    free(y);
    cudaGetLastError();
    return status;
}

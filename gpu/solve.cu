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
 * cuSOLVER is loaded at run time when first needed (cuda_libs.cuh), so the
 * plugin has no link-time dependency on it: without it (or without enough
 * device memory) the engine solves on the CPU.
 */
#include "common.cuh"
#include "cuda_libs.cuh"

#include <algorithm>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <new>
#include <vector>

using tps_gpu::unavailable;

namespace {

struct Cusolver {
    cusolverStatus_t (*create)(cusolverDnHandle_t *) = nullptr;
    cusolverStatus_t (*destroy)(cusolverDnHandle_t) = nullptr;
    cusolverStatus_t (*potrf_buffer_size)(cusolverDnHandle_t, cublasFillMode_t, int, double *,
                                          int, int *) = nullptr;
    cusolverStatus_t (*potrf)(cusolverDnHandle_t, cublasFillMode_t, int, double *, int, double *,
                              int, int *) = nullptr;
    cusolverStatus_t (*potrs)(cusolverDnHandle_t, cublasFillMode_t, int, int, const double *, int,
                              double *, int, int *) = nullptr;
    cusolverStatus_t (*potrf_batched)(cusolverDnHandle_t, cublasFillMode_t, int, double *[], int,
                                      int *, int) = nullptr;
    cusolverStatus_t (*potrs_batched)(cusolverDnHandle_t, cublasFillMode_t, int, int, double *[],
                                      int, double *[], int, int *, int) = nullptr;
};

Cusolver cusolver;

bool bind_cusolver(tps_gpu::SymbolBinder &b)
{
    return b.require(&cusolver.create, "cusolverDnCreate") &&
           b.require(&cusolver.destroy, "cusolverDnDestroy") &&
           b.require(&cusolver.potrf_buffer_size, "cusolverDnDpotrf_bufferSize") &&
           b.require(&cusolver.potrf, "cusolverDnDpotrf") &&
           b.require(&cusolver.potrs, "cusolverDnDpotrs") &&
           b.require(&cusolver.potrf_batched, "cusolverDnDpotrfBatched") &&
           b.require(&cusolver.potrs_batched, "cusolverDnDpotrsBatched");
}

tps_gpu::CudaSymbols cusolver_symbols(tps_gpu::CudaLib::cusolver, bind_cusolver);

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

/* The dot product of a and b (n values) by a block of 256 threads: every
 * thread gets the sum. */
__device__ double block_dot(const double *a, const double *b, int n)
{
    __shared__ double partial[256];
    double sum = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        sum += a[i] * b[i];
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
        if (threadIdx.x < width)
            partial[threadIdx.x] += partial[threadIdx.x + width];
        __syncthreads();
    }
    const double total = partial[0];
    __syncthreads(); /* partial is reused by the next call */
    return total;
}

/* y = A q for the symmetric A: y_j = column j . q (columns are contiguous). */
__global__ void symmetric_times(const double *a, const double *q, double *y, int n)
{
    const int j = blockIdx.x;
    const double s = block_dot(a + size_t(j) * n, q, n);
    if (threadIdx.x == 0)
        y[j] = s;
}

/* A <- A - q y^T - y q^T. */
__global__ void rank2_update(double *a, const double *q, const double *y, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i < n)
        a[size_t(j) * n + i] -= q[i] * y[j] + y[i] * q[j];
}


/* ---- batched: many small systems (the patches of a local model) ----------
 * System s of a chunk is blockIdx.z (fill, rank-2 update) or blockIdx.y
 * (matrix-vector products); each has an nm x nm matrix, nm the largest n of
 * the chunk: K + lambda I in its leading n x n block and the identity in
 * the rest, which the reflectors (zero there) leave alone and the Cholesky
 * factors trivially, so every system shares one size. */
struct BatchSystem {
    const double *u, *v;
    double *a; /* nm x nm, column-major */
    int n;
    double lambda;
};

__global__ void batch_fill(const BatchSystem *systems, int nm)
{
    const BatchSystem s = systems[blockIdx.z];
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i >= nm)
        return;
    double value = i == j ? 1.0 : 0.0;
    if (i < s.n && j < s.n) {
        value = s.lambda;
        if (i != j) {
            const double du = s.u[i] - s.u[j], dv = s.v[i] - s.v[j];
            const double r2 = du * du + dv * dv;
            value = r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
        }
    }
    s.a[size_t(j) * nm + i] = value;
}

/* y_s = A_s q_s (A symmetric: column j . q). */
__global__ void batch_symmetric_times(const BatchSystem *systems, const double *q, double *y,
                                      int nm)
{
    const int j = blockIdx.x, sys = blockIdx.y;
    const double sum = block_dot(systems[sys].a + size_t(j) * nm, q + size_t(sys) * nm, nm);
    if (threadIdx.x == 0)
        y[size_t(sys) * nm + j] = sum;
}

/* y <- tau y - (tau^2 q.y / 2) q, one block per system (as the single solve
 * does on the host). */
__global__ void batch_reflector_vector(const double *q, double *y, const double *tau, int nm)
{
    const int sys = blockIdx.x;
    const double *qs = q + size_t(sys) * nm;
    double *ys = y + size_t(sys) * nm;
    const double t = tau[sys], c = 0.5 * t * t * block_dot(qs, ys, nm);
    for (int i = threadIdx.x; i < nm; i += blockDim.x)
        ys[i] = t * ys[i] - c * qs[i];
}

__global__ void batch_rank2(const BatchSystem *systems, const double *q, const double *y, int nm)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y, sys = blockIdx.z;
    if (i >= nm)
        return;
    const double *qs = q + size_t(sys) * nm, *ys = y + size_t(sys) * nm;
    systems[sys].a[size_t(j) * nm + i] -= qs[i] * ys[j] + ys[i] * qs[j];
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

extern "C" tps_status tps_gpu_solve_available(tps_error *err)
{
    if (tps_gpu_probe(err) != TPS_OK)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    return cusolver_symbols.need(err);
}

extern "C" tps_status tps_gpu_factor_solve(size_t n, const double *u, const double *v,
                                           double lambda, const double *reflectors,
                                           const double tau[3], size_t n_rhs, double *rhs,
                                           double *first_columns, size_t max_bytes,
                                           tps_error *err)
{
    if (tps_gpu_solve_available(err) != TPS_OK)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    if (n > 46340 || n < 4) { /* n^2 must fit an int for cuSOLVER's 32-bit API */
        unavailable(err, "%zu points is outside the GPU solve's range", n);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    cudaSetDevice(0);
    const int ni = int(n), m = ni - 3;
    const size_t matrix_bytes = n * n * sizeof(double);
    if (max_bytes && matrix_bytes > max_bytes) {
        unavailable(err, "the GPU solve of %zu points needs %zu bytes of GPU memory, more "
                 "than the %zu allowed", n, matrix_bytes, max_bytes);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    size_t free_bytes = 0, total_bytes = 0;
    cudaError_t e = cudaMemGetInfo(&free_bytes, &total_bytes);
    if (e != cudaSuccess || free_bytes < matrix_bytes + n * (n_rhs + 8) * sizeof(double) + (64u << 20)) {
        unavailable(err, "the GPU has %zu bytes free, the solve of %zu points needs %zu",
                 free_bytes, n, matrix_bytes);
        cudaGetLastError();
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }

    double *d_a = nullptr, *d_u = nullptr, *d_v = nullptr, *d_q = nullptr, *d_y = nullptr,
           *d_b = nullptr, *d_work = nullptr;
    int *d_info = nullptr;
    double *q = (double *)malloc(n * sizeof(double)), *y = (double *)malloc(n * sizeof(double));
    cusolverDnHandle_t handle = nullptr;
    double *b22 = nullptr;
    tps_status status = TPS_ERR_DEVICE_UNAVAILABLE;
    int lwork = 0, info = 0;
    cusolverStatus_t cs = CUSOLVER_STATUS_SUCCESS;
    const dim3 grid((unsigned)((n + 255) / 256), (unsigned)n);
#define CHECK_CUDA(call, what)                      \
    if ((e = (call)) != cudaSuccess) {              \
        unavailable(err, "%s: %s", what, cudaGetErrorString(e)); \
        goto done;                                  \
    }
    if (!q || !y) {
        unavailable(err, "out of host memory");
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
        unavailable(err, "cusolverDnCreate: %s", status_name(cs));
        goto done;
    }
    b22 = d_a + 3 * n + 3;
    if ((cs = cusolver.potrf_buffer_size(handle, CUBLAS_FILL_MODE_LOWER, m, b22, ni, &lwork)) !=
        CUSOLVER_STATUS_SUCCESS) {
        unavailable(err, "cusolverDnDpotrf_bufferSize: %s", status_name(cs));
        goto done;
    }
    CHECK_CUDA(cudaMalloc(&d_work, size_t(lwork) * sizeof(double)), "cudaMalloc");
    if ((cs = cusolver.potrf(handle, CUBLAS_FILL_MODE_LOWER, m, b22, ni, d_work, lwork, d_info)) !=
        CUSOLVER_STATUS_SUCCESS) {
        unavailable(err, "cusolverDnDpotrf: %s", status_name(cs));
        goto done;
    }
    CHECK_CUDA(cudaMemcpy(&info, d_info, sizeof(int), cudaMemcpyDeviceToHost), "download");
    if (info != 0) {
        status = tps_error_set(err, TPS_ERR_SINGULAR, "Cholesky failed at pivot %d", info);
        goto done;
    }
    for (size_t r = 0; r < n_rhs; ++r)
        CHECK_CUDA(cudaMemcpy(d_b + r * m, rhs + r * n + 3, size_t(m) * sizeof(double),
                              cudaMemcpyHostToDevice), "upload");
    if ((cs = cusolver.potrs(handle, CUBLAS_FILL_MODE_LOWER, m, int(n_rhs), b22, ni, d_b, m,
                             d_info)) != CUSOLVER_STATUS_SUCCESS) {
        unavailable(err, "cusolverDnDpotrs: %s", status_name(cs));
        goto done;
    }
    for (size_t r = 0; r < n_rhs; ++r)
        CHECK_CUDA(cudaMemcpy(rhs + r * n + 3, d_b + r * m, size_t(m) * sizeof(double),
                              cudaMemcpyDeviceToHost), "download");
    status = TPS_OK;
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

extern "C" tps_status tps_gpu_factor_solve_batch(size_t count, tps_gpu_system *systems,
                                                 size_t max_bytes, tps_error *err)
{
    for (size_t k = 0; k < count; ++k)
        systems[k].status = TPS_ERR_DEVICE_UNAVAILABLE;
    if (tps_gpu_solve_available(err) != TPS_OK)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    /* Similar sizes share a chunk (and its padded size): sorted by n. */
    std::vector<size_t> order;
    try {
        for (size_t k = 0; k < count; ++k)
            if (systems[k].n >= 4 && systems[k].n <= 46340)
                order.push_back(k);
    } catch (const std::bad_alloc &) {
        unavailable(err, "out of host memory");
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    std::stable_sort(order.begin(), order.end(),
                     [systems](size_t a, size_t b) { return systems[a].n < systems[b].n; });
    cudaError_t e = cudaSetDevice(0);
    size_t free_bytes = 0, total_bytes = 0;
    if (e == cudaSuccess)
        e = cudaMemGetInfo(&free_bytes, &total_bytes);
    if (e != cudaSuccess) {
        unavailable(err, "cannot query the GPU's memory: %s", cudaGetErrorString(e));
        cudaGetLastError();
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    /* Leave room for the CUDA context's own needs and other users. */
    size_t budget = free_bytes > (size_t(512) << 20) ? (free_bytes - (size_t(512) << 20)) / 10 * 9 : 0;
    if (max_bytes && max_bytes < budget)
        budget = max_bytes;
    cusolverDnHandle_t handle = nullptr;
    cusolverStatus_t cs = cusolver.create(&handle);
    if (cs != CUSOLVER_STATUS_SUCCESS) {
        unavailable(err, "cusolverDnCreate: %s", status_name(cs));
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    tps_status status = TPS_OK;
    for (size_t k0 = 0; k0 < order.size() && status == 0;) {
        /* The chunk: as many systems as fit the budget at the largest's size. */
        size_t cnt = 0, nm = 0, n_rhs = 0, points = 0;
        while (k0 + cnt < order.size() && cnt < 32768) {
            const tps_gpu_system &c = systems[order[k0 + cnt]];
            const size_t nm2 = c.n > nm ? c.n : nm, r2 = c.n_rhs > n_rhs ? c.n_rhs : n_rhs;
            const size_t need = (cnt + 1) * ((nm2 * nm2 + 4 * nm2 + r2 * nm2) * sizeof(double) +
                                             sizeof(BatchSystem) + (1 + r2) * sizeof(double *) +
                                             3 * sizeof(double) + sizeof(int)) +
                                (points + c.n) * 2 * sizeof(double);
            if (need > budget)
                break;
            nm = nm2;
            n_rhs = r2;
            points += c.n;
            ++cnt;
        }
        if (cnt == 0) {
            unavailable(err, "the GPU's memory (%zu bytes usable) holds no system of %zu "
                     "points", budget, systems[order[k0]].n);
            status = TPS_ERR_DEVICE_UNAVAILABLE;
            break;
        }
        const size_t mm = nm - 3;
        double *d_a = nullptr, *d_uv = nullptr, *d_q = nullptr, *d_y = nullptr, *d_tau = nullptr,
               *d_b = nullptr;
        BatchSystem *d_sys = nullptr;
        double **d_aptr = nullptr, **d_bptr = nullptr;
        int *d_info = nullptr;
        std::vector<double> uv, q, tau, b, cols;
        std::vector<BatchSystem> bs(cnt);
        std::vector<double *> aptr(cnt), bptr(cnt * n_rhs);
        std::vector<int> info(cnt);
        try {
            uv.resize(2 * points);
            q.assign(3 * cnt * nm, 0.0);
            tau.resize(3 * cnt);
            b.assign(cnt * n_rhs * mm, 0.0);
            cols.resize(cnt * 3 * nm);
        } catch (const std::bad_alloc &) {
            unavailable(err, "out of host memory");
            status = TPS_ERR_DEVICE_UNAVAILABLE;
            break;
        }
#define BATCH_CUDA(call, what)                                                   \
    if ((e = (call)) != cudaSuccess) {                                           \
        unavailable(err, "%s: %s", what, cudaGetErrorString(e));            \
        status = TPS_ERR_DEVICE_UNAVAILABLE;                                           \
        goto chunk_done;                                                         \
    }
        BATCH_CUDA(cudaMalloc(&d_a, cnt * nm * nm * sizeof(double)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_uv, 2 * points * sizeof(double)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_q, q.size() * sizeof(double)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_y, cnt * nm * sizeof(double)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_tau, tau.size() * sizeof(double)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_b, b.size() * sizeof(double)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_sys, cnt * sizeof(BatchSystem)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_aptr, cnt * sizeof(double *)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_bptr, bptr.size() * sizeof(double *)), "cudaMalloc");
        BATCH_CUDA(cudaMalloc(&d_info, (cnt + 1) * sizeof(int)), "cudaMalloc");
        {
            size_t off = 0;
            for (size_t s = 0; s < cnt; ++s) {
                const tps_gpu_system &c = systems[order[k0 + s]];
                memcpy(&uv[off], c.u, c.n * sizeof(double));
                memcpy(&uv[points + off], c.v, c.n * sizeof(double));
                bs[s] = BatchSystem{d_uv + off, d_uv + points + off, d_a + s * nm * nm, int(c.n),
                                    c.lambda};
                off += c.n;
                for (int j = 0; j < 3; ++j) {
                    /* Reflector j: 1 at j, LAPACK's stored part below, 0 elsewhere. */
                    double *qj = &q[(size_t(j) * cnt + s) * nm];
                    qj[j] = 1.0;
                    memcpy(qj + j + 1, c.reflectors + size_t(j) * c.n + j + 1,
                           (c.n - j - 1) * sizeof(double));
                    tau[size_t(j) * cnt + s] = c.tau[j];
                }
                for (size_t r = 0; r < c.n_rhs; ++r)
                    memcpy(&b[(s * n_rhs + r) * mm], c.rhs + r * c.n + 3, (c.n - 3) * sizeof(double));
                aptr[s] = d_a + s * nm * nm + 3 * nm + 3;
                for (size_t r = 0; r < n_rhs; ++r)
                    bptr[r * cnt + s] = d_b + (s * n_rhs + r) * mm;
            }
        }
        BATCH_CUDA(cudaMemcpy(d_uv, uv.data(), uv.size() * sizeof(double), cudaMemcpyHostToDevice),
                   "upload");
        BATCH_CUDA(cudaMemcpy(d_q, q.data(), q.size() * sizeof(double), cudaMemcpyHostToDevice),
                   "upload");
        BATCH_CUDA(cudaMemcpy(d_tau, tau.data(), tau.size() * sizeof(double),
                              cudaMemcpyHostToDevice), "upload");
        BATCH_CUDA(cudaMemcpy(d_b, b.data(), b.size() * sizeof(double), cudaMemcpyHostToDevice),
                   "upload");
        BATCH_CUDA(cudaMemcpy(d_sys, bs.data(), cnt * sizeof(BatchSystem), cudaMemcpyHostToDevice),
                   "upload");
        BATCH_CUDA(cudaMemcpy(d_aptr, aptr.data(), cnt * sizeof(double *), cudaMemcpyHostToDevice),
                   "upload");
        BATCH_CUDA(cudaMemcpy(d_bptr, bptr.data(), bptr.size() * sizeof(double *),
                              cudaMemcpyHostToDevice), "upload");
        {
            const dim3 full((unsigned)((nm + 255) / 256), (unsigned)nm, (unsigned)cnt);
            batch_fill<<<full, 256>>>(d_sys, int(nm));
            BATCH_CUDA(cudaGetLastError(), "fill kernel");
            /* A <- H_j A H_j, j = 1..3, as in the single solve. */
            for (int j = 0; j < 3; ++j) {
                const double *qj = d_q + size_t(j) * cnt * nm;
                batch_symmetric_times<<<dim3((unsigned)nm, (unsigned)cnt), 256>>>(d_sys, qj, d_y,
                                                                                  int(nm));
                batch_reflector_vector<<<(unsigned)cnt, 256>>>(qj, d_y, d_tau + size_t(j) * cnt,
                                                              int(nm));
                batch_rank2<<<full, 256>>>(d_sys, qj, d_y, int(nm));
                BATCH_CUDA(cudaGetLastError(), "reflector kernels");
            }
        }
        /* The first three columns of each Q^T A Q, for the affine part. */
        BATCH_CUDA(cudaMemcpy2D(cols.data(), 3 * nm * sizeof(double), d_a,
                                nm * nm * sizeof(double), 3 * nm * sizeof(double), cnt,
                                cudaMemcpyDeviceToHost), "download");
        if ((cs = cusolver.potrf_batched(handle, CUBLAS_FILL_MODE_LOWER, int(mm), d_aptr, int(nm),
                                         d_info, int(cnt))) != CUSOLVER_STATUS_SUCCESS) {
            unavailable(err, "cusolverDnDpotrfBatched: %s", status_name(cs));
            status = TPS_ERR_DEVICE_UNAVAILABLE;
            goto chunk_done;
        }
        BATCH_CUDA(cudaMemcpy(info.data(), d_info, cnt * sizeof(int), cudaMemcpyDeviceToHost),
                   "download");
        for (size_t r = 0; r < n_rhs; ++r)
            if ((cs = cusolver.potrs_batched(handle, CUBLAS_FILL_MODE_LOWER, int(mm), 1,
                                             d_aptr, int(nm), d_bptr + r * cnt, int(mm),
                                             d_info + cnt, int(cnt))) != CUSOLVER_STATUS_SUCCESS) {
                unavailable(err, "cusolverDnDpotrsBatched: %s", status_name(cs));
                status = TPS_ERR_DEVICE_UNAVAILABLE;
                goto chunk_done;
            }
        BATCH_CUDA(cudaMemcpy(b.data(), d_b, b.size() * sizeof(double), cudaMemcpyDeviceToHost),
                   "download");
        for (size_t s = 0; s < cnt; ++s) {
            tps_gpu_system &c = systems[order[k0 + s]];
            if (info[s] != 0) {
                c.status = TPS_ERR_SINGULAR;
                continue;
            }
            for (int k = 0; k < 3; ++k)
                memcpy(c.first_columns + size_t(k) * c.n, &cols[s * 3 * nm + size_t(k) * nm],
                       c.n * sizeof(double));
            for (size_t r = 0; r < c.n_rhs; ++r)
                memcpy(c.rhs + r * c.n + 3, &b[(s * n_rhs + r) * mm], (c.n - 3) * sizeof(double));
            c.status = TPS_OK;
        }
#undef BATCH_CUDA
    chunk_done:
        cudaFree(d_a);
        cudaFree(d_uv);
        cudaFree(d_q);
        cudaFree(d_y);
        cudaFree(d_tau);
        cudaFree(d_b);
        cudaFree(d_sys);
        cudaFree(d_aptr);
        cudaFree(d_bptr);
        cudaFree(d_info);
        k0 += cnt;
    }
    cusolver.destroy(handle);
    cudaGetLastError();
    return status;
}

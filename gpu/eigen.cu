/*
 * eigen.cu: a local model's GCV on the GPU (core/local_cv.c): the
 * eigendecompositions of many small B = Q2^T D K D Q2 at once, by the
 * method of core/solve.c (tps_spline_eigen_cpu):
 *   1. D K D is formed on the device for every system of a chunk,
 *   2. the three Householder reflectors of D P (computed on the host) are
 *      applied from both sides as rank-2 updates,
 *   3. the trailing (n-3) x (n-3) blocks are packed and cuSOLVER's
 *      syevBatched (cusolverDnXsyevBatched) decomposes them all in one call.
 * Systems of a chunk share one size: each is padded to the chunk's largest
 * n with a diagonal of distinct negative numbers -1, -2, ... that the
 * reflectors (zero there) leave alone: B is positive semidefinite, so the
 * padding's eigenvalues sort first, their eigenvectors are unit vectors of
 * the padded coordinates, and the rest are B's own, zero in those
 * coordinates (a block-diagonal matrix with well separated blocks).
 *
 * cuSOLVER is loaded at run time (cuda_libs.cuh); a cuSOLVER without
 * cusolverDnXsyevBatched (older toolkits) leaves every system to the CPU.
 * The chunks are bounded by the caller's waves (core/local_cv.c: at most
 * ~1 GiB of eigenvectors), far below a GPU's memory; syevBatched's own
 * workspace is queried per chunk, and a chunk it cannot get goes to the
 * CPU with the rest.
 */
#include "common.cuh"
#include "cuda_libs.cuh"

#include <algorithm>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <new>
#include <vector>

using tps_gpu::unavailable;

namespace {

struct Syev {
    cusolverStatus_t (*create)(cusolverDnHandle_t *) = nullptr;
    cusolverStatus_t (*destroy)(cusolverDnHandle_t) = nullptr;
    cusolverStatus_t (*create_params)(cusolverDnParams_t *) = nullptr;
    cusolverStatus_t (*destroy_params)(cusolverDnParams_t) = nullptr;
    cusolverStatus_t (*buffer_size)(cusolverDnHandle_t, cusolverDnParams_t, cusolverEigMode_t,
                                    cublasFillMode_t, int64_t, cudaDataType, const void *,
                                    int64_t, cudaDataType, const void *, cudaDataType, size_t *,
                                    size_t *, int64_t) = nullptr;
    cusolverStatus_t (*batched)(cusolverDnHandle_t, cusolverDnParams_t, cusolverEigMode_t,
                                cublasFillMode_t, int64_t, cudaDataType, void *, int64_t,
                                cudaDataType, void *, cudaDataType, void *, size_t, void *,
                                size_t, int *, int64_t) = nullptr;
};

Syev syev;

bool bind_syev(tps_gpu::SymbolBinder &b)
{
    return b.require(&syev.create, "cusolverDnCreate") &&
           b.require(&syev.destroy, "cusolverDnDestroy") &&
           b.require(&syev.create_params, "cusolverDnCreateParams") &&
           b.require(&syev.destroy_params, "cusolverDnDestroyParams") &&
           b.require(&syev.buffer_size, "cusolverDnXsyevBatched_bufferSize") &&
           b.require(&syev.batched, "cusolverDnXsyevBatched");
}

tps_gpu::CudaSymbols syev_symbols(tps_gpu::CudaLib::cusolver, bind_syev);

struct System {
    const double *u, *v, *rows; /* rows: nullptr, or D */
    double *a;                  /* nm x nm, column-major */
    int n;
};

/* D K D in the leading n x n block (K's diagonal is 0: lambda is 0 here),
 * the padding's distinct negative diagonal beyond. */
__global__ void fill(const System *systems, int nm)
{
    const System s = systems[blockIdx.z];
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i >= nm)
        return;
    double value = 0.0;
    if (i < s.n && j < s.n) {
        if (i != j) {
            const double du = s.u[i] - s.u[j], dv = s.v[i] - s.v[j];
            const double r2 = du * du + dv * dv;
            value = r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
            if (s.rows)
                value *= s.rows[i] * s.rows[j];
        }
    } else if (i == j) {
        value = -1.0 - double(i - s.n);
    }
    s.a[size_t(j) * nm + i] = value;
}

/* The dot product of a and b by a block of 256 threads (every thread gets it). */
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
    __syncthreads();
    return total;
}

/* y_s = A_s q_s (A symmetric: column j . q). */
__global__ void symmetric_times(const System *systems, const double *q, double *y, int nm)
{
    const int j = blockIdx.x, sys = blockIdx.y;
    const double sum = block_dot(systems[sys].a + size_t(j) * nm, q + size_t(sys) * nm, nm);
    if (threadIdx.x == 0)
        y[size_t(sys) * nm + j] = sum;
}

/* y <- tau y - (tau^2 q.y / 2) q, one block per system. */
__global__ void reflector_vector(const double *q, double *y, const double *tau, int nm)
{
    const int sys = blockIdx.x;
    const double *qs = q + size_t(sys) * nm;
    double *ys = y + size_t(sys) * nm;
    const double t = tau[sys], c = 0.5 * t * t * block_dot(qs, ys, nm);
    for (int i = threadIdx.x; i < nm; i += blockDim.x)
        ys[i] = t * ys[i] - c * qs[i];
}

/* A <- A - q y^T - y q^T. */
__global__ void rank2(const System *systems, const double *q, const double *y, int nm)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y, sys = blockIdx.z;
    if (i >= nm)
        return;
    const double *qs = q + size_t(sys) * nm, *ys = y + size_t(sys) * nm;
    systems[sys].a[size_t(j) * nm + i] -= qs[i] * ys[j] + ys[i] * qs[j];
}

/* The trailing mm x mm block of each system, packed for syevBatched. */
__global__ void pack(const System *systems, double *packed, int nm)
{
    const int mm = nm - 3;
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y, sys = blockIdx.z;
    if (i >= mm)
        return;
    packed[(size_t(sys) * mm + j) * mm + i] = systems[sys].a[size_t(j + 3) * nm + i + 3];
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
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

/* Device bytes of a chunk of cnt systems padded to nm (besides syev's
 * workspace): the matrices, their packed blocks, the vectors and points. */
size_t chunk_bytes(size_t cnt, size_t nm, size_t points)
{
    const size_t mm = nm - 3;
    return cnt * ((nm * nm + mm * mm + 4 * nm + mm) * sizeof(double) + sizeof(System) +
                  3 * sizeof(double) + sizeof(int)) +
           points * 3 * sizeof(double);
}

} // namespace

extern "C" tps_status tps_gpu_eigen_batch(size_t count, tps_gpu_eigen_system *systems,
                                          size_t max_bytes, tps_error *err)
{
    for (size_t k = 0; k < count; ++k)
        systems[k].status = TPS_ERR_DEVICE_UNAVAILABLE;
    if (tps_gpu_solve_available(err) != TPS_OK)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    if (syev_symbols.need(err) != TPS_OK)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    std::vector<size_t> order;
    try {
        for (size_t k = 0; k < count; ++k)
            if (systems[k].n >= 4 && systems[k].n <= 46340)
                order.push_back(k);
    } catch (const std::bad_alloc &) {
        return unavailable(err, "out of host memory");
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
    /* Leave room for the CUDA context, other users and syev's workspace
     * (queried per chunk; a chunk that does not fit is halved). */
    size_t budget = free_bytes > (size_t(512) << 20) ? (free_bytes - (size_t(512) << 20)) / 10 * 7
                                                     : 0;
    if (max_bytes && max_bytes < budget)
        budget = max_bytes;
    cusolverDnHandle_t handle = nullptr;
    cusolverDnParams_t params = nullptr;
    cusolverStatus_t cs = syev.create(&handle);
    if (cs == CUSOLVER_STATUS_SUCCESS)
        cs = syev.create_params(&params);
    if (cs != CUSOLVER_STATUS_SUCCESS) {
        if (handle)
            syev.destroy(handle);
        return unavailable(err, "cusolverDnCreate: %s", status_name(cs));
    }
    tps_status status = TPS_OK;
    for (size_t k0 = 0; k0 < order.size() && status == TPS_OK;) {
        /* The chunk: as many systems as fit at the largest's size, within
         * syevBatched's limit of n * lda * batch < 2^31. */
        size_t cnt = 0, nm = 0, points = 0;
        while (k0 + cnt < order.size()) {
            const tps_gpu_eigen_system &c = systems[order[k0 + cnt]];
            const size_t nm2 = c.n > nm ? c.n : nm, mm2 = nm2 - 3;
            if (chunk_bytes(cnt + 1, nm2, points + c.n) > budget ||
                mm2 * mm2 * (cnt + 1) > size_t(INT32_MAX))
                break;
            nm = nm2;
            points += c.n;
            ++cnt;
        }
        if (cnt == 0) {
            status = unavailable(err, "the GPU's memory (%zu bytes usable) holds no system of "
                                 "%zu points", budget, systems[order[k0]].n);
            break;
        }
        const size_t mm = nm - 3;
        double *d_a = nullptr, *d_packed = nullptr, *d_w = nullptr, *d_pts = nullptr,
               *d_q = nullptr, *d_y = nullptr, *d_tau = nullptr;
        void *d_work = nullptr, *h_work = nullptr;
        System *d_sys = nullptr;
        int *d_info = nullptr;
        size_t dev_work = 0, host_work = 0;
        std::vector<double> pts, q, tau, w;
        std::vector<System> sys(cnt);
        std::vector<int> info(cnt);
        try {
            pts.resize(3 * points);
            q.assign(3 * cnt * nm, 0.0);
            tau.resize(3 * cnt);
            w.resize(cnt * mm);
        } catch (const std::bad_alloc &) {
            status = unavailable(err, "out of host memory");
            break;
        }
#define EIGEN_CUDA(call, what)                                                  \
    if ((e = (call)) != cudaSuccess) {                                          \
        status = unavailable(err, "%s: %s", what, cudaGetErrorString(e));       \
        goto chunk_done;                                                        \
    }
        EIGEN_CUDA(cudaMalloc(&d_a, cnt * nm * nm * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_packed, cnt * mm * mm * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_w, cnt * mm * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_pts, 3 * points * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_q, q.size() * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_y, cnt * nm * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_tau, tau.size() * sizeof(double)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_sys, cnt * sizeof(System)), "cudaMalloc");
        EIGEN_CUDA(cudaMalloc(&d_info, cnt * sizeof(int)), "cudaMalloc");
        {
            size_t off = 0;
            for (size_t s = 0; s < cnt; ++s) {
                const tps_gpu_eigen_system &c = systems[order[k0 + s]];
                memcpy(&pts[off], c.u, c.n * sizeof(double));
                memcpy(&pts[points + off], c.v, c.n * sizeof(double));
                if (c.rows)
                    memcpy(&pts[2 * points + off], c.rows, c.n * sizeof(double));
                sys[s] = System{d_pts + off, d_pts + points + off,
                                c.rows ? d_pts + 2 * points + off : nullptr,
                                d_a + s * nm * nm, int(c.n)};
                off += c.n;
                for (int j = 0; j < 3; ++j) {
                    /* Reflector j: 1 at j, LAPACK's stored part below, 0 elsewhere. */
                    double *qj = &q[(size_t(j) * cnt + s) * nm];
                    qj[j] = 1.0;
                    memcpy(qj + j + 1, c.reflectors + size_t(j) * c.n + j + 1,
                           (c.n - j - 1) * sizeof(double));
                    tau[size_t(j) * cnt + s] = c.tau[j];
                }
            }
        }
        EIGEN_CUDA(cudaMemcpy(d_pts, pts.data(), pts.size() * sizeof(double),
                              cudaMemcpyHostToDevice), "upload");
        EIGEN_CUDA(cudaMemcpy(d_q, q.data(), q.size() * sizeof(double), cudaMemcpyHostToDevice),
                   "upload");
        EIGEN_CUDA(cudaMemcpy(d_tau, tau.data(), tau.size() * sizeof(double),
                              cudaMemcpyHostToDevice), "upload");
        EIGEN_CUDA(cudaMemcpy(d_sys, sys.data(), cnt * sizeof(System), cudaMemcpyHostToDevice),
                   "upload");
        {
            const dim3 full((unsigned)((nm + 255) / 256), (unsigned)nm, (unsigned)cnt);
            fill<<<full, 256>>>(d_sys, int(nm));
            EIGEN_CUDA(cudaGetLastError(), "fill kernel");
            for (int j = 0; j < 3; ++j) { /* A <- H_j A H_j, as solve.cu */
                const double *qj = d_q + size_t(j) * cnt * nm;
                symmetric_times<<<dim3((unsigned)nm, (unsigned)cnt), 256>>>(d_sys, qj, d_y,
                                                                            int(nm));
                reflector_vector<<<(unsigned)cnt, 256>>>(qj, d_y, d_tau + size_t(j) * cnt,
                                                         int(nm));
                rank2<<<full, 256>>>(d_sys, qj, d_y, int(nm));
                EIGEN_CUDA(cudaGetLastError(), "reflector kernels");
            }
            const dim3 packed((unsigned)((mm + 255) / 256), (unsigned)mm, (unsigned)cnt);
            pack<<<packed, 256>>>(d_sys, d_packed, int(nm));
            EIGEN_CUDA(cudaGetLastError(), "pack kernel");
        }
        /* The full matrices are no longer needed: room for the workspace. */
        cudaFree(d_a);
        d_a = nullptr;
        if ((cs = syev.buffer_size(handle, params, CUSOLVER_EIG_MODE_VECTOR,
                                   CUBLAS_FILL_MODE_LOWER, int64_t(mm), CUDA_R_64F, d_packed,
                                   int64_t(mm), CUDA_R_64F, d_w, CUDA_R_64F, &dev_work,
                                   &host_work, int64_t(cnt))) != CUSOLVER_STATUS_SUCCESS) {
            status = unavailable(err, "cusolverDnXsyevBatched_bufferSize: %s", status_name(cs));
            goto chunk_done;
        }
        EIGEN_CUDA(cudaMalloc(&d_work, dev_work ? dev_work : 1), "cudaMalloc (syev workspace)");
        if (host_work && !(h_work = malloc(host_work))) {
            status = unavailable(err, "out of host memory");
            goto chunk_done;
        }
        if ((cs = syev.batched(handle, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER,
                               int64_t(mm), CUDA_R_64F, d_packed, int64_t(mm), CUDA_R_64F, d_w,
                               CUDA_R_64F, d_work, dev_work, h_work, host_work, d_info,
                               int64_t(cnt))) != CUSOLVER_STATUS_SUCCESS) {
            status = unavailable(err, "cusolverDnXsyevBatched: %s", status_name(cs));
            goto chunk_done;
        }
        EIGEN_CUDA(cudaMemcpy(info.data(), d_info, cnt * sizeof(int), cudaMemcpyDeviceToHost),
                   "download");
        EIGEN_CUDA(cudaMemcpy(w.data(), d_w, w.size() * sizeof(double), cudaMemcpyDeviceToHost),
                   "download");
        for (size_t s = 0; s < cnt; ++s) {
            tps_gpu_eigen_system &c = systems[order[k0 + s]];
            if (info[s] != 0) /* not converged: the CPU decomposes it */
                continue;
            const size_t m = c.n - 3, pad = nm - c.n;
            /* The padding's eigenvalues come first; B's follow, its
             * eigenvectors in the first m rows of their columns. */
            memcpy(c.e, &w[s * mm + pad], m * sizeof(double));
            EIGEN_CUDA(cudaMemcpy2D(c.vectors, m * sizeof(double),
                                    d_packed + (s * mm + pad) * mm, mm * sizeof(double),
                                    m * sizeof(double), m, cudaMemcpyDeviceToHost),
                       "download");
            c.status = TPS_OK;
        }
#undef EIGEN_CUDA
    chunk_done:
        cudaFree(d_a);
        cudaFree(d_packed);
        cudaFree(d_w);
        cudaFree(d_pts);
        cudaFree(d_q);
        cudaFree(d_y);
        cudaFree(d_tau);
        cudaFree(d_sys);
        cudaFree(d_info);
        cudaFree(d_work);
        free(h_work);
        k0 += cnt;
    }
    syev.destroy_params(params);
    syev.destroy(handle);
    cudaGetLastError();
    return status;
}

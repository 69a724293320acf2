/* se.cu: the standard error on the device (gpu_backend.h; the arithmetic
 * is core/variance.h's). Per block of nb cells, all FP64:
 *   1. K (nb x n): phi(cell, point) = 0.5 r^2 log r^2;
 *   2. E = [K V | H]: K V by DGEMM (V the explicit reflectors), H = t R^-1
 *      per cell (t = [1 u v c..]);
 *   3. K <- K - E F, F = [T V^T; 0 | M21^T]: K Q = K - (K V) T V^T (Q's
 *      compact WY form), and the fixed part's -H M21^T, in one DGEMM; then
 *      q1 = K[:, 0:m] and y = K[:, m:];
 *   4. |L^-1 y|^2 by DGEMMs over column blocks J of L^-1 (its lower
 *      triangle, the rest zero): Z_J = Y[:, 0:J1] L^-1[J, 0:J1]^T, then the
 *      rows' sums of squares; ~(n-m)^2 (1 + BS/(n-m)) flops a cell;
 *   5. h^T M11 h - 2 q1^T h - |L^-1 y|^2.
 * cuBLAS is loaded at run time (cuda_libs.cuh), so the plugin needs no
 * CUDA library but the driver to load. A grid where tiles in low rank pay
 * goes by se_tiles.cu instead, its refused tiles by these blocks. */
#include "cuda_libs.cuh"
#include "se.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

using namespace tps_gpu;

namespace {

constexpr int MAX_M = SE_MAX_M;
constexpr size_t BS = 512; /* columns of L^-1 per DGEMM of step 4 */

SeBlas &cublas = se_blas;

/* 1. K[j + i nb] = phi(cell p0 + j, point i); cells past the window's end
 * (the last block's padding) repeat its last cell. */
__global__ void fill_kernel(double *k, int nb, const double *pu, const double *pv, int n,
                            GridArgs g, long long p0, long long pixels)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nb)
        return;
    long long p = p0 + j;
    if (p >= pixels)
        p = pixels - 1;
    double u, v;
    cell_centre(g, p % g.ncols, p / g.ncols, &u, &v);
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        const double du = u - pu[i], dv = v - pv[i];
        const double r2 = du * du + dv * dv;
        k[size_t(i) * nb + j] = r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
    }
}

/* 2. H = t R^-1 per cell (forward substitution on h R = t), into e[:, m:2m]. */
__global__ void fixed_rows(double *e, int nb, int m, const double *r, const double *zs,
                           GridArgs g, long long p0, long long pixels)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nb)
        return;
    long long p = p0 + j;
    if (p >= pixels)
        p = pixels - 1;
    double t[MAX_M], h[MAX_M];
    double u, v;
    cell_centre(g, p % g.ncols, p / g.ncols, &u, &v);
    t[0] = 1.0;
    t[1] = u;
    t[2] = v;
    for (int k = 3; k < m; ++k) {
        const double c = zs[size_t(k - 3) * pixels + p];
        t[k] = isnan(c) ? 0.0 : c; /* the cell is NaN at the end */
    }
    for (int k = 0; k < m; ++k) {
        double s = t[k];
        for (int l = 0; l < k; ++l)
            s -= h[l] * r[k * m + l];
        h[k] = s / r[k * m + k];
        e[size_t(m + k) * nb + j] = h[k];
    }
}

/* 4. sq[j] += sum over the block's columns of z[j, c]^2 */
__global__ void add_squares(double *sq, const double *z, int nb, int cols)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nb)
        return;
    double s = 0.0;
    for (int c = 0; c < cols; ++c) {
        const double x = z[size_t(c) * nb + j];
        s += x * x;
    }
    sq[j] += s;
}

/* 5. out[j] = h^T M11 h - 2 q1^T h - sq[j] (NaN where a covariate is NaN) */
__global__ void finish(double *out, const double *k, const double *e, const double *sq,
                       const double *m11, int nb, int m, const double *zs, long long p0,
                       long long pixels, int count)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= count)
        return;
    double q1h = 0.0, hmh = 0.0;
    for (int a = 0; a < m; ++a) {
        const double ha = e[size_t(m + a) * nb + j];
        q1h += k[size_t(a) * nb + j] * ha;
        for (int b = 0; b < m; ++b)
            hmh += ha * m11[b * m + a] * e[size_t(m + b) * nb + j];
    }
    double value = hmh - 2.0 * q1h - sq[j];
    for (int c = 3; c < m; ++c)
        if (isnan(zs[size_t(c - 3) * pixels + p0 + j]))
            value = nan("");
    out[j] = value;
}

/* Zero the strict upper triangle of the n x n matrix a (leading dim n). */
__global__ void zero_upper(double *a, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    for (int j = blockIdx.y; j < n; j += gridDim.y)
        if (i < j)
            a[size_t(j) * n + i] = 0.0;
}

} // namespace

static void release(tps_gpu_se *se)
{
    if (!se)
        return;
    cudaFree(se->u);
    cudaFree(se->v);
    cudaFree(se->vr);
    cudaFree(se->f);
    cudaFree(se->r);
    cudaFree(se->m11);
    cudaFree(se->linv);
    se_tiles_free(se->tiles);
    if (se->handle)
        cublas.destroy(se->handle);
    if (se->stream)
        cudaStreamDestroy(se->stream);
    delete se;
}

extern "C" void tps_gpu_se_destroy(tps_gpu_se *se)
{
    release(se);
}

static cudaError_t upload(double **dst, const double *src, size_t count)
{
    cudaError_t e = cudaMalloc(dst, sizeof(double) * (count ? count : 1));
    if (e == cudaSuccess && count)
        e = cudaMemcpy(*dst, src, sizeof(double) * count, cudaMemcpyHostToDevice);
    return e;
}

extern "C" tps_gpu_se *tps_gpu_se_create(size_t n, size_t m, const double *u, const double *v,
                                         const double *vr, const double *f, const double *r,
                                         const double *m11, const double *linv, size_t ld,
                                         size_t max_bytes, tps_error *err)
{
    if (tps_gpu_probe(err) != TPS_OK || se_blas_need(err) != TPS_OK)
        return nullptr;
    if (m > size_t(MAX_M) || n <= m || n > 2000000000u / 8) {
        unavailable(err, "a system of %zu points and %zu fixed columns", n, m);
        return nullptr;
    }
    const size_t nm = n - m;
    const size_t bytes = sizeof(double) * (2 * n + 3 * n * m + 2 * m * m + nm * nm);
    if (max_bytes && bytes > max_bytes) {
        unavailable(err, "the standard error's factorisation needs %zu bytes of GPU memory, "
                         "more than the %zu allowed", bytes, max_bytes);
        return nullptr;
    }
    tps_gpu_se *se = new (std::nothrow) tps_gpu_se;
    if (!se) {
        unavailable(err, "out of host memory");
        return nullptr;
    }
    se->n = int(n);
    se->m = int(m);
    se->nm = int(nm);
    se->bytes = bytes;
    cudaError_t e = upload(&se->u, u, n);
    if (e == cudaSuccess)
        e = upload(&se->v, v, n);
    if (e == cudaSuccess)
        e = upload(&se->vr, vr, n * m);
    if (e == cudaSuccess)
        e = upload(&se->f, f, 2 * m * n);
    if (e == cudaSuccess)
        e = upload(&se->r, r, m * m);
    if (e == cudaSuccess)
        e = upload(&se->m11, m11, m * m);
    if (e == cudaSuccess)
        e = cudaMalloc(&se->linv, sizeof(double) * nm * nm);
    if (e == cudaSuccess) /* the trailing block, at its own leading dimension */
        e = cudaMemcpy2D(se->linv, sizeof(double) * nm, linv, sizeof(double) * ld,
                         sizeof(double) * nm, nm, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        zero_upper<<<dim3(unsigned((nm + 255) / 256), unsigned(nm < 65535 ? nm : 65535)), 256>>>(
            se->linv, int(nm));
        e = cudaGetLastError();
    }
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&se->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess)
        e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        fail(err, "uploading the standard error's factorisation", e);
        release(se);
        return nullptr;
    }
    if (cublas.create(&se->handle) != CUBLAS_STATUS_SUCCESS ||
        cublas.set_stream(se->handle, se->stream) != CUBLAS_STATUS_SUCCESS) {
        unavailable(err, "cuBLAS: cannot create a handle");
        release(se);
        return nullptr;
    }
    return se;
}

extern "C" tps_status tps_gpu_se_variance(tps_gpu_se *se, const tps_window *grid,
                                          const double *zs, double *out, size_t max_bytes,
                                          tps_error *err)
{
    const long long pixels = (long long)grid->ncols * (long long)grid->nrows;
    if (pixels == 0)
        return TPS_OK;
    if (grid->ncols > 0x7fffffffu)
        return unavailable(err, "a window %zu cells wide", grid->ncols);
    std::lock_guard<std::mutex> guard(se->lock);
    const int n = se->n, m = se->m, nm = se->nm, nc = m - 3;
    /* Cells per block: its matrices (n + BS + 2m + 2 doubles a cell) within
     * half the free memory (and max_bytes), a multiple of 256. */
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess)
        return fail(err, "cudaMemGetInfo", e);
    size_t budget = free_b / 2;
    if (max_bytes)
        budget = max_bytes > se->bytes ? (max_bytes - se->bytes < budget ? max_bytes - se->bytes
                                                                         : budget)
                                       : 0;
    const size_t per_cell = sizeof(double) * (size_t(n) + BS + 2 * size_t(m) + 2);
    size_t nb = budget / per_cell / 256 * 256;
    if (nb > 32768)
        nb = 32768;
    if (nb > size_t(pixels))
        nb = (size_t(pixels) + 255) / 256 * 256;
    if (nb < 256)
        return unavailable(err, "too little GPU memory for a block of standard errors");
    const size_t zs_count = size_t(nc) * size_t(pixels);
    double *k = nullptr, *ebuf = nullptr, *z = nullptr, *sq = nullptr, *dout = nullptr,
           *dzs = nullptr;
    e = cudaMalloc(&k, sizeof(double) * nb * size_t(n));
    if (e == cudaSuccess)
        e = cudaMalloc(&ebuf, sizeof(double) * nb * 2 * size_t(m));
    if (e == cudaSuccess)
        e = cudaMalloc(&z, sizeof(double) * nb * BS);
    if (e == cudaSuccess)
        e = cudaMalloc(&sq, sizeof(double) * nb);
    if (e == cudaSuccess)
        e = cudaMalloc(&dout, sizeof(double) * nb);
    if (e == cudaSuccess)
        e = cudaMalloc(&dzs, sizeof(double) * (zs_count ? zs_count : 1));
    if (e == cudaSuccess && zs_count)
        e = cudaMemcpyAsync(dzs, zs, sizeof(double) * zs_count, cudaMemcpyHostToDevice,
                            se->stream);
    tps_status status = e == cudaSuccess ? TPS_OK : fail(err, "cudaMalloc", e);
    const GridArgs g = {*grid, int(grid->ncols), 0};
    const double one = 1.0, zero = 0.0, minus = -1.0;
    const int nbi = int(nb);
    const dim3 cells(unsigned((nb + 127) / 128));
    for (long long p0 = 0; p0 < pixels && status == TPS_OK; p0 += (long long)nb) {
        const int count = int(pixels - p0 < (long long)nb ? pixels - p0 : (long long)nb);
        fill_kernel<<<dim3(cells.x, unsigned(n < 1024 ? n : 1024)), 128, 0, se->stream>>>(
            k, nbi, se->u, se->v, n, g, p0, pixels);
        fixed_rows<<<cells, 128, 0, se->stream>>>(ebuf, nbi, m, se->r, dzs, g, p0, pixels);
        cublasStatus_t cs = cublas.dgemm(se->handle, CUBLAS_OP_N, CUBLAS_OP_N, nbi, m, n, &one,
                                         k, nbi, se->vr, n, &zero, ebuf, nbi);
        if (cs == CUBLAS_STATUS_SUCCESS)
            cs = cublas.dgemm(se->handle, CUBLAS_OP_N, CUBLAS_OP_N, nbi, n, 2 * m, &minus, ebuf,
                              nbi, se->f, 2 * m, &one, k, nbi);
        cudaMemsetAsync(sq, 0, sizeof(double) * nb, se->stream);
        const double *y = k + size_t(m) * nb;
        for (size_t j0 = 0; j0 < size_t(nm) && cs == CUBLAS_STATUS_SUCCESS; j0 += BS) {
            const int cols = int(size_t(nm) - j0 < BS ? size_t(nm) - j0 : BS);
            const int depth = int(j0) + cols; /* L^-1's rows j0.. have columns 0..depth-1 */
            cs = cublas.dgemm(se->handle, CUBLAS_OP_N, CUBLAS_OP_T, nbi, cols, depth, &one, y,
                              nbi, se->linv + j0, nm, &zero, z, nbi);
            add_squares<<<cells, 128, 0, se->stream>>>(sq, z, nbi, cols);
        }
        if (cs != CUBLAS_STATUS_SUCCESS) {
            status = unavailable(err, "cuBLAS DGEMM failed (status %d)", int(cs));
            break;
        }
        finish<<<cells, 128, 0, se->stream>>>(dout, k, ebuf, sq, se->m11, nbi, m, dzs, p0,
                                              pixels, count);
        e = cudaMemcpyAsync(out + p0, dout, sizeof(double) * size_t(count),
                            cudaMemcpyDeviceToHost, se->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(se->stream);
        if (e != cudaSuccess)
            status = fail(err, "standard error kernels", e);
    }
    cudaFree(k);
    cudaFree(ebuf);
    cudaFree(z);
    cudaFree(sq);
    cudaFree(dout);
    cudaFree(dzs);
    return status;
}

extern "C" tps_status tps_gpu_time_dgemm(size_t m, size_t n, size_t kk, int repeats,
                                         double *tflops, tps_error *err)
{
    if (tps_gpu_probe(err) != TPS_OK || se_blas_need(err) != TPS_OK)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    double *a = nullptr, *b = nullptr, *c = nullptr;
    cudaError_t e = cudaMalloc(&a, sizeof(double) * m * kk);
    if (e == cudaSuccess)
        e = cudaMalloc(&b, sizeof(double) * kk * n);
    if (e == cudaSuccess)
        e = cudaMalloc(&c, sizeof(double) * m * n);
    if (e == cudaSuccess)
        e = cudaMemset(a, 0, sizeof(double) * m * kk);
    if (e == cudaSuccess)
        e = cudaMemset(b, 0, sizeof(double) * kk * n);
    cublasHandle_t h = nullptr;
    tps_status status = e == cudaSuccess ? TPS_OK : fail(err, "cudaMalloc", e);
    if (status == TPS_OK && cublas.create(&h) != CUBLAS_STATUS_SUCCESS)
        status = unavailable(err, "cuBLAS: cannot create a handle");
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    double best = 0.0;
    const double one = 1.0, zero = 0.0;
    for (int r = -1; r < repeats && status == TPS_OK; ++r) {
        cudaEventRecord(t0);
        cublas.dgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, int(m), int(n), int(kk), &one, a, int(m), b,
                     int(kk), &zero, c, int(m));
        cudaEventRecord(t1);
        e = cudaEventSynchronize(t1);
        if (e != cudaSuccess) {
            status = fail(err, "DGEMM", e);
            break;
        }
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, t0, t1);
        const double rate = 2.0 * double(m) * double(n) * double(kk) / (ms * 1e-3) / 1e12;
        if (r >= 0 && rate > best)
            best = rate;
    }
    *tflops = best;
    if (h)
        cublas.destroy(h);
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return status;
}

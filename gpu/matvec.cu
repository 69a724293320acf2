/*
 * matvec.cu: products with the spline's kernel matrix for the iterative
 * solve (core/matvec.c): out[k] = sum_j h_j s log s, s = |x_t - x_j|^2, at
 * targets t among the model's own points, in FP64. The points stay on the
 * device for the whole solve; each product uploads the n weights (and the
 * target list when there is one) and downloads m sums.
 *
 * The kernel is global.cu's FP64 kernel with scattered targets instead of
 * grid cells: a block of THREADS threads, PIX targets per thread, the
 * sources tiled through shared memory TILE at a time with their weights,
 * the table log of log_table.cuh (about 11 FP64 operations), fma
 * accumulation. At N = 10^6 a product is 10^12 pairs: about 1.3 s at the
 * 7.7e11 pairs/s the grid kernel measured on an H100.
 */
#include "common.cuh"
#include "log_table.cuh"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

using namespace tps_gpu;

struct tps_gpu_matvec {
    size_t n, n_pad;
    double2 *uv;       /* n_pad points; padding at the origin, weight 0 */
    double *h;         /* n_pad weights */
    double *out;       /* n sums */
    uint32_t *idx;     /* n target indices (capacity) */
    double2 *log_table;
};

namespace {

__global__ void __launch_bounds__(THREADS) matvec_fp64(const double2 *__restrict__ uv,
                                                      const double *__restrict__ h, size_t n_pad,
                                                      const uint32_t *__restrict__ idx,
                                                      size_t m, const double2 *__restrict__ log_table,
                                                      double *__restrict__ out)
{
    __shared__ double s_u[TILE], s_v[TILE], s_h[TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    for (int k = threadIdx.x; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = log_table[k];
    size_t target[PIX];
    double pu[PIX], pv[PIX], acc[PIX];
    for (int p = 0; p < PIX; ++p) {
        target[p] = size_t(blockIdx.x) * (THREADS * PIX) + size_t(p) * THREADS + threadIdx.x;
        const size_t k = target[p] < m ? target[p] : m - 1;
        const double2 q = uv[idx ? size_t(idx[k]) : k];
        pu[p] = q.x;
        pv[p] = q.y;
        acc[p] = 0.0;
    }
    for (size_t t0 = 0; t0 < n_pad; t0 += TILE) {
        __syncthreads();
        for (int k = threadIdx.x; k < TILE; k += THREADS) {
            const double2 q = uv[t0 + k];
            s_u[k] = q.x;
            s_v[k] = q.y;
            s_h[k] = h[t0 + k];
        }
        __syncthreads();
#pragma unroll 2
        for (int k = 0; k < TILE; ++k) {
            const double qu = s_u[k], qv = s_v[k], hk = s_h[k];
            for (int p = 0; p < PIX; ++p) {
                const double dx = pu[p] - qu, dy = pv[p] - qv;
                /* + 1e-300: a target on a source gives ~0, not 0 * -inf. */
                const double r2 = fma(dx, dx, fma(dy, dy, 1e-300));
                acc[p] = fma(hk, r2 * table_log(r2, s_log), acc[p]);
            }
        }
    }
    for (int p = 0; p < PIX; ++p)
        if (target[p] < m)
            out[target[p]] = acc[p];
}

} // namespace

extern "C" void tps_gpu_matvec_destroy(tps_gpu_matvec *mv)
{
    if (!mv)
        return;
    cudaFree(mv->uv);
    cudaFree(mv->h);
    cudaFree(mv->out);
    cudaFree(mv->idx);
    cudaFree(mv->log_table);
    free(mv);
}

extern "C" tps_gpu_matvec *tps_gpu_matvec_create(size_t n, const double *u, const double *v,
                                                size_t max_bytes, tps_error *err)
{
    if (tps_gpu_probe(err) != TPS_OK)
        return nullptr;
    if (n == 0 || n > size_t(UINT32_MAX)) {
        unavailable(err, "%zu points: beyond the GPU products' range", n);
        return nullptr;
    }
    const size_t np = (n + TILE - 1) / TILE * TILE;
    const size_t need = np * (sizeof(double2) + sizeof(double)) + n * (sizeof(double) + 4) +
                        sizeof(LogTable);
    if (max_bytes && need > max_bytes) {
        unavailable(err, "the GPU products need %zu bytes of GPU memory, more than the %zu "
                    "allowed", need, max_bytes);
        return nullptr;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess) {
        fail(err, "cannot select the GPU", e);
        return nullptr;
    }
    tps_gpu_matvec *mv = static_cast<tps_gpu_matvec *>(calloc(1, sizeof *mv));
    double2 *uv = static_cast<double2 *>(calloc(np, sizeof(double2)));
    if (!mv || !uv) {
        free(mv);
        free(uv);
        unavailable(err, "out of host memory");
        return nullptr;
    }
    mv->n = n;
    mv->n_pad = np;
    for (size_t i = 0; i < n; ++i)
        uv[i] = make_double2(u[i], v[i]);
    const LogTable table = make_log_table();
    if ((e = cudaMalloc(&mv->uv, np * sizeof(double2))) != cudaSuccess ||
        (e = cudaMalloc(&mv->h, np * sizeof(double))) != cudaSuccess ||
        (e = cudaMalloc(&mv->out, n * sizeof(double))) != cudaSuccess ||
        (e = cudaMalloc(&mv->idx, n * sizeof(uint32_t))) != cudaSuccess ||
        (e = cudaMalloc(&mv->log_table, sizeof(LogTable))) != cudaSuccess ||
        (e = cudaMemcpy(mv->uv, uv, np * sizeof(double2), cudaMemcpyHostToDevice)) !=
            cudaSuccess ||
        (e = cudaMemset(mv->h, 0, np * sizeof(double))) != cudaSuccess ||
        (e = cudaMemcpy(mv->log_table, table.entry, sizeof(LogTable), cudaMemcpyHostToDevice)) !=
            cudaSuccess) {
        fail(err, "cannot copy the points to the GPU", e);
        cudaGetLastError();
        free(uv);
        tps_gpu_matvec_destroy(mv);
        return nullptr;
    }
    free(uv);
    return mv;
}

extern "C" tps_status tps_gpu_matvec_apply(tps_gpu_matvec *mv, const double *h, size_t m,
                                           const size_t *idx, double *out, tps_error *err)
{
    if (m == 0)
        return TPS_OK;
    if (m > mv->n)
        return unavailable(err, "%zu targets of %zu points", m, mv->n);
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess)
        return fail(err, "cannot select the GPU", e);
    if (idx) {
        uint32_t *host = static_cast<uint32_t *>(malloc(m * sizeof(uint32_t)));
        if (!host)
            return unavailable(err, "out of host memory");
        for (size_t k = 0; k < m; ++k)
            host[k] = uint32_t(idx[k]);
        e = cudaMemcpy(mv->idx, host, m * sizeof(uint32_t), cudaMemcpyHostToDevice);
        free(host);
        if (e != cudaSuccess)
            return fail(err, "cannot copy the targets to the GPU", e);
    }
    if ((e = cudaMemcpy(mv->h, h, mv->n * sizeof(double), cudaMemcpyHostToDevice)) != cudaSuccess)
        return fail(err, "cannot copy the weights to the GPU", e);
    const unsigned blocks = unsigned((m + THREADS * PIX - 1) / (THREADS * PIX));
    matvec_fp64<<<blocks, THREADS>>>(mv->uv, mv->h, mv->n_pad, idx ? mv->idx : nullptr, m,
                                     mv->log_table, mv->out);
    if ((e = cudaGetLastError()) != cudaSuccess ||
        (e = cudaMemcpy(out, mv->out, m * sizeof(double), cudaMemcpyDeviceToHost)) !=
            cudaSuccess) {
        cudaGetLastError();
        return fail(err, "the GPU product failed", e);
    }
    return TPS_OK;
}

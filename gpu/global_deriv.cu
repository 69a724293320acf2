/*
 * global_deriv.cu: derivative sums of a global model on the GPU (derivative bands, issue 7).
 *
 * For each pixel of a grid window, over every point of the model's device
 * copy (FP64, shared with the value kernels of gpu/global.cu):
 *     gu  = sum_i 2 h_i du (log s + 1),  gv = sum_i 2 h_i dv (log s + 1),
 *     lap = 4 sum_i h_i log s,            s = du^2 + dv^2,
 * in the model's scaled units, exactly what core/eval_deriv.c sums on the
 * CPU (same pixel coordinates, same order of points); the engine applies
 * the chain rule and forms the quantity (slope, aspect, ...) on the host
 * with the CPU's code, so both paths share one definition.
 *
 * Deliberately plain: FP64 throughout, CUDA's log, one pixel per thread,
 * points staged through shared memory in tiles (n-body style). Derivative
 * bands are a product for analysis, not the bulk path the value kernels
 * are tuned for. No CUDA error leaves this file as anything but a message.
 */
#include "global.cuh"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

namespace {

using tps_gpu::THREADS;
using tps_gpu::TILE; /* divides the device copy's n_pad */
constexpr size_t MAX_ROWS_PER_LAUNCH = 65535; /* gridDim.y */

struct DerivGrid {
    double u0, v0, cu, cv, ru, rv;
    long long first_col, first_row;
    int ncols;
};

__global__ void __launch_bounds__(THREADS)
    deriv_sums_kernel(const double2 *__restrict__ uv, const double *__restrict__ w, size_t n_pad,
                      DerivGrid g, double *gu_plane, double *gv_plane, double *lap_plane)
{
    __shared__ double2 s_uv[TILE];
    __shared__ double s_w[TILE];
    const int c = blockIdx.x * THREADS + threadIdx.x;
    const bool active = c < g.ncols;
    /* The CPU's coordinates, rounded the same way (no contraction to FMA). */
    const double i = double(g.first_col + (active ? c : 0));
    const double j = double(g.first_row + blockIdx.y);
    const double pu = __dadd_rn(__dadd_rn(g.u0, __dmul_rn(j, g.ru)), __dmul_rn(i, g.cu));
    const double pv = __dadd_rn(__dadd_rn(g.v0, __dmul_rn(j, g.rv)), __dmul_rn(i, g.cv));
    double gu = 0.0, gv = 0.0, lap = 0.0;
    for (size_t t0 = 0; t0 < n_pad; t0 += TILE) {
        __syncthreads();
        for (int k = threadIdx.x; k < TILE; k += THREADS) {
            s_uv[k] = uv[t0 + k];
            s_w[k] = w[t0 + k];
        }
        __syncthreads();
        for (int k = 0; k < TILE; ++k) {
            const double h = s_w[k];
            if (h == 0.0) /* padding, or a point missing in this band */
                continue;
            const double du = pu - s_uv[k].x, dv = pv - s_uv[k].y;
            const double s = __dadd_rn(__dmul_rn(du, du), __dmul_rn(dv, dv));
            if (s > 0.0) {
                const double log_s = log(s);
                const double gs = 2.0 * h * (log_s + 1.0);
                gu += gs * du;
                gv += gs * dv;
                lap += 4.0 * h * log_s;
            } else {
                lap = nan("");
            }
        }
    }
    if (active) {
        const size_t index = size_t(blockIdx.y) * size_t(g.ncols) + size_t(c);
        gu_plane[index] = gu;
        gv_plane[index] = gv;
        lap_plane[index] = lap;
    }
}

int fail(char *err, size_t errlen, const char *what, cudaError_t e)
{
    snprintf(err, errlen, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError();
    return -1;
}

} // namespace

extern "C" int tps_gpu_deriv_sums(tps_gpu_model *model, const tps_gpu_grid *grid, size_t band,
                                  double *sums, size_t max_bytes, char *err, size_t errlen)
{
    if (grid->ncols == 0 || grid->nrows == 0)
        return 0;
    if (grid->ncols > size_t(INT32_MAX) / 2) {
        snprintf(err, errlen, "window too wide for the GPU path (%zu columns)", grid->ncols);
        return -1;
    }
    const double2 *uv = model->uv;
    const size_t n_pad = model->n_pad;
    if (band >= model->n_bands) {
        snprintf(err, errlen, "band %zu of %zu", band, model->n_bands);
        return -1;
    }
    const size_t pixels = grid->ncols * grid->nrows;
    const size_t bytes = 3 * pixels * sizeof(double);
    if (max_bytes && bytes > max_bytes) {
        snprintf(err, errlen,
                 "the derivative buffers need %zu bytes of GPU memory, more than the %zu allowed",
                 bytes, max_bytes);
        return -1;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess)
        return fail(err, errlen, "cannot select the GPU", e);
    cudaStream_t stream = nullptr;
    if ((e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess)
        return fail(err, errlen, "cannot create a CUDA stream", e);
    double *d_sums = nullptr;
    int status = 0;
    if ((e = cudaMalloc(&d_sums, bytes)) != cudaSuccess) {
        status = fail(err, errlen, "cannot allocate the derivative buffers", e);
    } else {
        DerivGrid g = {grid->u0, grid->v0, grid->cu, grid->cv, grid->ru, grid->rv,
                       (long long)grid->first_col, (long long)grid->first_row, int(grid->ncols)};
        const double *w_band = model->w + band * n_pad;
        for (size_t row0 = 0; row0 < grid->nrows && status == 0; row0 += MAX_ROWS_PER_LAUNCH) {
            const size_t rows =
                grid->nrows - row0 < MAX_ROWS_PER_LAUNCH ? grid->nrows - row0 : MAX_ROWS_PER_LAUNCH;
            DerivGrid gr = g;
            gr.first_row = g.first_row + (long long)row0;
            const size_t off = row0 * grid->ncols;
            const dim3 blocks((unsigned)((grid->ncols + THREADS - 1) / THREADS), (unsigned)rows);
            deriv_sums_kernel<<<blocks, THREADS, 0, stream>>>(
                uv, w_band, n_pad, gr, d_sums + off,
                d_sums + pixels + off, d_sums + 2 * pixels + off);
            if ((e = cudaGetLastError()) != cudaSuccess)
                status = fail(err, errlen, "cannot launch the GPU derivative kernel", e);
        }
        if (status == 0 &&
            (e = cudaMemcpyAsync(sums, d_sums, bytes, cudaMemcpyDeviceToHost, stream)) !=
                cudaSuccess)
            status = fail(err, errlen, "cannot copy GPU derivative sums", e);
        if (status == 0 && (e = cudaStreamSynchronize(stream)) != cudaSuccess)
            status = fail(err, errlen, "GPU derivative evaluation failed", e);
    }
    cudaFree(d_sums);
    cudaStreamDestroy(stream);
    return status;
}

/*
 * global_deriv.cu: the sums a global model's quantities need (core/sums.h),
 * on the GPU. For each pixel of a grid window, over every point of the
 * model's device copy (FP64, shared with the value kernels of gpu/global.cu),
 * the terms of core/sums.h, in the model's scaled units: exactly what
 * core/spline_sums.c sums on the CPU (the same pixel coordinates, the same
 * squared distances, the same order of points, the same term formulas).
 * The engine adds the affine part and forms the quantity on the host with
 * the quantity table's formula (core/gpu_eval.c), so both devices share one
 * definition.
 *
 * Deliberately plain: FP64 throughout, CUDA's log, one pixel per thread,
 * points staged through shared memory in tiles (n-body style). Derivative
 * bands are a product for analysis, not the bulk path the value kernels
 * are tuned for. No CUDA error leaves this file as anything but a message.
 */
#include "global.cuh"
#include "sums.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

using namespace tps_gpu;

namespace {

constexpr size_t MAX_ROWS_PER_LAUNCH = 65535; /* gridDim.y */
/* NEEDS: the sums computed, a superset of `needs`, the planes written. Two
 * builds: the gradient and the laplacian (the cost of the kernel before
 * second derivatives existed), and everything. */
template <unsigned NEEDS>
__global__ void __launch_bounds__(THREADS)
    deriv_sums_kernel(const double2 *__restrict__ uv, const double *__restrict__ w, size_t n_pad,
                      GridArgs g, unsigned needs, double *out, size_t stride)
{
    __shared__ double2 s_uv[TILE];
    __shared__ double s_w[TILE];
    const int c = blockIdx.x * THREADS + threadIdx.x;
    const bool active = c < g.ncols;
    double pu, pv;
    cell_centre(g, active ? c : 0, blockIdx.y, &pu, &pv);
    tps_derivs d;
    tps_derivs_zero(&d);
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
            /* The CPU's squared distance, rounded the same way (no FMA). */
            const double s = __dadd_rn(__dmul_rn(du, du), __dmul_rn(dv, dv));
            if (s > 0.0)
                tps_term_add(&d, NEEDS, h, du, dv, s, log(s));
            else
                tps_term_on_point(&d);
        }
    }
    if (active)
        tps_derivs_put(&d, needs, out, stride, size_t(blockIdx.y) * size_t(g.ncols) + size_t(c));
}

} // namespace

extern "C" tps_status tps_gpu_deriv_sums(tps_gpu_model *model, const tps_window *grid,
                                         size_t band, unsigned needs, double *sums,
                                         size_t max_bytes, tps_error *err)
{
    if (grid->ncols == 0 || grid->nrows == 0)
        return TPS_OK;
    if (grid->ncols > size_t(INT32_MAX) / 2) {
        unavailable(err, "window too wide for the GPU path (%zu columns)", grid->ncols);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    if (band >= model->n_bands) {
        unavailable(err, "band %zu of %zu", band, model->n_bands);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    const size_t pixels = grid->ncols * grid->nrows;
    const int n_planes = tps_needs_planes(needs);
    const size_t bytes = size_t(n_planes) * pixels * sizeof(double);
    if (max_bytes && bytes > max_bytes) {
        unavailable(err,
                 "the derivative buffers need %zu bytes of GPU memory, more than the %zu allowed",
                 bytes, max_bytes);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return fail(err, "cannot select the GPU", e);
    }
    cudaStream_t stream = nullptr;
    if ((e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess) {
        cudaGetLastError();
        return fail(err, "cannot create a CUDA stream", e);
    }
    double *d_sums = nullptr;
    tps_status status = TPS_OK;
    if ((e = cudaMalloc(&d_sums, bytes ? bytes : sizeof(double))) != cudaSuccess) {
        status = fail(err, "cannot allocate the derivative buffers", e);
    } else {
        const double *w_band = model->w + band * model->n_pad;
        const bool all = (needs & ~unsigned(TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN)) != 0;
        for (size_t row0 = 0; row0 < grid->nrows && status == 0; row0 += MAX_ROWS_PER_LAUNCH) {
            const size_t rows =
                grid->nrows - row0 < MAX_ROWS_PER_LAUNCH ? grid->nrows - row0 : MAX_ROWS_PER_LAUNCH;
            const GridArgs g = {*grid, int(grid->ncols), int(row0)};
            double *out = d_sums + row0 * grid->ncols; /* plane q at out + q pixels */
            const dim3 blocks((unsigned)((grid->ncols + THREADS - 1) / THREADS), (unsigned)rows);
            if (all)
                deriv_sums_kernel<TPS_NEEDS_VALUE | TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN |
                                  TPS_NEEDS_HESSIAN>
                    <<<blocks, THREADS, 0, stream>>>(model->uv, w_band, model->n_pad, g, needs, out,
                                                      pixels);
            else
                deriv_sums_kernel<TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN>
                    <<<blocks, THREADS, 0, stream>>>(model->uv, w_band, model->n_pad, g, needs, out,
                                                      pixels);
            if ((e = cudaGetLastError()) != cudaSuccess)
                status = fail(err, "cannot launch the GPU derivative kernel", e);
        }
        if (status == 0 &&
            (e = cudaMemcpyAsync(sums, d_sums, bytes, cudaMemcpyDeviceToHost, stream)) !=
                cudaSuccess)
            status = fail(err, "cannot copy GPU derivative sums", e);
        if (status == 0 && (e = cudaStreamSynchronize(stream)) != cudaSuccess)
            status = fail(err, "GPU derivative evaluation failed", e);
    }
    if (status != 0)
        cudaGetLastError();
    cudaFree(d_sums);
    cudaStreamDestroy(stream);
    return status;
}

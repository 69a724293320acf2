/* timing.cu: for bench/bench_gpu.cu only (not part of the engine's API):
 * the value kernels alone, into device memory, `repeats` times, timed with
 * CUDA events; the median milliseconds of one evaluation of the whole grid
 * in *ms; MIXED's counters of the last evaluation (its guard's work is
 * timed with it) in *stats. */
#include "global.cuh"

#include <string.h>

using namespace tps_gpu;

extern "C" tps_status tps_gpu_time_kernel(tps_gpu_model *m, const tps_window *grid,
                                          size_t n_bands, tps_precision precision, int repeats,
                                          double *ms, tps_eval_stats *stats, tps_error *err)
{
    if (n_bands < 1 || n_bands > size_t(MAX_NB) || n_bands > m->n_bands) {
        unavailable(err, "1 to %d bands", MAX_NB);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    const size_t rows = grid->nrows > 65535 ? 65535 : grid->nrows;
    void *out = nullptr;
    GuardCounters *counters = nullptr;
    cudaError_t e = cudaMalloc(&out, rows * grid->ncols * sizeof(float) * n_bands);
    if (e == cudaSuccess)
        e = cudaMalloc(&counters, sizeof *counters);
    if (e != cudaSuccess) {
        cudaFree(out);
        return fail(err, "cudaMalloc", e);
    }
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    GridArgs g = {*grid, int(grid->ncols), 0};
    OutArgs o;
    memset(&o, 0, sizeof o);
    o.counters = counters;
    const MixedGuard guard = {TPS_DEFAULT_TOLERANCE, 0};
    int bands[MAX_NB];
    for (size_t b = 0; b < n_bands; ++b) {
        bands[b] = int(b);
        o.plane[b] = static_cast<float *>(out) + b * rows * grid->ncols;
    }
    double *samples = new double[repeats > 0 ? repeats : 1];
    tps_status status = TPS_OK;
    for (int r = -1; r < repeats && status == 0; ++r) { /* r = -1: warm-up */
        cudaMemset(counters, 0, sizeof *counters);
        cudaEventRecord(t0);
        for (size_t row0 = 0; row0 < grid->nrows && e == cudaSuccess; row0 += rows) {
            g.row0 = int(row0);
            const int n = int(grid->nrows - row0 < rows ? grid->nrows - row0 : rows);
            e = launch_global(m, precision, guard, bands, int(n_bands), g, o, n, nullptr);
        }
        cudaEventRecord(t1);
        if (e == cudaSuccess)
            e = cudaEventSynchronize(t1);
        if (e != cudaSuccess) {
            status = fail(err, "kernel", e);
            break;
        }
        float elapsed = 0.0f;
        cudaEventElapsedTime(&elapsed, t0, t1);
        if (r >= 0)
            samples[r] = elapsed;
    }
    if (status == 0) {
        /* median */
        for (int i = 1; i < repeats; ++i)
            for (int j = i; j > 0 && samples[j - 1] > samples[j]; --j) {
                double t = samples[j];
                samples[j] = samples[j - 1];
                samples[j - 1] = t;
            }
        *ms = samples[repeats / 2];
        GuardCounters c;
        if (stats && cudaMemcpy(&c, counters, sizeof c, cudaMemcpyDeviceToHost) == cudaSuccess) {
            stats->mixed_blocks = size_t(c.blocks);
            stats->fallback_blocks = size_t(c.fallback);
            stats->check_failures = size_t(c.violations);
            memcpy(&stats->max_error_estimate, &c.max_rel_bits, sizeof(double));
        }
    }
    delete[] samples;
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaFree(out);
    cudaFree(counters);
    return status;
}


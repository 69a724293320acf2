/*
 * bench_gpu.cu: GPU evaluation throughput, side by side in one run:
 *   naive   one thread per pixel looping over all points in global memory,
 *           FP64 with the standard log (the design of existing GPU TPS
 *           code), kept here as the baseline;
 *   DOUBLE  our FP64 kernel, kernel time alone (CUDA events, median);
 *   MIXED   our FP32/FP64 kernel, same;
 *   *_e2e   tps_evaluate_grid(DEVICE=GPU) into a host Float32 buffer: what
 *           the driver gets, transfers and copy-out included;
 *   CPU     tps_evaluate_grid(DEVICE=CPU) on all cores, on a smaller grid.
 * Random points in the unit square, a north-up grid over it.
 *   usage: tps_bench_gpu [GRID=8192] [N ...=1000 10000]
 * Prints JSON lines, then a Markdown table.
 */
#include "gpu_backend.h"
#include "internal.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <algorithm>
#include <vector>

static double now()
{
    return tps_now_seconds();
}

__global__ void naive_kernel(const double *u, const double *v, const double *w, int n, double u0,
                             double v0, double du, double dv, int ncols, int nrows, float *out)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    if (c >= ncols || r >= nrows)
        return;
    const double pu = u0 + c * du, pv = v0 + r * dv;
    double s = 0.0;
    for (int i = 0; i < n; ++i) {
        const double dx = pu - u[i], dy = pv - v[i];
        const double r2 = dx * dx + dy * dy;
        s += r2 > 0.0 ? w[i] * r2 * log(r2) : 0.0;
    }
    out[size_t(r) * ncols + c] = float(s);
}

static int check(cudaError_t e, const char *what)
{
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
    return 0;
}

static double naive_ms(const tps_model *md, const tps_window &g)
{
    double *du, *dv, *dw;
    float *out;
    const size_t n = md->n;
    check(cudaMalloc(&du, n * 8), "malloc");
    check(cudaMalloc(&dv, n * 8), "malloc");
    check(cudaMalloc(&dw, n * 8), "malloc");
    check(cudaMalloc(&out, g.ncols * g.nrows * 4), "malloc");
    cudaMemcpy(du, md->u, n * 8, cudaMemcpyHostToDevice);
    cudaMemcpy(dv, md->v, n * 8, cudaMemcpyHostToDevice);
    cudaMemcpy(dw, md->half_weights[0], n * 8, cudaMemcpyHostToDevice);
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    dim3 grid((unsigned)((g.ncols + 255) / 256), (unsigned)g.nrows);
    std::vector<float> samples;
    for (int rep = -1; rep < 3; ++rep) {
        cudaEventRecord(t0);
        naive_kernel<<<grid, 256>>>(du, dv, dw, int(n), g.u0, g.v0, g.cu, g.rv, int(g.ncols),
                                    int(g.nrows), out);
        cudaEventRecord(t1);
        check(cudaEventSynchronize(t1), "naive kernel");
        float ms;
        cudaEventElapsedTime(&ms, t0, t1);
        if (rep >= 0)
            samples.push_back(ms);
    }
    cudaFree(du);
    cudaFree(dv);
    cudaFree(dw);
    cudaFree(out);
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

struct Row {
    size_t n, grid;
    double naive, fp64, mixed, fp64_e2e, mixed_e2e, cpu, err_fp64, err_mixed, solve_s;
    tps_eval_stats mixed_stats; /* the timed MIXED kernel's guard */
};

int main(int argc, char **argv)
{
    const size_t grid = argc > 1 ? strtoul(argv[1], NULL, 10) : 8192;
    std::vector<size_t> sizes;
    for (int a = 2; a < argc; ++a)
        sizes.push_back(strtoul(argv[a], NULL, 10));
    if (sizes.empty())
        sizes = {1000, 10000};
    const int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("# GPU: %s; CPU threads: %d; kernel %s\n", tps_gpu_description(), cpus,
           tps_cpu_kernel_name(TPS_CPU_KERNEL_AUTO));
    std::vector<Row> rows;
    for (size_t n : sizes) {
        Row row = {};
        row.n = n;
        row.grid = grid;
        std::vector<double> x(n), y(n), z(n);
        srand(1);
        for (size_t i = 0; i < n; ++i) {
            x[i] = rand() / (double)RAND_MAX;
            y[i] = rand() / (double)RAND_MAX;
            z[i] = sin(6 * x[i]) * cos(4 * y[i]) + 0.3 * x[i];
        }
        tps_context *ctx = tps_context_create();
        tps_fit_options fo;
        tps_fit_options_init(&fo);
        fo.mode = TPS_MODE_GLOBAL;
        fo.num_threads = cpus;
        const double *zp = z.data();
        double lambda = 0.0;
        double t = now();
        tps_model *m = tps_model_create(ctx, n, x.data(), y.data(), 1, &zp, &lambda, &fo);
        row.solve_s = now() - t;
        if (!m) {
            fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
            return 1;
        }
        double range = 0;
        {
            double lo = 1e300, hi = -1e300;
            for (double v : z) {
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
            range = hi - lo;
        }
        const double gt[6] = {0.0, 1.0 / grid, 0.0, 1.0, 0.0, -1.0 / grid};
        tps_grid g;
        tps_grid_from_geotransform(&g, gt, 0, 0, grid, grid);
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.num_threads = cpus;

        /* End to end through the engine, into a host Float32 buffer. */
        std::vector<float> out(grid * grid);
        tps_output o = {0, out.data(), TPS_FLOAT32, 4, (ptrdiff_t)(4 * grid)};
        const double pairs = double(n) * grid * grid;
        for (int p = 0; p < 2; ++p) {
            eo.device = TPS_DEVICE_GPU;
            eo.precision = p ? TPS_PRECISION_MIXED : TPS_PRECISION_DOUBLE;
            tps_evaluate_grid(ctx, m, &g, 1, &o, &eo); /* warm-up: upload, buffers */
            t = now();
            if (tps_evaluate_grid(ctx, m, &g, 1, &o, &eo) != TPS_OK) {
                fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
                return 1;
            }
            (p ? row.mixed_e2e : row.fp64_e2e) = pairs / (now() - t);
        }

        /* Accuracy against the CPU on a window of 512 x 512. */
        const size_t w = grid < 512 ? grid : 512;
        tps_grid win;
        tps_grid_from_geotransform(&win, gt, grid / 3, grid / 5, w, w);
        std::vector<double> ref(w * w), got(w * w);
        tps_output ow = {0, ref.data(), TPS_FLOAT64, 8, (ptrdiff_t)(8 * w)};
        eo.device = TPS_DEVICE_CPU;
        tps_evaluate_grid(ctx, m, &win, 1, &ow, &eo);
        ow.data = got.data();
        for (int p = 0; p < 2; ++p) {
            eo.device = TPS_DEVICE_GPU;
            eo.precision = p ? TPS_PRECISION_MIXED : TPS_PRECISION_DOUBLE;
            tps_evaluate_grid(ctx, m, &win, 1, &ow, &eo);
            double worst = 0;
            for (size_t k = 0; k < w * w; ++k)
                worst = fmax(worst, fabs(got[k] - ref[k]));
            (p ? row.err_mixed : row.err_fp64) = worst / range;
        }

        /* Kernels alone. */
        const double s = m->scale;
        tps_window gg = {(g.x0 - m->cx) / s, (g.y0 - m->cy) / s, g.col_dx / s, g.col_dy / s,
                           g.row_dx / s, g.row_dy / s, 0, 0, grid, grid};
        tps_error err;
        double ms;
        if (tps_gpu_time_kernel(m->gpu, &gg, 1, TPS_PRECISION_DOUBLE, 5, &ms, NULL, &err) !=
            TPS_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        row.fp64 = pairs / (ms * 1e-3);
        tps_eval_stats ks;
        if (tps_gpu_time_kernel(m->gpu, &gg, 1, TPS_PRECISION_MIXED, 5, &ms, &ks, &err) !=
            TPS_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        row.mixed = pairs / (ms * 1e-3);
        row.mixed_stats = ks;
        row.naive = pairs / (naive_ms(m, gg) * 1e-3);

        /* The CPU path on every core, on a 1024^2 grid. */
        const size_t cg = 1024;
        const double cgt[6] = {0.0, 1.0 / cg, 0.0, 1.0, 0.0, -1.0 / cg};
        tps_grid cgrid;
        tps_grid_from_geotransform(&cgrid, cgt, 0, 0, cg, cg);
        std::vector<float> cout_(cg * cg);
        tps_output oc = {0, cout_.data(), TPS_FLOAT32, 4, (ptrdiff_t)(4 * cg)};
        eo.device = TPS_DEVICE_CPU;
        t = now();
        tps_evaluate_grid(ctx, m, &cgrid, 1, &oc, &eo);
        row.cpu = double(n) * cg * cg / (now() - t);

        printf("{\"n\": %zu, \"grid\": %zu, \"solve_s\": %.3f, \"naive_pairs_s\": %.4g, "
               "\"double_pairs_s\": %.4g, \"mixed_pairs_s\": %.4g, \"double_e2e_pairs_s\": %.4g, "
               "\"mixed_e2e_pairs_s\": %.4g, \"cpu_pairs_s\": %.4g, \"double_err\": %.3g, "
               "\"mixed_err\": %.3g, \"uploads\": %zu, \"mixed_blocks\": %zu, "
               "\"mixed_fallback_blocks\": %zu, \"mixed_check_failures\": %zu, "
               "\"mixed_max_error_estimate\": %.3g}\n",
               n, grid, row.solve_s, row.naive, row.fp64, row.mixed, row.fp64_e2e, row.mixed_e2e,
               row.cpu, row.err_fp64, row.err_mixed, tps_model_device_uploads(m),
               ks.mixed_blocks, ks.fallback_blocks, ks.check_failures, ks.max_error_estimate);
        fflush(stdout);
        rows.push_back(row);
        tps_model_destroy(m);
        tps_context_destroy(ctx);
    }
    /* The solve: CPU (all cores) against cuSOLVER, N = 5000 and 20000 (or
     * TPS_BENCH_SOLVE="n1 n2 ..."). */
    const char *solve_env = getenv("TPS_BENCH_SOLVE");
    std::vector<size_t> solve_sizes;
    if (solve_env) {
        char *end = nullptr;
        for (const char *p = solve_env; *p; p = end) {
            size_t v = strtoul(p, &end, 10);
            if (end == p)
                break;
            if (v)
                solve_sizes.push_back(v);
        }
    } else {
        solve_sizes = {5000, 20000};
    }
    printf("\n| N | CPU solve s (%d threads) | GPU solve s (cuSOLVER) | ratio | max diff / range |\n",
           cpus);
    printf("|---|---|---|---|---|\n");
    for (size_t n : solve_sizes) {
        std::vector<double> x(n), y(n), z(n);
        srand(2);
        double lo = 1e300, hi = -1e300;
        for (size_t i = 0; i < n; ++i) {
            x[i] = rand() / (double)RAND_MAX;
            y[i] = rand() / (double)RAND_MAX;
            z[i] = sin(6 * x[i]) * cos(4 * y[i]) + 0.3 * x[i];
            lo = fmin(lo, z[i]);
            hi = fmax(hi, z[i]);
        }
        tps_context *ctx = tps_context_create();
        tps_fit_options fo;
        tps_fit_options_init(&fo);
        fo.mode = TPS_MODE_GLOBAL;
        fo.num_threads = cpus;
        const double *zp = z.data();
        double lambda = 0.0, secs[2];
        tps_model *models[2];
        for (int k = 0; k < 2; ++k) {
            fo.device = k ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
            double t0 = now();
            models[k] = tps_model_create(ctx, n, x.data(), y.data(), 1, &zp, &lambda, &fo);
            secs[k] = now() - t0;
            if (!models[k]) {
                fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
                return 1;
            }
        }
        tps_model_info info;
        tps_model_get_info(ctx, models[1], &info);
        const size_t cg = 256;
        const double cgt[6] = {0.0, 1.0 / cg, 0.0, 1.0, 0.0, -1.0 / cg};
        tps_grid cgrid;
        tps_grid_from_geotransform(&cgrid, cgt, 0, 0, cg, cg);
        std::vector<double> ga(cg * cg), gb(cg * cg);
        tps_output oa = {0, ga.data(), TPS_FLOAT64, 8, (ptrdiff_t)(8 * cg)};
        tps_output ob = {0, gb.data(), TPS_FLOAT64, 8, (ptrdiff_t)(8 * cg)};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_CPU;
        eo.num_threads = cpus;
        tps_evaluate_grid(ctx, models[0], &cgrid, 1, &oa, &eo);
        tps_evaluate_grid(ctx, models[1], &cgrid, 1, &ob, &eo);
        double worst = 0;
        for (size_t k = 0; k < cg * cg; ++k)
            worst = fmax(worst, fabs(ga[k] - gb[k]));
        printf("| %zu | %.2f | %.2f%s | %.1fx | %.1e |\n", n, secs[0], secs[1],
               info.solve_device == TPS_DEVICE_GPU ? "" : " (fell back to the CPU)",
               secs[0] / secs[1], worst / (hi - lo));
        fflush(stdout);
        tps_model_destroy(models[0]);
        tps_model_destroy(models[1]);
        tps_context_destroy(ctx);
    }

    printf("\n| N | grid | naive FP64 | DOUBLE | MIXED | DOUBLE e2e | MIXED e2e | CPU (%d thr) | "
           "DOUBLE/naive | max err DOUBLE / MIXED (x range) | MIXED bound, fallback blocks |\n",
           cpus);
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const Row &r : rows)
        printf("| %zu | %zu² | %.3g | %.3g | %.3g | %.3g | %.3g | %.3g | %.2fx | %.1e / %.1e | "
               "%.1e, %zu of %zu |\n",
               r.n, r.grid, r.naive, r.fp64, r.mixed, r.fp64_e2e, r.mixed_e2e, r.cpu,
               r.fp64 / r.naive, r.err_fp64, r.err_mixed, r.mixed_stats.max_error_estimate,
               r.mixed_stats.fallback_blocks, r.mixed_stats.mixed_blocks);
    return 0;
}

/* bench_se.c: the standard error's cost, and the machine's DGEMM rate it
 * is bound by (issue 13's targets: N = 2,000, 1024^2 on the 2-core
 * development machine; N = 10,000, 4096^2 on one H100/H200).
 *   tps_bench_se N GRID THREADS [cpu|gpu] [dgemm] [exact] [rows=R]
 * Random points in a 1 km square (a fixed seed), a smooth field with
 * noise, a GLOBAL model with lambda > 0 (solved on the CPU, or the GPU
 * where AUTO picks it); a GRID x GRID north-up Float32 standard-error band
 * over the square. Times: the first use (the factorisation, and on the GPU
 * its device copy: one cell evaluated), then the whole band. The work is
 * counted as (N - 3)^2 flops a cell (the product with L^-1: a triangular
 * matrix times a vector per cell, done as BLAS 3 per block of cells).
 * `dgemm` also measures the DGEMM rate: on the CPU one OpenBLAS DGEMM of
 * 3000^3 on THREADS threads; on the GPU cuBLAS DGEMM of the shapes the
 * standard error runs (16384 x 512 x N) and of 8192^3. On either device
 * the band goes by tiles in low rank where they pay (core/se_tile.h; on
 * the GPU core/gpu_se_tiles.c; the tiles' counts are printed); `exact`
 * forces the exact blocks (the test hook), `rows=R` evaluates the first R
 * rows of the grid only (the same grid, so the same tiles: for timing the
 * exact path where the whole band would take too long; se_gflops counts
 * those rows). One JSON line. */
#include "gpu_backend.h"
#include "tps.h"
#include "tps_testing.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_SEED 0x9E3779B97F4A7C15ULL
#include "bench_util.h"

/* One multi-threaded OpenBLAS DGEMM of s^3: GFLOP/s. */
static double cpu_dgemm(int threads, int s)
{
    double *a = malloc(sizeof(double) * (size_t)s * s), *b = malloc(sizeof(double) * (size_t)s * s);
    double *c = malloc(sizeof(double) * (size_t)s * s);
    for (size_t i = 0; i < (size_t)s * s; ++i) {
        a[i] = uniform();
        b[i] = uniform();
    }
    openblas_set_num_threads(threads);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, 256, 256, 256, 1.0, a, s, b, s, 0.0,
                c, s); /* warm-up */
    double best = 0.0;
    for (int r = 0; r < 2; ++r) {
        const double t0 = now();
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, s, s, s, 1.0, a, s, b, s, 0.0, c,
                    s);
        const double rate = 2.0 * s * (double)s * s / (now() - t0) / 1e9;
        best = rate > best ? rate : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s N GRID THREADS [cpu|gpu] [dgemm] [exact] [rows=R]\n",
                argv[0]);
        return 2;
    }
    const size_t n = (size_t)atof(argv[1]), side = (size_t)atol(argv[2]);
    const int threads = atoi(argv[3]);
    const int gpu = argc > 4 && strcmp(argv[4], "gpu") == 0;
    int dgemm = 0, exact = 0;
    size_t rows = side;
    for (int a = 5; a < argc; ++a) {
        if (strcmp(argv[a], "dgemm") == 0)
            dgemm = 1;
        else if (strcmp(argv[a], "exact") == 0)
            exact = 1;
        else if (strncmp(argv[a], "rows=", 5) == 0 && atol(argv[a] + 5) > 0)
            rows = (size_t)atol(argv[a] + 5) < side ? (size_t)atol(argv[a] + 5) : side;
    }
    tps_testing_se_tiles(exact ? 1 : 0);
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *z = malloc(sizeof(double) * n);
    float *out = malloc(sizeof(float) * side * side);
    for (size_t i = 0; i < n; ++i) {
        x[i] = 1000 * uniform();
        y[i] = 1000 * uniform();
        z[i] = sin(x[i] / 150) * cos(y[i] / 230) + 0.05 * (uniform() - 0.5);
    }
    tps_context *ctx = tps_context_create();
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = TPS_MODE_GLOBAL;
    fo.num_threads = threads;
    fo.device = gpu ? TPS_DEVICE_AUTO : TPS_DEVICE_CPU;
    fo.solver = TPS_SOLVER_DIRECT; /* the standard error needs the dense factorisation */
    const double lambda = 10.0, *zz = z;
    double t0 = now();
    tps_model *m = tps_model_create(ctx, n, x, y, 1, &zz, &lambda, &fo);
    const double fit_s = now() - t0;
    if (!m) {
        fprintf(stderr, "fit: %s\n", tps_context_errmsg(ctx));
        return 1;
    }
    const double gt[6] = {0, 1000.0 / (double)side, 0, 1000, 0, -1000.0 / (double)side};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = threads;
    eo.device = gpu ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, 1, 1);
    tps_output o = {0, out, TPS_FLOAT32, 4, 4, TPS_QUANTITY_STANDARD_ERROR};
    t0 = now();
    tps_status st = tps_evaluate_grid(ctx, m, &g, 1, &o, &eo);
    const double first_s = now() - t0;
    tps_grid_from_geotransform(&g, gt, 0, 0, side, rows);
    o.line_stride = (ptrdiff_t)(4 * side);
    t0 = now();
    if (st == TPS_OK)
        st = tps_evaluate_grid(ctx, m, &g, 1, &o, &eo);
    const double eval_s = now() - t0;
    if (st != TPS_OK) {
        fprintf(stderr, "evaluate: %s\n", tps_context_errmsg(ctx));
        return 1;
    }
    double sum = 0.0, lo = INFINITY, hi = 0.0;
    for (size_t k = 0; k < side * rows; ++k) {
        sum += out[k];
        lo = fmin(lo, out[k]);
        hi = fmax(hi, out[k]);
    }
    const double flops = (double)(n - 3) * (double)(n - 3) * (double)side * (double)rows;
    size_t tiles[5] = {0, 0, 0, 0, 0};
    if (!exact)
        tps_testing_se_tile_counts(tiles);
    printf("{\"device\": \"%s\", \"n\": %zu, \"grid\": %zu, \"threads\": %d, \"fit_s\": %.3f, "
           "\"first_use_s\": %.3f, \"se_s\": %.3f, \"se_gflops\": %.1f, \"se_mean\": %.6g, "
           "\"se_min\": %.4g, \"se_max\": %.4g, \"rows\": %zu, \"path\": \"%s\", "
           "\"tiles_lowrank\": %zu, \"tiles_dense\": %zu, \"tiles_guard\": %zu, "
           "\"tile_near_mean\": %.1f, \"tile_rank_mean\": %.1f",
           gpu ? "gpu" : "cpu", n, side, threads, fit_s, first_s, eval_s, flops / eval_s / 1e9,
           sum / (double)(side * rows), lo, hi, rows, exact ? "exact" : "auto", tiles[0],
           tiles[1], tiles[2], tiles[0] ? (double)tiles[3] / (double)tiles[0] : 0.0,
           tiles[0] ? (double)tiles[4] / (double)tiles[0] : 0.0);
    if (dgemm && !gpu) {
        printf(", \"dgemm_gflops\": %.1f", cpu_dgemm(threads, 3000));
    } else if (dgemm) {
        tps_error err;
        double shaped = 0.0, square = 0.0;
        if (tps_gpu_time_dgemm(16384, 512, n, 5, &shaped, &err) != TPS_OK ||
            tps_gpu_time_dgemm(8192, 8192, 8192, 3, &square, &err) != TPS_OK) {
            fprintf(stderr, "dgemm: %s\n", err.message);
            return 1;
        }
        printf(", \"dgemm_16384x512xN_tflops\": %.2f, \"dgemm_8192_tflops\": %.2f", shaped,
               square);
    }
    printf("}\n");
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    free(x);
    free(y);
    free(z);
    free(out);
    return 0;
}

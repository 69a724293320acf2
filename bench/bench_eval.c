/* bench_eval.c: the engine alone, without GDAL: solve time and evaluation
 * throughput (point-pixel pairs per second) on random points in the unit
 * square onto a square grid. Used by bench/bench_cpu.py, which runs scipy on
 * the same points and grid in the same run.
 *   usage: tps_bench_eval N GRID THREADS [KERNEL] [POINTS_CSV OUT_RAW]
 *   KERNEL: auto|generic|avx2|avx512. With POINTS_CSV (x,y,z rows, no
 *   header) the points are read from it and the grid, a Float64 raw
 *   row-major GRID x GRID array over [0,1]^2 pixel centres, goes to OUT_RAW. */
#include "tps.h"
#include "tps_testing.h" /* the CPU kernel chosen by hand */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s N GRID THREADS [KERNEL] [POINTS_CSV OUT_RAW]\n", argv[0]);
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10), grid = strtoul(argv[2], NULL, 10);
    int threads = atoi(argv[3]);
    tps_cpu_kernel kernel = TPS_CPU_KERNEL_AUTO;
    if (argc > 4) {
        const char *names[] = {"auto", "generic", "avx2", "avx512"};
        for (int k = 0; k < 4; ++k)
            if (strcmp(argv[4], names[k]) == 0)
                kernel = (tps_cpu_kernel)k;
    }
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n),
           *z = malloc(sizeof(double) * n);
    if (argc > 6) {
        FILE *f = fopen(argv[5], "r");
        if (!f)
            return 2;
        for (size_t i = 0; i < n; ++i)
            if (fscanf(f, "%lf,%lf,%lf", &x[i], &y[i], &z[i]) != 3)
                return 2;
        fclose(f);
    } else {
        srand(1);
        for (size_t i = 0; i < n; ++i) {
            x[i] = rand() / (double)RAND_MAX;
            y[i] = rand() / (double)RAND_MAX;
            z[i] = sin(6 * x[i]) * cos(4 * y[i]);
        }
    }
    tps_context *ctx = tps_context_create();
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = TPS_MODE_GLOBAL;
    fo.num_threads = threads;
    double lambda = 0.0;
    const double *zp = z;
    double t0 = now();
    tps_model *m = tps_model_create(ctx, n, x, y, 1, &zp, &lambda, &fo);
    double t_solve = now() - t0;
    if (!m) {
        fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
        return 1;
    }
    double *out = malloc(sizeof(double) * grid * grid);
    double gt[6] = {0.0, 1.0 / grid, 0.0, 1.0, 0.0, -1.0 / grid};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, grid, grid);
    tps_output o = {0, out, TPS_FLOAT64, sizeof(double), (ptrdiff_t)(sizeof(double) * grid)};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = threads;
    t0 = now();
    if (tps_evaluate_grid_kernel(ctx, m, &g, 1, &o, &eo, kernel) != TPS_OK) {
        fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
        return 1;
    }
    double t_eval = now() - t0;
    double pairs = (double)n * (double)grid * (double)grid;
    printf("{\"n\": %zu, \"grid\": %zu, \"threads\": %d, \"kernel\": \"%s\", "
           "\"solve_s\": %.6f, \"eval_s\": %.6f, \"pairs_per_s\": %.4g}\n",
           n, grid, threads, tps_cpu_kernel_name(kernel), t_solve, t_eval, pairs / t_eval);
    if (argc > 6) {
        FILE *f = fopen(argv[6], "wb");
        if (!f || fwrite(out, sizeof(double), grid * grid, f) != grid * grid)
            return 1;
        fclose(f);
    }
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    free(out);
    free(x);
    free(y);
    free(z);
    return 0;
}

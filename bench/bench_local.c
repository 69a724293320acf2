/* bench_local.c: a LOCAL model end to end at scale (issue 4's scale test):
 * N random points -> an S x S Float32 grid over their box, on T threads.
 *   tps_bench_local [N=1000000] [S=4096] [T=nproc] [PATCH_POINTS=500] [OVERLAP=1.5]
 *                   [EVAL_DEVICE=cpu|gpu] [SOLVE_DEVICE=cpu|gpu]
 * Prints the solve and evaluation times, and the size, save and load times
 * of the saved model (tps_model_save/load, in memory: the driver's
 * <name>.tps.model without the file I/O); run under /usr/bin/time -v for the
 * memory peak (docs/benchmarks.md, "Local mode at scale"). Not run in CI. */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

int main(int argc, char **argv)
{
    const size_t n = argc > 1 ? (size_t)atof(argv[1]) : 1000000;
    const size_t side = argc > 2 ? (size_t)atol(argv[2]) : 4096;
    const int threads = argc > 3 ? atoi(argv[3]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *z = malloc(sizeof(double) * n);
    float *grid = malloc(sizeof(float) * side * side);
    if (!x || !y || !z || !grid)
        return 2;
    /* A 10 km square in metres, a smooth field with detail at ~500 m. */
    for (size_t i = 0; i < n; ++i) {
        x[i] = 10000.0 * uniform();
        y[i] = 10000.0 * uniform();
        z[i] = 100.0 * sin(x[i] / 500.0) * cos(y[i] / 700.0) + 0.01 * x[i];
    }
    tps_context *ctx = tps_context_create();
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = TPS_MODE_LOCAL;
    fo.num_threads = threads;
    fo.device = argc > 7 && strcmp(argv[7], "gpu") == 0 ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    if (argc > 4)
        fo.patch_points = (size_t)atol(argv[4]);
    if (argc > 5)
        fo.overlap = atof(argv[5]);
    const double *values[1] = {z};
    const double lambda = 0.0;
    double t0 = now();
    tps_model *m = tps_model_create(ctx, n, x, y, 1, values, &lambda, &fo);
    double t1 = now();
    if (!m) {
        fprintf(stderr, "solve: %s\n", tps_context_errmsg(ctx));
        return 1;
    }
    tps_model_info info;
    tps_band_info bi;
    tps_model_get_info(ctx, m, &info);
    tps_model_get_band_info(ctx, m, 0, &bi);
    const double res = 10000.0 / (double)side;
    const double gt[6] = {0.0, res, 0.0, 10000.0, 0.0, -res};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, side, side);
    tps_output o = {0, grid, TPS_FLOAT32, sizeof(float), (ptrdiff_t)(side * sizeof(float))};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = threads;
    eo.device = argc > 6 && strcmp(argv[6], "gpu") == 0 ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    double t2 = now();
    if (tps_evaluate_grid(ctx, m, &g, 1, &o, &eo) != TPS_OK) {
        fprintf(stderr, "evaluate: %s\n", tps_context_errmsg(ctx));
        return 1;
    }
    double t3 = now();
    double checksum = 0.0;
    for (size_t k = 0; k < side * side; k += 997)
        checksum += grid[k];
    printf("points %zu, grid %zux%zu, threads %d, evaluation on the %s (%s)\n", n, side, side,
           threads, eo.device == TPS_DEVICE_GPU ? "GPU" : "CPU",
           eo.device == TPS_DEVICE_GPU ? tps_gpu_description()
                                       : tps_cpu_description());
    printf("patches %zu (patch points %zu, overlap %g), factorisations %zu on the %s\n",
           info.n_patches, fo.patch_points, fo.overlap, info.n_factorisations,
           tps_device_name(info.solve_device));
    printf("solve (incl. residuals at all points) %.2f s, evaluate %.2f s (%.2f Mpixel/s), "
           "total %.2f s\n", t1 - t0, t3 - t2, (double)side * side / (t3 - t2) / 1e6,
           t3 - t0);
    printf("max residual at the data %.3g (range ~%.0f), checksum %.6g\n", bi.max_abs_residual,
           200.0 + 100.0, checksum);
    /* The peak of solving and evaluating, before the save and load below. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak resident memory %.0f MB\n", (double)ru.ru_maxrss / 1024.0);

    const unsigned char hash[32] = {0};
    void *data = NULL;
    size_t size = 0;
    double t4 = now();
    if (tps_model_save(ctx, m, hash, NULL, 0, &data, &size) != TPS_OK) {
        fprintf(stderr, "save: %s\n", tps_context_errmsg(ctx));
        return 1;
    }
    double t5 = now();
    tps_model *loaded = tps_model_load(ctx, data, size, hash, NULL, NULL);
    double t6 = now();
    if (!loaded) {
        fprintf(stderr, "load: %s\n", tps_context_errmsg(ctx));
        return 1;
    }
    printf("saved model %.1f MB (%.0f bytes per point), save %.3f s, load (checked) %.3f s: "
           "%.0fx faster than the solve\n", (double)size / 1e6, (double)size / (double)n,
           t5 - t4, t6 - t5, (t1 - t0) / (t6 - t5));
    tps_model_destroy(loaded);
    tps_free(data);
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    free(x);
    free(y);
    free(z);
    free(grid);
    return 0;
}

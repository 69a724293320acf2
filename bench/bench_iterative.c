/* bench_iterative.c: the global spline by SOLVER=ITERATIVE at scale (issue 17).
 *   tps_bench_iterative N [THREADS=nproc] [DEVICE=cpu|gpu] [POINTS=uniform|cluster]
 *                       [DIRECT=0|1] [SIDE=200] [LOCAL=0|1] [MAP=file.f32]
 * N random points over a 10 km square (cluster: half of them in a 300 m
 * disc), a smooth field with detail at ~500 m, lambda = 0. Prints the
 * solve (iterations, relative residual, max residual at the data over the
 * range, seconds), the evaluation of a SIDE x SIDE Float64 grid over the box
 * (seconds, on DEVICE), and with DIRECT=1 the dense solve of the same points
 * and max |iterative - direct| over the grid / range; with LOCAL=1 today's
 * LOCAL model of the same points and max and RMS |global - local| / range,
 * and with MAP the grid of global - local written as raw Float32 (SIDE x
 * SIDE, row 0 north) for bench/iterative_map.py. Run with TPS_DEBUG=1 for
 * the engine's debug lines (preconditioner, products). One line of figures
 * at the end, tab-separated, for the sweeps of docs/benchmarks.md.
 * TPS_BENCH_PRECISION=mixed|auto evaluates the grid in that precision (GPU;
 * default DOUBLE) and prints MIXED's bound and fallbacks. Not run in CI. */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static void log_line(void *user, tps_log_level level, const char *message)
{
    (void)user;
    fprintf(stderr, "[%s] %s\n", level == TPS_LOG_WARNING ? "warning" : "debug", message);
}

static tps_model *fit(tps_context *ctx, size_t n, const double *x, const double *y,
                      const double *z, tps_mode mode, tps_solver solver, tps_device device,
                      int threads, double *seconds)
{
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = mode;
    fo.solver = solver;
    fo.device = device;
    fo.num_threads = threads;
    const double *values[1] = {z};
    const double smoothing[1] = {0.0};
    const double t0 = now();
    tps_model *m = tps_model_create(ctx, n, x, y, 1, values, smoothing, &fo);
    *seconds = now() - t0;
    if (!m)
        fprintf(stderr, "solve failed: %s\n", tps_context_errmsg(ctx));
    return m;
}

static int eval(tps_context *ctx, const tps_model *m, size_t side, tps_device device,
                int threads, double *grid, double *seconds)
{
    const double gt[6] = {0.0, 10000.0 / (double)side, 0, 10000.0, 0, -10000.0 / (double)side};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, side, side);
    tps_output o = {0, grid, TPS_FLOAT64, 8, (ptrdiff_t)(8 * side), TPS_QUANTITY_VALUE};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = device;
    eo.num_threads = threads;
    const char *precision = getenv("TPS_BENCH_PRECISION");
    tps_eval_stats stats;
    memset(&stats, 0, sizeof stats);
    if (precision && (strcmp(precision, "mixed") == 0 || strcmp(precision, "auto") == 0)) {
        eo.precision = strcmp(precision, "mixed") == 0 ? TPS_PRECISION_MIXED : TPS_PRECISION_AUTO;
        eo.stats = &stats;
    }
    const double t0 = now();
    const tps_status st = tps_evaluate_grid(ctx, m, &g, 1, &o, &eo);
    *seconds = now() - t0;
    if (st != TPS_OK)
        fprintf(stderr, "evaluation failed: %s\n", tps_context_errmsg(ctx));
    else if (eo.stats)
        printf("evaluation in %s: %zu blocks, %zu recomputed in DOUBLE, bound %.2e x range\n",
               precision, stats.mixed_blocks, stats.fallback_blocks, stats.max_error_estimate);
    return st == TPS_OK;
}

int main(int argc, char **argv)
{
    const size_t n = argc > 1 ? (size_t)atof(argv[1]) : 100000;
    const int threads = argc > 2 ? atoi(argv[2]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    const tps_device device =
        argc > 3 && strcmp(argv[3], "gpu") == 0 ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    const int cluster = argc > 4 && strcmp(argv[4], "cluster") == 0;
    const int direct = argc > 5 && atoi(argv[5]);
    const size_t side = argc > 6 ? (size_t)atol(argv[6]) : 200;
    const int local = argc > 7 && atoi(argv[7]);
    const char *map = argc > 8 ? argv[8] : NULL;
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *z = malloc(sizeof(double) * n);
    double *g1 = malloc(sizeof(double) * side * side), *g2 = malloc(sizeof(double) * side * side);
    if (!x || !y || !z || !g1 || !g2)
        return 2;
    double zmin = INFINITY, zmax = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
        if (cluster && i % 2) {
            const double r = 300.0 * sqrt(uniform()), a = 6.283185307179586 * uniform();
            x[i] = 6000.0 + r * cos(a);
            y[i] = 3000.0 + r * sin(a);
        } else {
            x[i] = 10000.0 * uniform();
            y[i] = 10000.0 * uniform();
        }
        z[i] = 100.0 * sin(x[i] / 500.0) * cos(y[i] / 700.0) + 0.01 * x[i];
        zmin = fmin(zmin, z[i]);
        zmax = fmax(zmax, z[i]);
    }
    const double range = zmax - zmin;
    tps_context *ctx = tps_context_create();
    if (getenv("TPS_DEBUG"))
        tps_context_set_log(ctx, log_line, NULL);
    printf("N = %zu (%s), %d threads, device %s, value range %.17g\n", n,
           cluster ? "clustered" : "uniform", threads, tps_device_name(device), range);
    double t_solve, t_eval;
    tps_model *m = fit(ctx, n, x, y, z, TPS_MODE_GLOBAL, TPS_SOLVER_ITERATIVE, device, threads,
                       &t_solve);
    if (!m)
        return 1;
    tps_band_info bi;
    tps_model_info info;
    tps_model_get_band_info(ctx, m, 0, &bi);
    tps_model_get_info(ctx, m, &info);
    printf("iterative solve: %.2f s (on %s), %d iterations, relative residual %.2e, max "
           "residual at the data %.2e x range\n", t_solve, tps_device_name(info.solve_device),
           bi.iterations, bi.relative_residual, bi.max_abs_residual / range);
    if (!eval(ctx, m, side, device, threads, g1, &t_eval))
        return 1;
    printf("evaluation %zu^2 (%s): %.2f s, %.3g pairs/s\n", side, tps_device_name(device), t_eval,
           (double)n * (double)side * (double)side / t_eval);
    double t_direct = NAN, e_direct = NAN, e_local = NAN, rms_local = NAN, t_local = NAN;
    if (direct) {
        tps_model *d = fit(ctx, n, x, y, z, TPS_MODE_GLOBAL, TPS_SOLVER_DIRECT, device, threads,
                           &t_direct);
        double t;
        if (d && eval(ctx, d, side, TPS_DEVICE_CPU, threads, g2, &t)) {
            e_direct = 0.0;
            for (size_t k = 0; k < side * side; ++k)
                e_direct = fmax(e_direct, fabs(g1[k] - g2[k]));
            e_direct /= range;
            printf("direct solve: %.2f s; max |iterative - direct| %.2e x range\n", t_direct,
                   e_direct);
        }
        tps_model_destroy(d);
    }
    if (local) {
        tps_model *l = fit(ctx, n, x, y, z, TPS_MODE_LOCAL, TPS_SOLVER_AUTO, device, threads,
                           &t_local);
        double t;
        if (l && eval(ctx, l, side, device, threads, g2, &t)) {
            double ss = 0.0;
            e_local = 0.0;
            for (size_t k = 0; k < side * side; ++k) {
                const double d = g1[k] - g2[k];
                e_local = fmax(e_local, fabs(d));
                ss += d * d;
                g2[k] = d;
            }
            e_local /= range;
            rms_local = sqrt(ss / (double)(side * side)) / range;
            printf("local model: %.2f s; |global - local| max %.2e, RMS %.2e x range\n", t_local,
                   e_local, rms_local);
            if (map) {
                FILE *f = fopen(map, "wb");
                for (size_t k = 0; f && k < side * side; ++k) {
                    const float v = (float)g2[k];
                    fwrite(&v, sizeof v, 1, f);
                }
                if (f)
                    fclose(f);
                printf("global - local written to %s (%zu x %zu Float32, row 0 north)\n", map,
                       side, side);
            }
        }
        tps_model_destroy(l);
    }
    printf("N\titerations\trelres\tmaxres/range\tsolve_s\teval_s\tdirect_s\titer-direct/range\t"
           "local_s\tglobal-local/range\n");
    printf("%zu\t%d\t%.2e\t%.2e\t%.2f\t%.2f\t%.2f\t%.2e\t%.2f\t%.2e\n", n, bi.iterations,
           bi.relative_residual, bi.max_abs_residual / range, t_solve, t_eval, t_direct,
           e_direct, t_local, e_local);
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    free(x), free(y), free(z), free(g1), free(g2);
    return 0;
}

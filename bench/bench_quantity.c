/* bench_quantity.c: evaluation time of value and derivative outputs, global
 * and local models, on the CPU or the GPU: the engine alone, public API
 * only (so the same source measures an engine before and after a change,
 * in one run; link it against each engine's libraries).
 *   tps_bench_quantity MODE N GRID THREADS QUANTITIES [REPEATS] [cpu|gpu]
 *   MODE: global|local; QUANTITIES: comma-separated tps_quantity numbers
 *   (0 value, 3 slope, 5 laplacian, ...), one output each, all of band 0.
 *   The model is always solved on the CPU.
 * Random points in the unit square (a fixed seed), a smooth field, a
 * GRID x GRID north-up Float64 grid over the square. Prints one JSON line:
 * the fastest of REPEATS (default 3) evaluations, and a checksum of the
 * outputs (to see that two builds computed the same thing). */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_SEED 0x9E3779B97F4A7C15ULL
#include "bench_util.h"

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s global|local N GRID THREADS QUANTITIES [REPEATS]\n", argv[0]);
        return 2;
    }
    const int local = strcmp(argv[1], "local") == 0;
    const size_t n = (size_t)atof(argv[2]), side = (size_t)atol(argv[3]);
    const int threads = atoi(argv[4]);
    const int repeats = argc > 6 ? atoi(argv[6]) : 3;
    const int gpu = argc > 7 && strcmp(argv[7], "gpu") == 0;
    enum { MAX_OUT = 16 };
    tps_quantity q[MAX_OUT];
    size_t n_out = 0;
    for (char *s = argv[5]; *s && n_out < MAX_OUT;) {
        q[n_out++] = (tps_quantity)strtol(s, &s, 10);
        if (*s == ',')
            ++s;
        else if (*s)
            return 2;
    }
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *z = malloc(sizeof(double) * n);
    double *out = malloc(sizeof(double) * side * side * (n_out ? n_out : 1));
    if (!x || !y || !z || !out)
        return 2;
    for (size_t i = 0; i < n; ++i) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = sin(6.0 * x[i]) * cos(4.0 * y[i]) + 0.3 * x[i];
    }
    tps_context *ctx = tps_context_create();
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL;
    fo.num_threads = threads;
    fo.device = TPS_DEVICE_CPU;
    const double *zp = z, lambda = 0.0;
    tps_model *m = tps_model_create(ctx, n, x, y, 1, &zp, &lambda, &fo);
    if (!m) {
        fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
        return 1;
    }
    const double gt[6] = {0.0, 1.0 / (double)side, 0.0, 1.0, 0.0, -1.0 / (double)side};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, side, side);
    tps_output o[MAX_OUT];
    for (size_t k = 0; k < n_out; ++k)
        o[k] = (tps_output){0, out + k * side * side, TPS_FLOAT64, sizeof(double),
                            (ptrdiff_t)(sizeof(double) * side), q[k]};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = threads;
    eo.device = gpu ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    double best = INFINITY;
    for (int r = 0; r < repeats; ++r) {
        const double t0 = now();
        if (tps_evaluate_grid(ctx, m, &g, n_out, o, &eo) != TPS_OK) {
            fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
            return 1;
        }
        const double t = now() - t0;
        best = t < best ? t : best;
    }
    double checksum = 0.0;
    for (size_t k = 0; k < side * side * n_out; k += 7)
        if (isfinite(out[k]))
            checksum += out[k];
    printf("{\"mode\": \"%s\", \"n\": %zu, \"grid\": %zu, \"threads\": %d, \"quantities\": \"%s\", "
           "\"device\": \"%s\", \"eval_s\": %.4f, \"checksum\": %.10g}\n",
           local ? "local" : "global", n, side, threads, argv[5], gpu ? "GPU" : "CPU", best,
           checksum);
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    free(out);
    free(x);
    free(y);
    free(z);
    return 0;
}

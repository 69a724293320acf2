/* bench_gcv.c: GCV on LOCAL models (issue 14) against the global GCV, against
 * an oracle, and for speed (docs/benchmarks.md, "GCV on local models").
 *
 *   tps_bench_gcv compare N NOISE FIELD [SEED] [THREADS]
 *       global GCV and local GCV (neither PatchPoints nor Overlap given:
 *       the patches sized from lambda; or TPS_BENCH_OVERLAP; then Overlap
 *       2) on the same N points: chosen lambda, RMSE against the
 *       noise-free field, effective df, LOO RMSE, times.
 *   tps_bench_gcv fixed N NOISE FIELD SEED THREADS LAMBDA...
 *       global and local models at the lambdas given: their RMSE.
 *   tps_bench_gcv local N NOISE FIELD SEED THREADS PP:OVERLAP...
 *       local GCV alone per setting: lambda, RMSE, df, time; 0:0, neither
 *       given: the patches sized from GCV's lambda (core/local_size.c).
 *   tps_bench_gcv family N NOISE FIELD SEED THREADS PP:OVERLAP...
 *       local GCV and the best fixed lambda (quarter decades) per setting.
 *   tps_bench_gcv oracle N NOISE FIELD [SEED] [THREADS]
 *       local GCV against local models of fixed lambda on a half-decade
 *       grid: RMSE against the field of each, the best, GCV's.
 *   tps_bench_gcv speed N [THREADS] [DEVICE=cpu|gpu|auto] [PATCH_POINTS] [WHICH]
 *       the fixed-lambda local solve and the GCV local solve of the same N
 *       points, times; WHICH: both, fixed or gcv (one of them, for its
 *       memory peak under /usr/bin/time -v).
 *
 * Points are uniform in the unit square; FIELD: franke (Franke's function),
 * waves (sin 6x cos 4y, detail at a sixth of the box), ridge (a smooth
 * ridge plus a plane); NOISE: the standard deviation of Gaussian noise, in
 * units of the field's standard deviation over the square. The RMSE is
 * taken at 20,000 random points of [0.02, 0.98]^2 (inside the data, where
 * no model extrapolates). TPS_BENCH_COVARIATES=K (speed, compare): K
 * linear covariates c_j = sin((11 + 4j) x + 3y) cos((9 + 3j) y), each
 * adding 0.5 c_j to the field (issue 14's local covariates).
 * TPS_BENCH_MAX_MEMORY=BYTES: the models' max_memory. Not run in CI. */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"

static double gauss(void)
{
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double field(const char *name, double x, double y)
{
    if (strcmp(name, "waves") == 0)
        return sin(6.0 * x) * cos(4.0 * y);
    if (strcmp(name, "ridge") == 0)
        return exp(-pow((x + y - 1.0) / 0.3, 2)) + 0.3 * x - 0.2 * y;
    return 0.75 * exp(-(pow(9 * x - 2, 2) + pow(9 * y - 2, 2)) / 4) +
           0.75 * exp(-pow(9 * x + 1, 2) / 49 - (9 * y + 1) / 10) +
           0.5 * exp(-(pow(9 * x - 7, 2) + pow(9 * y - 3, 2)) / 4) -
           0.2 * exp(-pow(9 * x - 4, 2) - pow(9 * y - 7, 2));
}

#define TEST_POINTS 20000
#define MAX_COV 4
static double tx[TEST_POINTS], ty[TEST_POINTS], tz[TEST_POINTS], tf[TEST_POINTS];
static double tc[MAX_COV][TEST_POINTS];
static size_t n_cov = 0; /* TPS_BENCH_COVARIATES */

static double covariate(size_t j, double x, double y)
{
    return sin((11.0 + 4.0 * (double)j) * x + 3.0 * y) * cos((9.0 + 3.0 * (double)j) * y);
}

typedef struct data {
    size_t n;
    double *x, *y, *z;
    double *c[MAX_COV];
} data;

static data make_data(size_t n, double noise, const char *name)
{
    data d = {n, malloc(sizeof(double) * n), malloc(sizeof(double) * n),
              malloc(sizeof(double) * n)};
    if (!d.x || !d.y || !d.z) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    /* The field's standard deviation over the square, from a sample. */
    double s = 0, ss = 0;
    for (int k = 0; k < 100000; ++k) {
        const double f = field(name, uniform(), uniform());
        s += f;
        ss += f * f;
    }
    const double sd = sqrt(ss / 1e5 - (s / 1e5) * (s / 1e5));
    for (size_t j = 0; j < n_cov; ++j)
        if (!(d.c[j] = malloc(sizeof(double) * n))) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
    for (size_t i = 0; i < n; ++i) {
        d.x[i] = uniform();
        d.y[i] = uniform();
        d.z[i] = field(name, d.x[i], d.y[i]) + noise * sd * gauss();
        for (size_t j = 0; j < n_cov; ++j) {
            d.c[j][i] = covariate(j, d.x[i], d.y[i]);
            d.z[i] += 0.5 * d.c[j][i];
        }
    }
    for (int k = 0; k < TEST_POINTS; ++k) {
        tx[k] = 0.02 + 0.96 * uniform();
        ty[k] = 0.02 + 0.96 * uniform();
        tf[k] = field(name, tx[k], ty[k]);
        for (size_t j = 0; j < n_cov; ++j) {
            tc[j][k] = covariate(j, tx[k], ty[k]);
            tf[k] += 0.5 * tc[j][k];
        }
    }
    return d;
}

typedef struct fit {
    double lambda, rmse, df, loo_rmse, seconds;
    size_t patches, patch_points; /* the partition used (local) */
    double overlap;
    int ok;
} fit;

static double overlap_option = 0.0; /* TPS_BENCH_OVERLAP: 0 is the default */

/* TPS_BENCH_DEBUG=1: the engine's debug lines (what GCV searched, where). */
static void print_log(void *user, tps_log_level level, const char *message)
{
    (void)user;
    (void)level;
    fprintf(stderr, "  [engine] %s\n", message);
}

static fit run(const data *d, tps_mode mode, int gcv, double lambda, int threads,
               tps_device device, size_t patch_points)
{
    fit f = {NAN, NAN, NAN, NAN, NAN, 0, 0, NAN, 0};
    tps_context *ctx = tps_context_create();
    if (getenv("TPS_BENCH_DEBUG"))
        tps_context_set_log(ctx, print_log, NULL);
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = mode;
    fo.num_threads = threads;
    fo.device = device;
    fo.patch_points = patch_points;
    fo.overlap = overlap_option;
    if (getenv("TPS_BENCH_MAX_MEMORY"))
        fo.max_memory = (size_t)atof(getenv("TPS_BENCH_MAX_MEMORY"));
    const int flag = gcv;
    fo.smoothing_gcv = &flag;
    fo.n_covariates = n_cov;
    fo.covariates = (const double *const *)d->c;
    const double *vals[1] = {d->z};
    const double t0 = now();
    tps_model *m = tps_model_create(ctx, d->n, d->x, d->y, 1, vals, &lambda, &fo);
    f.seconds = now() - t0;
    if (!m) {
        fprintf(stderr, "solve failed: %s\n", tps_context_errmsg(ctx));
        tps_context_destroy(ctx);
        return f;
    }
    tps_band_info bi;
    tps_model_info mi;
    tps_model_get_band_info(ctx, m, 0, &bi);
    tps_model_get_info(ctx, m, &mi);
    f.lambda = bi.smoothing;
    f.df = bi.effective_df;
    f.loo_rmse = bi.loo_rmse;
    f.patches = mi.n_patches;
    f.patch_points = mi.patch_points;
    f.overlap = mi.overlap;
    tps_plane planes[MAX_COV];
    for (size_t j = 0; j < n_cov; ++j)
        planes[j] = (tps_plane){tc[j], TPS_FLOAT64, sizeof(double), 0};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.covariates = n_cov ? planes : NULL;
    if (tps_evaluate_points(ctx, m, 0, TEST_POINTS, tx, ty, tz, &eo) == TPS_OK) {
        double ss = 0;
        for (int k = 0; k < TEST_POINTS; ++k)
            ss += (tz[k] - tf[k]) * (tz[k] - tf[k]);
        f.rmse = sqrt(ss / TEST_POINTS);
        f.ok = 1;
    }
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    return f;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: see the comment at the top of bench/bench_gcv.c\n");
        return 2;
    }
    const char *what = argv[1];
    if (getenv("TPS_BENCH_OVERLAP"))
        overlap_option = atof(getenv("TPS_BENCH_OVERLAP"));
    if (getenv("TPS_BENCH_COVARIATES")) {
        const long k = atol(getenv("TPS_BENCH_COVARIATES"));
        n_cov = k < 0 ? 0 : k > MAX_COV ? MAX_COV : (size_t)k;
    }
    const size_t n = (size_t)atof(argv[2]);
    if (strcmp(what, "speed") == 0) {
        const int threads = argc > 3 ? atoi(argv[3]) : 2;
        const tps_device dev = argc > 4 && strcmp(argv[4], "gpu") == 0   ? TPS_DEVICE_GPU
                               : argc > 4 && strcmp(argv[4], "auto") == 0 ? TPS_DEVICE_AUTO
                                                                          : TPS_DEVICE_CPU;
        const size_t pp = argc > 5 ? (size_t)atol(argv[5]) : 0;
        /* WHICH: both (the default), fixed or gcv alone (for its memory peak) */
        const char *which = argc > 6 ? argv[6] : "both";
        data d = make_data(n, 0.1, "waves");
        const fit none = {NAN, NAN, NAN, NAN, NAN, 0, 0, NAN, 1};
        fit fx = strcmp(which, "gcv") == 0 ? none : run(&d, TPS_MODE_LOCAL, 0, 1e-4, threads, dev, pp);
        fit fg = strcmp(which, "fixed") == 0 ? none : run(&d, TPS_MODE_LOCAL, 1, 0.0, threads, dev, pp);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("speed N=%zu threads=%d device=%s patches=%zu (GCV's: %zu:%g): fixed %.2f s, GCV %.2f s "
               "(lambda %.3g, df %.0f, rmse fixed %.3g GCV %.3g), peak RSS %.0f MB (%s)\n",
               n, threads, tps_device_name(dev), fg.patches ? fg.patches : fx.patches,
               fg.patch_points, fg.overlap, fx.seconds,
               fg.seconds, fg.lambda, fg.df, fx.rmse, fg.rmse, ru.ru_maxrss / 1024.0, which);
        return fx.ok && fg.ok ? 0 : 1;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: see the comment at the top of bench/bench_gcv.c\n");
        return 2;
    }
    const double noise = atof(argv[3]);
    const char *name = argv[4];
    if (argc > 5)
        bench_state ^= (unsigned long long)atoll(argv[5]) * 0x9E3779B97F4A7C15ULL;
    const int threads = argc > 6 ? atoi(argv[6]) : 2;
    data d = make_data(n, noise, name);
    if (strcmp(what, "compare") == 0) {
        /* the local model with the default Overlap (or TPS_BENCH_OVERLAP) and with 2 */
        fit g = run(&d, TPS_MODE_GLOBAL, 1, 0.0, threads, TPS_DEVICE_CPU, 0);
        int ok = g.ok;
        const double overlaps[2] = {overlap_option, 2.0};
        for (int k = 0; k < 2; ++k) {
            overlap_option = overlaps[k];
            fit l = run(&d, TPS_MODE_LOCAL, 1, 0.0, threads, TPS_DEVICE_CPU, 0);
            ok = ok && l.ok;
            char label[64];
            if (overlaps[k] > 0)
                snprintf(label, sizeof label, "overlap %g", overlaps[k]);
            else
                snprintf(label, sizeof label, "sized from lambda");
            printf("compare %s N=%zu noise=%g %s: lambda global %.4g local %.4g (ratio "
                   "%.3f); rmse global %.5g local %.5g (ratio %.4f); df %.1f / %.1f; LOO %.5g / "
                   "%.5g; %.2f s / %.2f s (%zu patches, %zu:%g)\n",
                   name, n, noise, label, g.lambda, l.lambda, l.lambda / g.lambda, g.rmse,
                   l.rmse, l.rmse / g.rmse, g.df, l.df, g.loo_rmse, l.loo_rmse, g.seconds,
                   l.seconds, l.patches, l.patch_points, l.overlap);
        }
        return ok ? 0 : 1;
    }
    if (strcmp(what, "fixed") == 0) { /* both models at the lambdas given */
        for (int k = 7; k < argc; ++k) {
            const double lam = atof(argv[k]);
            fit g = run(&d, TPS_MODE_GLOBAL, 0, lam, threads, TPS_DEVICE_CPU, 0);
            fit l = run(&d, TPS_MODE_LOCAL, 0, lam, threads, TPS_DEVICE_CPU, 0);
            printf("fixed %s N=%zu noise=%g lambda %.4g: rmse global %.5g local %.5g\n", name, n,
                   noise, lam, g.rmse, l.rmse);
        }
        return 0;
    }
    if (strcmp(what, "local") == 0) { /* local GCV alone, per PP:OVERLAP */
        for (int k = 7; k < argc; ++k) {
            size_t pp = 0;
            double ov = 0.0;
            sscanf(argv[k], "%zu:%lf", &pp, &ov);
            overlap_option = ov;
            fit g = run(&d, TPS_MODE_LOCAL, 1, 0.0, threads, TPS_DEVICE_CPU, pp);
            printf("local %s N=%zu noise=%g pp %zu overlap %g (%zu patches, used %zu:%g): GCV "
                   "lambda %.4g rmse %.5g df %.1f (%.2f s)\n", name, n, noise, pp, ov, g.patches,
                   g.patch_points, g.overlap, g.lambda, g.rmse, g.df, g.seconds);
        }
        return 0;
    }
    if (strcmp(what, "family") == 0) { /* local models' best over lambda, per PP:OVERLAP */
        for (int k = 7; k < argc; ++k) {
            size_t pp = 0;
            double ov = 0.0;
            sscanf(argv[k], "%zu:%lf", &pp, &ov);
            overlap_option = ov;
            double best = INFINITY, bl = NAN;
            fit g = run(&d, TPS_MODE_LOCAL, 1, 0.0, threads, TPS_DEVICE_CPU, pp);
            for (int j = -6; j <= 6; ++j) {
                const double lam = g.lambda * pow(10.0, 0.25 * j);
                fit f = run(&d, TPS_MODE_LOCAL, 0, lam, threads, TPS_DEVICE_CPU, pp);
                if (f.rmse < best) {
                    best = f.rmse;
                    bl = lam;
                }
            }
            printf("family %s N=%zu noise=%g pp %zu overlap %g (%zu patches): GCV lambda %.4g "
                   "rmse %.5g (%.2f s); best lambda %.4g rmse %.5g\n", name, n, noise, pp, ov,
                   g.patches, g.lambda, g.rmse, g.seconds, bl, best);
        }
        return 0;
    }
    if (strcmp(what, "oracle") == 0) {
        fit l = run(&d, TPS_MODE_LOCAL, 1, 0.0, threads, TPS_DEVICE_CPU, 0);
        double best = INFINITY, best_lambda = NAN;
        int ok = l.ok;
        /* half-decade steps around GCV's choice, far enough to see the minimum */
        for (int k = -8; k <= 8; ++k) {
            const double lam = pow(10.0, floor(2.0 * log10(l.lambda)) / 2.0 + 0.5 * k);
            fit f = run(&d, TPS_MODE_LOCAL, 0, lam, threads, TPS_DEVICE_CPU, 0);
            ok = ok && f.ok;
            printf("  fixed lambda %.3g: rmse %.5g (%.2f s)\n", lam, f.rmse, f.seconds);
            if (f.rmse < best) {
                best = f.rmse;
                best_lambda = lam;
            }
        }
        printf("oracle %s N=%zu noise=%g: GCV lambda %.4g rmse %.5g (%.2f s); best fixed "
               "lambda %.3g rmse %.5g; ratio %.4f\n",
               name, n, noise, l.lambda, l.rmse, l.seconds, best_lambda, best, l.rmse / best);
        return ok ? 0 : 1;
    }
    fprintf(stderr, "unknown mode %s\n", what);
    return 2;
}

/* test_iterative.c: GLOBAL models solved by SOLVER=ITERATIVE (core/iterative.c,
 * precond.c, matvec.c) against the dense solve of the same points.
 *
 *  - the surfaces agree within 1e-8 of the band's value range on a grid
 *    reaching past the points (docs/design.md states it): uniform points
 *    at UTM offsets with two bands of different missing values (3,000
 *    points: the fast summation's products; 2,667: direct products),
 *    clustered points, smoothing with noisy data, per-point weights;
 *  - band info: ITERATIVE, 1..200 iterations, the relative residual at most
 *    the tolerance, the largest residual at the data within 1e-8 x range
 *    (lambda = 0); DIRECT bands 0 and NaN;
 *  - a looser tolerance (1e-6) is honoured: its residual, fewer or as many
 *    iterations;
 *  - the same weights on one thread and two (bitwise);
 *  - options: ITERATIVE with LOCAL, GCV or cross-validation refused
 *    (TPS_ERR_INVALID_ARGUMENT); tolerances outside [1e-14, 1e-6] and unknown
 *    solvers refused; MODE=AUTO with ITERATIVE builds a GLOBAL model; AUTO
 *    takes DIRECT for small inputs, ITERATIVE when the dense system is over
 *    the memory limit; collinear points fail with TPS_ERR_COLLINEAR;
 *  - covariates and the standard error need the dense solve: ITERATIVE with
 *    a covariate refused naming SOLVER=DIRECT, AUTO with one stays DIRECT
 *    over the memory limit; an ITERATIVE band has no variances and its
 *    standard error is refused naming SOLVER=DIRECT (DIRECT's: finite);
 *  - `test_iterative gpu` (ctest iterative_gpu): the same with DEVICE=GPU
 *    (products and patch solves on the GPU) against the CPU's, within 1e-8
 *    x range; exit 77 only where the probe (gpu_probe.h) finds no GPU.
 *
 * TPS_TEST_QUICK=1 (valgrind): 500 points instead of 3,000 (the direct
 * products, as at 1,000, and the same preconditioner paths: cells, patches
 * grown to PRECOND_MIN_PATCH, a coarse level of n / 8 points), two of the
 * four cases against the dense solve, and AUTO's choices that do not depend
 * on the size (ITERATIVE asked for, DIRECT for few points) on 500 of the
 * 2,000 points (over the memory limit: all 2,000). */
#include "check.h"
#include "gpu_probe.h"
#include "iterative.h"
#include "testdata.h"
#include "tps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t n_points = 3000;
/* The fits of options() whose size does not matter (AUTO with ITERATIVE,
 * AUTO's DIRECT for few points): all 2,000 points, or 500 under
 * TPS_TEST_QUICK=1 (valgrind: a 2,000-point dense solve is minutes there). */
static size_t n_small = 2000;

typedef struct data {
    size_t n;
    double *x, *y, *z1, *z2, *w;
} data;

/* Points over a 10 km square at UTM-sized offsets: uniform, or half of them
 * in a 300 m disc. Band 1: Franke's function; band 2: another field with
 * every ninth value missing (so its own solve). */
static data make_data(size_t n, int clustered, double noise)
{
    data d = {n, malloc(sizeof(double) * n), malloc(sizeof(double) * n),
              malloc(sizeof(double) * n), malloc(sizeof(double) * n), malloc(sizeof(double) * n)};
    for (size_t i = 0; i < n && d.x && d.y && d.z1 && d.z2 && d.w; ++i) {
        double u = uniform(), v = uniform();
        if (clustered && i % 2) {
            const double r = 0.03 * sqrt(u), a = 6.283185307179586 * v;
            u = 0.6 + r * cos(a);
            v = 0.3 + r * sin(a);
        }
        d.x[i] = 500000 + 10000 * u;
        d.y[i] = 4000000 + 10000 * v;
        d.z1[i] = franke(u, v) + noise * (uniform() - 0.5);
        d.z2[i] = i % 9 == 4 ? NAN : 100 * sin(5 * u) * cos(3 * v) + noise * (uniform() - 0.5);
        d.w[i] = 0.5 + uniform();
    }
    return d;
}

static void free_data(data *d)
{
    free(d->x), free(d->y), free(d->z1), free(d->z2), free(d->w);
}

static tps_model *fit(tps_context *ctx, const data *d, double lambda, tps_solver solver,
                      int weighted, tps_device device, int threads)
{
    const double *values[2] = {d->z1, d->z2};
    const double smoothing[2] = {lambda, lambda};
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_GLOBAL;
    o.solver = solver;
    o.device = device;
    o.num_threads = threads;
    o.weights = weighted ? d->w : NULL;
    return tps_model_create(ctx, d->n, d->x, d->y, 2, values, smoothing, &o);
}

/* Both bands over a 90 x 70 grid reaching 5% past the points' box. */
static int eval(tps_context *ctx, const tps_model *m, double *out, tps_device device)
{
    const size_t cols = 90, rows = 70;
    const double gt[6] = {499500, 11000.0 / cols, 0, 4010500, 0, -11000.0 / rows};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, cols, rows);
    tps_output o[2];
    for (size_t b = 0; b < 2; ++b)
        o[b] = (tps_output){b, out + b * cols * rows, TPS_FLOAT64, 8, (ptrdiff_t)(8 * cols)};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = 2;
    eo.device = device;
    return tps_evaluate_grid(ctx, m, &g, 2, o, &eo) == TPS_OK;
}

#define CELLS (90 * 70)

/* Max |a - b| of each band over its value range. */
static void compare(tps_context *ctx, const tps_model *a, const tps_model *b, double *err,
                    tps_device da, tps_device db)
{
    double *ga = malloc(sizeof(double) * 2 * CELLS), *gb = malloc(sizeof(double) * 2 * CELLS);
    err[0] = err[1] = NAN;
    if (ga && gb && eval(ctx, a, ga, da) && eval(ctx, b, gb, db)) {
        for (size_t band = 0; band < 2; ++band) {
            tps_band_info bi;
            tps_model_get_band_info(ctx, a, band, &bi);
            double e = 0.0;
            for (size_t k = 0; k < CELLS; ++k)
                e = max_nan(e, fabs(ga[band * CELLS + k] - gb[band * CELLS + k]));
            err[band] = e / (bi.value_max - bi.value_min);
        }
    }
    free(ga);
    free(gb);
}

static void against_direct(tps_context *ctx, const char *name, int clustered, double lambda,
                           double noise, int weighted)
{
    data d = make_data(n_points, clustered, noise);
    tps_model *it = fit(ctx, &d, lambda, TPS_SOLVER_ITERATIVE, weighted, TPS_DEVICE_CPU, 2);
    CHECK(it != NULL, "%s: iterative: %s", name, tps_context_errmsg(ctx));
    tps_model *di = fit(ctx, &d, lambda, TPS_SOLVER_DIRECT, weighted, TPS_DEVICE_CPU, 2);
    CHECK(di != NULL, "%s: direct: %s", name, tps_context_errmsg(ctx));
    if (it && di) {
        double err[2];
        compare(ctx, it, di, err, TPS_DEVICE_CPU, TPS_DEVICE_CPU);
        for (size_t band = 0; band < 2; ++band) {
            tps_band_info bi, bd;
            CHECK(tps_model_get_band_info(ctx, it, band, &bi) == TPS_OK &&
                      tps_model_get_band_info(ctx, di, band, &bd) == TPS_OK,
                  "%s", tps_context_errmsg(ctx));
            const double range = bi.value_max - bi.value_min;
            printf("%s, band %zu (%zu points): %d iterations, relative residual %.2e, "
                   "max |iterative - direct| %.2e x range, max residual at the data %.2e x "
                   "range (direct %.2e)\n", name, band + 1, bi.n_points, bi.iterations,
                   bi.relative_residual, err[band], bi.max_abs_residual / range,
                   bd.max_abs_residual / range);
            CHECK(err[band] <= 1e-8, "%s, band %zu: iterative and direct differ by %.3e x range",
                  name, band + 1, err[band]);
            CHECK(bi.solver == TPS_SOLVER_ITERATIVE && bi.iterations >= 1 &&
                      bi.iterations <= 200 && bi.relative_residual <= 1e-10,
                  "%s, band %zu: solver %d, %d iterations, residual %.3e", name, band + 1,
                  (int)bi.solver, bi.iterations, bi.relative_residual);
            CHECK(bd.solver == TPS_SOLVER_DIRECT && bd.iterations == 0 &&
                      isnan(bd.relative_residual),
                  "%s: the direct band's solver fields", name);
            if (lambda == 0.0)
                CHECK(bi.max_abs_residual <= 1e-8 * range, "%s, band %zu: residual %.3e x range",
                      name, band + 1, bi.max_abs_residual / range);
            else /* a smoothing spline: its residuals are the direct one's */
                CHECK(fabs(bi.max_abs_residual - bd.max_abs_residual) <= 1e-8 * range,
                      "%s, band %zu: residual %.6g, direct %.6g", name, band + 1,
                      bi.max_abs_residual, bd.max_abs_residual);
        }
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, it, &info) == TPS_OK && info.mode == TPS_MODE_GLOBAL &&
                  info.n_factorisations == 2 && info.solve_device == TPS_DEVICE_CPU,
              "%s: model info", name);
    }
    tps_model_destroy(it);
    tps_model_destroy(di);
    free_data(&d);
}

static void tolerance_and_threads(tps_context *ctx)
{
    data d = make_data(n_points, 0, 0.0);
    const double *values[1] = {d.z1};
    const double smoothing[1] = {0.0};
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_GLOBAL;
    o.solver = TPS_SOLVER_ITERATIVE;
    o.device = TPS_DEVICE_CPU;
    tps_band_info tight, loose;
    o.num_threads = 1;
    tps_model *a = tps_model_create(ctx, d.n, d.x, d.y, 1, values, smoothing, &o);
    o.num_threads = 2;
    tps_model *b = tps_model_create(ctx, d.n, d.x, d.y, 1, values, smoothing, &o);
    o.solver_tolerance = 1e-6;
    tps_model *c = tps_model_create(ctx, d.n, d.x, d.y, 1, values, smoothing, &o);
    CHECK(a && b && c, "%s", tps_context_errmsg(ctx));
    if (a && b && c) {
        CHECK(tps_model_get_band_info(ctx, b, 0, &tight) == TPS_OK &&
                  tps_model_get_band_info(ctx, c, 0, &loose) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        printf("tolerance 1e-6: %d iterations, residual %.2e; 1e-10: %d, %.2e\n",
               loose.iterations, loose.relative_residual, tight.iterations,
               tight.relative_residual);
        CHECK(loose.relative_residual <= 1e-6 && loose.iterations <= tight.iterations &&
                  loose.iterations >= 1,
              "tolerance 1e-6: residual %.3e after %d iterations (1e-10: %d)",
              loose.relative_residual, loose.iterations, tight.iterations);
        /* Threads: the same weights to the bit (evaluated at the points). */
        double *fa = malloc(sizeof(double) * d.n), *fb = malloc(sizeof(double) * d.n);
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_CPU;
        CHECK(fa && fb && tps_evaluate_points(ctx, a, 0, d.n, d.x, d.y, fa, &eo) == TPS_OK &&
                  tps_evaluate_points(ctx, b, 0, d.n, d.x, d.y, fb, &eo) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(fa && fb && memcmp(fa, fb, sizeof(double) * d.n) == 0,
              "one thread and two give different surfaces");
        free(fa);
        free(fb);
    }
    tps_model_destroy(a);
    tps_model_destroy(b);
    tps_model_destroy(c);
    free_data(&d);
}

static tps_model *fit_options(tps_context *ctx, const data *d, size_t n, tps_fit_options *o,
                              int gcv)
{
    const double *values[1] = {d->z1};
    const double smoothing[1] = {0.0};
    const int flags[1] = {1};
    o->smoothing_gcv = gcv ? flags : NULL;
    return tps_model_create(ctx, n, d->x, d->y, 1, values, smoothing, o);
}

/* Where a GPU runs the solve's parts (tps_iterative_gpu_parts): the rule
 * from the GPU host's rates, at the points where it changes. */
static void gpu_placement(void)
{
    const unsigned all = TPS_ITERATIVE_GPU_PRODUCTS | TPS_ITERATIVE_GPU_PATCHES |
                         TPS_ITERATIVE_GPU_COARSE;
    /* few threads: the GPU for everything, up to millions of points */
    CHECK(tps_iterative_gpu_parts(20000, 2) == all, "20,000 points, 2 threads: %u",
          tps_iterative_gpu_parts(20000, 2));
    CHECK(tps_iterative_gpu_parts(1000000, 2) == all, "10^6 points, 2 threads: %u",
          tps_iterative_gpu_parts(1000000, 2));
    CHECK(tps_iterative_gpu_parts(3000000, 2) ==
              (TPS_ITERATIVE_GPU_PATCHES | TPS_ITERATIVE_GPU_COARSE),
          "3*10^6 points, 2 threads: the fast summation on the CPU (%u)",
          tps_iterative_gpu_parts(3000000, 2));
    /* the GPU host's 16 threads: the CPU for the patches and the coarse
     * level, the GPU's products up to ~2.7*10^5 points */
    CHECK(tps_iterative_gpu_parts(200000, 16) == TPS_ITERATIVE_GPU_PRODUCTS,
          "2*10^5 points, 16 threads: %u", tps_iterative_gpu_parts(200000, 16));
    CHECK(tps_iterative_gpu_parts(1000000, 16) == 0, "10^6 points, 16 threads: %u",
          tps_iterative_gpu_parts(1000000, 16));
    CHECK(tps_iterative_gpu_parts(20000, 6) ==
              (TPS_ITERATIVE_GPU_PRODUCTS | TPS_ITERATIVE_GPU_COARSE),
          "20,000 points, 6 threads: %u", tps_iterative_gpu_parts(20000, 6));
    CHECK(tps_iterative_gpu_parts(20000, 0) == all, "no thread count: as one thread");
}

static void options(tps_context *ctx)
{
    data d = make_data(2000, 0, 0.0);
    tps_fit_options o;
    struct {
        tps_mode mode;
        tps_solver solver;
        int gcv, cv;
        double tol;
        const char *what;
    } refused[] = {{TPS_MODE_LOCAL, TPS_SOLVER_ITERATIVE, 0, 0, 0.0, "ITERATIVE with LOCAL"},
                   {TPS_MODE_GLOBAL, TPS_SOLVER_ITERATIVE, 1, 0, 0.0, "ITERATIVE with GCV"},
                   {TPS_MODE_AUTO, TPS_SOLVER_ITERATIVE, 0, 1, 0.0,
                    "ITERATIVE with cross-validation"},
                   {TPS_MODE_GLOBAL, TPS_SOLVER_ITERATIVE, 0, 0, 1e-3, "tolerance 1e-3"},
                   {TPS_MODE_GLOBAL, TPS_SOLVER_ITERATIVE, 0, 0, 1e-15, "tolerance 1e-15"},
                   {TPS_MODE_GLOBAL, TPS_SOLVER_ITERATIVE, 0, 0, NAN, "tolerance NaN"},
                   {TPS_MODE_GLOBAL, (tps_solver)7, 0, 0, 0.0, "solver 7"}};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; ++k) {
        tps_fit_options_init(&o);
        o.mode = refused[k].mode;
        o.solver = refused[k].solver;
        o.cross_validation = refused[k].cv;
        o.solver_tolerance = refused[k].tol;
        tps_model *m = fit_options(ctx, &d, d.n, &o, refused[k].gcv);
        CHECK(m == NULL && tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT,
              "%s accepted (%s)", refused[k].what, tps_context_errmsg(ctx));
        if (k < 3)
            CHECK(strstr(tps_context_errmsg(ctx), k ? "SOLVER=DIRECT" : "MODE=GLOBAL") != NULL,
                  "%s: the message does not say what to change: %s", refused[k].what,
                  tps_context_errmsg(ctx));
        tps_model_destroy(m);
    }
    /* MODE=AUTO with ITERATIVE: a global model. */
    tps_fit_options_init(&o);
    o.solver = TPS_SOLVER_ITERATIVE;
    tps_model *m = fit_options(ctx, &d, n_small, &o, 0);
    tps_model_info info;
    tps_band_info bi;
    CHECK(m && tps_model_get_info(ctx, m, &info) == TPS_OK && info.mode == TPS_MODE_GLOBAL &&
              tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK &&
              bi.solver == TPS_SOLVER_ITERATIVE,
          "AUTO with ITERATIVE: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    /* AUTO: DIRECT for few points; ITERATIVE when the dense system is over
     * the memory limit and the iterative one is not (2,000 points: 32 MB
     * dense, about 10 MB iterative). */
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_GLOBAL;
    m = fit_options(ctx, &d, n_small, &o, 0);
    CHECK(m && tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK &&
              bi.solver == TPS_SOLVER_DIRECT,
          "AUTO, %zu points: %s", n_small, tps_context_errmsg(ctx));
    tps_model_destroy(m);
    o.max_memory = 16u << 20;
    m = fit_options(ctx, &d, d.n, &o, 0);
    CHECK(m && tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK &&
              bi.solver == TPS_SOLVER_ITERATIVE,
          "AUTO over the memory limit: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    o.solver = TPS_SOLVER_DIRECT;
    m = fit_options(ctx, &d, d.n, &o, 0);
    CHECK(m == NULL && tps_context_errno(ctx) == TPS_ERR_MEMORY_LIMIT,
          "DIRECT over the memory limit: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    /* Collinear points. */
    for (size_t i = 0; i < d.n; ++i)
        d.y[i] = 4000000 + 0.5 * (d.x[i] - 500000);
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_GLOBAL;
    o.solver = TPS_SOLVER_ITERATIVE;
    m = fit_options(ctx, &d, d.n, &o, 0);
    CHECK(m == NULL && tps_context_errno(ctx) == TPS_ERR_COLLINEAR, "collinear: %s",
          tps_context_errmsg(ctx));
    tps_model_destroy(m);
    free_data(&d);
    printf("options: refusals, AUTO's choices, collinear points\n");
}

/* Covariates and the standard error need the dense solve (tps.h):
 * ITERATIVE with a covariate is refused, naming SOLVER=DIRECT; AUTO with a
 * covariate stays DIRECT where it would go ITERATIVE (over the memory
 * limit, as in options()); an ITERATIVE band has no variances and its
 * standard error is refused, naming SOLVER=DIRECT, while the DIRECT model
 * of the same points gives one (the control). */
static void covariates_and_se(tps_context *ctx)
{
    data d = make_data(2000, 0, 0.0);
    double *cov = malloc(sizeof(double) * d.n);
    CHECK(cov != NULL, "out of memory");
    for (size_t i = 0; cov && i < d.n; ++i)
        cov[i] = sin(d.x[i] / 900.0) * cos(d.y[i] / 1300.0);
    const double *covs[1] = {cov};
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_GLOBAL;
    o.solver = TPS_SOLVER_ITERATIVE;
    o.n_covariates = 1;
    o.covariates = covs;
    tps_model *m = fit_options(ctx, &d, d.n, &o, 0);
    CHECK(m == NULL && tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "SOLVER=DIRECT") &&
              strstr(tps_context_errmsg(ctx), "covariates"),
          "ITERATIVE with a covariate: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    o.solver = TPS_SOLVER_AUTO;
    o.max_memory = 16u << 20; /* without the covariate: ITERATIVE (options()) */
    m = fit_options(ctx, &d, d.n, &o, 0);
    CHECK(m == NULL && tps_context_errno(ctx) == TPS_ERR_MEMORY_LIMIT &&
              strstr(tps_context_errmsg(ctx), "dense"),
          "AUTO with a covariate over the memory limit: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    free(cov);
    free_data(&d);

    data s = make_data(400, 0, 0.05);
    tps_model *it = fit(ctx, &s, 1e3, TPS_SOLVER_ITERATIVE, 0, TPS_DEVICE_CPU, 1);
    tps_model *di = fit(ctx, &s, 1e3, TPS_SOLVER_DIRECT, 0, TPS_DEVICE_CPU, 1);
    CHECK(it && di, "fits: %s", tps_context_errmsg(ctx));
    if (it && di) {
        tps_band_info bi, bd;
        CHECK(tps_model_get_band_info(ctx, it, 0, &bi) == TPS_OK &&
                  tps_model_get_band_info(ctx, di, 0, &bd) == TPS_OK &&
                  bi.solver == TPS_SOLVER_ITERATIVE && isnan(bi.sigma2) && isnan(bi.tau2) &&
                  bd.solver == TPS_SOLVER_DIRECT && bd.sigma2 > 0 && bd.tau2 > 0,
              "variances: ITERATIVE %g %g, DIRECT %g %g", bi.sigma2, bi.tau2, bd.sigma2,
              bd.tau2);
        const double gt[6] = {502000, 1500, 0, 4008000, 0, -1500};
        tps_grid g;
        tps_grid_from_geotransform(&g, gt, 0, 0, 4, 4);
        double se[16];
        const tps_output so = {0, se, TPS_FLOAT64, 8, 32, TPS_QUANTITY_STANDARD_ERROR};
        CHECK(tps_evaluate_grid(ctx, it, &g, 1, &so, NULL) == TPS_ERR_INVALID_ARGUMENT &&
                  strstr(tps_context_errmsg(ctx), "SOLVER=DIRECT"),
              "a standard error of an ITERATIVE band: %s", tps_context_errmsg(ctx));
        CHECK(tps_evaluate_grid(ctx, di, &g, 1, &so, NULL) == TPS_OK, "DIRECT's: %s",
              tps_context_errmsg(ctx));
        for (size_t k = 0; k < 16; ++k)
            CHECK(isfinite(se[k]) && se[k] > 0, "DIRECT's standard error %zu: %g", k, se[k]);
    }
    tps_model_destroy(it);
    tps_model_destroy(di);
    free_data(&s);
    printf("covariates and standard errors: refused with ITERATIVE, DIRECT with AUTO\n");
}

static int gpu_main(tps_context *ctx)
{
    char why[512];
    if (!gpu_expected(why, sizeof why)) { /* an independent probe (gpu_probe.h) */
        printf("skipped: %s\n", why);
        return 77;
    }
    const int broken = gpu_test_broken_on_purpose();
    data d = make_data(n_points, 1, 0.0);
    tps_model *g = fit(ctx, &d, 0.0, TPS_SOLVER_ITERATIVE, 0, TPS_DEVICE_GPU, 2);
    CHECK(g != NULL, "GPU: %s", tps_context_errmsg(ctx));
    tps_model *c = fit(ctx, &d, 0.0, TPS_SOLVER_ITERATIVE, 0, TPS_DEVICE_CPU, 2);
    CHECK(c != NULL, "CPU: %s", tps_context_errmsg(ctx));
    if (g && c) {
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, g, &info) == TPS_OK &&
                  info.solve_device == TPS_DEVICE_GPU,
              "the GPU solve's device: %d", (int)info.solve_device);
        double err[2];
        compare(ctx, g, c, err, TPS_DEVICE_GPU, TPS_DEVICE_CPU);
        for (size_t band = 0; band < 2; ++band) {
            tps_band_info bi;
            CHECK(tps_model_get_band_info(ctx, g, band, &bi) == TPS_OK, "band info");
            printf("GPU (%s), band %zu: %d iterations, residual %.2e, max |GPU - CPU| %.2e x "
                   "range\n", tps_gpu_description(), band + 1, bi.iterations,
                   bi.relative_residual, err[band]);
            CHECK(err[band] <= (broken ? 1e-30 : 1e-8), "band %zu: GPU and CPU differ by %.3e",
                  band + 1, err[band]);
            CHECK(bi.relative_residual <= 1e-10, "band %zu: residual %.3e", band + 1,
                  bi.relative_residual);
        }
    }
    tps_model_destroy(g);
    tps_model_destroy(c);
    free_data(&d);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *quick = getenv("TPS_TEST_QUICK");
    if (quick && strcmp(quick, "1") == 0) {
        n_points = 500;
        n_small = 500;
    }
    tps_context *ctx = tps_context_create();
    if (argc > 1 && strcmp(argv[1], "gpu") == 0) {
        const int rc = gpu_main(ctx);
        tps_context_destroy(ctx);
        return rc;
    }
    const int is_quick = quick && strcmp(quick, "1") == 0;
    gpu_placement();
    against_direct(ctx, "uniform", 0, 0.0, 0.0, 0);
    /* Under valgrind (quick) the clustered and smoothing cases, the same
     * code on other data, are left out (~50 s each there); plain ctest runs
     * them. */
    if (!is_quick)
        against_direct(ctx, "clustered", 1, 0.0, 0.0, 0);
    /* lambda in the user's units (metres^2): moderate smoothing of 10 km data */
    if (!is_quick)
        against_direct(ctx, "smoothing", 0, 1e3, 0.05, 0);
    against_direct(ctx, "weights", 0, 1e3, 0.05, 1);
    tolerance_and_threads(ctx);
    options(ctx);
    covariates_and_se(ctx);
    tps_context_destroy(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

/* test_engine.c: the C engine against independent references.
 *
 * References: analytic fields (an affine field is reproduced exactly), a
 * direct LU solve (LAPACKE_dgesv) of the full saddle-point system in the
 * user's own unscaled coordinates evaluated with libm's log, and the
 * engine's own kernels against each other (generic / AVX2 / AVX-512, one
 * thread / many).
 *   test_engine              everything, with the generic kernel and the
 *                            best one of this CPU (AUTO)
 *   test_engine kernel NAME  the avx2 or avx512 kernel against the generic
 *                            one: exit 77 (skipped) where this CPU lacks the
 *                            instructions, asked of the CPU here
 *                            (__builtin_cpu_supports), not of the engine;
 *                            where it has them, the kernel must run */
#include "tps.h"
#include "eval.h" /* the kernels, for the log accuracy test */

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "testdata.h"



static double phi(double r2) { return r2 > 0 ? 0.5 * r2 * log(r2) : 0.0; }

/* Reference: LU of the full (N+3) system in unscaled coordinates. */
typedef struct reference {
    size_t n;
    const double *x, *y;
    double *coef; /* w (n), a0, a1, a2 */
} reference;

static int reference_solve(reference *ref, const double *z, double lambda)
{
    size_t n = ref->n, m = n + 3;
    double *a = calloc(m * m, sizeof(double));
    lapack_int *piv = malloc(sizeof(lapack_int) * m);
    ref->coef = malloc(sizeof(double) * m);
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < n; ++j) {
            double dx = ref->x[i] - ref->x[j], dy = ref->y[i] - ref->y[j];
            a[i + j * m] = phi(dx * dx + dy * dy) + (i == j ? lambda : 0.0);
        }
        double p[3] = {1.0, ref->x[i], ref->y[i]};
        for (size_t k = 0; k < 3; ++k) {
            a[i + (n + k) * m] = p[k];
            a[(n + k) + i * m] = p[k];
        }
        ref->coef[i] = z[i];
    }
    ref->coef[n] = ref->coef[n + 1] = ref->coef[n + 2] = 0.0;
    int info = LAPACKE_dgesv(LAPACK_COL_MAJOR, (lapack_int)m, 1, a, (lapack_int)m, piv, ref->coef,
                             (lapack_int)m);
    free(a);
    free(piv);
    return info;
}

static double reference_eval(const reference *ref, double x, double y)
{
    double s = 0.0;
    for (size_t i = 0; i < ref->n; ++i) {
        double dx = x - ref->x[i], dy = y - ref->y[i];
        s += ref->coef[i] * phi(dx * dx + dy * dy);
    }
    return s + ref->coef[ref->n] + ref->coef[ref->n + 1] * x + ref->coef[ref->n + 2] * y;
}

static tps_model *fit(tps_context *ctx, size_t n, const double *x, const double *y, const double *z,
                      double lambda)
{
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    return tps_model_create(ctx, n, x, y, 1, &z, &lambda, &fo);
}

static void random_points(size_t n, double x0, double y0, double extent, double *x, double *y)
{
    for (size_t i = 0; i < n; ++i) {
        x[i] = x0 + extent * uniform();
        y[i] = y0 + extent * uniform();
    }
}

/* Values at the data points, and at a grid, against the LU reference. */
static void test_against_reference(double x0, double y0, double extent, size_t n, double lambda)
{
    tps_context *ctx = tps_context_create();
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n),
           *z = malloc(sizeof(double) * n), *f = malloc(sizeof(double) * n);
    random_points(n, x0, y0, extent, x, y);
    double zmin = INFINITY, zmax = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
        z[i] = 100.0 * franke((x[i] - x0) / extent, (y[i] - y0) / extent);
        zmin = fmin(zmin, z[i]);
        zmax = fmax(zmax, z[i]);
    }
    double range = zmax - zmin;
    tps_model *m = fit(ctx, n, x, y, z, lambda);
    CHECK(m != NULL, "fit failed: %s", tps_context_errmsg(ctx));
    if (!m)
        goto out;

    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = 2;
    CHECK(tps_evaluate_points(ctx, m, 0, n, x, y, f, &eo) == TPS_OK, "%s", tps_context_errmsg(ctx));

    reference ref = {n, x, y, NULL};
    CHECK(reference_solve(&ref, z, lambda) == 0, "reference solve failed");
    double worst_data = 0.0, worst_ref = 0.0;
    for (size_t i = 0; i < n; ++i) {
        worst_data = max_nan(worst_data, fabs(f[i] - z[i]));
        worst_ref =
            max_nan(worst_ref, fabs(f[i] - reference_eval(&ref, x[i], y[i])));
    }
    if (lambda == 0.0)
        CHECK(worst_data <= 1e-9 * range, "n=%zu offset=%g: data-point error %g, range %g", n, x0,
              worst_data, range);
    CHECK(worst_ref <= 1e-8 * range, "n=%zu offset=%g lambda=%g: data-point diff to LU %g", n, x0,
          lambda, worst_ref);

    tps_band_info bi;
    CHECK(tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(fabs(bi.max_abs_residual - worst_data) <= 1e-9 * range + 1e-12 * worst_data,
          "reported residual %g, measured %g", bi.max_abs_residual, worst_data);

    /* A grid over (and beyond) the points, Float64, rotated geotransform. */
    enum { W = 37, H = 29 };
    double out[H][W];
    double gt[6] = {x0 - 0.1 * extent, extent / 30, 0.01 * extent / 30, y0 + 1.1 * extent,
                    0.02 * extent / 30, -extent / 25};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, W, H);
    tps_output o = {0, out, TPS_FLOAT64, sizeof(double), sizeof(double) * W};
    CHECK(tps_evaluate_grid(ctx, m, &g, 1, &o, &eo) == TPS_OK, "%s", tps_context_errmsg(ctx));
    double worst_grid = 0.0;
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < W; ++c) {
            double px = gt[0] + (c + 0.5) * gt[1] + (r + 0.5) * gt[2];
            double py = gt[3] + (c + 0.5) * gt[4] + (r + 0.5) * gt[5];
            worst_grid =
                max_nan(worst_grid, fabs(out[r][c] - reference_eval(&ref, px, py)));
        }
    CHECK(worst_grid <= 1e-8 * range, "n=%zu offset=%g lambda=%g: grid diff to LU %g (range %g)",
          n, x0, lambda, worst_grid, range);
    free(ref.coef);
out:
    tps_model_destroy(m);
    free(x);
    free(y);
    free(z);
    free(f);
    tps_context_destroy(ctx);
}

static void test_affine_reproduced(void)
{
    tps_context *ctx = tps_context_create();
    enum { N = 300 };
    double x[N], y[N], z[N];
    random_points(N, 500000.0, 5000000.0, 20000.0, x, y);
    for (size_t i = 0; i < N; ++i)
        z[i] = 12.5 + 0.003 * (x[i] - 500000.0) - 0.0071 * (y[i] - 5000000.0);
    for (int k = 0; k < 2; ++k) {
        tps_model *m = fit(ctx, N, x, y, z, k ? 1e6 : 0.0);
        CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
        if (!m)
            continue;
        double qx[50], qy[50], f[50];
        random_points(50, 490000.0, 4990000.0, 40000.0, qx, qy);
        CHECK(tps_evaluate_points(ctx, m, 0, 50, qx, qy, f, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        double worst = 0.0;
        for (int i = 0; i < 50; ++i) {
            double exact = 12.5 + 0.003 * (qx[i] - 500000.0) - 0.0071 * (qy[i] - 5000000.0);
            worst = max_nan(worst, fabs(f[i] - exact));
        }
        CHECK(worst < 1e-9 * 200.0, "affine field, lambda %s: error %g", k ? "1e6" : "0", worst);
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
}

/* tps_model_get_points gives the distinct usable points (a duplicate
 * merged, a NaN x dropped) in the input coordinates, to rounding. */
static void test_model_points(void)
{
    tps_context *ctx = tps_context_create();
    enum { N = 40 };
    double x[N + 2], y[N + 2], z[N + 2];
    random_points(N, 500000.0, 5000000.0, 20000.0, x, y);
    for (size_t i = 0; i < N; ++i)
        z[i] = x[i] - y[i];
    x[N] = x[3], y[N] = y[3], z[N] = z[3];  /* coincident: merged */
    x[N + 1] = NAN, y[N + 1] = 1.0, z[N + 1] = 0; /* dropped */
    tps_model *m = fit(ctx, N + 2, x, y, z, 0.0);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (m) {
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(info.n_points == N, "n_points %zu", info.n_points);
        double px[N], py[N];
        CHECK(tps_model_get_points(ctx, m, px, py) == TPS_OK, "%s", tps_context_errmsg(ctx));
        int found[N] = {0};
        for (size_t k = 0; k < N; ++k) {
            size_t best = 0;
            double bd = INFINITY;
            for (size_t i = 0; i < N; ++i) {
                double d = fabs(px[k] - x[i]) + fabs(py[k] - y[i]);
                if (d < bd)
                    bd = d, best = i;
            }
            CHECK(bd <= 1e-15 * 5e6, "point %zu is %g from the nearest input", k, bd);
            found[best]++;
        }
        for (size_t i = 0; i < N; ++i)
            CHECK(found[i] == 1, "input point %zu returned %d times", i, found[i]);
        CHECK(tps_model_get_points(ctx, m, NULL, py) == TPS_ERR_INVALID_ARGUMENT, "NULL x");
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
}

/* `kernel` and the generic one, with one and three threads, give the same
 * grid (to rounding), and strided Float32 output lands where the strides
 * say. */
static void test_kernels_threads_strides(tps_cpu_kernel kernel)
{
    tps_context *ctx = tps_context_create();
    enum { N = 700, W = 301, H = 7, NB = 3 };
    double x[N], y[N], z0[N], z1[N], z2[N];
    random_points(N, 0.0, 0.0, 1.0, x, y);
    for (size_t i = 0; i < N; ++i) {
        z0[i] = franke(x[i], y[i]);
        z1[i] = sin(3 * x[i]) * cos(2 * y[i]);
        z2[i] = (i % 7 == 0) ? NAN : x[i] * y[i]; /* a different mask: its own factorisation */
    }
    const double *zs[NB] = {z0, z1, z2};
    double lambdas[NB] = {0.0, 0.0, 0.0};
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    tps_model *m = tps_model_create(ctx, N, x, y, NB, zs, lambdas, &fo);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (!m) {
        tps_context_destroy(ctx);
        return;
    }
    tps_model_info info;
    CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(info.n_factorisations == 2, "bands 1,2 share a factorisation, band 3 not: got %zu",
          info.n_factorisations);
    tps_band_info bi;
    CHECK(tps_model_get_band_info(ctx, m, 2, &bi) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(bi.n_missing == (N + 6) / 7, "missing values counted: %zu", bi.n_missing);

    double gt[6] = {-0.2, 1.4 / W, 0.0, 1.2, 0.0, -1.4 / H};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, W, H);
    static double ref[NB][H][W], got[NB][H][W];
    tps_output o[NB];
    for (int b = 0; b < NB; ++b)
        o[b] = (tps_output){(size_t)b, ref[b], TPS_FLOAT64, sizeof(double), sizeof(double) * W};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    /* the test hook (tps_testing.h) that picks the CPU kernel */
    tps_cpu_kernel cpu_kernel = TPS_CPU_KERNEL_GENERIC;
    CHECK(tps_evaluate_grid_kernel(ctx, m, &g, NB, o, &eo, cpu_kernel) == TPS_OK, "%s", tps_context_errmsg(ctx));

    for (int threads = 1; threads <= 3; threads += 2) {
        cpu_kernel = kernel;
        eo.num_threads = threads;
        for (int b = 0; b < NB; ++b) {
            o[b].data = got[b];
            for (int r = 0; r < H; ++r)
                for (int c = 0; c < W; ++c)
                    got[b][r][c] = NAN; /* poison: every element must be written */
        }
        CHECK(tps_evaluate_grid_kernel(ctx, m, &g, NB, o, &eo, cpu_kernel) == TPS_OK, "kernel %s: %s",
              tps_cpu_kernel_name(kernel), tps_context_errmsg(ctx));
        double worst = 0.0;
        for (int b = 0; b < NB; ++b)
            for (int r = 0; r < H; ++r)
                for (int c = 0; c < W; ++c)
                    worst = max_nan(worst, fabs(got[b][r][c] - ref[b][r][c]));
        printf("kernel %s, %d thread%s: max diff to generic %.3g\n",
               tps_cpu_kernel_name(kernel), threads, threads > 1 ? "s" : "", worst);
        CHECK(worst < 1e-12, "kernel %s, %d threads: max diff to generic %g",
              tps_cpu_kernel_name(kernel), threads, worst);
    }

    /* Windows: every cell has the bytes of the full read, whatever window
     * (and so whatever chunking and tiling) it was computed in. */
    int differ = 0;
    for (int trial = 0; trial < 20; ++trial) {
        size_t c0 = (size_t)(uniform() * W), r0 = (size_t)(uniform() * H);
        size_t nc = 1 + (size_t)(uniform() * (double)(W - c0)), nr = 1 + (size_t)(uniform() * (double)(H - r0));
        static double win[H][W];
        tps_grid wg;
        tps_grid_from_geotransform(&wg, gt, c0, r0, nc, nr);
        tps_output wo = {0, win, TPS_FLOAT64, sizeof(double), sizeof(double) * W};
        cpu_kernel = TPS_CPU_KERNEL_AUTO;
        eo.num_threads = 1 + trial % 2;
        CHECK(tps_evaluate_grid_kernel(ctx, m, &wg, 1, &wo, &eo, cpu_kernel) == TPS_OK, "%s", tps_context_errmsg(ctx));
        for (size_t r = 0; r < nr; ++r)
            differ += memcmp(win[r], &got[0][r0 + r][c0], nc * sizeof(double)) != 0;
    }
    CHECK(differ == 0, "%d window rows differ from the full read", differ);

    /* One band alone equals the same band of the multi-band pass. */
    static double single[H][W];
    tps_output one = {1, single, TPS_FLOAT64, sizeof(double), sizeof(double) * W};
    cpu_kernel = TPS_CPU_KERNEL_GENERIC;
    eo.num_threads = 1;
    CHECK(tps_evaluate_grid_kernel(ctx, m, &g, 1, &one, &eo, cpu_kernel) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(memcmp(single, ref[1], sizeof single) == 0, "single-band read differs from multi-band");

    /* Interleaved Float32 (pixel stride 2 floats) into a bigger line. */
    enum { LINE = 2 * W + 5 };
    static float inter[H][LINE];
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < LINE; ++c)
            inter[r][c] = -7.0f;
    tps_output fo2[2] = {{0, &inter[0][0], TPS_FLOAT32, 2 * sizeof(float), sizeof(float) * LINE},
                         {2, &inter[0][1], TPS_FLOAT32, 2 * sizeof(float), sizeof(float) * LINE}};
    CHECK(tps_evaluate_grid_kernel(ctx, m, &g, 2, fo2, &eo, cpu_kernel) == TPS_OK, "%s", tps_context_errmsg(ctx));
    int bad = 0;
    for (int r = 0; r < H; ++r) {
        for (int c = 0; c < W; ++c) {
            bad += inter[r][2 * c] != (float)ref[0][r][c];
            bad += inter[r][2 * c + 1] != (float)ref[2][r][c];
        }
        for (int c = 2 * W; c < LINE; ++c)
            bad += inter[r][c] != -7.0f;
    }
    CHECK(bad == 0, "strided Float32 output: %d wrong elements", bad);
    tps_model_destroy(m);
    tps_context_destroy(ctx);
}

static void test_log_accuracy_near_points(void)
{
    /* Pixels very close to and exactly on points: r^2 log r^2 -> 0. */
    tps_context *ctx = tps_context_create();
    double x[4] = {0, 1, 0, 1}, y[4] = {0, 0, 1, 1}, z[4] = {1, 2, 3, 5};
    tps_model *m = fit(ctx, 4, x, y, z, 0.0);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    double qx[3] = {0.0, 1e-12, 1.0 - 1e-9}, qy[3] = {0.0, 0.0, 1.0}, f[3];
    CHECK(tps_evaluate_points(ctx, m, 0, 3, qx, qy, f, NULL) == TPS_OK,
          "%s", tps_context_errmsg(ctx));
    CHECK(fabs(f[0] - 1) < 1e-12 && fabs(f[1] - 1) < 1e-9 && fabs(f[2] - 5) < 1e-7,
          "values near points: %.17g %.17g %.17g", f[0], f[1], f[2]);
    tps_model_destroy(m);
    tps_context_destroy(ctx);
}

/* The generic kernel's and `kernel`'s log against long double logl: within
 * ~1 ulp over r^2 from 1e-30 to 1e30, and 0 (below 1e-290) at r = 0. */
static void test_kernel_log_ulp(tps_cpu_kernel kernel)
{
    enum { M = 4096 };
    static double pu[M], pv[M], acc[M];
    double su = 0.0, sv = 0.0, w = 1.0;
    const double *wp = &w;
    for (int k = 0; k < M; ++k) {
        /* r^2 log-uniform in [1e-30, 1e30], plus values around 1 where log is small */
        double r2 = k < M / 2 ? pow(10.0, -30.0 + 60.0 * uniform()) : 0.5 + 1.5 * uniform();
        pu[k] = sqrt(r2);
        pv[k] = 0.0;
    }
    pu[0] = 0.0;
    tps_kernel_fn fns[2] = {tps_kernel_generic, tps_kernel_for(kernel)};
    CHECK(fns[1] != NULL, "no %s kernel on this CPU", tps_cpu_kernel_name(kernel));
    for (int f = 0; f < 2; ++f) {
        if (!fns[f])
            continue;
        tps_kernel_job job = {1, &su, &sv, 1, &wp, M, pu, pv, 0, acc};
        fns[f](&job);
        double worst_ulp = 0.0;
        for (int k = 1; k < M; ++k) {
            double r2 = pu[k] * pu[k];
            long double exact = (long double)r2 * logl((long double)r2);
            if (exact == 0.0L)
                continue;
            double ulp = nextafter(fabs((double)exact), INFINITY) - fabs((double)exact);
            worst_ulp = max_nan(worst_ulp, (double)fabsl((long double)acc[k] - exact) / ulp);
        }
        const char *name = f ? tps_cpu_kernel_name(kernel) : "generic";
        CHECK(fabs(acc[0]) < 1e-290, "kernel %s: r = 0 gives %g", name, acc[0]);
        CHECK(worst_ulp <= 2.0, "kernel %s: r^2 log r^2 off by %.2f ulp", name, worst_ulp);
        printf("kernel %s: worst error %.2f ulp\n", name, worst_ulp);
    }
}

static int logged_warning = 0;
static char logged_debug[512];
static void log_sink(void *user, tps_log_level level, const char *msg)
{
    (void)user;
    if (level == TPS_LOG_WARNING)
        ++logged_warning;
    else
        snprintf(logged_debug, sizeof logged_debug, "%s", msg);
}

static void test_degenerate(void)
{
    tps_context *ctx = tps_context_create();
    tps_context_set_log(ctx, log_sink, NULL);
    double x[6] = {0, 1, 2, 3, 4, 5}, y[6] = {0, 1, 2, 3, 4, 5}, z[6] = {1, 2, 3, 4, 5, 6};

    CHECK(fit(ctx, 2, x, y, z, 0) == NULL && tps_context_errno(ctx) == TPS_ERR_TOO_FEW_POINTS,
          "2 points: %s", tps_context_errmsg(ctx));
    CHECK(fit(ctx, 6, x, y, z, 0) == NULL && tps_context_errno(ctx) == TPS_ERR_COLLINEAR,
          "diagonal line: %s", tps_context_errmsg(ctx));
    double c[6] = {3, 3, 3, 3, 3, 3};
    CHECK(fit(ctx, 6, c, y, z, 0) == NULL && tps_context_errno(ctx) == TPS_ERR_COLLINEAR,
          "vertical line: %s", tps_context_errmsg(ctx));
    CHECK(fit(ctx, 6, x, c, z, 0) == NULL && tps_context_errno(ctx) == TPS_ERR_COLLINEAR,
          "horizontal line: %s", tps_context_errmsg(ctx));
    CHECK(fit(ctx, 6, c, c, z, 0) == NULL && tps_context_errno(ctx) == TPS_ERR_TOO_FEW_POINTS,
          "one location: %s", tps_context_errmsg(ctx));
    CHECK(strstr(tps_context_errmsg(ctx), "1 distinct") != NULL, "message: %s",
          tps_context_errmsg(ctx));

    double lam = -1.0, nan_l = NAN;
    const double *zz = z;
    CHECK(tps_model_create(ctx, 6, x, y, 1, &zz, &lam, NULL) == NULL &&
              tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT, "negative lambda accepted");
    CHECK(tps_model_create(ctx, 6, x, y, 1, &zz, &nan_l, NULL) == NULL, "NaN lambda accepted");

    /* Coincident points: merged, averaged, warned about. */
    double px[5] = {0, 1, 0, 1, 1}, py[5] = {0, 0, 1, 1, 1}, pz[5] = {1, 2, 3, 4, 8};
    logged_warning = 0;
    tps_model *m = fit(ctx, 5, px, py, pz, 0);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (m) {
        double f;
        double qx = 1, qy = 1;
        CHECK(tps_evaluate_points(ctx, m, 0, 1, &qx, &qy, &f, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(fabs(f - 6.0) < 1e-12, "merged value %g, expected the mean 6", f);
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(info.n_points == 4 && info.n_merged == 1, "points %zu merged %zu", info.n_points,
              info.n_merged);
        CHECK(logged_warning == 1, "warnings %d", logged_warning);
        m = tps_model_destroy(m);
    }

    /* NaN/inf values and coordinates are dropped and counted. */
    double nx[7] = {0, 1, 0, 1, 0.5, NAN, 0.3}, ny[7] = {0, 0, 1, 1, 0.5, 0.2, 0.7},
           nz[7] = {1, 2, 3, 4, INFINITY, 9, NAN};
    m = fit(ctx, 7, nx, ny, nz, 0);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (m) {
        tps_band_info bi;
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(info.n_dropped == 1 && bi.n_missing == 2 && bi.n_points == 4,
              "dropped %zu missing %zu used %zu", info.n_dropped, bi.n_missing, bi.n_points);
        CHECK(strstr(logged_debug, "2 of 6") != NULL, "debug line: %s", logged_debug);
        m = tps_model_destroy(m);
    }
    double allnan[4] = {NAN, NAN, NAN, NAN};
    CHECK(fit(ctx, 4, px, py, allnan, 0) == NULL && tps_context_errno(ctx) == TPS_ERR_TOO_FEW_POINTS,
          "all values missing: %s", tps_context_errmsg(ctx));

    /* The memory limit names the bytes needed. */
    enum { N = 200 };
    double mx[N], my[N], mz[N];
    random_points(N, 0, 0, 1, mx, my);
    for (int i = 0; i < N; ++i)
        mz[i] = mx[i];
    const double *mzp = mz;
    double zero = 0.0;
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.max_memory = 1000;
    CHECK(tps_model_create(ctx, N, mx, my, 1, &mzp, &zero, &fo) == NULL &&
              tps_context_errno(ctx) == TPS_ERR_MEMORY_LIMIT &&
              strstr(tps_context_errmsg(ctx), "bytes") != NULL,
          "memory limit: %s", tps_context_errmsg(ctx));
    CHECK(tps_model_destroy(NULL) == NULL, "destroy(NULL)");
    tps_context_destroy(ctx);
}

/* `test_engine kernel avx2|avx512`: does this CPU have the instructions
 * the kernel needs? Asked here, independently of the engine's dispatch. */
static int run_kernel(const char *name)
{
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    tps_cpu_kernel kernel;
    int supported;
    const char *needs;
    if (strcmp(name, "avx2") == 0) {
        kernel = TPS_CPU_KERNEL_AVX2;
        supported = avx2;
        needs = "AVX2 and FMA";
    } else if (strcmp(name, "avx512") == 0) {
        kernel = TPS_CPU_KERNEL_AVX512;
        supported = avx2 && __builtin_cpu_supports("avx512f") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
        needs = "AVX-512 F, DQ and VL";
    } else {
        fprintf(stderr, "usage: test_engine [kernel avx2|avx512]\n");
        return 2;
    }
    if (!supported) {
        printf("SKIP: this CPU lacks %s (__builtin_cpu_supports): no %s kernel to test\n", needs,
               name);
        return 77;
    }
    printf("this CPU has %s: the %s kernel must run\n", needs, name);
    rng_state = 88172645463325252ULL;
    test_kernels_threads_strides(kernel);
    test_kernel_log_ulp(kernel);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "kernel") == 0)
        return run_kernel(argc > 2 ? argv[2] : "");
    rng_state = 88172645463325252ULL; /* the data these tests were tuned on */
    printf("CPU kernel: %s\n", tps_cpu_kernel_name(TPS_CPU_KERNEL_AUTO));
    test_against_reference(0.0, 0.0, 1.0, 200, 0.0);
    test_against_reference(0.0, 0.0, 1.0, 500, 1e-3);
    test_against_reference(500000.0, 5000000.0, 30000.0, 400, 0.0);
    test_against_reference(500000.0, 5000000.0, 30000.0, 400, 5e4);
    test_affine_reproduced();
    test_kernels_threads_strides(TPS_CPU_KERNEL_AUTO);
    test_log_accuracy_near_points();
    test_kernel_log_ulp(TPS_CPU_KERNEL_AUTO);
    test_degenerate();
    test_model_points(); /* last: the random stream above stays as tuned */
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

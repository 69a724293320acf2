/* test_gcv.c: automatic smoothing by generalised cross-validation against
 * brute force. The influence matrix A(lambda) is formed explicitly (column
 * j = the fitted values of the spline of the unit vector e_j, all N unit
 * vectors solved as N bands of one model), and GCV, tr A and the
 * leave-one-out residuals r_i / (1 - A_ii) computed from it must equal what
 * the engine reports from its eigendecomposition; the chosen lambda must
 * minimise the brute-force GCV over a fine grid around it. */
#include "check.h"
#include "testdata.h"
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 60

static double px[N], py[N];

typedef struct brute {
    double gcv, df, loo_rmse, loo_mae;
} brute;

static brute brute_force(tps_context *ctx, const double *z, double lambda)
{
    brute out = {NAN, NAN, NAN, NAN};
    static double unit[N][N];
    const double *vals[N];
    double sm[N];
    for (int j = 0; j < N; ++j) {
        for (int i = 0; i < N; ++i)
            unit[j][i] = i == j;
        vals[j] = unit[j];
        sm[j] = lambda;
    }
    tps_model *m = tps_model_create(ctx, N, px, py, N, vals, sm, NULL);
    CHECK(m != NULL, "brute force at lambda %g: %s", lambda, tps_context_errmsg(ctx));
    if (!m)
        return out; /* NaN: fails every comparison */
    static double a[N][N]; /* a[j][i] = A_ij */
    for (int j = 0; j < N; ++j)
        CHECK(tps_evaluate_points(ctx, m, (size_t)j, N, px, py, a[j], NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    double rss = 0, tr = 0, ss = 0, sa = 0;
    for (int i = 0; i < N; ++i) {
        double fi = 0;
        for (int j = 0; j < N; ++j)
            fi += a[j][i] * z[j];
        double r = z[i] - fi;
        rss += r * r;
        tr += a[i][i];
        double loo = r / (1.0 - a[i][i]);
        ss += loo * loo;
        sa += fabs(loo);
    }
    out.gcv = N * rss / ((N - tr) * (N - tr));
    out.df = tr;
    out.loo_rmse = sqrt(ss / N);
    out.loo_mae = sa / N;
    return out;
}

static int close_rel(double a, double b, double tol)
{
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b));
}

static void test_against_brute_force(tps_context *ctx, double noise, double coord_scale)
{
    double z[N], x[N], y[N];
    for (int i = 0; i < N; ++i) {
        z[i] = franke(px[i], py[i]) + noise * (2 * uniform() - 1);
        x[i] = px[i] * coord_scale;
        y[i] = py[i] * coord_scale;
    }
    memcpy(px, x, sizeof x);
    memcpy(py, y, sizeof y);
    const double *vals[2] = {z, z};
    double sm[2] = {0.0, 0.01};
    int gcv[2] = {1, 0};
    tps_fit_options opt;
    tps_fit_options_init(&opt);
    opt.smoothing_gcv = gcv;
    tps_model *m = tps_model_create(ctx, N, px, py, 2, vals, sm, &opt);
    CHECK(m != NULL, "create: %s", tps_context_errmsg(ctx));
    if (!m)
        return;
    tps_band_info bi, fixed;
    CHECK(tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(tps_model_get_band_info(ctx, m, 1, &fixed) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(bi.smoothing_gcv == 1 && fixed.smoothing_gcv == 0 && isnan(fixed.gcv_score) &&
              fixed.smoothing == 0.01,
          "flags %d %d, fixed band %g", bi.smoothing_gcv, fixed.smoothing_gcv, fixed.smoothing);
    printf("noise %g, scale %g: lambda %.6g, GCV %.6g, df %.4f, LOO RMSE %.6g MAE %.6g\n", noise,
           coord_scale, bi.smoothing, bi.gcv_score, bi.effective_df, bi.loo_rmse, bi.loo_mae);
    CHECK(bi.smoothing > 0 && bi.effective_df > 3 && bi.effective_df < N, "lambda %g df %g",
          bi.smoothing, bi.effective_df);

    brute b = brute_force(ctx, z, bi.smoothing);
    CHECK(close_rel(b.gcv, bi.gcv_score, 1e-6), "GCV %.12g brute %.12g", bi.gcv_score, b.gcv);
    CHECK(close_rel(b.df, bi.effective_df, 1e-6), "df %.12g brute %.12g", bi.effective_df, b.df);
    CHECK(close_rel(b.loo_rmse, bi.loo_rmse, 1e-6), "LOO RMSE %.12g brute %.12g", bi.loo_rmse,
          b.loo_rmse);
    CHECK(close_rel(b.loo_mae, bi.loo_mae, 1e-6), "LOO MAE %.12g brute %.12g", bi.loo_mae,
          b.loo_mae);

    /* The chosen lambda minimises the brute-force GCV on a fine grid. */
    double worst = INFINITY;
    for (int k = -40; k <= 40; ++k) {
        if (k == 0)
            continue;
        brute g = brute_force(ctx, z, bi.smoothing * pow(10.0, k / 20.0));
        /* fmin would drop a NaN refit: it is a failure */
        CHECK(!isnan(g.gcv), "brute-force GCV at lambda x 10^(%d/20) is NaN", k);
        worst = fmin(worst, g.gcv);
    }
    CHECK(b.gcv <= worst * (1 + 1e-9), "GCV at the chosen lambda %.12g, grid minimum %.12g",
          b.gcv, worst);

    /* The GCV band's surface is the fixed-lambda surface at the chosen lambda. */
    double sm1 = bi.smoothing;
    tps_model *f = tps_model_create(ctx, N, px, py, 1, vals, &sm1, NULL);
    CHECK(f != NULL, "fixed model at the chosen lambda: %s", tps_context_errmsg(ctx));
    double o1[N], o2[N], err = 0;
    CHECK(tps_evaluate_points(ctx, m, 0, N, px, py, o1, NULL) == TPS_OK,
          "%s", tps_context_errmsg(ctx));
    CHECK(tps_evaluate_points(ctx, f, 0, N, px, py, o2, NULL) == TPS_OK,
          "%s", tps_context_errmsg(ctx));
    for (int i = 0; i < N; ++i)
        err = max_nan(err, fabs(o1[i] - o2[i]));
    CHECK(err == 0.0, "GCV model vs fixed model at its lambda: %g", err);
    tps_model_destroy(f);

    /* Saved and loaded: the statistics survive. */
    unsigned char hash[32] = {1};
    void *data = NULL;
    size_t size = 0;
    CHECK(tps_model_save(ctx, m, hash, NULL, 0, &data, &size) == TPS_OK, "save");
    tps_model *l = tps_model_load(ctx, data, size, hash, NULL, NULL);
    CHECK(l != NULL, "load: %s", tps_context_errmsg(ctx));
    if (l) {
        tps_band_info lb;
        CHECK(tps_model_get_band_info(ctx, l, 0, &lb) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(lb.smoothing_gcv == 1 && lb.gcv_score == bi.gcv_score &&
                  lb.effective_df == bi.effective_df && lb.loo_rmse == bi.loo_rmse &&
                  lb.loo_mae == bi.loo_mae && lb.smoothing == bi.smoothing,
              "loaded band info differs");
        CHECK(tps_model_get_band_info(ctx, l, 1, &lb) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(lb.smoothing_gcv == 0 && isnan(lb.gcv_score), "loaded fixed band");
    }
    tps_model_destroy(l);
    tps_free(data);
    tps_model_destroy(m);
    for (int i = 0; i < N; ++i) {
        px[i] /= coord_scale;
        py[i] /= coord_scale;
    }
}

static void test_errors(tps_context *ctx)
{
    double z[N];
    for (int i = 0; i < N; ++i)
        z[i] = franke(px[i], py[i]);
    const double *vals[1] = {z};
    double sm = -1; /* ignored for a GCV band */
    int gcv = 1;
    tps_fit_options opt;
    tps_fit_options_init(&opt);
    opt.smoothing_gcv = &gcv;
    /* LOCAL chooses over its patches (test_local_gcv.c has the rest); AUTO
     * keeps the global model this small. */
    opt.mode = TPS_MODE_LOCAL;
    opt.patch_points = 20;
    tps_model *m = tps_model_create(ctx, N, px, py, 1, vals, &sm, &opt);
    tps_model_info info;
    CHECK(m && tps_model_get_info(ctx, m, &info) == TPS_OK && info.mode == TPS_MODE_LOCAL &&
              info.n_patches > 1,
          "LOCAL: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    opt.patch_points = 0;
    opt.mode = TPS_MODE_AUTO;
    m = tps_model_create(ctx, N, px, py, 1, vals, &sm, &opt);
    CHECK(m && tps_model_get_info(ctx, m, &info) == TPS_OK && info.mode == TPS_MODE_GLOBAL,
          "AUTO: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    opt.mode = TPS_MODE_GLOBAL;
    opt.max_memory = 1000;
    m = tps_model_create(ctx, N, px, py, 1, vals, &sm, &opt);
    CHECK(!m && tps_context_errno(ctx) == TPS_ERR_MEMORY_LIMIT && strstr(tps_context_errmsg(ctx), "GCV"),
          "memory: %s", tps_context_errmsg(ctx));
}

/* Per-point weights and cross-validation: the engine's own argument checks
 * (the driver checks weights first; other callers rely on these), and the
 * weighted paths (GCV, fixed with LOO, LOCAL, LOCAL GCV with LOO) run and
 * free cleanly (this test runs under valgrind in CI). */
static void test_weights_and_cv(tps_context *ctx)
{
    double z[N], w[N];
    for (int i = 0; i < N; ++i) {
        z[i] = franke(px[i], py[i]) + 0.05 * (uniform() - 0.5);
        w[i] = 0.5 + uniform();
    }
    const double *vals[2] = {z, z};
    double sm[2] = {0.0, 1e-3};
    int gcv[2] = {1, 0};
    tps_fit_options opt;
    tps_fit_options_init(&opt);
    opt.weights = w;
    opt.smoothing_gcv = gcv;
    opt.cross_validation = 1;
    tps_model *m = tps_model_create(ctx, N, px, py, 2, vals, sm, &opt);
    CHECK(m != NULL, "weighted GCV + fixed with LOO: %s", tps_context_errmsg(ctx));
    tps_band_info b0, b1;
    CHECK(m && tps_model_get_band_info(ctx, m, 0, &b0) == TPS_OK &&
              tps_model_get_band_info(ctx, m, 1, &b1) == TPS_OK && b0.loo_rmse > 0 &&
              b1.loo_rmse > 0 && b0.loo_mae <= b0.loo_rmse && b1.loo_mae <= b1.loo_rmse,
          "LOO reported for both bands");
    tps_model_destroy(m);

    opt.smoothing_gcv = NULL;
    opt.cross_validation = 0;
    opt.mode = TPS_MODE_LOCAL;
    opt.patch_points = 20;
    m = tps_model_create(ctx, N, px, py, 1, vals, sm + 1, &opt);
    CHECK(m != NULL, "weighted LOCAL: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);

    opt.mode = TPS_MODE_LOCAL;
    opt.cross_validation = 1;
    opt.smoothing_gcv = gcv;
    m = tps_model_create(ctx, N, px, py, 2, vals, sm, &opt);
    CHECK(m && tps_model_get_band_info(ctx, m, 0, &b0) == TPS_OK &&
              tps_model_get_band_info(ctx, m, 1, &b1) == TPS_OK && b0.loo_rmse > 0 &&
              b1.loo_rmse > 0 && b0.loo_mae <= b0.loo_rmse && b1.loo_mae <= b1.loo_rmse,
          "weighted LOCAL GCV + fixed with LOO: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    opt.smoothing_gcv = NULL;
    opt.mode = TPS_MODE_GLOBAL;
    opt.cross_validation = 0;
    const double bad[] = {0.0, -1.0, NAN, INFINITY};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        const double keep = w[7];
        w[7] = bad[k];
        m = tps_model_create(ctx, N, px, py, 1, vals, sm + 1, &opt);
        CHECK(!m && tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT &&
                  strstr(tps_context_errmsg(ctx), "point 8: its weight"),
              "weight %g: %s", bad[k], tps_context_errmsg(ctx));
        w[7] = keep;
    }
}

int main(void)
{
    tps_context *ctx = tps_context_create();
    for (int i = 0; i < N; ++i) {
        px[i] = uniform();
        py[i] = uniform();
    }
    test_against_brute_force(ctx, 0.1, 1.0);
    test_against_brute_force(ctx, 0.02, 1000.0);
    test_against_brute_force(ctx, 0.3, 0.01);
    test_errors(ctx);
    test_weights_and_cv(ctx);
    tps_context_destroy(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

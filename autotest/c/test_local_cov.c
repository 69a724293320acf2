/* test_local_cov.c: linear covariates on LOCAL models (issue 14).
 *
 * 1. One patch (patch points above N): the local model's one patch is the
 *    global partial spline, and its covariate coefficients b = (C^T R C)^-1
 *    C^T R z are the global model's (R the spline's data-to-kernel-
 *    coefficient operator): coefficients and values within 1e-9 relative
 *    of the GLOBAL model's, at lambda 0 and lambda > 0, with per-point
 *    weights, two covariates.
 * 2. Many patches, z = Franke + 2 c + noise with c an analytic field that
 *    varies within a patch: b within 1 % of the global model's b (measured
 *    0.23 %, as far as the global b is from the true 2 at this noise),
 *    and the surface within 1e-3 of the global one's range inside
 *    [0.05, 0.95]^2. The values blend the patches and add b c(x) exactly
 *    (checked against the covariate-free local model of z - b c, which is
 *    the same model by linearity).
 * 3. Bad covariates: one collinear with x, y and a constant, and a
 *    constant one, refused with their names before any patch is solved.
 * 4. A saved local model with covariates loads back to the same bytes of
 *    every value; neither the fit nor the evaluation depends on the
 *    threads.
 * 5. GCV with covariates on a LOCAL model against the explicit influence
 *    matrix (the local models of the N unit vectors): score and effective
 *    degrees of freedom to 1e-7 relative (measured ~1e-12); the GCV model
 *    is bit-identical to the fixed-lambda model at its lambda, and its LOO
 *    that model's with cross-validation. `test_local_cov compare` (skipped,
 *    77, under TPS_TEST_QUICK=1): against the global GCV with covariates at
 *    N = 3,500, Overlap 2, lambda within a factor 2 and the RMSE against the
 *    noise-free field within 5 %. (The standard error of a local model
 *    with covariates: test_local_covse.c.)
 * 6. Leave-one-out with covariates: one patch against the global model's
 *    exact LOO, many patches near it.
 *
 *   test_local_cov gpu   the patches solved where the GPU can (DEVICE=GPU)
 *                        against the CPU's: b and values within 1e-10, GCV's
 *                        lambda, score (1e-9) and b with the GPU's batched
 *                        eigendecompositions as with the CPU's; the
 *                        GPU backend declines to evaluate such a model
 *                        (DEVICE=GPU fails, AUTO evaluates on the CPU)
 *                        (skipped, 77, where gpu_probe.h finds no GPU) */
#include "check.h"
#include "gpu_probe.h"
#include "testdata.h"
#include "tps.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int quick = 0; /* TPS_TEST_QUICK=1 (valgrind): smaller sizes */

static double gauss(void)
{
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Two covariates that vary within a patch of a few hundred points. */
static double cov1(double x, double y)
{
    return sin(17.0 * x + 3.0 * y) * cos(13.0 * y);
}

static double cov2(double x, double y)
{
    return exp(-8.0 * ((x - 0.4) * (x - 0.4) + (y - 0.6) * (y - 0.6))) + 0.3 * cos(21.0 * x * y);
}

typedef struct data {
    size_t n;
    double *x, *y, *z, *w, *c[2];
} data;

static data make_data(size_t n, double noise, double b1, double b2)
{
    data d;
    d.n = n;
    d.x = malloc(sizeof(double) * n * 6);
    d.y = d.x + n;
    d.z = d.y + n;
    d.w = d.z + n;
    d.c[0] = d.w + n;
    d.c[1] = d.c[0] + n;
    for (size_t i = 0; i < n; ++i) {
        d.x[i] = uniform();
        d.y[i] = uniform();
        d.c[0][i] = cov1(d.x[i], d.y[i]);
        d.c[1][i] = cov2(d.x[i], d.y[i]);
        d.z[i] = franke(d.x[i], d.y[i]) + b1 * d.c[0][i] + b2 * d.c[1][i] + noise * gauss();
        d.w[i] = 0.5 + 1.5 * uniform();
    }
    return d;
}

static const char *names[2] = {"ridge", "bump"};

static tps_model *fit(tps_context *ctx, const data *d, size_t nc, const double *const *cov,
                      const double *z, int weighted, double lambda, tps_mode mode, size_t pp,
                      double overlap, int threads)
{
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = mode;
    o.patch_points = pp;
    o.overlap = overlap;
    o.num_threads = threads;
    o.device = TPS_DEVICE_CPU;
    o.weights = weighted ? d->w : NULL;
    o.n_covariates = nc;
    o.covariates = cov;
    o.covariate_names = names;
    const double *vals[1] = {z};
    return tps_model_create(ctx, d->n, d->x, d->y, 1, vals, &lambda, &o);
}

/* The model's values at nt targets whose covariates are tc (nc planes). */
static int values(tps_context *ctx, const tps_model *m, size_t nc, size_t nt, const double *tx,
                  const double *ty, const double *const *tc, double *out, int threads)
{
    tps_plane planes[2];
    for (size_t k = 0; k < nc; ++k)
        planes[k] = (tps_plane){tc[k], TPS_FLOAT64, sizeof(double), 0};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.num_threads = threads;
    eo.covariates = nc ? planes : NULL;
    return tps_evaluate_points(ctx, m, 0, nt, tx, ty, out, &eo) == TPS_OK;
}

enum { NT = 4000 };
static double tx[NT], ty[NT], tc0[NT], tc1[NT];

static void make_targets(double lo, double hi)
{
    for (size_t k = 0; k < NT; ++k) {
        tx[k] = lo + (hi - lo) * uniform();
        ty[k] = lo + (hi - lo) * uniform();
        tc0[k] = cov1(tx[k], ty[k]);
        tc1[k] = cov2(tx[k], ty[k]);
    }
}

static const double *const tcs[2] = {tc0, tc1};

/* 1. One patch is the global partial spline. */
static void test_one_patch(tps_context *ctx)
{
    data d = make_data(400, 0.02, 2.0, -1.0);
    const double *cov[2] = {d.c[0], d.c[1]};
    make_targets(-0.05, 1.05);
    static double fg[NT], fl[NT];
    const double lambdas[3] = {0.0, 1e-4, 1e-2};
    for (int weighted = 0; weighted <= 1; ++weighted)
        for (int li = 0; li < 3; ++li) {
            const double lambda = lambdas[li];
            tps_model *g = fit(ctx, &d, 2, cov, d.z, weighted, lambda, TPS_MODE_GLOBAL, 0, 0, 2);
            CHECK(g, "global: %s", tps_context_errmsg(ctx));
            tps_model *l = fit(ctx, &d, 2, cov, d.z, weighted, lambda, TPS_MODE_LOCAL, 1000, 0, 2);
            CHECK(l, "local: %s", tps_context_errmsg(ctx));
            tps_model_info info;
            if (!g || !l || tps_model_get_info(ctx, l, &info) != TPS_OK) {
                tps_model_destroy(g);
                tps_model_destroy(l);
                continue;
            }
            CHECK(info.n_patches == 1 && info.mode == TPS_MODE_LOCAL && info.n_covariates == 2,
                  "%zu patches", info.n_patches);
            double bg[2], bl[2];
            CHECK(tps_model_get_covariate_coefficients(ctx, g, 0, bg) == TPS_OK &&
                      tps_model_get_covariate_coefficients(ctx, l, 0, bl) == TPS_OK,
                  "%s", tps_context_errmsg(ctx));
            double worst_b = 0.0;
            for (int k = 0; k < 2; ++k)
                worst_b = max_nan(worst_b, fabs(bl[k] - bg[k]) / fabs(bg[k]));
            CHECK(values(ctx, g, 2, NT, tx, ty, tcs, fg, 2) &&
                      values(ctx, l, 2, NT, tx, ty, tcs, fl, 2),
                  "%s", tps_context_errmsg(ctx));
            double worst_f = 0.0, lo = INFINITY, hi = -INFINITY;
            for (size_t k = 0; k < NT; ++k) {
                worst_f = max_nan(worst_f, fabs(fl[k] - fg[k]));
                lo = fmin(lo, fg[k]);
                hi = fmax(hi, fg[k]);
            }
            worst_f /= hi - lo;
            printf("one patch, lambda %g%s: b global (%.12g, %.12g) local (%.12g, %.12g), "
                   "rel %.2e; values %.2e of the range\n",
                   lambda, weighted ? ", weighted" : "", bg[0], bg[1], bl[0], bl[1], worst_b,
                   worst_f);
            CHECK(worst_b <= 1e-9, "lambda %g: coefficients %.3g relative apart", lambda,
                  worst_b);
            CHECK(worst_f <= 1e-9, "lambda %g: values %.3g of the range apart", lambda, worst_f);
            tps_model_destroy(g);
            tps_model_destroy(l);
        }
    free(d.x);
}

/* 2. Many patches against the global model; 4. save/reload, threads. */
static void test_many_patches(tps_context *ctx)
{
    data d = make_data(quick ? 1500 : 3000, 0.05, 2.0, 0.0);
    const size_t pp = quick ? 120 : 250;
    const double *cov[1] = {d.c[0]};
    const double lambda = 1e-4;
    make_targets(0.05, 0.95);
    static double fg[NT], fl[NT], f1[NT], fr[NT], fz[NT];
    tps_model *g = fit(ctx, &d, 1, cov, d.z, 1, lambda, TPS_MODE_GLOBAL, 0, 0, 2);
    tps_model *l = fit(ctx, &d, 1, cov, d.z, 1, lambda, TPS_MODE_LOCAL, pp, 0, 2);
    CHECK(g && l, "%s", tps_context_errmsg(ctx));
    if (!g || !l)
        goto done;
    tps_model_info info;
    double bg, bl;
    CHECK(tps_model_get_info(ctx, l, &info) == TPS_OK && info.n_patches >= 16,
          "%zu patches", info.n_patches);
    CHECK(tps_model_get_covariate_coefficients(ctx, g, 0, &bg) == TPS_OK &&
              tps_model_get_covariate_coefficients(ctx, l, 0, &bl) == TPS_OK,
          "%s", tps_context_errmsg(ctx));
    CHECK(values(ctx, g, 1, NT, tx, ty, tcs, fg, 2) && values(ctx, l, 1, NT, tx, ty, tcs, fl, 2),
          "%s", tps_context_errmsg(ctx));
    double worst = 0.0, lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < NT; ++k) {
        worst = max_nan(worst, fabs(fl[k] - fg[k]));
        lo = fmin(lo, fg[k]);
        hi = fmax(hi, fg[k]);
    }
    worst /= hi - lo;
    printf("%zu patches, N = %zu, lambda %g: b global %.6f local %.6f (%.2e relative); "
           "surface %.2e of the range apart\n",
           info.n_patches, d.n, lambda, bg, bl, fabs(bl - bg) / fabs(bg), worst);
    /* Measured 2.3e-3 relative; the global b itself is 2.3e-3 off the
     * true 2 here: the bound (1 %) allows the local estimator a departure
     * from the global one of a few times the global one's own error. */
    CHECK(fabs(bl - bg) <= 0.01 * fabs(bg), "b local %g global %g", bl, bg);
    /* (quick: patches of ~94 points, measured 1.24e-3: the local
     * approximation itself at that size) */
    CHECK(worst <= (quick ? 2e-3 : 1e-3), "surface %.3g of the range off the global", worst);

    /* The model is the covariate-free local model of z - b c plus b c(x):
     * same partition, same patches (the covariates change no patch). */
    double *zr = malloc(sizeof(double) * d.n);
    for (size_t i = 0; i < d.n; ++i)
        zr[i] = d.z[i] - bl * d.c[0][i];
    tps_model *r = fit(ctx, &d, 0, NULL, zr, 1, lambda, TPS_MODE_LOCAL, pp, 0, 2);
    CHECK(r && values(ctx, r, 0, NT, tx, ty, NULL, fr, 2), "%s", tps_context_errmsg(ctx));
    double wr = 0.0;
    for (size_t k = 0; r && k < NT; ++k)
        wr = max_nan(wr, fabs(fr[k] + bl * tc0[k] - fl[k]) / (hi - lo));
    CHECK(wr <= 1e-9, "local model of z - b c plus b c: %.3g of the range apart", wr);
    tps_model_destroy(r);
    free(zr);

    /* Threads: the same bytes. */
    CHECK(values(ctx, l, 1, NT, tx, ty, tcs, f1, 1), "%s", tps_context_errmsg(ctx));
    CHECK(memcmp(f1, fl, sizeof fl) == 0, "values depend on the threads");
    /* (3 threads, not 1: with one, OpenBLAS's own threads factorise, in
     * their order) */
    tps_model *l1 = fit(ctx, &d, 1, cov, d.z, 1, lambda, TPS_MODE_LOCAL, pp, 0, 3);
    double b1 = NAN;
    CHECK(l1 && tps_model_get_covariate_coefficients(ctx, l1, 0, &b1) == TPS_OK && b1 == bl,
          "three threads: b %.17g, two: %.17g", b1, bl);
    tps_model_destroy(l1);

    /* 4. Save and load: the same coefficients and bytes. */
    void *bytes = NULL;
    size_t size = 0;
    const unsigned char hash[32] = {1, 2, 3};
    CHECK(tps_model_save(ctx, l, hash, NULL, 0, &bytes, &size) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    tps_model *back = bytes ? tps_model_load(ctx, bytes, size, hash, NULL, NULL) : NULL;
    CHECK(back, "load: %s", tps_context_errmsg(ctx));
    double bb = NAN;
    tps_model_info binfo;
    if (back) {
        CHECK(tps_model_get_covariate_coefficients(ctx, back, 0, &bb) == TPS_OK && bb == bl &&
                  tps_model_get_info(ctx, back, &binfo) == TPS_OK &&
                  binfo.mode == TPS_MODE_LOCAL && binfo.n_covariates == 1,
              "reloaded b %.17g, saved %.17g", bb, bl);
        CHECK(values(ctx, back, 1, NT, tx, ty, tcs, fz, 2) && memcmp(fz, fl, sizeof fl) == 0,
              "the reloaded model's values differ: %s", tps_context_errmsg(ctx));
        /* without the covariates' planes: refused */
        CHECK(!values(ctx, back, 0, NT, tx, ty, NULL, fz, 2) &&
                  tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT,
              "values without the covariate: %s", tps_context_errmsg(ctx));
        /* The same bytes labelled format version 5 (docs/design.md): that
         * version had no local model with covariates, and its engines
         * would evaluate one without their term, so the file is refused.
         * The version is at byte 8; the trailer is FNV-1a 64, recomputed
         * here independently of the engine. */
        unsigned char *buf = bytes;
        const uint32_t five = 5;
        memcpy(buf + 8, &five, 4);
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i + 8 < size; ++i) {
            h ^= buf[i];
            h *= 0x100000001b3ULL;
        }
        memcpy(buf + size - 8, &h, 8);
        tps_model *v5 = tps_model_load(ctx, bytes, size, hash, NULL, NULL);
        CHECK(!v5 && tps_context_errno(ctx) == TPS_ERR_BAD_MODEL_DATA &&
                  strstr(tps_context_errmsg(ctx), "covariates in a local model"),
              "a local model with covariates labelled version 5: %s", tps_context_errmsg(ctx));
        tps_model_destroy(v5);
    }
    tps_model_destroy(back);
    tps_free(bytes);

done:
    tps_model_destroy(g);
    tps_model_destroy(l);
    free(d.x);
}

/* 6. Leave-one-out with covariates. One patch: the blended form (each
 * patch's Rippa residual of z - C b, times R_ii / (R_ii - d_i) for the
 * covariates' leverage) is the global model's exact one, at lambda 0 and
 * > 0, weighted too. Many patches: an approximation (b is held at the
 * full fit's but for the leverage factor; the partition is kept), within
 * 5 % of the global model's LOO RMSE and MAE here (measured 0.4-1.2 %). */
static void test_loo(tps_context *ctx)
{
    data d = make_data(400, 0.05, 2.0, -1.0);
    const double *cov[2] = {d.c[0], d.c[1]};
    const double lambdas[2] = {0.0, 1e-3};
    for (int weighted = 0; weighted <= 1; ++weighted)
        for (int li = 0; li < 2; ++li)
            for (int many = 0; many <= 1; ++many) {
                tps_band_info bb[2];
                for (int local = 0; local <= 1; ++local) {
                    tps_fit_options o;
                    tps_fit_options_init(&o);
                    o.mode = local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL;
                    o.patch_points = many ? 60 : 1000;
                    o.num_threads = 2;
                    o.device = TPS_DEVICE_CPU;
                    o.weights = weighted ? d.w : NULL;
                    o.n_covariates = 2;
                    o.covariates = cov;
                    o.covariate_names = names;
                    o.cross_validation = 1;
                    const double *zv[1] = {d.z};
                    tps_model *m =
                        tps_model_create(ctx, d.n, d.x, d.y, 1, zv, &lambdas[li], &o);
                    CHECK(m && tps_model_get_band_info(ctx, m, 0, &bb[local]) == TPS_OK,
                          "%s: %s", local ? "local" : "global", tps_context_errmsg(ctx));
                    tps_model_destroy(m);
                    if (!m)
                        bb[local].loo_rmse = bb[local].loo_mae = NAN;
                }
                const double er = fabs(bb[1].loo_rmse - bb[0].loo_rmse) / bb[0].loo_rmse;
                const double ea = fabs(bb[1].loo_mae - bb[0].loo_mae) / bb[0].loo_mae;
                printf("LOO with covariates, %s, lambda %g%s: RMSE global %.12g local %.12g "
                       "(%.2e), MAE %.2e apart\n",
                       many ? "many patches" : "one patch", lambdas[li],
                       weighted ? ", weighted" : "", bb[0].loo_rmse, bb[1].loo_rmse, er, ea);
                CHECK(many ? er <= 0.05 && ea <= 0.05 : er <= 1e-9 && ea <= 1e-9,
                      "LOO RMSE %.3g, MAE %.3g relative apart", er, ea);
            }
    free(d.x);
}

/* 5. GCV with covariates against the explicit influence matrix: column j
 * of A is the local model (with covariates, at the chosen lambda) of the
 * unit vector e_j, all N as bands of one model (one partition); its score
 * N sum w r^2 / (N - tr A)^2 and tr A must be what the engine reports. */
static void test_gcv_explicit(tps_context *ctx)
{
    for (int weighted = 0; weighted <= 1; ++weighted) {
        /* quick (valgrind): 150 points, a quarter of the evaluations */
        data d = make_data(quick ? 150 : 300, 0.05, 2.0, -1.0);
        const double *cov[2] = {d.c[0], d.c[1]};
        tps_fit_options o;
        tps_fit_options_init(&o);
        o.mode = TPS_MODE_LOCAL;
        o.patch_points = 40;
        o.num_threads = 2;
        o.device = TPS_DEVICE_CPU;
        o.weights = weighted ? d.w : NULL;
        o.n_covariates = 2;
        o.covariates = cov;
        o.covariate_names = names;
        const int gcv = 1;
        double lambda = 0.0;
        const double *zv[1] = {d.z};
        o.smoothing_gcv = &gcv;
        tps_model *m = tps_model_create(ctx, d.n, d.x, d.y, 1, zv, &lambda, &o);
        tps_band_info bi;
        tps_model_info info;
        CHECK(m && tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK &&
                  tps_model_get_info(ctx, m, &info) == TPS_OK,
              "local GCV with covariates: %s", tps_context_errmsg(ctx));
        if (!m) {
            free(d.x);
            continue;
        }
        CHECK(info.n_patches >= 4, "%zu patches", info.n_patches);
        /* the data and the N unit vectors as the bands of one fixed-lambda model */
        const size_t nb = d.n + 1;
        double *e = calloc(d.n * d.n, sizeof(double));
        const double **vals = malloc(sizeof(double *) * nb);
        double *lam = malloc(sizeof(double) * nb);
        vals[0] = d.z;
        lam[0] = bi.smoothing;
        for (size_t j = 0; j < d.n; ++j) {
            e[j * d.n + j] = 1.0;
            vals[j + 1] = e + j * d.n;
            lam[j + 1] = bi.smoothing;
        }
        o.smoothing_gcv = NULL;
        tps_model *all = tps_model_create(ctx, d.n, d.x, d.y, nb, vals, lam, &o);
        CHECK(all != NULL, "%s", tps_context_errmsg(ctx));
        double *f = malloc(sizeof(double) * d.n);
        tps_plane planes[2] = {{d.c[0], TPS_FLOAT64, 8, 0}, {d.c[1], TPS_FLOAT64, 8, 0}};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_CPU;
        eo.covariates = planes;
        double tr = 0.0, rss = 0.0;
        int ok = all != NULL;
        for (size_t b = 0; ok && b < nb; ++b) {
            ok = tps_evaluate_points(ctx, all, b, d.n, d.x, d.y, f, &eo) == TPS_OK;
            if (b == 0)
                for (size_t i = 0; i < d.n; ++i)
                    rss += (weighted ? d.w[i] : 1.0) * (d.z[i] - f[i]) * (d.z[i] - f[i]);
            else
                tr += f[b - 1];
        }
        CHECK(ok, "%s", tps_context_errmsg(ctx));
        const double N = (double)d.n, score = N * rss / ((N - tr) * (N - tr));
        printf("local GCV with covariates%s: lambda %.6g, %zu patches; score %.12g, explicit "
               "%.12g; effective df %.12g, explicit %.12g\n",
               weighted ? ", weighted" : "", bi.smoothing, info.n_patches, bi.gcv_score, score,
               bi.effective_df, tr);
        CHECK(fabs(bi.effective_df - tr) <= 1e-7 * tr, "effective df %.12g, explicit %.12g",
              bi.effective_df, tr);
        CHECK(fabs(bi.gcv_score - score) <= 1e-7 * score, "score %.12g, explicit %.12g",
              bi.gcv_score, score);
        /* the GCV model is the fixed-lambda model at its lambda, bit for
         * bit, its leave-one-out that model's with cross-validation */
        o.cross_validation = 1;
        tps_model *one = tps_model_create(ctx, d.n, d.x, d.y, 1, zv, &bi.smoothing, &o);
        double bg[2] = {NAN, NAN}, ba[2] = {NAN, NAN};
        tps_band_info bo;
        CHECK(one && tps_model_get_covariate_coefficients(ctx, m, 0, bg) == TPS_OK &&
                  tps_model_get_covariate_coefficients(ctx, one, 0, ba) == TPS_OK &&
                  bg[0] == ba[0] && bg[1] == ba[1],
              "GCV model's b (%.17g, %.17g), fixed lambda's (%.17g, %.17g)", bg[0], bg[1], ba[0],
              ba[1]);
        CHECK(one && tps_model_get_band_info(ctx, one, 0, &bo) == TPS_OK &&
                  isfinite(bi.loo_rmse) && bi.loo_rmse == bo.loo_rmse &&
                  bi.loo_mae == bo.loo_mae,
              "GCV band's LOO %.17g, fixed lambda's %.17g", bi.loo_rmse, bo.loo_rmse);
        tps_model_destroy(one);
        free(f);
        free(e);
        free(vals);
        free(lam);
        tps_model_destroy(all);
        tps_model_destroy(m);
        free(d.x);
    }
}

/* 5. Against the global GCV with covariates (Overlap 2, as
 * test_local_gcv.c's comparison): lambda within a factor 2, the RMSE
 * against the noise-free field within 5 %. */
static void test_gcv_against_global(tps_context *ctx)
{
    data d = make_data(3500, 0.1, 2.0, 0.0);
    const double *cov[1] = {d.c[0]};
    make_targets(0.02, 0.98);
    static double f[NT];
    double rmse[2] = {NAN, NAN}, lam[2] = {NAN, NAN}, b[2] = {NAN, NAN};
    for (int local = 0; local <= 1; ++local) {
        tps_fit_options o;
        tps_fit_options_init(&o);
        o.mode = local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL;
        o.overlap = local ? 2.0 : 0.0;
        o.num_threads = 2;
        o.device = TPS_DEVICE_CPU;
        o.n_covariates = 1;
        o.covariates = cov;
        o.covariate_names = names;
        const int gcv = 1;
        double lambda = 0.0;
        const double *zv[1] = {d.z};
        o.smoothing_gcv = &gcv;
        tps_model *m = tps_model_create(ctx, d.n, d.x, d.y, 1, zv, &lambda, &o);
        tps_band_info bi;
        CHECK(m && tps_model_get_band_info(ctx, m, 0, &bi) == TPS_OK &&
                  tps_model_get_covariate_coefficients(ctx, m, 0, &b[local]) == TPS_OK &&
                  values(ctx, m, 1, NT, tx, ty, tcs, f, 2),
              "%s GCV: %s", local ? "local" : "global", tps_context_errmsg(ctx));
        if (m) {
            double ss = 0.0;
            for (size_t k = 0; k < NT; ++k) {
                const double t = franke(tx[k], ty[k]) + 2.0 * tc0[k];
                ss += (f[k] - t) * (f[k] - t);
            }
            rmse[local] = sqrt(ss / NT);
            lam[local] = bi.smoothing;
        }
        tps_model_destroy(m);
    }
    printf("GCV with a covariate, N = %zu: lambda global %.5g local %.5g; b %.5f %.5f; RMSE "
           "global %.6g local %.6g (%.4f)\n",
           d.n, lam[0], lam[1], b[0], b[1], rmse[0], rmse[1], rmse[1] / rmse[0]);
    CHECK(lam[1] >= 0.5 * lam[0] && lam[1] <= 2.0 * lam[0], "lambda local %g global %g", lam[1],
          lam[0]);
    CHECK(rmse[1] <= 1.05 * rmse[0], "RMSE local %g global %g", rmse[1], rmse[0]);
    free(d.x);
}

/* 3. Covariates that the fixed part cannot take. */
static void test_refused(tps_context *ctx)
{
    data d = make_data(1500, 0.05, 1.0, 0.0);
    double *lin = malloc(sizeof(double) * d.n * 2), *flat = lin + d.n;
    for (size_t i = 0; i < d.n; ++i) {
        lin[i] = 2.0 * d.x[i] - 3.0 * d.y[i] + 7.0;
        flat[i] = 5.0;
    }
    const double *c_lin[2] = {d.c[0], lin};
    tps_model *m = fit(ctx, &d, 2, c_lin, d.z, 0, 1e-4, TPS_MODE_LOCAL, 200, 0, 2);
    CHECK(!m && tps_context_errno(ctx) == TPS_ERR_COLLINEAR &&
              strstr(tps_context_errmsg(ctx), "'bump'"),
          "a covariate that is a plane: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    const double *c_flat[1] = {flat};
    m = fit(ctx, &d, 1, c_flat, d.z, 0, 1e-4, TPS_MODE_LOCAL, 200, 0, 2);
    CHECK(!m && tps_context_errno(ctx) == TPS_ERR_COLLINEAR &&
              strstr(tps_context_errmsg(ctx), "'ridge' is constant"),
          "a constant covariate: %s", tps_context_errmsg(ctx));
    tps_model_destroy(m);

    free(lin);
    free(d.x);
}

/* The GPU mode: see the header. */
static void test_gpu(tps_context *ctx)
{
    data d = make_data(6000, 0.05, 2.0, 0.0);
    const double *cov[1] = {d.c[0]};
    make_targets(0.0, 1.0);
    static double fc[NT], fg[NT];
    tps_model *m[2] = {NULL, NULL};
    double b[2] = {NAN, NAN};
    for (int gpu = 0; gpu <= 1; ++gpu) {
        tps_fit_options o;
        tps_fit_options_init(&o);
        o.mode = TPS_MODE_LOCAL;
        o.patch_points = 500;
        o.num_threads = 2;
        o.device = gpu ? TPS_DEVICE_GPU : TPS_DEVICE_CPU; /* no weights: CPU-only */
        o.n_covariates = 1;
        o.covariates = cov;
        o.covariate_names = names;
        const double lambda = 1e-4;
        const double *zv[1] = {d.z};
        m[gpu] = tps_model_create(ctx, d.n, d.x, d.y, 1, zv, &lambda, &o);
        tps_model_info info;
        CHECK(m[gpu] && tps_model_get_info(ctx, m[gpu], &info) == TPS_OK &&
                  tps_model_get_covariate_coefficients(ctx, m[gpu], 0, &b[gpu]) == TPS_OK,
              "%s: %s", gpu ? "GPU" : "CPU", tps_context_errmsg(ctx));
        if (m[gpu])
            printf("%s fit: %zu patches, solved on the %s, b %.17g\n", gpu ? "GPU" : "CPU",
                   info.n_patches, info.solve_device == TPS_DEVICE_GPU ? "GPU" : "CPU", b[gpu]);
    }
    if (m[0] && m[1]) {
        CHECK(fabs(b[1] - b[0]) <= 1e-10 * fabs(b[0]), "b GPU %.17g CPU %.17g", b[1], b[0]);
        CHECK(values(ctx, m[0], 1, NT, tx, ty, tcs, fc, 2) &&
                  values(ctx, m[1], 1, NT, tx, ty, tcs, fg, 2),
              "%s", tps_context_errmsg(ctx));
        double worst = 0.0, lo = INFINITY, hi = -INFINITY;
        for (size_t k = 0; k < NT; ++k) {
            worst = max_nan(worst, fabs(fg[k] - fc[k]));
            lo = fmin(lo, fc[k]);
            hi = fmax(hi, fc[k]);
        }
        CHECK(worst <= 1e-10 * (hi - lo), "values %.3g of the range apart", worst / (hi - lo));
        /* evaluation: DEVICE=GPU declined, AUTO on the CPU (the same bytes) */
        enum { G = 512 };
        float *a = malloc(sizeof(float) * G * G), *c = malloc(sizeof(float) * G * G);
        double *cg = malloc(sizeof(double) * G * G);
        for (size_t r = 0; r < G; ++r)
            for (size_t k = 0; k < G; ++k)
                cg[r * G + k] = cov1((k + 0.5) / G, 1.0 - (r + 0.5) / G);
        const double gt[6] = {0, 1.0 / G, 0, 1, 0, -1.0 / G};
        tps_grid grid;
        tps_grid_from_geotransform(&grid, gt, 0, 0, G, G);
        tps_plane plane = {cg, TPS_FLOAT64, 8, 8 * G};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.covariates = &plane;
        eo.device = TPS_DEVICE_GPU;
        tps_output oa = {0, a, TPS_FLOAT32, 4, 4 * G, TPS_QUANTITY_VALUE};
        tps_output oc = {0, c, TPS_FLOAT32, 4, 4 * G, TPS_QUANTITY_VALUE};
        CHECK(tps_evaluate_grid(ctx, m[1], &grid, 1, &oa, &eo) == TPS_ERR_DEVICE_UNAVAILABLE &&
                  strstr(tps_context_errmsg(ctx), "CPU only"),
              "DEVICE=GPU evaluation: %s", tps_context_errmsg(ctx));
        eo.device = TPS_DEVICE_AUTO;
        CHECK(tps_evaluate_grid(ctx, m[1], &grid, 1, &oa, &eo) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        eo.device = TPS_DEVICE_CPU;
        CHECK(tps_evaluate_grid(ctx, m[1], &grid, 1, &oc, &eo) == TPS_OK &&
                  memcmp(a, c, sizeof(float) * G * G) == 0,
              "AUTO and CPU differ: %s", tps_context_errmsg(ctx));
        free(a);
        free(c);
        free(cg);
    }
    tps_model_destroy(m[0]);
    tps_model_destroy(m[1]);
    /* GCV with the covariate: the eigendecompositions batched on the GPU
     * give the CPU's lambda, score and b (to rounding) */
    tps_band_info bi[2];
    for (int gpu = 0; gpu <= 1; ++gpu) {
        tps_fit_options o;
        tps_fit_options_init(&o);
        o.mode = TPS_MODE_LOCAL;
        o.patch_points = 500;
        o.num_threads = 2;
        o.device = gpu ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
        o.n_covariates = 1;
        o.covariates = cov;
        o.covariate_names = names;
        const int gcv = 1;
        o.smoothing_gcv = &gcv;
        const double lambda = 0.0;
        const double *zv[1] = {d.z};
        m[gpu] = tps_model_create(ctx, d.n, d.x, d.y, 1, zv, &lambda, &o);
        CHECK(m[gpu] && tps_model_get_band_info(ctx, m[gpu], 0, &bi[gpu]) == TPS_OK &&
                  tps_model_get_covariate_coefficients(ctx, m[gpu], 0, &b[gpu]) == TPS_OK,
              "GCV on the %s: %s", gpu ? "GPU" : "CPU", tps_context_errmsg(ctx));
        tps_model_destroy(m[gpu]);
    }
    printf("GCV with a covariate: lambda CPU %.17g GPU %.17g, score %.12g / %.12g\n",
           bi[0].smoothing, bi[1].smoothing, bi[0].gcv_score, bi[1].gcv_score);
    CHECK(bi[0].smoothing == bi[1].smoothing &&
              fabs(bi[1].gcv_score - bi[0].gcv_score) <= 1e-9 * bi[0].gcv_score &&
              fabs(b[1] - b[0]) <= 1e-10 * fabs(b[0]),
          "GCV: GPU lambda %g score %g b %g, CPU %g %g %g", bi[1].smoothing, bi[1].gcv_score,
          b[1], bi[0].smoothing, bi[0].gcv_score, b[0]);
    free(d.x);
}

int main(int argc, char **argv)
{
    quick = getenv("TPS_TEST_QUICK") && strcmp(getenv("TPS_TEST_QUICK"), "0") != 0;
    const int compare = argc > 1 && strcmp(argv[1], "compare") == 0;
    if (argc > 1 && strcmp(argv[1], "gpu") == 0) {
        if (!gpu_required()) /* an independent probe (gpu_probe.h) */
            return 77;
        tps_context *ctx = tps_context_create();
        if (!ctx)
            return 1;
        test_gpu(ctx);
        tps_context_destroy(ctx);
        printf("%d checks, %d failures\n", checks, failures);
        return failures ? 1 : 0;
    }
    if (compare && quick) {
        printf("skipped: TPS_TEST_QUICK=1 (valgrind); the comparison with the global GCV runs "
               "in plain ctest\n");
        return 77;
    }
    tps_context *ctx = tps_context_create();
    if (!ctx)
        return 1;
    if (compare) {
        test_gcv_against_global(ctx);
    } else {
        test_one_patch(ctx);
        test_many_patches(ctx);
        test_refused(ctx);
        test_gcv_explicit(ctx);
        test_loo(ctx);
    }
    tps_context_destroy(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

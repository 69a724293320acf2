/* test_local_covse.c: the standard error of a LOCAL model with covariates
 * (issue 14; docs/design.md, "The standard error", LOCAL models).
 *
 * Each patch's variance is its own spline's (fixed part [1 u v]) plus
 * rho d^T G^-1 d, the variance of the model's one coefficient vector b as
 * the blend of all the patches knows it (G = C^T R C, local_cov.c's), d the
 * cell's covariates less the patch's splines of them; the patches' standard
 * errors are blended like values.
 *
 * 1. One patch (patch points above N): the local model is the global
 *    partial spline, and its standard error the global one's, to rounding
 *    (1e-9 relative; measured ~1e-12): one and two covariates, lambda 0
 *    and > 0, a second band with missing values (its patch's points those
 *    with a value).
 * 2. Many patches against the global standard error with covariates
 *    (2,000 points, z = Franke + 2 c1 (- c2) + noise, 16 patches, an 81^2
 *    grid over the unit square, the covariates analytic on the grid as at
 *    the points): lambda 1e-5 and 1e-3, one and two covariates, and a
 *    covariate raised on the grid where no point sampled it (b's variance
 *    then matters: half the global variance there). Bounds with a margin
 *    over the measured departures (printed; docs/design.md has them).
 * 3. A covariate affine over half the domain (x + 2 y there): the patches
 *    there see it collinear with their [1 u v]; each spline of it is then
 *    exact, d is the cell's departure from that plane, nothing is singular:
 *    finite everywhere and as near the global standard error as in 2.
 * 4. Bytes independent of the window and the threads; a saved model loads
 *    back to the same bytes (the patches' points found again); a NaN
 *    covariate pixel gives NaN; two bands of one lambda (sharing their
 *    factorisations) each with its own process variance; a local model
 *    with per-point weights is still refused. */
#include "check.h"
#include "testdata.h"
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int quick = 0; /* TPS_TEST_QUICK=1 (valgrind): smaller sizes */

static double cov1(double x, double y)
{
    return sin(17.0 * x + 3.0 * y) * cos(13.0 * y);
}

static double cov2(double x, double y)
{
    return exp(-8.0 * ((x - 0.4) * (x - 0.4) + (y - 0.6) * (y - 0.6))) + 0.3 * cos(21.0 * x * y);
}

/* x + 2 y for x < 0.5, a ridge beyond (continuous at 0.5) */
static double half_plane(double x, double y)
{
    return x + 2.0 * y + (x > 0.5 ? 3.0 * sin(9.0 * (x - 0.5)) * cos(7.0 * y) : 0.0);
}

/* where no point sampled the covariate: a peak added on the grid only */
static double peak(double x, double y)
{
    return 3.0 * exp(-((x - 0.3) * (x - 0.3) + (y - 0.7) * (y - 0.7)) / 0.01);
}

typedef double (*field_fn)(double, double);

typedef struct setup {
    int n;
    double lambda;
    int nc;
    field_fn cov[2];
    int grid_peak; /* the peak added to covariate 1 on the grid */
    int missing;   /* a second band with every 7th value missing */
} setup;

typedef struct data {
    int n;
    double *x, *y, *z[2], *c[2];
} data;

static data make_data(const setup *s)
{
    data d;
    d.n = s->n;
    d.x = malloc(sizeof(double) * s->n * 6);
    d.y = d.x + s->n;
    d.z[0] = d.y + s->n;
    d.z[1] = d.z[0] + s->n;
    d.c[0] = d.z[1] + s->n;
    d.c[1] = d.c[0] + s->n;
    for (int i = 0; i < s->n; ++i) {
        d.x[i] = uniform();
        d.y[i] = uniform();
        d.z[0][i] = franke(d.x[i], d.y[i]) + 0.02 * (uniform() - 0.5);
        for (int k = 0; k < s->nc; ++k) {
            d.c[k][i] = s->cov[k](d.x[i], d.y[i]);
            d.z[0][i] += (k ? -1.0 : 2.0) * d.c[k][i];
        }
        d.z[1][i] = i % 7 == 3 ? NAN : 1.5 * d.z[0][i] + 0.1 * (uniform() - 0.5);
    }
    return d;
}

static tps_model *fit(tps_context *ctx, const setup *s, const data *d, tps_mode mode, size_t pp,
                      const double *weights)
{
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = mode;
    o.patch_points = pp;
    o.num_threads = 2;
    o.device = TPS_DEVICE_CPU;
    o.n_covariates = (size_t)s->nc;
    const double *cov[2] = {d->c[0], d->c[1]};
    o.covariates = cov;
    o.weights = weights;
    const double *vals[2] = {d->z[0], d->z[1]};
    const double lambdas[2] = {s->lambda, s->lambda};
    return tps_model_create(ctx, (size_t)d->n, d->x, d->y, s->missing ? 2 : 1, vals, lambdas, &o);
}

/* A G x G grid over the unit square (cell centres on 0 .. 1). */
typedef struct grid_data {
    int G;
    double gt[6];
    double *cov[2]; /* G x G each */
    tps_plane planes[2];
} grid_data;

static grid_data make_grid(const setup *s, int G)
{
    grid_data g;
    g.G = G;
    const double gt[6] = {-0.5 / (G - 1), 1.0 / (G - 1), 0, 1 + 0.5 / (G - 1), 0, -1.0 / (G - 1)};
    memcpy(g.gt, gt, sizeof gt);
    for (int k = 0; k < 2; ++k) {
        g.cov[k] = malloc(sizeof(double) * G * G);
        g.planes[k] = (tps_plane){g.cov[k], TPS_FLOAT64, 8, 8 * (size_t)G};
        for (int r = 0; r < G; ++r)
            for (int c = 0; c < G; ++c) {
                const double x = (double)c / (G - 1), y = 1.0 - (double)r / (G - 1);
                g.cov[k][r * G + c] =
                    k < s->nc ? s->cov[k](x, y) + (k == 0 && s->grid_peak ? peak(x, y) : 0.0)
                              : 0.0;
            }
    }
    return g;
}

/* The standard error of band `band` on the window (c0, r0, w, h) of the grid
 * into out (G x G, the window's part written). */
static int standard_errors(tps_context *ctx, const tps_model *m, const grid_data *g, size_t band,
                           size_t c0, size_t r0, size_t w, size_t h, int threads, double *out)
{
    const int G = g->G;
    tps_grid grid;
    tps_grid_from_geotransform(&grid, g->gt, c0, r0, w, h);
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.num_threads = threads;
    /* the planes of the window: offset to its first cell */
    tps_plane planes[2];
    for (int k = 0; k < 2; ++k) {
        planes[k] = g->planes[k];
        planes[k].data = g->cov[k] + r0 * G + c0;
    }
    eo.covariates = planes;
    tps_output o = {band, out + r0 * G + c0, TPS_FLOAT64, 8, 8 * (size_t)G,
                    TPS_QUANTITY_STANDARD_ERROR};
    return tps_evaluate_grid(ctx, m, &grid, 1, &o, &eo) == TPS_OK;
}

typedef struct departure {
    double worst, inside, rms;
} departure;

static departure compare(const double *sl, const double *sg, int G)
{
    departure d = {0, 0, 0};
    for (int r = 0; r < G; ++r)
        for (int c = 0; c < G; ++c) {
            const double e = fabs(sl[r * G + c] - sg[r * G + c]) / sg[r * G + c];
            d.worst = max_nan(d.worst, e);
            d.rms += e * e;
            if (r >= G / 20 && r <= G - 1 - G / 20 && c >= G / 20 && c <= G - 1 - G / 20)
                d.inside = max_nan(d.inside, e);
        }
    d.rms = sqrt(d.rms / (G * G));
    return d;
}

/* 1. One patch: the global standard error. */
static void one_patch(tps_context *ctx)
{
    const setup cases[] = {
        {300, 1e-4, 1, {cov1, NULL}, 0, 1},
        {300, 1e-2, 2, {cov1, cov2}, 1, 0},
        {200, 0.0, 2, {cov1, cov2}, 0, 0},
    };
    enum { G = 33 };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; ++t) {
        const setup *s = &cases[t];
        data d = make_data(s);
        grid_data gd = make_grid(s, G);
        tps_model *g = fit(ctx, s, &d, TPS_MODE_GLOBAL, 0, NULL);
        tps_model *l = fit(ctx, s, &d, TPS_MODE_LOCAL, 1000, NULL);
        CHECK(g && l, "%s", tps_context_errmsg(ctx));
        tps_model_info li;
        if (g && l && tps_model_get_info(ctx, l, &li) == TPS_OK) {
            CHECK(li.n_patches == 1, "%zu patches", li.n_patches);
            for (size_t band = 0; band < (s->missing ? 2u : 1u); ++band) {
                static double sg[G * G], sl[G * G];
                CHECK(standard_errors(ctx, g, &gd, band, 0, 0, G, G, 2, sg) &&
                          standard_errors(ctx, l, &gd, band, 0, 0, G, G, 2, sl),
                      "%s", tps_context_errmsg(ctx));
                departure e = compare(sl, sg, G);
                printf("one patch, %d covariate(s), lambda %g, band %zu%s: standard error "
                       "%.2e relative to the global one\n",
                       s->nc, s->lambda, band + 1, band ? " (missing values)" : "", e.worst);
                CHECK(e.worst <= 1e-9, "one patch: %.3g relative", e.worst);
            }
        }
        tps_model_destroy(g);
        tps_model_destroy(l);
        free(d.x);
        free(gd.cov[0]);
        free(gd.cov[1]);
    }
}

/* 2., 3. and 4.: many patches against the global standard error. */
static void many_patches(tps_context *ctx, const setup *s, const char *what, double bound_max,
                         double bound_in, double bound_rms, int properties)
{
    const int G = quick ? 21 : 81;
    data d = make_data(s);
    grid_data gd = make_grid(s, G);
    tps_model *g = quick ? NULL : fit(ctx, s, &d, TPS_MODE_GLOBAL, 0, NULL);
    tps_model *l = fit(ctx, s, &d, TPS_MODE_LOCAL, quick ? 60 : 250, NULL);
    CHECK((g || quick) && l, "%s: %s", what, tps_context_errmsg(ctx));
    double *sg = calloc((size_t)G * G, sizeof(double)), *sl = calloc((size_t)G * G, sizeof(double));
    tps_model_info li;
    if (!l || tps_model_get_info(ctx, l, &li) != TPS_OK)
        goto done;
    CHECK(standard_errors(ctx, l, &gd, 0, 0, 0, G, G, 2, sl), "%s", tps_context_errmsg(ctx));
    double lo = INFINITY;
    for (int k = 0; k < G * G; ++k)
        lo = fmin(lo, sl[k]);
    CHECK(lo > 0.0 && isfinite(lo), "%s: a standard error %g", what, lo);
    if (g) {
        CHECK(standard_errors(ctx, g, &gd, 0, 0, 0, G, G, 2, sg), "%s", tps_context_errmsg(ctx));
        const departure e = compare(sl, sg, G);
        printf("%s: %zu patches, %d points, lambda %g: local vs global standard error max %.4f "
               "relative (inside [0.05, 0.95]^2: %.4f), RMS %.4f\n",
               what, li.n_patches, s->n, s->lambda, e.worst, e.inside, e.rms);
        CHECK(li.n_patches >= 8, "%zu patches", li.n_patches);
        CHECK(e.worst <= bound_max && e.inside <= bound_in && e.rms <= bound_rms,
              "%s: %.3g (inside %.3g, RMS %.3g) off the global standard error", what, e.worst,
              e.inside, e.rms);
    }
    if (!properties)
        goto done;
    /* windows of other shapes, one thread: the same bytes */
    double *part = calloc((size_t)G * G, sizeof(double));
    const size_t h = (size_t)G / 2, w = (size_t)G * 5 / 8;
    const size_t cuts[][4] = {
        {0, 0, w, h}, {w, 0, (size_t)G - w, h}, {0, h, (size_t)G, (size_t)G - h}};
    for (size_t k = 0; k < 3; ++k)
        CHECK(standard_errors(ctx, l, &gd, 0, cuts[k][0], cuts[k][1], cuts[k][2], cuts[k][3], 1,
                              part),
              "%s", tps_context_errmsg(ctx));
    CHECK(memcmp(part, sl, sizeof(double) * G * G) == 0, "%s: bytes differ by window", what);
    /* saved and loaded: the patches' points found again, the same bytes */
    void *bytes = NULL;
    size_t size = 0;
    const unsigned char hash[32] = {7};
    CHECK(tps_model_save(ctx, l, hash, NULL, 0, &bytes, &size) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    tps_model *back = bytes ? tps_model_load(ctx, bytes, size, hash, NULL, NULL) : NULL;
    CHECK(back, "load: %s", tps_context_errmsg(ctx));
    memset(part, 0, sizeof(double) * G * G);
    if (back)
        CHECK(standard_errors(ctx, back, &gd, 0, 0, 0, G, G, 3, part) &&
                  memcmp(part, sl, sizeof(double) * G * G) == 0,
              "%s: reloaded model's standard errors differ (%s)", what, tps_context_errmsg(ctx));
    tps_model_destroy(back);
    tps_free(bytes);
    /* a NaN covariate pixel: NaN there, the others as before */
    const size_t at = (size_t)(G / 3) * G + (size_t)G / 2;
    const double keep = gd.cov[0][at];
    gd.cov[0][at] = NAN;
    CHECK(standard_errors(ctx, l, &gd, 0, 0, 0, G, G, 2, part), "%s", tps_context_errmsg(ctx));
    gd.cov[0][at] = keep;
    int others = 1;
    for (size_t k = 0; k < (size_t)G * G; ++k)
        others = others && (k == at || part[k] == sl[k]);
    CHECK(isnan(part[at]) && others, "%s: NaN covariate pixel gives %g", what, part[at]);
    free(part);
done:
    tps_model_destroy(g);
    tps_model_destroy(l);
    free(sg);
    free(sl);
    free(d.x);
    free(gd.cov[0]);
    free(gd.cov[1]);
}

/* 4. Two bands of one lambda share their patches' factorisations, each
 * keeps its own process variance: a band three times another has three
 * times its standard error (both bands once gave the first's). */
static void two_bands(tps_context *ctx)
{
    const setup s = {quick ? 200 : 400, 1e-4, 1, {cov1, NULL}, 0, 0};
    data d = make_data(&s);
    for (int i = 0; i < s.n; ++i)
        d.z[1][i] = 3.0 * d.z[0][i];
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_LOCAL;
    o.patch_points = quick ? 60 : 100;
    o.device = TPS_DEVICE_CPU;
    o.n_covariates = 1;
    const double *cov[1] = {d.c[0]};
    o.covariates = cov;
    const double *vals[2] = {d.z[0], d.z[1]};
    const double lambdas[2] = {s.lambda, s.lambda};
    tps_model *l = tps_model_create(ctx, (size_t)s.n, d.x, d.y, 2, vals, lambdas, &o);
    CHECK(l, "%s", tps_context_errmsg(ctx));
    enum { G = 17 };
    grid_data gd = make_grid(&s, G);
    static double se[2][G * G];
    tps_grid grid;
    tps_grid_from_geotransform(&grid, gd.gt, 0, 0, G, G);
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.covariates = gd.planes;
    const tps_output outs[2] = {{0, se[0], TPS_FLOAT64, 8, 8 * G, TPS_QUANTITY_STANDARD_ERROR},
                                {1, se[1], TPS_FLOAT64, 8, 8 * G, TPS_QUANTITY_STANDARD_ERROR}};
    CHECK(l && tps_evaluate_grid(ctx, l, &grid, 2, outs, &eo) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    double worst = 0.0;
    for (int k = 0; k < G * G; ++k)
        worst = max_nan(worst, fabs(se[1][k] / (3.0 * se[0][k]) - 1.0));
    printf("two bands, the second 3 times the first: standard errors' ratio 3 within %.2e\n",
           worst);
    CHECK(worst <= 1e-12, "two bands: ratio off 3 by %.3g", worst);
    tps_model_destroy(l);
    free(d.x);
    free(gd.cov[0]);
    free(gd.cov[1]);
}

/* 4. Per-point weights: still refused (the patches keep no weights). */
static void weighted_refused(tps_context *ctx)
{
    const setup s = {200, 1e-3, 1, {cov1, NULL}, 0, 0};
    data d = make_data(&s);
    double *w = malloc(sizeof(double) * s.n);
    for (int i = 0; i < s.n; ++i)
        w[i] = 0.5 + uniform();
    grid_data gd = make_grid(&s, 9);
    tps_model *l = fit(ctx, &s, &d, TPS_MODE_LOCAL, 60, w);
    CHECK(l, "%s", tps_context_errmsg(ctx));
    double se[81];
    CHECK(l && !standard_errors(ctx, l, &gd, 0, 0, 0, 9, 9, 1, se) &&
              tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "per-point weights"),
          "weighted local model: %s", tps_context_errmsg(ctx));
    tps_model_destroy(l);
    free(w);
    free(d.x);
    free(gd.cov[0]);
    free(gd.cov[1]);
}

int main(void)
{
    const char *q = getenv("TPS_TEST_QUICK");
    quick = q && strcmp(q, "1") == 0;
    tps_context *ctx = tps_context_create();
    if (!quick)
        one_patch(ctx);
    weighted_refused(ctx);
    if (quick) {
        const setup s = {250, 1e-4, 1, {cov1, NULL}, 0, 0};
        many_patches(ctx, &s, "quick", -1, -1, -1, 1);
    } else {
        const setup one5 = {2000, 1e-5, 1, {cov1, NULL}, 0, 0};
        const setup one3 = {2000, 1e-3, 1, {cov1, NULL}, 0, 0};
        const setup two5 = {2000, 1e-5, 2, {cov1, cov2}, 0, 0};
        const setup two3 = {2000, 1e-3, 2, {cov1, cov2}, 0, 0};
        const setup peak5 = {2000, 1e-5, 1, {cov1, NULL}, 1, 0};
        const setup peak3 = {2000, 1e-3, 1, {cov1, NULL}, 1, 0};
        const setup half5 = {2000, 1e-5, 1, {half_plane, NULL}, 0, 0};
        /* Bounds: the covariate-free local test's (test_covse.c), which
         * are about twice what was measured here (docs/design.md; other
         * samples of the same fields moved the maxima by up to 2x, the
         * inside and RMS figures by up to 1.4x); a little more inside where the
         * grid's covariate leaves what the points sampled. */
        many_patches(ctx, &one5, "one covariate", 0.08, 0.03, 0.03, 1);
        many_patches(ctx, &one3, "one covariate", 0.2, 0.12, 0.1, 0);
        many_patches(ctx, &two5, "two covariates", 0.08, 0.03, 0.03, 0);
        many_patches(ctx, &two3, "two covariates", 0.2, 0.12, 0.1, 0);
        many_patches(ctx, &peak5, "a peak the points missed", 0.08, 0.04, 0.03, 0);
        many_patches(ctx, &peak3, "a peak the points missed", 0.2, 0.12, 0.1, 0);
        many_patches(ctx, &half5, "affine over half the domain", 0.08, 0.06, 0.05, 0);
    }
    two_bands(ctx);
    tps_context_destroy(ctx);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

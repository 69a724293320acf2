/* test_api.c: promises of tps.h that no other test holds the engine to:
 *  - a NULL context is allowed in every call: the same work, the same
 *    status, no message;
 *  - a zero-initialised tps_fit_options is tps_fit_options_init's, and a
 *    zero patch size or overlap means the default constant;
 *  - the local-model limits are the exported constants;
 *  - tps_model_info's pairs_per_pixel (the engine's cost estimate) and
 *    device_uploads; tps_cpu_description;
 *  - tps_grid_cell_centre: a GDAL geotransform's pixel centres, in the
 *    documented order of operations. */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "testdata.h"

enum { N = 600, W = 40, H = 30 };
static double x[N], y[N], z[N];

static tps_status evaluate(tps_context *ctx, const tps_model *m, double *out)
{
    const double gt[6] = {0, 1.0 / W, 0, 1, 0, -1.0 / H};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, W, H);
    tps_output o = {0, out, TPS_FLOAT64, 8, 8 * W, TPS_QUANTITY_VALUE};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    return tps_evaluate_grid(ctx, m, &g, 1, &o, &eo);
}

static void null_context(void)
{
    const double *zp = z, lambda = 0;
    tps_model *m = tps_model_create(NULL, N, x, y, 1, &zp, &lambda, NULL);
    CHECK(m != NULL, "a model from a NULL context");
    tps_context *ctx = tps_context_create();
    tps_model *m2 = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, NULL);
    static double a[H][W], b[H][W];
    CHECK(m && m2 && evaluate(NULL, m, &a[0][0]) == TPS_OK &&
              evaluate(ctx, m2, &b[0][0]) == TPS_OK && memcmp(a, b, sizeof a) == 0,
          "the same values with and without a context");
    /* Failures: the same status, with or without a context to hold the message. */
    double v;
    const double qx = 0.5, qy = 0.5;
    CHECK(tps_evaluate_points(NULL, m, 7, 1, &qx, &qy, &v, NULL) == TPS_ERR_INVALID_ARGUMENT &&
              tps_evaluate_points(ctx, m, 7, 1, &qx, &qy, &v, NULL) == TPS_ERR_INVALID_ARGUMENT &&
              tps_context_errmsg(ctx)[0] != '\0',
          "band 7 of 1");
    const double bad_lambda = -1;
    CHECK(tps_model_create(NULL, N, x, y, 1, &zp, &bad_lambda, NULL) == NULL,
          "a negative smoothing without a context");
    tps_model_info info;
    CHECK(tps_model_get_info(NULL, NULL, &info) == TPS_ERR_INVALID_ARGUMENT, "no model");
    CHECK(tps_context_errno(NULL) == TPS_ERR_INVALID_ARGUMENT &&
              strcmp(tps_context_errmsg(NULL), "no context") == 0,
          "the errno and message of no context");
    tps_model_destroy(m);
    tps_model_destroy(m2);
    tps_context_destroy(ctx);
}

static void zero_options(void)
{
    tps_context *ctx = tps_context_create();
    const double *zp = z, lambda = 0;
    tps_fit_options zero, init, explicit_defaults;
    memset(&zero, 0, sizeof zero);
    tps_fit_options_init(&init);
    CHECK(memcmp(&zero, &init, sizeof zero) == 0 && init.mode == TPS_MODE_AUTO,
          "tps_fit_options_init is the zero-initialised struct");
    zero.mode = TPS_MODE_LOCAL;
    explicit_defaults = zero;
    explicit_defaults.patch_points = TPS_DEFAULT_PATCH_POINTS;
    explicit_defaults.overlap = TPS_DEFAULT_OVERLAP;
    tps_model *a = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &zero);
    tps_model *b = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &explicit_defaults);
    static double va[H][W], vb[H][W];
    tps_model_info ia, ib;
    CHECK(a && b && tps_model_get_info(ctx, a, &ia) == TPS_OK &&
              tps_model_get_info(ctx, b, &ib) == TPS_OK && ia.n_patches == ib.n_patches &&
              ia.n_patches > 1 && evaluate(ctx, a, &va[0][0]) == TPS_OK &&
              evaluate(ctx, b, &vb[0][0]) == TPS_OK && memcmp(va, vb, sizeof va) == 0,
          "patch points and overlap 0 are the defaults: %s", tps_context_errmsg(ctx));
    /* The limits the constants state. */
    tps_fit_options lim = explicit_defaults;
    lim.patch_points = TPS_MIN_PATCH_POINTS - 1;
    CHECK(tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &lim) == NULL &&
              tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT,
          "patch points below TPS_MIN_PATCH_POINTS");
    lim.patch_points = TPS_MIN_PATCH_POINTS * 10;
    lim.overlap = TPS_MAX_OVERLAP * 1.01;
    CHECK(tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &lim) == NULL &&
              tps_context_errno(ctx) == TPS_ERR_INVALID_ARGUMENT,
          "an overlap above TPS_MAX_OVERLAP");
    lim.overlap = TPS_MAX_OVERLAP;
    tps_model *c = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &lim);
    CHECK(c != NULL, "overlap TPS_MAX_OVERLAP: %s", tps_context_errmsg(ctx));
    tps_model_destroy(a);
    tps_model_destroy(b);
    tps_model_destroy(c);
    tps_context_destroy(ctx);
}

static void model_info(void)
{
    tps_context *ctx = tps_context_create();
    const double *zp = z, lambda = 0;
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.device = TPS_DEVICE_CPU;
    for (int local = 0; local < 2; ++local) {
        fo.mode = local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL;
        fo.patch_points = 100;
        tps_model *m = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &fo);
        static double v[H][W];
        tps_model_info info;
        CHECK(m && evaluate(ctx, m, &v[0][0]) == TPS_OK &&
                  tps_model_get_info(ctx, m, &info) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        if (!m)
            continue;
        /* Global: every point for every pixel. Local: a pixel blends a few
         * patches, each a share of the points. */
        if (local)
            CHECK(info.n_patches > 4 && info.pairs_per_pixel > 2.0 * TPS_MIN_PATCH_POINTS &&
                      info.pairs_per_pixel < 0.5 * (double)info.n_points,
                  "local: %g pairs per pixel, %zu points, %zu patches", info.pairs_per_pixel,
                  info.n_points, info.n_patches);
        else
            CHECK(info.pairs_per_pixel == (double)info.n_points, "global: %g pairs per pixel",
                  info.pairs_per_pixel);
        CHECK(info.device_uploads == 0, "uploads after CPU evaluations: %zu",
              info.device_uploads);
        tps_model_destroy(m);
    }
    const char *cpu = tps_cpu_description();
    CHECK(strcmp(cpu, "avx512") == 0 || strcmp(cpu, "avx2") == 0 || strcmp(cpu, "generic") == 0,
          "CPU kernel \"%s\"", cpu);
    tps_context_destroy(ctx);
}

static void cell_centre(void)
{
    /* A rotated grid with a UTM-sized origin. */
    const double gt[6] = {500000.25, 2.5, 0.75, 4100000.5, -0.5, -3.25};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 7, 11, 5, 3);
    const double ij[4][2] = {{0, 0}, {7, 11}, {123, 45}, {-3, 1e6}};
    for (int k = 0; k < 4; ++k) {
        const double i = ij[k][0], j = ij[k][1];
        double cx = NAN, cy = NAN;
        tps_grid_cell_centre(&g, i, j, &cx, &cy);
        /* GDAL's: the pixel's corner (i, j) moved half a pixel on. */
        const double gx = gt[0] + (i + 0.5) * gt[1] + (j + 0.5) * gt[2];
        const double gy = gt[3] + (i + 0.5) * gt[4] + (j + 0.5) * gt[5];
        CHECK(fabs(cx - gx) <= 1e-15 * fabs(gx) && fabs(cy - gy) <= 1e-15 * fabs(gy),
              "cell (%g, %g): (%.17g, %.17g), GDAL's (%.17g, %.17g)", i, j, cx, cy, gx, gy);
        /* tps.h's order of operations. */
        volatile double xa = g.x0 + j * g.row_dx, ya = g.y0 + j * g.row_dy;
        volatile double xb = i * g.col_dx, yb = i * g.col_dy;
        CHECK(cx == xa + xb && cy == ya + yb, "cell (%g, %g): not (x0 + j row_dx) + i col_dx", i,
              j);
    }
}

int main(void)
{
    for (int i = 0; i < N; ++i) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = franke(x[i], y[i]);
    }
    null_context();
    zero_options();
    model_info();
    cell_centre();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

/* test_deriv.c: derivative quantities (TPS_QUANTITY_*) on the CPU, against
 * references that do not share their code:
 *  - a plane z = a + b x + c y through the points: the spline is the plane,
 *    so dz/dx = b, dz/dy = c, laplacian 0, slope and aspect by gdaldem's
 *    own formulas (written here as gdaldem writes them), on a rotated grid;
 *  - a wiggly field (Franke's function) in a projected-CRS-like frame:
 *    dz/dx and dz/dy against 4th-order central differences of the value
 *    (tps_evaluate_points, double), the laplacian against the 5-point
 *    stencil, away from the data points (where the spline is only C1 and
 *    the laplacian has a log singularity);
 *  - exactly at a data point: gradient finite, laplacian NaN;
 *  - any window or thread count gives the same bytes; derivative outputs
 *    mixed with value outputs leave the values' bytes unchanged;
 *  - a LOCAL model and an unknown quantity are refused. */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "testdata.h"

#define DEG (180.0 / 3.14159265358979323846)

static tps_model *fit(tps_context *ctx, size_t n, const double *x, const double *y,
                      size_t n_bands, const double *const *z, const double *lambda,
                      tps_mode mode)
{
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.device = TPS_DEVICE_CPU;
    fo.mode = mode;
    fo.num_threads = 2;
    tps_model *m = tps_model_create(ctx, n, x, y, n_bands, z, lambda, &fo);
    CHECK(m != NULL, "fit: %s", tps_context_errmsg(ctx));
    return m;
}

static tps_status eval(tps_context *ctx, const tps_model *m, const double gt[6], size_t c0,
                       size_t r0, size_t nc, size_t nr, size_t n_out, const tps_output *o,
                       int threads)
{
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, c0, r0, nc, nr);
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.num_threads = threads;
    return tps_evaluate_grid(ctx, m, &g, n_out, o, &eo);
}

/* gdaldem's aspect (GDALAspectAlg, azimuth form) from its window sums
 * dx ~ east - west, dy ~ south - north; here from the gradient (dy = -dz/dy). */
static double gdaldem_aspect(double dzdx, double dzdy)
{
    double aspect = atan2(-dzdy, -dzdx) * DEG;
    aspect = aspect > 90.0 ? 450.0 - aspect : 90.0 - aspect;
    return aspect == 360.0 ? 0.0 : aspect;
}

static void plane(void)
{
    enum { N = 80, W = 37, H = 23 };
    const double a = 12.5, b = 0.013, c = -0.021;
    double x[N], y[N], z[N];
    for (int i = 0; i < N; ++i) {
        x[i] = 400000 + 3000 * uniform();
        y[i] = 5000000 + 2000 * uniform();
        z[i] = a + b * x[i] + c * y[i];
    }
    tps_context *ctx = tps_context_create();
    const double *zp = z, lambda = 0;
    tps_model *m = fit(ctx, N, x, y, 1, &zp, &lambda, TPS_MODE_GLOBAL);
    if (!m)
        return;
    /* Rotated by ~17 degrees, rows going south-east: any mix-up of grid
     * axes and CRS axes would rotate the gradient. */
    const double gt[6] = {399500, 80 * cos(0.3), 80 * sin(0.3), 5002100, 80 * sin(0.3),
                          -80 * cos(0.3)};
    static double out[5][H][W];
    tps_output o[5];
    for (int q = 0; q < 5; ++q)
        o[q] = (tps_output){0, out[q], TPS_FLOAT64, 8, 8 * W, (tps_quantity)(q + 1)};
    CHECK(eval(ctx, m, gt, 0, 0, W, H, 5, o, 2) == TPS_OK, "%s", tps_context_errmsg(ctx));
    const double slope = atan(sqrt(b * b + c * c)) * DEG, aspect = gdaldem_aspect(b, c);
    double e[5] = {0};
    for (int r = 0; r < H; ++r)
        for (int k = 0; k < W; ++k) {
            e[0] = fmax(e[0], fabs(out[0][r][k] - b) / fabs(b));
            e[1] = fmax(e[1], fabs(out[1][r][k] - c) / fabs(c));
            e[2] = fmax(e[2], fabs(out[2][r][k] - slope));
            e[3] = fmax(e[3], fabs(out[3][r][k] - aspect));
            /* |lap| against the scale of a second derivative here: the
             * gradient over the extent */
            e[4] = fmax(e[4], fabs(out[4][r][k]) / (fabs(c) / 3000));
        }
    printf("plane: dzdx %.1e, dzdy %.1e (relative), slope %.1e, aspect %.1e deg, |lap| %.1e\n",
           e[0], e[1], e[2], e[3], e[4]);
    CHECK(e[0] < 1e-9 && e[1] < 1e-9, "gradient off: %g %g", e[0], e[1]);
    /* The aspect's error in radians is the gradient's direction error, of
     * the order of its relative error: the same 1e-9 bound, in degrees.
     * (1e-9 degrees failed with OpenBLAS's Haswell/SkylakeX kernels, under
     * valgrind and on AVX2/AVX-512 hosts: 1.3e-9 deg from 6e-11 relative.) */
    CHECK(e[2] < 1e-9 * DEG && e[3] < 1e-9 * DEG, "slope %g / aspect %g degrees off", e[2],
          e[3]);
    CHECK(e[4] < 1e-6, "laplacian of a plane: %g", e[4]);
    /* gdaldem's aspect against ours on the four quadrants and the axes. */
    const double dirs[][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}, {1, 2}, {-3, 1}, {-1, -1}, {2, -5}};
    for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; ++k) {
        double zq[N];
        for (int i = 0; i < N; ++i)
            zq[i] = dirs[k][0] * 1e-3 * x[i] + dirs[k][1] * 1e-3 * y[i];
        const double *zqp = zq;
        tps_model *mq = fit(ctx, N, x, y, 1, &zqp, &lambda, TPS_MODE_GLOBAL);
        double asp[2][3];
        tps_output oq = {0, asp, TPS_FLOAT64, 8, 24, TPS_QUANTITY_ASPECT};
        CHECK(eval(ctx, mq, gt, 5, 5, 3, 2, 1, &oq, 1) == TPS_OK, "%s", tps_context_errmsg(ctx));
        const double want = gdaldem_aspect(dirs[k][0] * 1e-3, dirs[k][1] * 1e-3);
        /* Angles: 359.99999999999994 and 0 are 6e-14 degrees apart. */
        CHECK(fabs(remainder(asp[1][2] - want, 360.0)) < 1e-9,
              "direction %zu: aspect %.12g, gdaldem %.12g", k, asp[1][2], want);
        tps_model_destroy(mq);
    }
    tps_model_destroy(m);
    tps_context_destroy(ctx);
}

/* The wiggly field against finite differences of the value. Every cell,
 * or every third row and column with TPS_TEST_QUICK=1 (valgrind,
 * scripts/valgrind_tests.py: each difference evaluates a padded tile). */
static int fd_stride = 1;

enum { NP = 400, GW = 60, GH = 45 };
static double fx[NP], fy[NP], fz[2][NP];
static const double X0 = 500000, Y0 = 4000000, EXT = 2000;

static double value_at(tps_context *ctx, const tps_model *m, size_t band, double x, double y)
{
    double v = NAN;
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    tps_evaluate_points(ctx, m, band, 1, &x, &y, &v, &eo);
    return v;
}

static double nearest_point(double x, double y)
{
    double d2 = INFINITY;
    for (int i = 0; i < NP; ++i)
        d2 = fmin(d2, (x - fx[i]) * (x - fx[i]) + (y - fy[i]) * (y - fy[i]));
    return sqrt(d2);
}

static void finite_differences(void)
{
    for (int i = 0; i < NP; ++i) {
        const double u = uniform(), v = uniform();
        fx[i] = X0 + EXT * u;
        fy[i] = Y0 + EXT * v;
        fz[0][i] = 300 * franke(u, v);
        fz[1][i] = (i % 7 == 0) ? NAN : 300 * franke(u, v) + 20 * (uniform() - 0.5);
    }
    /* Point 3 on whole metres, so that a grid cell can sit exactly on it. */
    fx[3] = floor(fx[3]);
    fy[3] = floor(fy[3]);
    tps_context *ctx = tps_context_create();
    const double *zp[2] = {fz[0], fz[1]}, lambda[2] = {0, 50};
    tps_model *m = fit(ctx, NP, fx, fy, 2, zp, lambda, TPS_MODE_GLOBAL);
    if (!m)
        return;
    const double gt[6] = {X0 - 100, 2200.0 / GW, 0, Y0 + 2100, 0, -2200.0 / GH};
    static double out[2][3][GH][GW];
    tps_output o[6];
    for (int b = 0; b < 2; ++b)
        for (int q = 0; q < 3; ++q)
            o[3 * b + q] = (tps_output){(size_t)b, out[b][q], TPS_FLOAT64, 8, 8 * GW,
                                        q == 0 ? TPS_QUANTITY_DZDX
                                        : q == 1 ? TPS_QUANTITY_DZDY
                                                 : TPS_QUANTITY_LAPLACIAN};
    CHECK(eval(ctx, m, gt, 0, 0, GW, GH, 6, o, 2) == TPS_OK, "%s", tps_context_errmsg(ctx));

    /* 4th-order central differences with h = 0.5 m: truncation
     * h^4 f^(5) / 30, rounding ~1e-16 sum_i |w_i phi_i| / h. The spline's
     * third and higher derivatives are singular at the points (f^(5) ~
     * w / r^3), so cells within 20 m of a point are left out; beyond, both
     * errors are far below 1e-7 of the gradient's scale. The laplacian:
     * the 5-point stencil at h = 2 m and 1 m, Richardson-extrapolated
     * (truncation O(h^4), f'''' ~ w / r^2 near a point), 25 m from every
     * point, within 1e-5 of the laplacian's scale. */
    for (int b = 0; b < 2; ++b) {
        double worst_g = 0, worst_l = 0, grad_scale = 0, lap_scale = 0;
        int n_g = 0, n_l = 0;
        for (int r = 0; r < GH; ++r)
            for (int k = 0; k < GW; ++k) {
                grad_scale = fmax(grad_scale, fmax(fabs(out[b][0][r][k]), fabs(out[b][1][r][k])));
                if (isfinite(out[b][2][r][k]))
                    lap_scale = fmax(lap_scale, fabs(out[b][2][r][k]));
            }
        int n_cells = 0;
        for (int r = 0; r < GH; r += fd_stride)
            for (int k = 0; k < GW; k += fd_stride) {
                ++n_cells;
                const double x = gt[0] + (k + 0.5) * gt[1], y = gt[3] + (r + 0.5) * gt[5];
                const double dist = nearest_point(x, y);
                if (dist > 20) {
                    const double h = 0.5;
                    double d[2];
                    for (int axis = 0; axis < 2; ++axis) {
                        const double ex = axis == 0 ? h : 0, ey = axis == 0 ? 0 : h;
                        const double f1 = value_at(ctx, m, b, x + ex, y + ey),
                                     fm1 = value_at(ctx, m, b, x - ex, y - ey),
                                     f2 = value_at(ctx, m, b, x + 2 * ex, y + 2 * ey),
                                     fm2 = value_at(ctx, m, b, x - 2 * ex, y - 2 * ey);
                        d[axis] = (8 * (f1 - fm1) - (f2 - fm2)) / (12 * h);
                    }
                    worst_g = fmax(worst_g, fmax(fabs(d[0] - out[b][0][r][k]),
                                                 fabs(d[1] - out[b][1][r][k])));
                    ++n_g;
                }
                if (dist > 25) {
                    double lap[2];
                    for (int s = 0; s < 2; ++s) {
                        const double h = s == 0 ? 2.0 : 1.0;
                        lap[s] = (value_at(ctx, m, b, x + h, y) + value_at(ctx, m, b, x - h, y) +
                                  value_at(ctx, m, b, x, y + h) + value_at(ctx, m, b, x, y - h) -
                                  4 * value_at(ctx, m, b, x, y)) /
                                 (h * h);
                    }
                    const double richardson = (4 * lap[1] - lap[0]) / 3;
                    worst_l = fmax(worst_l, fabs(richardson - out[b][2][r][k]));
                    ++n_l;
                }
            }
        printf("band %d: gradient vs 4th-order differences %.2e x max|grad| (%d cells), "
               "laplacian vs 5-point stencil %.2e x max|lap| (%d cells)\n",
               b, worst_g / grad_scale, n_g, worst_l / lap_scale, n_l);
        CHECK(n_g > n_cells / 2 && n_l > n_cells / 4, "too few cells checked: %d %d of %d", n_g,
              n_l, n_cells);
        CHECK(worst_g <= 1e-7 * grad_scale, "band %d: gradient off by %.3g x scale", b,
              worst_g / grad_scale);
        CHECK(worst_l <= 1e-5 * lap_scale, "band %d: laplacian off by %.3g x scale", b,
              worst_l / lap_scale);
    }

    /* Cell (0, 0) exactly on data point 3 (the same arithmetic scales both):
     * the gradient is finite, the laplacian NaN (infinite), the
     * neighbours' finite. */
    {
        const double gp[6] = {fx[3] - 3.5, 7, 0, fy[3] + 3.5, 0, -7};
        double vals[2][3][3];
        tps_output op[2] = {{0, vals[0], TPS_FLOAT64, 8, 24, TPS_QUANTITY_DZDX},
                            {0, vals[1], TPS_FLOAT64, 8, 24, TPS_QUANTITY_LAPLACIAN}};
        tps_grid g;
        tps_grid_from_geotransform(&g, gp, 0, 0, 3, 3);
        CHECK(g.x0 == fx[3] && g.y0 == fy[3], "cell (0, 0) misses the point");
        CHECK(eval(ctx, m, gp, 0, 0, 3, 3, 2, op, 1) == TPS_OK, "%s", tps_context_errmsg(ctx));
        int finite_elsewhere = 1;
        for (int r = 0; r < 3; ++r)
            for (int k = 0; k < 3; ++k)
                if (r != 0 || k != 0)
                    finite_elsewhere &= isfinite(vals[1][r][k]) && isfinite(vals[0][r][k]);
        CHECK(isfinite(vals[0][0][0]) && isnan(vals[1][0][0]) && finite_elsewhere,
              "at a data point: dzdx %g (finite), laplacian %g (NaN)", vals[0][0][0],
              vals[1][0][0]);
    }

    /* Windows, threads, mixed requests: the same bytes. */
    {
        static double whole[4][GH][GW], part[4][GH][GW], values_only[2][GH][GW];
        const tps_quantity qs[4] = {TPS_QUANTITY_VALUE, TPS_QUANTITY_SLOPE, TPS_QUANTITY_VALUE,
                                    TPS_QUANTITY_ASPECT};
        const size_t bands[4] = {0, 0, 1, 1};
        tps_output ow[4], ov[2];
        for (int k = 0; k < 4; ++k)
            ow[k] = (tps_output){bands[k], whole[k], TPS_FLOAT64, 8, 8 * GW, qs[k]};
        CHECK(eval(ctx, m, gt, 0, 0, GW, GH, 4, ow, 1) == TPS_OK, "%s", tps_context_errmsg(ctx));
        for (int k = 0; k < 2; ++k)
            ov[k] = (tps_output){(size_t)k, values_only[k], TPS_FLOAT64, 8, 8 * GW};
        CHECK(eval(ctx, m, gt, 0, 0, GW, GH, 2, ov, 1) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(values_only[0], whole[0], sizeof values_only[0]) == 0 &&
                  memcmp(values_only[1], whole[2], sizeof values_only[1]) == 0,
              "values differ when derivative outputs ride along");
        memset(part, 0xff, sizeof part);
        const size_t wins[][4] = {{0, 0, 17, 9}, {17, 0, 43, 9}, {0, 9, 60, 1}, {0, 10, 31, 35},
                                  {31, 10, 29, 35}};
        for (size_t w = 0; w < 5; ++w) {
            tps_output op[4];
            for (int k = 0; k < 4; ++k)
                op[k] = (tps_output){bands[k], &part[k][wins[w][1]][wins[w][0]], TPS_FLOAT64, 8,
                                     8 * GW, qs[k]};
            CHECK(eval(ctx, m, gt, wins[w][0], wins[w][1], wins[w][2], wins[w][3], 4, op, 3) ==
                      TPS_OK,
                  "%s", tps_context_errmsg(ctx));
        }
        CHECK(memcmp(whole, part, sizeof whole) == 0, "windows and threads change the bytes");
        /* Float32 is the double rounded once. */
        static float f32[GH][GW];
        tps_output of = {1, f32, TPS_FLOAT32, 4, 4 * GW, TPS_QUANTITY_ASPECT};
        CHECK(eval(ctx, m, gt, 0, 0, GW, GH, 1, &of, 2) == TPS_OK, "%s", tps_context_errmsg(ctx));
        int same = 1;
        for (int r = 0; r < GH; ++r)
            for (int k = 0; k < GW; ++k)
                same &= f32[r][k] == (float)whole[3][r][k];
        CHECK(same, "Float32 aspect is not the rounded Float64 one");
    }

    /* An unknown quantity is refused. */
    {
        double v[4];
        tps_output bad = {0, v, TPS_FLOAT64, 8, 16, (tps_quantity)42};
        CHECK(eval(ctx, m, gt, 0, 0, 2, 2, 1, &bad, 1) == TPS_ERR_INVALID_ARGUMENT,
              "quantity 42 accepted");
    }
    tps_model_destroy(m);
    tps_context_destroy(ctx);
}

/* LOCAL models: refused with a message naming the need for GLOBAL. */
static void local_refused(void)
{
    enum { N = 3000 };
    static double x[N], y[N], z[N];
    for (int i = 0; i < N; ++i) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = franke(x[i], y[i]);
    }
    tps_context *ctx = tps_context_create();
    const double *zp = z, lambda = 0;
    tps_model *m = fit(ctx, N, x, y, 1, &zp, &lambda, TPS_MODE_LOCAL);
    if (!m)
        return;
    const double gt[6] = {0, 0.1, 0, 1, 0, -0.1};
    double v[100];
    tps_output o = {0, v, TPS_FLOAT64, 8, 80, TPS_QUANTITY_SLOPE};
    CHECK(eval(ctx, m, gt, 0, 0, 10, 10, 1, &o, 1) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "GLOBAL") != NULL,
          "local model with slope: %s", tps_context_errmsg(ctx));
    printf("local model says: %s\n", tps_context_errmsg(ctx));
    o.quantity = TPS_QUANTITY_VALUE;
    CHECK(eval(ctx, m, gt, 0, 0, 10, 10, 1, &o, 1) == TPS_OK, "%s", tps_context_errmsg(ctx));
    tps_model_destroy(m);
    tps_context_destroy(ctx);
}

int main(void)
{
    const char *quick = getenv("TPS_TEST_QUICK");
    if (quick && strcmp(quick, "1") == 0)
        fd_stride = 3;
    plane();
    finite_differences();
    local_refused();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

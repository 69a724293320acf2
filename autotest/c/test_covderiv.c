/* test_covderiv.c: derivative quantities of a model with covariates
 * (issue 13; tps_eval_options.covariate_derivatives).
 *
 *   test_covderiv        the CPU path: with two covariates,
 *     - dzdx, dzdy and the laplacian given derivative planes are exactly
 *       (bit for bit) those given zero planes plus sum_k b_k times the
 *       planes, b_k from tps_model_get_covariate_coefficients;
 *     - slope, aspect and the three curvatures are gdaldem's and GRASS's
 *       formulas (written out here) of those derivatives, the spline's
 *       second derivatives taken from the engine's sums of the spline
 *       alone (core/sums.h, its affine part added);
 *     - a NaN in a plane makes NaN only the outputs that read that plane;
 *       Float32 planes are the doubles they hold; planes a request does not
 *       read may be NULL; missing planes are refused, naming the quantity,
 *       the covariate and the plane.
 *   test_covderiv gpu    the GPU against the CPU for every derivative
 *     quantity with covariate planes (skipped, 77, where gpu_probe.h finds
 *     no GPU). */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval.h"
#include "gpu_probe.h"
#include "testdata.h"

enum { NP = 200, NC = 2, W = 23, H = 17 };
static double px[NP], py[NP], pz[NP], pc[NC][NP];

static double cov0(double x, double y)
{
    return 40 * exp(-((x - 2000) * (x - 2000) + (y - 1500) * (y - 1500)) / 1e6) + 0.01 * x;
}

static double cov1(double x, double y)
{
    return 3 * sin(x / 900) * cos(y / 700) + 1e-6 * x * y;
}

static tps_model *fit(tps_context *ctx)
{
    for (int i = 0; i < NP; ++i) {
        px[i] = 4000 * uniform();
        py[i] = 3000 * uniform();
        pc[0][i] = cov0(px[i], py[i]);
        pc[1][i] = cov1(px[i], py[i]);
        pz[i] = sin(px[i] / 700) + 0.05 * pc[0][i] - 0.3 * pc[1][i] + 0.1 * uniform();
    }
    /* offset coordinates (a projected CRS) so that the model's scale matters */
    double x[NP], y[NP];
    for (int i = 0; i < NP; ++i) {
        x[i] = 500000 + px[i];
        y[i] = 6000000 + py[i];
    }
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.device = TPS_DEVICE_CPU;
    fo.mode = TPS_MODE_GLOBAL;
    fo.n_covariates = NC;
    const double *c[NC] = {pc[0], pc[1]};
    fo.covariates = c;
    const double lambda = 3.0, *z = pz;
    return tps_model_create(ctx, NP, x, y, 1, &z, &lambda, &fo);
}

/* A rotated grid over the points (the engine does not care; the planes are
 * in x and y whatever the grid). */
static const double GT[6] = {500300, 150, 40, 6002800, 30, -160};

static double vals[NC][H][W];                          /* the covariates */
static double dplanes[NC * TPS_COV_DERIVATIVES][H][W]; /* their "derivatives" */
static double zeros[NC * TPS_COV_DERIVATIVES][H][W];
static tps_plane pv[NC], pd[NC * TPS_COV_DERIVATIVES], p0[NC * TPS_COV_DERIVATIVES];

static void make_planes(void)
{
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < W; ++c) {
            const double x = GT[0] + (c + 0.5) * GT[1] + (r + 0.5) * GT[2] - 500000;
            const double y = GT[3] + (c + 0.5) * GT[4] + (r + 0.5) * GT[5] - 6000000;
            vals[0][r][c] = cov0(x, y);
            vals[1][r][c] = cov1(x, y);
            /* any numbers will do: the engine takes them as given */
            for (int q = 0; q < NC * TPS_COV_DERIVATIVES; ++q)
                dplanes[q][r][c] = (uniform() - 0.5) * (q % 5 < 2 ? 0.05 : 1e-4);
        }
    for (int k = 0; k < NC; ++k)
        pv[k] = (tps_plane){vals[k], TPS_FLOAT64, 8, 8 * W};
    for (int q = 0; q < NC * TPS_COV_DERIVATIVES; ++q) {
        pd[q] = (tps_plane){dplanes[q], TPS_FLOAT64, 8, 8 * W};
        p0[q] = (tps_plane){zeros[q], TPS_FLOAT64, 8, 8 * W};
    }
}

static const tps_quantity QS[] = {TPS_QUANTITY_DZDX,
                                  TPS_QUANTITY_DZDY,
                                  TPS_QUANTITY_SLOPE,
                                  TPS_QUANTITY_ASPECT,
                                  TPS_QUANTITY_LAPLACIAN,
                                  TPS_QUANTITY_PROFILE_CURVATURE,
                                  TPS_QUANTITY_TANGENTIAL_CURVATURE,
                                  TPS_QUANTITY_MEAN_CURVATURE};
enum { NQ = sizeof QS / sizeof QS[0] };

/* Every quantity of QS into out[q]. */
static tps_status eval_all(tps_context *ctx, const tps_model *m, const tps_plane *derivs,
                           tps_device device, double out[NQ][H][W])
{
    tps_grid g;
    tps_grid_from_geotransform(&g, GT, 0, 0, W, H);
    tps_output o[NQ];
    for (int q = 0; q < NQ; ++q)
        o[q] = (tps_output){0, out[q], TPS_FLOAT64, 8, 8 * W, QS[q]};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = device;
    eo.num_threads = 3;
    eo.covariates = pv;
    eo.covariate_derivatives = derivs;
    return tps_evaluate_grid(ctx, m, &g, NQ, o, &eo);
}

static double deg(double r)
{
    return r * 57.295779513082320876798154814105;
}

static void cpu_checks(tps_context *ctx, const tps_model *m)
{
    static double base[NQ][H][W], with[NQ][H][W];
    CHECK(eval_all(ctx, m, p0, TPS_DEVICE_CPU, base) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(eval_all(ctx, m, pd, TPS_DEVICE_CPU, with) == TPS_OK, "%s", tps_context_errmsg(ctx));
    double b[NC];
    CHECK(tps_model_get_covariate_coefficients(ctx, m, 0, b) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    /* the spline's own second derivatives (sums.h), in x and y */
    const tps_model *md = m;
    tps_grid g;
    tps_grid_from_geotransform(&g, GT, 0, 0, W, H);
    const tps_window w = tps_window_of(md, &g);
    const double s = md->scale;
    size_t exact_bad = 0, n = 0;
    double worst[NQ] = {0};
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < W; ++c, ++n) {
            double gx = 0.0, gy = 0.0, gl = 0.0, hxx = 0.0, hxy = 0.0, hyy = 0.0;
            for (int k = 0; k < NC; ++k) {
                const int q = k * TPS_COV_DERIVATIVES;
                gx += b[k] * dplanes[q + TPS_COV_DX][r][c];
                gy += b[k] * dplanes[q + TPS_COV_DY][r][c];
                gl += b[k] * (dplanes[q + TPS_COV_DXX][r][c] + dplanes[q + TPS_COV_DYY][r][c]);
                hxx += b[k] * dplanes[q + TPS_COV_DXX][r][c];
                hxy += b[k] * dplanes[q + TPS_COV_DXY][r][c];
                hyy += b[k] * dplanes[q + TPS_COV_DYY][r][c];
            }
            /* exactly the zero-plane result plus the covariates' term */
            const double fx = base[0][r][c] + gx, fy = base[1][r][c] + gy;
            exact_bad += with[0][r][c] != fx || with[1][r][c] != fy ||
                         with[4][r][c] != base[4][r][c] + gl;
            double u, v;
            tps_cell_centre(&w, (double)c, (double)r, &u, &v);
            tps_derivs d;
            tps_spline_sums(md->n, md->u, md->v, md->half_weights[0],
                            TPS_NEEDS_GRADIENT | TPS_NEEDS_HESSIAN, 1, &u, &v, &d);
            tps_derivs_add_affine(&d, md->affine[0], u, v);
            const double fxx = d.fuu / (s * s) + hxx, fxy = d.fuv / (s * s) + hxy,
                         fyy = d.fvv / (s * s) + hyy;
            const double p = fx * fx + fy * fy, qq = 1 + p;
            double ref[NQ];
            ref[0] = fx;
            ref[1] = fy;
            ref[2] = deg(atan(sqrt(p)));
            ref[3] = fmod(deg(atan2(-fx, -fy)) + 360.0, 360.0);
            ref[4] = fxx + fyy;
            ref[5] = (fxx * fx * fx + 2 * fxy * fx * fy + fyy * fy * fy) / (p * qq * sqrt(qq));
            ref[6] = (fxx * fy * fy - 2 * fxy * fx * fy + fyy * fx * fx) / (p * sqrt(qq));
            ref[7] = ((1 + fy * fy) * fxx - 2 * fxy * fx * fy + (1 + fx * fx) * fyy) /
                     (2 * qq * sqrt(qq));
            for (int q = 0; q < NQ; ++q) {
                double e = fabs(with[q][r][c] - ref[q]) / fmax(fabs(ref[q]), 1e-300);
                if (QS[q] == TPS_QUANTITY_ASPECT)
                    e = fabs(fmod(with[q][r][c] - ref[q] + 540.0, 360.0) - 180.0) / 360.0;
                worst[q] = max_nan(worst[q], e);
            }
        }
    CHECK(exact_bad == 0, "dzdx, dzdy, laplacian not exactly base + sum b_k planes at %zu of %zu",
          exact_bad, n);
    for (int q = 0; q < NQ; ++q)
        CHECK(worst[q] <= 1e-9, "%s: %.3g relative off the formula",
              tps_quantity_info(QS[q])->name, worst[q]);
    /* the covariates' term matters: the planes changed every output */
    CHECK(with[2][3][4] != base[2][3][4] && with[7][3][4] != base[7][3][4], "planes ignored");
    printf("CPU: %zu pixels, dzdx/dzdy/laplacian exact, formulas within %.1e\n", n,
           fmax(worst[5], fmax(worst[6], worst[7])));

    /* NaN in a plane: only the outputs that read it */
    static double nan_out[NQ][H][W];
    const double keep = dplanes[TPS_COV_DERIVATIVES + TPS_COV_DXY][5][6];
    dplanes[TPS_COV_DERIVATIVES + TPS_COV_DXY][5][6] = NAN;
    CHECK(eval_all(ctx, m, pd, TPS_DEVICE_CPU, nan_out) == TPS_OK, "%s", tps_context_errmsg(ctx));
    dplanes[TPS_COV_DERIVATIVES + TPS_COV_DXY][5][6] = keep;
    int ok = 1;
    for (int q = 0; q < NQ; ++q) {
        const int reads_dxy = QS[q] >= TPS_QUANTITY_PROFILE_CURVATURE;
        ok &= reads_dxy ? isnan(nan_out[q][5][6]) : nan_out[q][5][6] == with[q][5][6];
        ok &= nan_out[q][5][7] == with[q][5][7];
    }
    CHECK(ok, "a NaN d2c/dxdy: NaN curvatures there, nothing else");
    const double keep_dx = dplanes[TPS_COV_DX][2][2];
    dplanes[TPS_COV_DX][2][2] = INFINITY;
    CHECK(eval_all(ctx, m, pd, TPS_DEVICE_CPU, nan_out) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(isnan(nan_out[0][2][2]) && isnan(nan_out[2][2][2]) && nan_out[1][2][2] == with[1][2][2],
          "an infinite dc/dx: NaN dzdx and slope, dzdy as before");
    dplanes[TPS_COV_DX][2][2] = keep_dx;

    /* Float32 planes: the doubles they hold */
    static float f32[NC * TPS_COV_DERIVATIVES][H][W];
    static double as64[NC * TPS_COV_DERIVATIVES][H][W], o32[NQ][H][W], o64[NQ][H][W];
    tps_plane pf[NC * TPS_COV_DERIVATIVES], pa[NC * TPS_COV_DERIVATIVES];
    /* Two loops: GCC 12.2 at -O3 stored dplanes itself into as64 when one
     * loop held both assignments (the float rounding lost). */
    for (int q = 0; q < NC * TPS_COV_DERIVATIVES; ++q)
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c)
                f32[q][r][c] = (float)dplanes[q][r][c];
    for (int q = 0; q < NC * TPS_COV_DERIVATIVES; ++q) {
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c)
                as64[q][r][c] = f32[q][r][c];
        pf[q] = (tps_plane){f32[q], TPS_FLOAT32, 4, 4 * W};
        pa[q] = (tps_plane){as64[q], TPS_FLOAT64, 8, 8 * W};
    }
    CHECK(as64[0][0][20] == (double)f32[0][0][20] && as64[0][0][20] != dplanes[0][0][20],
          "the Float32 copy holds the rounded values");
    CHECK(eval_all(ctx, m, pf, TPS_DEVICE_CPU, o32) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(eval_all(ctx, m, pa, TPS_DEVICE_CPU, o64) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(memcmp(o32, o64, sizeof o32) == 0, "Float32 planes");

    /* refusals, and planes a request does not read left out */
    static double one[H][W];
    tps_grid gg;
    tps_grid_from_geotransform(&gg, GT, 0, 0, W, H);
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.covariates = pv;
    tps_output so = {0, one, TPS_FLOAT64, 8, 8 * W, TPS_QUANTITY_SLOPE};
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "slope") &&
              strstr(tps_context_errmsg(ctx), "covariate_derivatives"),
          "no derivative planes: %s", tps_context_errmsg(ctx));
    tps_plane some[NC * TPS_COV_DERIVATIVES];
    memcpy(some, pd, sizeof some);
    for (int k = 0; k < NC; ++k)
        for (int d = TPS_COV_DXX; d <= TPS_COV_DYY; ++d)
            some[k * TPS_COV_DERIVATIVES + d].data = NULL;
    eo.covariate_derivatives = some;
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_OK && one[3][3] == with[2][3][3],
          "a slope without the second-derivative planes: %s", tps_context_errmsg(ctx));
    so.quantity = TPS_QUANTITY_LAPLACIAN;
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "laplacian needs covariate 1's d2c/dx2"),
          "a laplacian without d2c/dx2: %s", tps_context_errmsg(ctx));
    some[TPS_COV_DXX] = pd[TPS_COV_DXX];
    some[TPS_COV_DYY] = pd[TPS_COV_DYY];
    some[TPS_COV_DERIVATIVES + TPS_COV_DXX] = pd[TPS_COV_DERIVATIVES + TPS_COV_DXX];
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "covariate 2's d2c/dy2"),
          "a laplacian without covariate 2's d2c/dy2: %s", tps_context_errmsg(ctx));
    some[TPS_COV_DERIVATIVES + TPS_COV_DYY] = pd[TPS_COV_DERIVATIVES + TPS_COV_DYY];
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_OK && one[3][3] == with[4][3][3],
          "a laplacian without d2c/dxdy: %s", tps_context_errmsg(ctx));
    so.quantity = TPS_QUANTITY_MEAN_CURVATURE;
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "d2c/dxdy"),
          "a curvature without d2c/dxdy: %s", tps_context_errmsg(ctx));
    some[TPS_COV_DXY].type = (tps_type)7;
    some[TPS_COV_DXY].data = dplanes[TPS_COV_DXY];
    some[TPS_COV_DERIVATIVES + TPS_COV_DXY] = pd[TPS_COV_DERIVATIVES + TPS_COV_DXY];
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_ERR_INVALID_ARGUMENT &&
              strstr(tps_context_errmsg(ctx), "unknown type"),
          "a plane of an unknown type: %s", tps_context_errmsg(ctx));
    /* values and standard errors never read them */
    eo.covariate_derivatives = NULL;
    so.quantity = TPS_QUANTITY_STANDARD_ERROR;
    CHECK(tps_evaluate_grid(ctx, m, &gg, 1, &so, &eo) == TPS_OK && one[2][2] > 0,
          "a standard error without derivative planes: %s", tps_context_errmsg(ctx));
}

static void gpu_parity(tps_context *ctx, const tps_model *m)
{
    static double cpu[NQ][H][W], gpu[NQ][H][W];
    CHECK(eval_all(ctx, m, pd, TPS_DEVICE_CPU, cpu) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(eval_all(ctx, m, pd, TPS_DEVICE_GPU, gpu) == TPS_OK, "GPU: %s",
          tps_context_errmsg(ctx));
    for (int q = 0; q < NQ; ++q) {
        double scale = 0.0, worst = 0.0;
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c)
                scale = fmax(scale, fabs(cpu[q][r][c]));
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c) {
                double e = fabs(gpu[q][r][c] - cpu[q][r][c]);
                if (QS[q] == TPS_QUANTITY_ASPECT)
                    e = fabs(fmod(gpu[q][r][c] - cpu[q][r][c] + 540.0, 360.0) - 180.0);
                worst = max_nan(worst, e / scale);
            }
        printf("GPU vs CPU with covariates, %-20s %.2e x its largest magnitude\n",
               tps_quantity_info(QS[q])->name, worst);
        CHECK(worst <= 1e-9, "%s: GPU off by %.3g", tps_quantity_info(QS[q])->name, worst);
    }
}

int main(int argc, char **argv)
{
    tps_context *ctx = tps_context_create();
    const int gpu = argc > 1 && strcmp(argv[1], "gpu") == 0;
    if (gpu) {
        if (!gpu_required()) { /* an independent probe (gpu_probe.h) */
            tps_context_destroy(ctx);
            return 77;
        }
    }
    tps_model *m = fit(ctx);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (m) {
        make_planes();
        if (gpu)
            gpu_parity(ctx, m);
        else
            cpu_checks(ctx, m);
    }
    tps_model_destroy(m);
    tps_context_destroy(ctx);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

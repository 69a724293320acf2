/* test_curvature.c: the curvature quantities (profile, tangential, mean, as
 * GRASS v.surf.rst defines them) and the quantity table they are rows of,
 * against references that do not share the engine's code:
 *  - the table: every row's name, unit and needs, names found back;
 *  - a tilted plane: the spline is the plane, every curvature 0;
 *  - a quadratic z = a x^2 + b x y + c y^2 + d x + e y through dense points:
 *    the spline approximates it closely inside the points' hull, so its
 *    curvatures are near the quadratic's own (written out here from the
 *    definitions), for a GLOBAL and a LOCAL model: the sign and the factor
 *    of each term (2 fxy fx fy, the powers of q) would show;
 *  - a wiggly field (Franke's function): the curvature bands against the
 *    same formulas applied to central differences of the value band
 *    (tps_evaluate_points) at steps h and h/2: the error shrinks like h^2,
 *    GLOBAL and LOCAL (across many patch edges);
 *  - exactly at a data point the curvatures are NaN (the second
 *    derivatives are infinite), as the laplacian;
 *  - windows and threads give the same bytes, and curvature outputs leave
 *    a request's value bytes unchanged;
 *  - `test_curvature gpu`: every quantity of a global and a local model on
 *    the GPU against the CPU (exit 77, skipped, when a probe of the CUDA
 *    driver that does not use the engine finds no GPU, or the build has no
 *    GPU backend). */
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"
#include "gpu_probe.h"
#include "testdata.h"

enum { N_QUANTITIES = 10 };
static const tps_quantity CURV[3] = {TPS_QUANTITY_PROFILE_CURVATURE,
                                     TPS_QUANTITY_TANGENTIAL_CURVATURE,
                                     TPS_QUANTITY_MEAN_CURVATURE};
static const char *const CURV_NAME[3] = {"profile", "tangential", "mean"};

/* The three curvatures from a surface's derivatives, as the issue (GRASS
 * v.surf.rst) states them; written here independently of quantity.c. */
static void curvatures(double fx, double fy, double fxx, double fxy, double fyy, double k[3])
{
    const double p = fx * fx + fy * fy, q = 1 + p;
    k[0] = p == 0 ? 0 : (fxx * fx * fx + 2 * fxy * fx * fy + fyy * fy * fy) / (p * pow(q, 1.5));
    k[1] = p == 0 ? 0 : (fxx * fy * fy - 2 * fxy * fx * fy + fyy * fx * fx) / (p * pow(q, 0.5));
    k[2] = ((1 + fy * fy) * fxx - 2 * fxy * fx * fy + (1 + fx * fx) * fyy) / (2 * pow(q, 1.5));
}

static tps_model *fit(tps_context *ctx, size_t n, const double *x, const double *y,
                      const double *z, tps_mode mode, size_t patch_points)
{
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.device = TPS_DEVICE_CPU;
    fo.mode = mode;
    fo.num_threads = 2;
    fo.patch_points = patch_points;
    const double lambda = 0;
    tps_model *m = tps_model_create(ctx, n, x, y, 1, &z, &lambda, &fo);
    CHECK(m != NULL, "fit: %s", tps_context_errmsg(ctx));
    return m;
}

static tps_status eval(tps_context *ctx, const tps_model *m, const double gt[6], size_t c0,
                       size_t r0, size_t nc, size_t nr, size_t n_out, const tps_output *o,
                       int threads, tps_device device)
{
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, c0, r0, nc, nr);
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = device;
    eo.num_threads = threads;
    return tps_evaluate_grid(ctx, m, &g, n_out, o, &eo);
}

static double value_at(tps_context *ctx, const tps_model *m, double x, double y)
{
    double v = NAN;
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    CHECK(tps_evaluate_points(ctx, m, 0, 1, &x, &y, &v, &eo) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    return v;
}

/* ---- the table ---- */

static void table(void)
{
    CHECK(tps_quantity_count() == N_QUANTITIES, "%zu quantities", tps_quantity_count());
    for (size_t q = 0; q < tps_quantity_count(); ++q) {
        const tps_quantity_desc *d = tps_quantity_info((tps_quantity)q);
        CHECK(d && d->quantity == (tps_quantity)q && d->name && d->unit && d->description &&
                  d->needs != 0,
              "row %zu", q);
        if (!d)
            continue;
        tps_quantity back = (tps_quantity)99;
        char upper[64];
        snprintf(upper, sizeof upper, "%s", d->name);
        for (char *c = upper; *c; ++c)
            *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        CHECK(tps_quantity_from_name(upper, &back) == TPS_OK && back == (tps_quantity)q,
              "%s is not found back", upper);
        for (size_t r = 0; r < q; ++r)
            CHECK(strcasecmp(d->name, tps_quantity_info((tps_quantity)r)->name) != 0,
                  "two rows named %s", d->name);
    }
    CHECK(tps_quantity_info((tps_quantity)N_QUANTITIES) == NULL &&
              tps_quantity_info((tps_quantity)-1) == NULL,
          "rows beyond the table");
    CHECK(tps_quantity_from_name("curvature", NULL) == TPS_ERR_INVALID_ARGUMENT &&
              tps_quantity_from_name(NULL, NULL) == TPS_ERR_INVALID_ARGUMENT,
          "unknown names");
    const char *names[3] = {"profile_curvature", "tangential_curvature", "mean_curvature"};
    for (int k = 0; k < 3; ++k) {
        const tps_quantity_desc *d = tps_quantity_info(CURV[k]);
        CHECK(d && strcmp(d->name, names[k]) == 0 &&
                  d->needs == (TPS_NEEDS_GRADIENT | TPS_NEEDS_HESSIAN),
              "%s's row", names[k]);
    }
    CHECK(tps_quantity_info(TPS_QUANTITY_VALUE)->needs == TPS_NEEDS_VALUE &&
              tps_quantity_info(TPS_QUANTITY_SLOPE)->needs == TPS_NEEDS_GRADIENT &&
              tps_quantity_info(TPS_QUANTITY_LAPLACIAN)->needs == TPS_NEEDS_LAPLACIAN &&
              strcmp(tps_quantity_info(TPS_QUANTITY_ASPECT)->unit, "degrees") == 0,
          "the older rows");
}

/* ---- a plane: every curvature 0 ---- */

static void plane(void)
{
    enum { N = 120, W = 31, H = 27 };
    double x[N], y[N], z[N], zf[N];
    for (int i = 0; i < N; ++i) {
        x[i] = 400000 + 3000 * uniform();
        y[i] = 5000000 + 2000 * uniform();
        z[i] = 12.5 + 0.013 * x[i] - 0.021 * y[i];
        zf[i] = 7.25; /* flat: p is 0 up to rounding */
    }
    tps_context *ctx = tps_context_create();
    /* Rotated, rows going south-east, part of it outside the points. */
    const double gt[6] = {399500, 110 * cos(0.3), 110 * sin(0.3), 5002100, 110 * sin(0.3),
                          -110 * cos(0.3)};
    for (int flat = 0; flat < 2; ++flat)
        for (int local = 0; local < 2; ++local) {
            tps_model *m = fit(ctx, N, x, y, flat ? zf : z,
                               local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL, local ? 30 : 0);
            if (!m)
                continue;
            static double out[3][H][W];
            tps_output o[3];
            for (int k = 0; k < 3; ++k)
                o[k] = (tps_output){0, out[k], TPS_FLOAT64, 8, 8 * W, CURV[k]};
            CHECK(eval(ctx, m, gt, 0, 0, W, H, 3, o, 2, TPS_DEVICE_CPU) == TPS_OK, "%s",
                  tps_context_errmsg(ctx));
            double worst = 0;
            for (int k = 0; k < 3; ++k)
                for (int r = 0; r < H; ++r)
                    for (int c = 0; c < W; ++c)
                        worst = isfinite(out[k][r][c]) ? fmax(worst, fabs(out[k][r][c])) : INFINITY;
            /* Against the curvature of a feature of the extent's size
             * (1 / 3000 m): the second derivatives of the fitted plane
             * are rounding, as its laplacian's (test_deriv: 1e-6 of the
             * gradient over the extent). */
            printf("%s %s model: max |curvature| %.2e x 1/extent\n", flat ? "flat" : "tilted",
                   local ? "local" : "global", worst * 3000);
            CHECK(worst * 3000 < 1e-6, "%s %s plane: curvature %g", flat ? "flat" : "tilted",
                  local ? "local" : "global", worst);
            tps_model_destroy(m);
        }
    tps_context_destroy(ctx);
}

/* ---- a quadratic: the curvatures of the surface itself ---- */

static const double QA = 0.5, QB = 0.3, QC = 0.2, QD = 0.4, QE = -0.1;
static double quadratic(double x, double y)
{
    return QA * x * x + QB * x * y + QC * y * y + QD * x + QE * y;
}

static void quadratic_surface(int quick)
{
    enum { N = 2000, W = 25, H = 25 };
    static double x[N], y[N], z[N];
    for (int i = 0; i < N; ++i) {
        x[i] = 2 * uniform() - 1;
        y[i] = 2 * uniform() - 1;
        z[i] = quadratic(x[i], y[i]);
    }
    tps_context *ctx = tps_context_create();
    /* Cells over [-0.6, 0.6]^2: inside the hull, away from its edges where
     * the spline's bending-energy minimisation departs from a quadratic. */
    const double gt[6] = {-0.6, 1.2 / W, 0, 0.6, 0, -1.2 / H};
    /* Under valgrind (TPS_TEST_QUICK) the global model of 1,200 points
     * only: the local part's dense solves take minutes there. */
    for (int local = 0; local < (quick ? 1 : 2); ++local) {
        /* A local model's surface departs from the quadratic more than the
         * global one's (each patch spline bends towards its patch's edges:
         * with 150 points a patch its laplacian is 70 % off here), so few,
         * large patches, still blended: cells of up to 1,000 points. */
        tps_model *m = fit(ctx, quick ? 1200 : N, x, y, z,
                           local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL, local ? 1000 : 0);
        if (!m)
            continue;
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK && (!local || info.n_patches >= 4),
              "%zu patches", info.n_patches);
        static double out[3][H][W];
        tps_output o[3];
        for (int k = 0; k < 3; ++k)
            o[k] = (tps_output){0, out[k], TPS_FLOAT64, 8, 8 * W, CURV[k]};
        CHECK(eval(ctx, m, gt, 0, 0, W, H, 3, o, 2, TPS_DEVICE_CPU) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        double worst[3] = {0, 0, 0};
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c) {
                const double px = gt[0] + (c + 0.5) * gt[1], py = gt[3] + (r + 0.5) * gt[5];
                double want[3];
                curvatures(2 * QA * px + QB * py + QD, QB * px + 2 * QC * py + QE, 2 * QA, QB,
                           2 * QC, want);
                for (int k = 0; k < 3; ++k)
                    worst[k] = fmax(worst[k], fabs(out[k][r][c] - want[k]) / fabs(want[k]));
            }
        for (int k = 0; k < 3; ++k) {
            printf("quadratic, %s model: %s curvature within %.2e (relative)\n",
                   local ? "local" : "global", CURV_NAME[k], worst[k]);
            /* A wrong sign, factor or power in a term is an error of order 1;
             * the local surface's own departure from the quadratic is a few
             * 1e-3 to 2e-2 (data-dependent), the global one's 1e-5. */
            CHECK(worst[k] < (local ? 5e-2 : 1e-3), "quadratic, %s model: %s curvature off by "
                  "%.3g", local ? "local" : "global", CURV_NAME[k], worst[k]);
        }
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
}

/* ---- finite differences of the value band ---- */

static const double X0 = 500000, Y0 = 4000000, EXT = 2000;

/* The curvatures from central differences of the value at step h. */
static void fd_curvatures(tps_context *ctx, const tps_model *m, double x, double y, double h,
                          double k[3])
{
    double f[3][3]; /* f[i][j] at (x + (i - 1) h, y + (j - 1) h) */
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            f[i][j] = value_at(ctx, m, x + (i - 1) * h, y + (j - 1) * h);
    const double fx = (f[2][1] - f[0][1]) / (2 * h), fy = (f[1][2] - f[1][0]) / (2 * h);
    const double fxx = (f[2][1] - 2 * f[1][1] + f[0][1]) / (h * h);
    const double fyy = (f[1][2] - 2 * f[1][1] + f[1][0]) / (h * h);
    const double fxy = (f[2][2] - f[2][0] - f[0][2] + f[0][0]) / (4 * h * h);
    curvatures(fx, fy, fxx, fxy, fyy, k);
}

static double nearest(const double *px, const double *py, size_t n, double x, double y)
{
    double d2 = INFINITY;
    for (size_t i = 0; i < n; ++i)
        d2 = fmin(d2, (x - px[i]) * (x - px[i]) + (y - py[i]) * (y - py[i]));
    return sqrt(d2);
}

/* The curvature bands of model m on a GW x GH grid over the points' box
 * against the finite-difference curvatures at steps h and h / 2, cell by
 * cell. The differences are second order: where the surface is smooth
 * over the stencil, the error shrinks ~4x per halving (a cell counts as
 * second order when it shrinks > 3x); a local model's third derivatives
 * jump where a patch's support ends (the bump's third derivative does), so
 * on the few cells whose stencil crosses such an edge it shrinks only ~2x
 * (the laplacian does the same there). Asserted: 90 % of the cells are
 * second order, with an error at h / 2 below `tolerance` x the curvature's
 * scale; over all cells the worst error shrinks (by more than 1.6x) and
 * stays below 10 x that. A wrong or missing term (of the second
 * derivatives, of the blend's, of a formula) would leave an error of the
 * order of the curvature that does not shrink. Cells within `keep_off` of
 * a data point (the spline's third derivatives are singular there) or of
 * the box's edge lines (a local model's weights' derivative jumps there)
 * are left out. */
/* Every cell, or every third with TPS_TEST_QUICK=1 (valgrind,
 * scripts/valgrind_tests.py: each difference evaluates a padded tile). */
static int fd_stride = 1;

static void check_fd(tps_context *ctx, const tps_model *m, const double *px, const double *py,
                     size_t n, double h, double keep_off, double tolerance, const char *what)
{
    enum { GW = 24, GH = 20 };
    double bx0 = INFINITY, bx1 = -INFINITY, by0 = INFINITY, by1 = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
        bx0 = fmin(bx0, px[i]);
        bx1 = fmax(bx1, px[i]);
        by0 = fmin(by0, py[i]);
        by1 = fmax(by1, py[i]);
    }
    const double gt[6] = {X0 + 13, (EXT - 26) / GW, 0, Y0 + EXT - 17, 0, -(EXT - 34) / GH};
    static double out[3][GH][GW];
    tps_output o[3];
    for (int k = 0; k < 3; ++k)
        o[k] = (tps_output){0, out[k], TPS_FLOAT64, 8, 8 * GW, CURV[k]};
    CHECK(eval(ctx, m, gt, 0, 0, GW, GH, 3, o, 2, TPS_DEVICE_CPU) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    double scale[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k)
        for (int r = 0; r < GH; ++r)
            for (int c = 0; c < GW; ++c)
                scale[k] = fmax(scale[k], fabs(out[k][r][c]));
    double worst[2][3] = {{0}}, worst_smooth[3] = {0, 0, 0}; /* worst[step][curvature] */
    int cells = 0, second_order[3] = {0, 0, 0};
    for (int r = 0; r < GH; ++r)
        for (int c = 0; c < GW; ++c) {
            const double x = gt[0] + (c + 0.5) * gt[1], y = gt[3] + (r + 0.5) * gt[5];
            const double edge = fmin(fmin(fabs(x - bx0), fabs(x - bx1)),
                                     fmin(fabs(y - by0), fabs(y - by1)));
            if ((r * GW + c) % fd_stride != 0 || edge < keep_off ||
                nearest(px, py, n, x, y) < keep_off)
                continue;
            ++cells;
            double d[2][3];
            fd_curvatures(ctx, m, x, y, h, d[0]);
            fd_curvatures(ctx, m, x, y, h / 2, d[1]);
            for (int k = 0; k < 3; ++k) {
                const double e0 = fabs(d[0][k] - out[k][r][c]) / scale[k];
                const double e1 = fabs(d[1][k] - out[k][r][c]) / scale[k];
                worst[0][k] = fmax(worst[0][k], e0);
                worst[1][k] = fmax(worst[1][k], e1);
                if (e0 > 3 * e1) {
                    ++second_order[k];
                    worst_smooth[k] = fmax(worst_smooth[k], e1);
                }
            }
        }
    CHECK(cells > 150 / fd_stride, "%s: only %d cells checked", what, cells);
    for (int k = 0; k < 3; ++k) {
        printf("%s, %s curvature (%d cells, max %.3g): central differences %.2e (h=%g) %.2e "
               "(h=%g) x max; %d cells second order, there %.2e\n",
               what, CURV_NAME[k], cells, scale[k], worst[0][k], h, worst[1][k], h / 2,
               second_order[k], worst_smooth[k]);
        CHECK(worst_smooth[k] < tolerance && worst[1][k] < 10 * tolerance,
              "%s: %s curvature off by %.3g x scale (%.3g where second order)", what,
              CURV_NAME[k], worst[1][k], worst_smooth[k]);
        CHECK(worst[0][k] > 1.6 * worst[1][k], "%s: %s curvature: the error does not shrink "
              "(%.3g -> %.3g)", what, CURV_NAME[k], worst[0][k], worst[1][k]);
        CHECK(second_order[k] >= 0.9 * cells,
              "%s: %s curvature error shrinks like h^2 on %d of %d cells only", what,
              CURV_NAME[k], second_order[k], cells);
    }
}

/* Cell (0, 0) of a 3 x 3 grid exactly on data point (px, py): the
 * curvatures NaN there (the second derivatives are infinite), finite at
 * the neighbours. */
static void check_at_data_point(tps_context *ctx, const tps_model *m, double px, double py,
                                double cell, const char *what)
{
    const double gp[6] = {px - cell / 2, cell, 0, py + cell / 2, 0, -cell};
    double vals[3][3][3];
    tps_output op[3];
    for (int k = 0; k < 3; ++k)
        op[k] = (tps_output){0, vals[k], TPS_FLOAT64, 8, 24, CURV[k]};
    CHECK(eval(ctx, m, gp, 0, 0, 3, 3, 3, op, 1, TPS_DEVICE_CPU) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    for (int k = 0; k < 3; ++k) {
        int finite_elsewhere = 1;
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c)
                if (r != 0 || c != 0)
                    finite_elsewhere &= isfinite(vals[k][r][c]);
        CHECK(isnan(vals[k][0][0]) && finite_elsewhere,
              "%s, at a data point: %s curvature %g (NaN), finite around it", what, CURV_NAME[k],
              vals[k][0][0]);
    }
}

/* Every output on a whole grid on one thread, then in four windows on
 * three threads: the same bytes; and the value band of a request with the
 * curvatures equals the value band alone. */
static void check_windows(tps_context *ctx, const tps_model *m, const char *what)
{
    enum { W = 45, H = 33, Q = 4 };
    const double gt[6] = {X0 - 50, (EXT + 100) / W, 0, Y0 + EXT + 50, 0, -(EXT + 100) / H};
    static double whole[Q][H][W], part[Q][H][W], alone[H][W];
    const tps_quantity qs[Q] = {TPS_QUANTITY_MEAN_CURVATURE, TPS_QUANTITY_VALUE,
                                TPS_QUANTITY_PROFILE_CURVATURE,
                                TPS_QUANTITY_TANGENTIAL_CURVATURE};
    tps_output o[Q];
    for (int q = 0; q < Q; ++q)
        o[q] = (tps_output){0, whole[q], TPS_FLOAT64, 8, 8 * W, qs[q]};
    CHECK(eval(ctx, m, gt, 0, 0, W, H, Q, o, 1, TPS_DEVICE_CPU) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    memset(part, 0xff, sizeof part);
    const size_t wins[4][4] = {{0, 0, 19, 7}, {19, 0, W - 19, 7}, {0, 7, W, 1},
                               {0, 8, W, H - 8}};
    for (int w = 0; w < 4; ++w) {
        for (int q = 0; q < Q; ++q)
            o[q].data = &part[q][wins[w][1]][wins[w][0]];
        CHECK(eval(ctx, m, gt, wins[w][0], wins[w][1], wins[w][2], wins[w][3], Q, o, 3,
                   TPS_DEVICE_CPU) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
    }
    CHECK(memcmp(whole, part, sizeof whole) == 0, "%s: windows and threads change the bytes",
          what);
    tps_output ov = {0, alone, TPS_FLOAT64, 8, 8 * W, TPS_QUANTITY_VALUE};
    CHECK(eval(ctx, m, gt, 0, 0, W, H, 1, &ov, 2, TPS_DEVICE_CPU) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    CHECK(memcmp(alone, whole[1], sizeof alone) == 0,
          "%s: the values differ when curvature outputs ride along", what);
}

static void finite_differences(int quick)
{
    enum { NG = 400, NL = 6000 };
    static double x[NL], y[NL], z[NL];
    tps_context *ctx = tps_context_create();

    /* GLOBAL: Franke's function over a 2 km square, heights in metres (a
     * few hundred). Steps of 2 m and 1 m: truncation ~ h^2 f'''' / 12
     * (~1e-4 of the curvature at 1 m), rounding ~1e-16 300 / h^2, far
     * below; cells within 20 m of a point are left out. */
    for (int i = 0; i < NG; ++i) {
        const double u = uniform(), v = uniform();
        x[i] = X0 + EXT * u;
        y[i] = Y0 + EXT * v;
        z[i] = 300 * franke(u, v);
    }
    x[3] = floor(x[3]);
    y[3] = floor(y[3]);
    tps_model *g = fit(ctx, NG, x, y, z, TPS_MODE_GLOBAL, 0);
    if (g) {
        check_fd(ctx, g, x, y, NG, 2.0, 20.0, 1e-3, "global");
        check_at_data_point(ctx, g, x[3], y[3], 3, "global");
        check_windows(ctx, g, "global");
        tps_model_destroy(g);
    }

    /* LOCAL: 6,000 points, denser to the south-west (patches of different
     * sizes meet), PatchPoints 100: the blend's second derivatives across
     * many patch edges. Steps of 1 m and 0.5 m, cells within 4 m of a point
     * or of the box's edges left out (test_deriv does the same for the
     * laplacian). Under valgrind (TPS_TEST_QUICK) a smaller model. */
    const size_t nl = quick ? 1500 : NL;
    for (size_t i = 0; i < nl; ++i) {
        const double u = pow(uniform(), 1.5), v = pow(uniform(), 1.5);
        x[i] = X0 + EXT * u;
        y[i] = Y0 + EXT * v;
        z[i] = 300 * franke(u, v);
    }
    x[5] = floor(x[5]);
    y[5] = floor(y[5]);
    tps_model *l = fit(ctx, nl, x, y, z, TPS_MODE_LOCAL, 100);
    if (l) {
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, l, &info) == TPS_OK && info.n_patches >= 12,
              "only %zu patches", info.n_patches);
        check_fd(ctx, l, x, y, nl, 1.0, 4.0, 1e-3, "local");
        check_at_data_point(ctx, l, x[5], y[5], 3, "local");
        check_windows(ctx, l, "local");
        tps_model_destroy(l);
    }
    tps_context_destroy(ctx);
}

/* ---- the GPU against the CPU ---- */

/* Every quantity of band 0 in one request, pixel-interleaved on the GPU
 * pass: within 1e-9 x the CPU band's range (the parity bound of the older
 * derivative outputs, test_gpu); aspect, profile and tangential curvature
 * only where the slope is not nearly flat (there they depend on the
 * direction of a vanishing gradient, ill-conditioned on any device). */
static void gpu_parity(void)
{
    enum { NG = 2000, NL = 6000, W = 300, H = 170, Q = N_QUANTITIES };
    static double x[NL], y[NL], z[NL];
    for (int i = 0; i < NL; ++i) {
        const double u = uniform(), v = uniform();
        x[i] = X0 + EXT * u;
        y[i] = Y0 + EXT * v;
        z[i] = 300 * franke(u, v);
    }
    tps_context *ctx = tps_context_create();
    const double gt[6] = {X0 - 100, (EXT + 200) / W, 0, Y0 + EXT + 100, 0, -(EXT + 200) / H};
    static double cpu[Q][H][W], gpu[H][W][Q];
    for (int local = 0; local < 2; ++local) {
        tps_model *m = fit(ctx, local ? NL : NG, x, y, z,
                           local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL, local ? 150 : 0);
        if (!m)
            continue;
        tps_output oc[Q], og[Q];
        for (int q = 0; q < Q; ++q) {
            oc[q] = (tps_output){0, cpu[q], TPS_FLOAT64, 8, 8 * W, (tps_quantity)q};
            og[q] = (tps_output){0, &gpu[0][0][q], TPS_FLOAT64, 8 * Q, 8 * Q * W,
                                 (tps_quantity)q};
        }
        memset(gpu, 0xff, sizeof gpu); /* NaN: every element must be written */
        CHECK(eval(ctx, m, gt, 0, 0, W, H, Q, oc, 4, TPS_DEVICE_CPU) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        CHECK(eval(ctx, m, gt, 0, 0, W, H, Q, og, 4, TPS_DEVICE_GPU) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        double grad_max = 0;
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c)
                grad_max = fmax(grad_max, hypot(cpu[1][r][c], cpu[2][r][c]));
        for (int q = 0; q < Q; ++q) {
            const int directional = q == TPS_QUANTITY_ASPECT ||
                                    q == TPS_QUANTITY_PROFILE_CURVATURE ||
                                    q == TPS_QUANTITY_TANGENTIAL_CURVATURE;
            double lo = INFINITY, hi = -INFINITY, worst = 0;
            for (int r = 0; r < H; ++r)
                for (int c = 0; c < W; ++c)
                    if (isfinite(cpu[q][r][c])) {
                        lo = fmin(lo, cpu[q][r][c]);
                        hi = fmax(hi, cpu[q][r][c]);
                    }
            const double range = hi > lo ? hi - lo : fmax(fabs(hi), 1e-300);
            for (int r = 0; r < H; ++r)
                for (int c = 0; c < W; ++c) {
                    const double a = cpu[q][r][c], b = gpu[r][c][q];
                    if (isnan(a) || isnan(b)) {
                        worst = isnan(a) && isnan(b) ? worst : INFINITY;
                        continue;
                    }
                    if (directional && hypot(cpu[1][r][c], cpu[2][r][c]) < 1e-3 * grad_max)
                        continue;
                    worst = fmax(worst, q == TPS_QUANTITY_ASPECT
                                            ? fabs(remainder(a - b, 360.0)) / 360.0
                                            : fabs(a - b) / range);
                }
            /* The standard error is the square root of a variance formed
             * by DGEMMs in another order: near a data point (lambda = 0
             * here) the variance is ~0 and its rounding (~1e-11 of its
             * largest value, emulated on the CPU) becomes sqrt(1e-11) of
             * the error's scale. */
            const double bound = q == TPS_QUANTITY_STANDARD_ERROR ? 1e-5 : 1e-9;
            printf("%s model, %s: GPU vs CPU %.2e x range\n", local ? "local" : "global",
                   tps_quantity_info((tps_quantity)q)->name, worst);
            CHECK(worst <= bound, "%s model, %s: GPU off by %.3g x range",
                  local ? "local" : "global", tps_quantity_info((tps_quantity)q)->name, worst);
        }
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "cpu";
    if (strcmp(what, "gpu") == 0) {
        if (!gpu_required()) /* an independent probe (gpu_probe.h) */
            return 77;
        gpu_parity();
    } else {
        const char *quick = getenv("TPS_TEST_QUICK");
        if (quick && strcmp(quick, "1") == 0)
            fd_stride = 3;
        table();
        plane();
        quadratic_surface(quick && strcmp(quick, "1") == 0);
        finite_differences(quick && strcmp(quick, "1") == 0);
    }
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

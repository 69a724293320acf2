/* test_gpu.c: the GPU path against the CPU path, and the fallback without
 * a GPU. Whether there is a GPU is decided by an independent probe
 * (gpu_probe.h: the CUDA driver's cuInit/cuDeviceGetCount), not by the
 * engine: exit 77 (ctest: skipped, with the reason printed) only when the
 * probe finds no GPU (or the build has no GPU backend); where it finds one,
 * the engine refusing the GPU is a failure.
 *   test_gpu fallback   no GPU (none here, or CUDA_VISIBLE_DEVICES=):
 *                       DEVICE=GPU fails clearly, AUTO evaluates on the CPU
 *   test_gpu parity     DOUBLE within 1e-9 and MIXED within 1e-5 of the
 *                       value range of the CPU path, windows, strides,
 *                       several bands; one upload for many evaluations from
 *                       several threads; derivative quantities within 1e-9
 *                       of the CPU's; MIXED's guard (issue 16): every field
 *                       within TOLERANCE or fallen back, its stats (no failed
 *                       self-check, the estimate within TOLERANCE), the
 *                       kernel against its CPU emulation, forced fallbacks
 *                       and a tolerance no block meets giving DOUBLE's
 *                       bytes, windows giving the same bytes, AUTO
 *   test_gpu local_gcv  a local model's GCV with its eigendecompositions on
 *                       the GPU: the CPU's lambda, score, df and LOO */
#include "tps.h"
#include "tps_testing.h" /* tps_model_device_uploads */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gpu_probe.h"
#include "testdata.h"


enum { NB = 3 };

typedef struct fixture {
    tps_model *model;
    double range[NB];
    double gt[6];
} fixture;

/* n random points over `extent` at (x0, y0); three bands, the third with
 * some values missing (its own factorisation), lambda per band. */
static tps_device fixture_solve_device = TPS_DEVICE_AUTO;

static int make_fixture_mode(fixture *f, size_t n, double x0, double y0, double extent,
                             double lambda, tps_mode mode)
{
    tps_context *ctx = tps_context_create();
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    double *z[NB];
    for (int b = 0; b < NB; ++b)
        z[b] = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; ++i) {
        double u = uniform(), v = uniform();
        x[i] = x0 + extent * u;
        y[i] = y0 + extent * v;
        z[0][i] = sin(6 * u) * cos(4 * v) + 0.3 * u;
        z[1][i] = 100.0 * exp(-((u - 0.4) * (u - 0.4) + (v - 0.6) * (v - 0.6)) * 8);
        z[2][i] = (i % 11 == 0) ? NAN : u * v * 1000.0;
    }
    for (int b = 0; b < NB; ++b) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < n; ++i)
            if (isfinite(z[b][i])) {
                lo = fmin(lo, z[b][i]);
                hi = fmax(hi, z[b][i]);
            }
        f->range[b] = hi - lo;
    }
    double lambdas[NB] = {lambda, lambda, 0.0};
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.num_threads = 4;
    fo.mode = mode;
    fo.patch_points = 300;
    fo.device = fixture_solve_device;
    f->model = tps_model_create(ctx, n, x, y, NB, (const double *const *)z, lambdas, &fo);
    if (!f->model)
        fprintf(stderr, "fit: %s\n", tps_context_errmsg(ctx));
    /* A slightly rotated grid reaching past the points. */
    double gt[6] = {x0 - 0.05 * extent, extent / 400, 0.002 * extent / 400,
                    y0 + 1.05 * extent, 0.001 * extent / 300, -extent / 300};
    memcpy(f->gt, gt, sizeof gt);
    free(x);
    free(y);
    for (int b = 0; b < NB; ++b)
        free(z[b]);
    tps_context_destroy(ctx);
    return f->model != NULL;
}

static int make_fixture(fixture *f, size_t n, double x0, double y0, double extent, double lambda)
{
    return make_fixture_mode(f, n, x0, y0, extent, lambda, TPS_MODE_GLOBAL);
}

/* Max |gpu - cpu| / range per band over a window, Float64. */
static void compare_window(const fixture *f, tps_precision precision, size_t c0, size_t r0,
                           size_t nc, size_t nr, double *worst)
{
    tps_context *ctx = tps_context_create();
    double *cpu = malloc(NB * nc * nr * sizeof(double)), *gpu = malloc(NB * nc * nr * sizeof(double));
    tps_grid g;
    tps_grid_from_geotransform(&g, f->gt, c0, r0, nc, nr);
    tps_output o[NB];
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = 4;
    for (int pass = 0; pass < 2; ++pass) {
        double *dst = pass ? gpu : cpu;
        /* Pixel-interleaved on the GPU pass: strides are honoured. */
        for (int b = 0; b < NB; ++b)
            o[b] = pass ? (tps_output){(size_t)b, dst + b, TPS_FLOAT64, NB * 8, (ptrdiff_t)(NB * 8 * nc)}
                        : (tps_output){(size_t)b, dst + b * nc * nr, TPS_FLOAT64, 8, (ptrdiff_t)(8 * nc)};
        for (size_t k = 0; k < NB * nc * nr; ++k)
            dst[k] = NAN; /* poison: every element must be written */
        eo.device = pass ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
        eo.precision = precision;
        tps_status st = tps_evaluate_grid(ctx, f->model, &g, NB, o, &eo);
        CHECK(st == TPS_OK, "%s", tps_context_errmsg(ctx));
    }
    for (int b = 0; b < NB; ++b) {
        worst[b] = 0;
        for (size_t r = 0; r < nr; ++r)
            for (size_t c = 0; c < nc; ++c) {
                double a = cpu[b * nc * nr + r * nc + c], v = gpu[(r * nc + c) * NB + b];
                double d = fabs(a - v) / f->range[b];
                worst[b] = isnan(d) ? INFINITY : fmax(worst[b], d);
            }
    }
    free(cpu);
    free(gpu);
    tps_context_destroy(ctx);
}

typedef struct thread_job {
    const fixture *f;
    int seed;
    int bad;
} thread_job;

/* Many GPU reads of random windows from one thread, each checked against
 * the same window on the CPU. */
static void *reader(void *p)
{
    thread_job *job = p;
    unsigned s = (unsigned)job->seed;
    for (int k = 0; k < 16; ++k) {
        size_t c0 = rand_r(&s) % 300, r0 = rand_r(&s) % 200;
        size_t nc = 1 + rand_r(&s) % 100, nr = 1 + rand_r(&s) % 100;
        double worst[NB];
        compare_window(job->f, TPS_PRECISION_DOUBLE, c0, r0, nc, nr, worst);
        for (int b = 0; b < NB; ++b)
            job->bad += !(worst[b] <= 1e-9);
    }
    return NULL;
}

/* The cuSOLVER solve against the CPU solve: both models evaluated on the
 * CPU over the same grid, within 1e-8 x value range. */
static void solve_parity(size_t n, double lambda)
{
    tps_context *ctx = tps_context_create();
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
        double u = uniform(), v = uniform();
        x[i] = 300000 + 8000 * u;
        y[i] = 4000000 + 6000 * v;
        z[i] = sin(5 * u) * cos(3 * v) + u * u;
        lo = fmin(lo, z[i]);
        hi = fmax(hi, z[i]);
    }
    const double *zp = z;
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.num_threads = 8;
    fo.device = TPS_DEVICE_CPU;
    tps_model *cpu = tps_model_create(ctx, n, x, y, 1, &zp, &lambda, &fo);
    fo.device = TPS_DEVICE_GPU;
    tps_model *gpu = tps_model_create(ctx, n, x, y, 1, &zp, &lambda, &fo);
    CHECK(cpu && gpu, "fit: %s", tps_context_errmsg(ctx));
    if (cpu && gpu) {
        tps_model_info ic, ig;
        CHECK(tps_model_get_info(ctx, cpu, &ic) == TPS_OK &&
                  tps_model_get_info(ctx, gpu, &ig) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(ic.solve_device == TPS_DEVICE_CPU && ig.solve_device == TPS_DEVICE_GPU,
              "solve devices %d %d", (int)ic.solve_device, (int)ig.solve_device);
        enum { W = 200, H = 150 };
        static double a[H][W], b[H][W];
        const double gt[6] = {299000, 50, 0, 4007000, 0, -50};
        tps_grid g;
        tps_grid_from_geotransform(&g, gt, 0, 0, W, H);
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_CPU;
        eo.num_threads = 8;
        tps_output oa = {0, a, TPS_FLOAT64, 8, 8 * W}, ob = {0, b, TPS_FLOAT64, 8, 8 * W};
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c)
                a[r][c] = b[r][c] = NAN; /* poison: a failed evaluation cannot compare equal */
        CHECK(tps_evaluate_grid(ctx, cpu, &g, 1, &oa, &eo) == TPS_OK, "CPU-solved model: %s",
              tps_context_errmsg(ctx));
        CHECK(tps_evaluate_grid(ctx, gpu, &g, 1, &ob, &eo) == TPS_OK, "GPU-solved model: %s",
              tps_context_errmsg(ctx));
        double worst = 0;
        for (int r = 0; r < H; ++r)
            for (int c = 0; c < W; ++c)
                worst = max_nan(worst, fabs(a[r][c] - b[r][c]));
        printf("solve n=%zu lambda=%g: GPU vs CPU solve %.2e x range\n", n, lambda,
               worst / (hi - lo));
        CHECK(worst <= 1e-8 * (hi - lo), "GPU solve off by %.3g x range", worst / (hi - lo));
    }
    tps_model_destroy(cpu);
    tps_model_destroy(gpu);
    free(x);
    free(y);
    free(z);
    tps_context_destroy(ctx);
}

/* A tiny GPU memory budget stands in for a device that is out of memory:
 * DEVICE=GPU fails with a clear error, AUTO evaluates on the CPU, the GPU
 * solve falls back to the CPU; never a wrong value. */
static void memory_budget(void)
{
    fixture f;
    if (!make_fixture(&f, 2000, 0, 0, 1, 0)) {
        ++failures;
        return;
    }
    tps_context *ctx = tps_context_create();
    enum { W = 400, H = 300 };
    static double cpu[H][W], got[H][W];
    tps_grid g;
    tps_grid_from_geotransform(&g, f.gt, 0, 0, W, H);
    tps_output oc = {0, cpu, TPS_FLOAT64, 8, 8 * W}, og = {0, got, TPS_FLOAT64, 8, 8 * W};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = 8;
    eo.device = TPS_DEVICE_CPU;
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < W; ++c)
            cpu[r][c] = got[r][c] = NAN; /* poison: what is not written stays NaN */
    CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &oc, &eo) == TPS_OK, "CPU: %s",
          tps_context_errmsg(ctx));
    int finite = 1;
    for (int r = 0; r < H; ++r)
        for (int c = 0; c < W; ++c)
            finite &= isfinite(cpu[r][c]) != 0;
    CHECK(finite, "the CPU reference has non-finite values"); /* so NaN in got differs */
    eo.gpu_max_memory = 1000;
    eo.device = TPS_DEVICE_GPU;
    CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &og, &eo) == TPS_ERR_DEVICE_UNAVAILABLE &&
              strstr(tps_context_errmsg(ctx), "GPU memory") != NULL,
          "GPU over budget: %s", tps_context_errmsg(ctx));
    printf("GPU over budget says: %s\n", tps_context_errmsg(ctx));
    eo.device = TPS_DEVICE_AUTO; /* 2000 x 400 x 300 pairs: AUTO picks the GPU, which refuses */
    CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &og, &eo) == TPS_OK, "AUTO: %s",
          tps_context_errmsg(ctx));
    CHECK(memcmp(cpu, got, sizeof cpu) == 0, "AUTO over budget: not the CPU's values");
    CHECK(tps_model_device_uploads(f.model) == 0, "uploads %zu", tps_model_device_uploads(f.model));
    tps_model_destroy(f.model);

    double x[400], y[400], z[400], lam = 0;
    for (int i = 0; i < 400; ++i) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = x[i] * y[i];
    }
    const double *zp = z;
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.device = TPS_DEVICE_GPU;
    fo.gpu_max_memory = 1000;
    tps_model *m = tps_model_create(ctx, 400, x, y, 1, &zp, &lam, &fo);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (m) {
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(info.solve_device == TPS_DEVICE_CPU, "solve over budget ran on %d",
              (int)info.solve_device);
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
}

static void deriv_parity(const fixture *f, size_t k, size_t c0, size_t r0, size_t nc, size_t nr);

/* A window of the fixture's grid on the GPU (bands 0..NB-1, Float64,
 * planar) in `precision` with `tolerance`, its stats in *st. */
static tps_status gpu_window(const fixture *f, tps_precision precision, double tolerance,
                             size_t c0, size_t r0, size_t nc, size_t nr, double *out,
                             tps_eval_stats *st)
{
    tps_context *ctx = tps_context_create();
    tps_grid g;
    tps_grid_from_geotransform(&g, f->gt, c0, r0, nc, nr);
    tps_output o[NB];
    for (int b = 0; b < NB; ++b)
        o[b] = (tps_output){(size_t)b, out + (size_t)b * nc * nr, TPS_FLOAT64, 8,
                            (ptrdiff_t)(8 * nc)};
    for (size_t k = 0; k < NB * nc * nr; ++k)
        out[k] = NAN;
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_GPU;
    eo.precision = precision;
    eo.tolerance = tolerance;
    eo.stats = st;
    const tps_status status = tps_evaluate_grid(ctx, f->model, &g, NB, o, &eo);
    CHECK(status == TPS_OK, "%s", tps_context_errmsg(ctx));
    tps_context_destroy(ctx);
    return status;
}

/* MIXED's guard on the GPU (docs/design.md, "PRECISION=MIXED"). */
static void mixed_guard(const fixture *f, size_t k)
{
    enum { W = 400, H = 300 };
    const size_t plane = (size_t)W * H;
    double *cpu = malloc(NB * plane * sizeof(double)), *got = malloc(NB * plane * sizeof(double));
    double *dbl = malloc(NB * plane * sizeof(double));
    tps_eval_stats st;
    /* the CPU path */
    {
        tps_context *ctx = tps_context_create();
        tps_grid g;
        tps_grid_from_geotransform(&g, f->gt, 0, 0, W, H);
        tps_output o[NB];
        for (int b = 0; b < NB; ++b)
            o[b] = (tps_output){(size_t)b, cpu + b * plane, TPS_FLOAT64, 8, 8 * W};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_CPU;
        eo.num_threads = 4;
        CHECK(tps_evaluate_grid(ctx, f->model, &g, NB, o, &eo) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        tps_context_destroy(ctx);
    }
    gpu_window(f, TPS_PRECISION_DOUBLE, 0, 0, 0, W, H, dbl, &st);
    CHECK(st.mixed_blocks == 0, "DOUBLE counted %zu MIXED blocks", st.mixed_blocks);
    /* Every band within the tolerance; the estimate bounds the error. */
    gpu_window(f, TPS_PRECISION_MIXED, 1e-5, 0, 0, W, H, got, &st);
    double worst[NB];
    for (int b = 0; b < NB; ++b) {
        worst[b] = 0;
        for (size_t i = 0; i < plane; ++i)
            worst[b] = max_nan(worst[b], fabs(got[b * plane + i] - cpu[b * plane + i]));
        worst[b] /= f->range[b];
    }
    printf("case %zu MIXED guard: errors %.2e %.2e %.2e (x range), estimate %.2e, %zu of %zu "
           "blocks fell back, %zu failed self-checks\n",
           k, worst[0], worst[1], worst[2], st.max_error_estimate, st.fallback_blocks,
           st.mixed_blocks, st.check_failures);
    CHECK(st.mixed_blocks >= 13 * 19 && st.check_failures == 0 &&
              st.fallback_blocks <= st.mixed_blocks && st.max_error_estimate <= 1e-5,
          "case %zu: stats %zu %zu %zu %.3g", k, st.mixed_blocks, st.fallback_blocks,
          st.check_failures, st.max_error_estimate);
    for (int b = 0; b < NB; ++b)
        CHECK(worst[b] <= fmax(st.max_error_estimate * (1 + 1e-6), 1e-9),
              "case %zu band %d: error %.3g above the estimate %.3g", k, b, worst[b],
              st.max_error_estimate);
    /* The kernel against its CPU emulation (core/mixed_emulate.c), on a
     * window: both within their bound of the exact sum. */
    {
        enum { EW = 64, EH = 32, EC = 101, ER = 77 };
        double *emu = malloc(NB * EW * EH * sizeof(double));
        tps_grid g;
        tps_grid_from_geotransform(&g, f->gt, EC, ER, EW, EH);
        tps_output o[NB];
        for (int b = 0; b < NB; ++b)
            o[b] = (tps_output){(size_t)b, emu + b * EW * EH, TPS_FLOAT64, 8, 8 * EW};
        tps_context *ctx = tps_context_create();
        tps_eval_stats es;
        CHECK(tps_mixed_emulate_grid(ctx, f->model, &g, NB, o, 1e-5, 1, 0, &es) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        tps_context_destroy(ctx);
        double diff = 0;
        for (int b = 0; b < NB; ++b)
            for (int r = 0; r < EH; ++r)
                for (int c = 0; c < EW; ++c)
                    diff = max_nan(diff, fabs(emu[b * EW * EH + r * EW + c] -
                                              got[b * plane + (size_t)(ER + r) * W + EC + c]) /
                                             f->range[b]);
        printf("case %zu: |GPU MIXED - CPU emulation| <= %.2e x range (estimates %.2e, %.2e)\n",
               k, diff, st.max_error_estimate, es.max_error_estimate);
        CHECK(diff <= 2.0 * fmax(st.max_error_estimate, es.max_error_estimate) + 1e-9,
              "case %zu: the GPU and its emulation differ by %.3g x range", k, diff);
        free(emu);
    }
    /* Windows: a pixel's value does not depend on the window. */
    {
        const size_t wins[][4] = {{1, 1, 1, 1}, {7, 3, 313, 1}, {33, 17, 2, 70}, {13, 5, 129, 77}};
        for (size_t w = 0; w < 4; ++w) {
            const size_t c0 = wins[w][0], r0 = wins[w][1], nc = wins[w][2], nr = wins[w][3];
            double *sub = malloc(NB * nc * nr * sizeof(double));
            gpu_window(f, TPS_PRECISION_MIXED, 1e-5, c0, r0, nc, nr, sub, &st);
            int same = 1;
            for (int b = 0; b < NB; ++b)
                for (size_t r = 0; r < nr; ++r)
                    for (size_t c = 0; c < nc; ++c)
                        same &= memcmp(&sub[b * nc * nr + r * nc + c],
                                       &got[b * plane + (r0 + r) * W + c0 + c], 8) == 0;
            CHECK(same, "case %zu window %zu: MIXED values differ from the full window's", k, w);
            free(sub);
        }
    }
    /* Forced fallbacks (the test hook): those blocks have DOUBLE's bytes. */
    tps_testing_mixed_force_fallback(3);
    gpu_window(f, TPS_PRECISION_MIXED, 1e-5, 0, 0, W, H, got, &st);
    tps_testing_mixed_force_fallback(0);
    {
        size_t forced = 0;
        int same = 1;
        for (size_t by = 0; by * 16 < H; ++by)
            for (size_t bx = 0; bx * 32 < W; ++bx) {
                if ((bx + by) % 3)
                    continue;
                ++forced;
                for (int b = 0; b < NB; ++b)
                    for (size_t r = by * 16; r < by * 16 + 16 && r < H; ++r)
                        same &= memcmp(&got[b * plane + r * W + bx * 32],
                                       &dbl[b * plane + r * W + bx * 32],
                                       8 * (bx * 32 + 32 <= W ? 32 : W - bx * 32)) == 0;
            }
        CHECK(same, "case %zu: a forced block is not DOUBLE's bytes", k);
        CHECK(st.fallback_blocks >= forced && st.check_failures == 0,
              "case %zu: %zu blocks fell back, %zu forced", k, st.fallback_blocks, forced);
    }
    /* A tolerance no block meets: DOUBLE's bytes everywhere. */
    gpu_window(f, TPS_PRECISION_MIXED, 1e-15, 0, 0, W, H, got, &st);
    CHECK(memcmp(got, dbl, NB * plane * sizeof(double)) == 0 &&
              st.fallback_blocks == st.mixed_blocks && st.max_error_estimate == 0.0,
          "case %zu, tolerance 1e-15: %zu of %zu blocks fell back", k, st.fallback_blocks,
          st.mixed_blocks);
    /* AUTO: MIXED at the default tolerance, DOUBLE below 1e-7. */
    gpu_window(f, TPS_PRECISION_AUTO, 0, 0, 0, W, H, got, &st);
    CHECK(st.mixed_blocks > 0, "case %zu: AUTO did not evaluate in MIXED", k);
    gpu_window(f, TPS_PRECISION_AUTO, 1e-8, 0, 0, W, H, got, &st);
    CHECK(st.mixed_blocks == 0 && memcmp(got, dbl, NB * plane * sizeof(double)) == 0,
          "case %zu: AUTO with tolerance 1e-8 is not DOUBLE", k);
    free(cpu);
    free(got);
    free(dbl);
}

/* LOCAL models on the GPU: one device copy of the patches, the CPU path's
 * values (same blend, same patch order) within 1e-9 x range, in any window,
 * on a rotated grid reaching past the points and on a north-up one. */
static void local_parity(void)
{
    fixture f;
    if (!make_fixture_mode(&f, 30000, 500000, 5000000, 20000, 0, TPS_MODE_LOCAL)) {
        ++failures;
        return;
    }
    tps_context *ctx = tps_context_create();
    tps_model_info info;
    CHECK(tps_model_get_info(ctx, f.model, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(info.mode == TPS_MODE_LOCAL && info.n_patches > 50, "mode %d, %zu patches",
          (int)info.mode, info.n_patches);
    double w[NB];
    size_t wins[][4] = {{0, 0, 400, 300}, {1, 1, 1, 1}, {7, 3, 393, 1}, {13, 17, 129, 77},
                        {399, 299, 1, 1}, {0, 0, 33, 17}};
    for (int pass = 0; pass < 2; ++pass) {
        if (pass == 1) { /* north-up */
            f.gt[2] = 0.0;
            f.gt[4] = 0.0;
        }
        for (size_t wi = 0; wi < sizeof wins / sizeof wins[0]; ++wi) {
            compare_window(&f, wi == 0 ? TPS_PRECISION_MIXED : TPS_PRECISION_DOUBLE, wins[wi][0],
                           wins[wi][1], wins[wi][2], wins[wi][3], w);
            for (int b = 0; b < NB; ++b) {
                if (wi == 0)
                    printf("local %s band %d: %.2e (x range)\n", pass ? "north-up" : "rotated", b,
                           w[b]);
                CHECK(w[b] <= 1e-9, "local pass %d window %zu band %d: %.3g x range", pass, wi, b,
                      w[b]);
            }
        }
    }
    CHECK(tps_model_device_uploads(f.model) == 1, "local uploads: %zu",
          tps_model_device_uploads(f.model));
    CHECK(info.solve_device == TPS_DEVICE_GPU, "local patches solved on %d, not the GPU",
          (int)info.solve_device);
    /* Value and derivative outputs in one DEVICE=GPU request: the values on
     * the GPU, the derivatives (CPU-only for local models) on the CPU. */
    deriv_parity(&f, 100, 0, 0, 200, 150);

    /* The same points with the patches solved on the CPU: the batched GPU
     * factorisations give the same surface (as the global GPU solve does,
     * within 1e-8 x range), compared on the CPU path. */
    tps_model_destroy(f.model);
    tps_context_destroy(ctx);
}

/* Batched GPU patch solves against CPU ones: same points (same random
 * stream), patches solved on the GPU (AUTO) and on the CPU, both evaluated
 * on the CPU: within 1e-8 x range, and with a fixed lambda too. */
static void local_solve_parity(void)
{
    tps_context *ctx = tps_context_create();
    for (int with_lambda = 0; with_lambda < 2; ++with_lambda) {
        fixture fg, fc;
        const unsigned long long seed = rng_state;
        fixture_solve_device = TPS_DEVICE_AUTO;
        const int ok_g = make_fixture_mode(&fg, 40000, 500000, 5000000, 20000,
                                           with_lambda ? 1e4 : 0, TPS_MODE_LOCAL);
        rng_state = seed;
        fixture_solve_device = TPS_DEVICE_CPU;
        const int ok_c = make_fixture_mode(&fc, 40000, 500000, 5000000, 20000,
                                           with_lambda ? 1e4 : 0, TPS_MODE_LOCAL);
        fixture_solve_device = TPS_DEVICE_AUTO;
        CHECK(ok_g && ok_c, "local fixtures");
        if (ok_g && ok_c) {
            tps_model_info ig, ic;
            CHECK(tps_model_get_info(ctx, fg.model, &ig) == TPS_OK &&
                      tps_model_get_info(ctx, fc.model, &ic) == TPS_OK,
                  "%s", tps_context_errmsg(ctx));
            printf("local solve: %zu patches, %zu factorisations, on %s vs %s\n", ig.n_patches,
                   ig.n_factorisations, tps_device_name(ig.solve_device),
                   tps_device_name(ic.solve_device));
            CHECK(ig.solve_device == TPS_DEVICE_GPU && ic.solve_device == TPS_DEVICE_CPU,
                  "solve devices %d / %d", (int)ig.solve_device, (int)ic.solve_device);
            CHECK(ig.n_factorisations == ic.n_factorisations, "%zu vs %zu factorisations",
                  ig.n_factorisations, ic.n_factorisations);
            enum { W = 300, H = 200 };
            double *a = malloc(sizeof(double) * NB * W * H), *b = malloc(sizeof(double) * NB * W * H);
            for (size_t i = 0; i < (size_t)NB * W * H; ++i)
                a[i] = b[i] = NAN; /* poison: a failed evaluation cannot compare equal */
            tps_grid g;
            tps_grid_from_geotransform(&g, fg.gt, 0, 0, W, H);
            tps_output oa[NB], ob[NB];
            for (int k = 0; k < NB; ++k) {
                oa[k] = (tps_output){(size_t)k, a + k * W * H, TPS_FLOAT64, 8, 8 * W};
                ob[k] = (tps_output){(size_t)k, b + k * W * H, TPS_FLOAT64, 8, 8 * W};
            }
            tps_eval_options eo;
            tps_eval_options_init(&eo);
            eo.device = TPS_DEVICE_CPU;
            eo.num_threads = 4;
            CHECK(tps_evaluate_grid(ctx, fg.model, &g, NB, oa, &eo) == TPS_OK, "%s",
                  tps_context_errmsg(ctx));
            CHECK(tps_evaluate_grid(ctx, fc.model, &g, NB, ob, &eo) == TPS_OK, "%s",
                  tps_context_errmsg(ctx));
            for (int k = 0; k < NB; ++k) {
                double worst = 0;
                for (size_t i = 0; i < (size_t)W * H; ++i)
                    worst = max_nan(worst, fabs(a[k * W * H + i] - b[k * W * H + i]));
                printf("local solve GPU vs CPU, lambda %s, band %d: %.2e x range\n",
                       with_lambda ? "1e4" : "0", k, worst / fc.range[k]);
                CHECK(worst <= 1e-8 * fc.range[k], "band %d: %.3g x range", k,
                      worst / fc.range[k]);
            }
            free(a);
            free(b);
        }
        if (ok_g)
            tps_model_destroy(fg.model);
        if (ok_c)
            tps_model_destroy(fc.model);
    }
    tps_context_destroy(ctx);
}

/* A LOCAL model's GCV with its eigendecompositions batched on the GPU
 * (gpu/eigen.cu) against the CPU's (core/local_cv.c), weighted and not: the
 * same lambda, its score, effective df and LOO within 1e-9 (relative),
 * every patch decomposed on the GPU (the debug log says how many). */
static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct gpu_count {
    size_t on_gpu, patches;
} gpu_count;

static void count_gpu_patches(void *user, tps_log_level level, const char *message)
{
    (void)level;
    gpu_count *c = user;
    const char *p = strstr(message, " patches (");
    size_t patches = 0, on_gpu = 0;
    if (strstr(message, "GCV chose") && p) {
        const char *q = p;
        while (q > message && q[-1] >= '0' && q[-1] <= '9')
            --q;
        if (sscanf(q, "%zu patches (%zu eigendecompositions", &patches, &on_gpu) == 2) {
            c->patches += patches;
            c->on_gpu += on_gpu;
        }
    }
}

static void local_gcv_parity(void)
{
    enum { N = 30000 };
    static double x[N], y[N], z[N], w[N];
    for (int i = 0; i < N; ++i) {
        x[i] = 5000.0 * uniform();
        y[i] = 3000.0 * uniform();
        z[i] = sin(x[i] / 700.0) * cos(y[i] / 400.0) + 0.1 * (uniform() - 0.5);
        w[i] = 0.5 + uniform();
    }
    const double *vals[1] = {z};
    int gcv = 1;
    double sm = 0.0;
    for (int weighted = 0; weighted < 2; ++weighted) {
        tps_band_info bi[2];
        double f[2][64];
        const double px[4] = {100, 2500, 4900, 3000}, py[4] = {100, 1500, 2900, 2000};
        gpu_count count = {0, 0};
        for (int dev = 0; dev < 2; ++dev) {
            tps_context *ctx = tps_context_create();
            if (dev == 0)
                tps_context_set_log(ctx, count_gpu_patches, &count);
            tps_fit_options o;
            tps_fit_options_init(&o);
            o.mode = TPS_MODE_LOCAL;
            o.device = dev ? TPS_DEVICE_CPU : TPS_DEVICE_AUTO;
            o.num_threads = 8;
            o.smoothing_gcv = &gcv;
            o.weights = weighted ? w : NULL;
            const double t0 = now_seconds();
            tps_model *m = tps_model_create(ctx, N, x, y, 1, vals, &sm, &o);
            const double t1 = now_seconds();
            CHECK(m && tps_model_get_band_info(ctx, m, 0, &bi[dev]) == TPS_OK &&
                      tps_evaluate_points(ctx, m, 0, 4, px, py, f[dev], NULL) == TPS_OK,
                  "local GCV on the %s: %s", dev ? "CPU" : "GPU", tps_context_errmsg(ctx));
            if (!m)
                bi[dev].smoothing = bi[dev].gcv_score = NAN;
            printf("local GCV%s on the %s: lambda %.6g, score %.12g, df %.6f, LOO %.9g, %.2f s\n",
                   weighted ? " (weighted)" : "", dev ? "CPU" : "GPU", bi[dev].smoothing,
                   bi[dev].gcv_score, bi[dev].effective_df, bi[dev].loo_rmse, t1 - t0);
            tps_model_destroy(m);
            tps_context_destroy(ctx);
        }
        CHECK(count.patches > 0 && count.on_gpu == count.patches,
              "%zu of %zu patches decomposed on the GPU", count.on_gpu, count.patches);
        CHECK(bi[0].smoothing == bi[1].smoothing, "lambda GPU %.17g CPU %.17g",
              bi[0].smoothing, bi[1].smoothing);
        const double rel[3] = {fabs(bi[0].gcv_score - bi[1].gcv_score) / bi[1].gcv_score,
                               fabs(bi[0].effective_df - bi[1].effective_df) / bi[1].effective_df,
                               fabs(bi[0].loo_rmse - bi[1].loo_rmse) / bi[1].loo_rmse};
        CHECK(rel[0] <= 1e-9 && rel[1] <= 1e-9 && rel[2] <= 1e-9,
              "GPU vs CPU: score %.2e, df %.2e, LOO %.2e (relative)", rel[0], rel[1], rel[2]);
        for (int k = 0; k < 4; ++k)
            CHECK(fabs(f[0][k] - f[1][k]) <= 1e-8, "surface at %d: %.17g vs %.17g", k, f[0][k],
                  f[1][k]);
    }
}

/* Derivative quantities (gpu/global_deriv.cu) against the CPU's
 * (core/cpu_global.c), bands 0 and 2 (2 has missing values), all five
 * quantities in one request with a value output between them, pixel-
 * interleaved on the GPU pass: within 1e-9 x the CPU window's range of
 * each quantity; aspect as an angle, where the slope is not nearly flat
 * (there the direction of a vanishing gradient is ill-conditioned). */
enum { NQ = 11 };
static void deriv_parity(const fixture *f, size_t k, size_t c0, size_t r0, size_t nc, size_t nr)
{
    static const tps_quantity qs[5] = {TPS_QUANTITY_DZDX, TPS_QUANTITY_DZDY, TPS_QUANTITY_SLOPE,
                                       TPS_QUANTITY_ASPECT, TPS_QUANTITY_LAPLACIAN};
    tps_context *ctx = tps_context_create();
    const size_t plane = nc * nr;
    double *cpu = malloc(NQ * plane * sizeof(double)), *gpu = malloc(NQ * plane * sizeof(double));
    tps_grid g;
    tps_grid_from_geotransform(&g, f->gt, c0, r0, nc, nr);
    tps_output o[NQ];
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.num_threads = 4;
    for (int pass = 0; pass < 2; ++pass) {
        double *dst = pass ? gpu : cpu;
        for (int q = 0; q < NQ; ++q) {
            /* outputs 0-4: band 0, 5: band 1's value, 6-10: band 2 */
            const size_t band = q < 5 ? 0 : q == 5 ? 1 : 2;
            const tps_quantity quantity = q == 5 ? TPS_QUANTITY_VALUE : qs[q < 5 ? q : q - 6];
            o[q] = pass ? (tps_output){band, dst + q, TPS_FLOAT64, NQ * 8, (ptrdiff_t)(NQ * 8 * nc),
                                       quantity}
                        : (tps_output){band, dst + q * plane, TPS_FLOAT64, 8, (ptrdiff_t)(8 * nc),
                                       quantity};
        }
        for (size_t i = 0; i < NQ * plane; ++i)
            dst[i] = -12345.0; /* poison: every element must be written */
        eo.device = pass ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
        CHECK(tps_evaluate_grid(ctx, f->model, &g, NQ, o, &eo) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
    }
    for (int q = 0; q < NQ; ++q) {
        const int is_aspect = q == 3 || q == 9;
        double lo = INFINITY, hi = -INFINITY, grad_max = 0;
        for (size_t i = 0; i < plane; ++i) {
            const double v = cpu[q * plane + i];
            if (isfinite(v)) {
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
            const int s = q < 5 ? 2 : 8; /* that band's slope */
            grad_max = fmax(grad_max, tan(cpu[s * plane + i] / 57.29577951308232));
        }
        const double range = hi > lo ? hi - lo : fmax(fabs(hi), 1e-300);
        double worst = 0;
        for (size_t i = 0; i < plane; ++i) {
            const double a = cpu[q * plane + i], b = gpu[i * NQ + q];
            if (isnan(a) || isnan(b)) {
                worst = isnan(a) && isnan(b) ? worst : INFINITY;
                continue;
            }
            if (is_aspect) {
                const int s = q < 5 ? 2 : 8;
                if (tan(cpu[s * plane + i] / 57.29577951308232) < 1e-3 * grad_max)
                    continue;
                worst = fmax(worst, fabs(remainder(a - b, 360.0)) / 360.0);
            } else {
                worst = fmax(worst, fabs(a - b) / range);
            }
        }
        CHECK(worst <= 1e-9, "case %zu window %zu,%zu %zux%zu output %d: GPU derivative off by "
              "%.3g x range", k, c0, r0, nc, nr, q, worst);
        if (c0 == 0 && r0 == 0)
            printf("case %zu output %d (%s): GPU vs CPU %.2e x range\n", k, q,
                   q == 5 ? "value" : "derivative", worst);
    }
    free(cpu);
    free(gpu);
    tps_context_destroy(ctx);
}

static int parity(void)
{
    local_parity();
    local_solve_parity();
    memory_budget();
    solve_parity(1200, 0.0);
    solve_parity(3500, 1e4);
    struct {
        size_t n;
        double x0, y0, extent, lambda;
    } cases[] = {{2000, 0, 0, 1, 0}, {10000, 0, 0, 1, 0}, {1500, 500000, 5000000, 20000, 0},
                 {1500, 500000, 5000000, 20000, 1e5}, {300, -3, 7, 2, 1e-3}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        fixture f;
        if (!make_fixture(&f, cases[k].n, cases[k].x0, cases[k].y0, cases[k].extent,
                          cases[k].lambda)) {
            ++failures;
            continue;
        }
        double wd[NB], wm[NB];
        compare_window(&f, TPS_PRECISION_DOUBLE, 0, 0, 400, 300, wd);
        compare_window(&f, TPS_PRECISION_MIXED, 0, 0, 400, 300, wm);
        for (int b = 0; b < NB; ++b) {
            printf("case %zu band %d: DOUBLE %.2e, MIXED %.2e (x range)\n", k, b, wd[b], wm[b]);
            CHECK(wd[b] <= 1e-9, "case %zu band %d: DOUBLE off by %.3g x range", k, b, wd[b]);
            /* MIXED's error is a random walk of FP32 roundings of the terms,
             * ~6e-8 x sqrt(sum (w phi)^2); band 0 (sin 6u cos 4v, ~100x
             * cancellation) is the hard case: 1.8e-5 x range before the log
             * centring, ~7e-6 with it (docs/design.md). */
            const double mixed_bound = 1e-5;
            CHECK(wm[b] <= mixed_bound, "case %zu band %d: MIXED off by %.3g x range", k, b,
                  wm[b]);
        }
        /* Odd windows: partial thread tiles, one pixel, one row. */
        size_t wins[][4] = {{1, 1, 1, 1}, {7, 3, 513, 1}, {399, 299, 1, 1}, {13, 17, 129, 77}};
        for (size_t wi = 0; wi < 4; ++wi) {
            compare_window(&f, TPS_PRECISION_DOUBLE, wins[wi][0], wins[wi][1], wins[wi][2],
                           wins[wi][3], wd);
            for (int b = 0; b < NB; ++b)
                CHECK(wd[b] <= 1e-9, "case %zu window %zu band %d: %.3g", k, wi, b, wd[b]);
        }
        mixed_guard(&f, k);
        deriv_parity(&f, k, 0, 0, 400, 300);
        deriv_parity(&f, k, 13, 17, 129, 77);
        deriv_parity(&f, k, 399, 299, 1, 1);
        CHECK(tps_model_device_uploads(f.model) == 1, "derivatives: uploads %zu",
              tps_model_device_uploads(f.model));
        if (k == 0) {
            /* Concurrent readers: one device copy, right answers.
             * (TPS_TEST_BREAK_GPU=1 expects two: a failure on purpose.) */
            pthread_t t[4];
            thread_job jobs[4];
            for (int i = 0; i < 4; ++i) {
                jobs[i] = (thread_job){&f, 100 + i, 0};
                pthread_create(&t[i], NULL, reader, &jobs[i]);
            }
            for (int i = 0; i < 4; ++i) {
                pthread_join(t[i], NULL);
                CHECK(jobs[i].bad == 0, "thread %d: %d bad windows", i, jobs[i].bad);
            }
            const size_t expected_uploads = gpu_test_broken_on_purpose() ? 2 : 1;
            CHECK(tps_model_device_uploads(f.model) == expected_uploads,
                  "uploads: %zu, expected %zu", tps_model_device_uploads(f.model),
                  expected_uploads);
        }
        tps_model_destroy(f.model);
    }
    return 0;
}

static int fallback(void)
{
    tps_context *ctx = tps_context_create();
    CHECK(tps_device_check(ctx, TPS_DEVICE_GPU) == TPS_ERR_DEVICE_UNAVAILABLE,
          "GPU reported usable");
    CHECK(strstr(tps_context_errmsg(ctx), "GPU") != NULL, "message: %s", tps_context_errmsg(ctx));
    printf("DEVICE=GPU says: %s\n", tps_context_errmsg(ctx));
    CHECK(tps_device_choose(TPS_DEVICE_AUTO, 1e15) == TPS_DEVICE_CPU, "AUTO chose the GPU");
    CHECK(tps_device_choose(TPS_DEVICE_GPU, 1e15) == TPS_DEVICE_CPU, "GPU chosen though unusable");
    /* A global and a local model: DEVICE=GPU fails, AUTO evaluates on the
     * CPU and uploads nothing. */
    for (int local = 0; local < 2; ++local) {
        fixture f;
        const int made = make_fixture_mode(&f, local ? 3000 : 200, 0, 0, 1, 0,
                                           local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL);
        CHECK(made, "the %s fixture could not be made", local ? "local" : "global");
        if (!made)
            continue;
        double out[20 * 10], cpu[20 * 10];
        tps_grid g;
        tps_grid_from_geotransform(&g, f.gt, 0, 0, 20, 10);
        tps_output o = {0, out, TPS_FLOAT64, 8, 8 * 20}, oc = {0, cpu, TPS_FLOAT64, 8, 8 * 20};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_GPU;
        CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &o, &eo) == TPS_ERR_DEVICE_UNAVAILABLE,
              "explicit GPU evaluation of a %s model did not fail", local ? "local" : "global");
        for (int i = 0; i < 20 * 10; ++i)
            out[i] = cpu[i] = NAN; /* poison: NaN never compares equal */
        eo.device = TPS_DEVICE_AUTO;
        CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &o, &eo) == TPS_OK, "AUTO: %s",
              tps_context_errmsg(ctx));
        eo.device = TPS_DEVICE_CPU;
        CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &oc, &eo) == TPS_OK, "CPU: %s",
              tps_context_errmsg(ctx));
        int same = 1;
        for (int i = 0; i < 20 * 10; ++i)
            same &= out[i] == cpu[i]; /* false for NaN */
        CHECK(same, "AUTO without a GPU: not the CPU's values (%s model)",
              local ? "local" : "global");
        CHECK(tps_model_device_uploads(f.model) == 0, "uploads without a GPU");
        tps_model_destroy(f.model);
    }
    /* A GPU solve asked for without a GPU: solved on the CPU, and says so. */
    double x[5] = {0, 1, 0, 1, 0.3}, y[5] = {0, 0, 1, 1, 0.6}, z[5] = {1, 2, 3, 4, 5}, lam = 0;
    const double *zp = z;
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.device = TPS_DEVICE_GPU;
    tps_model *m = tps_model_create(ctx, 5, x, y, 1, &zp, &lam, &fo);
    CHECK(m != NULL, "%s", tps_context_errmsg(ctx));
    if (m) {
        tps_model_info info;
        CHECK(tps_model_get_info(ctx, m, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(info.solve_device == TPS_DEVICE_CPU, "solve device %d", (int)info.solve_device);
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
    return 0;
}

/* TPS_GPU_INJECT_FAULT=kind (gpu/fault_inject.cu): the device copy, a launch or
 * a kernel fails. DEVICE=GPU must fail with a clear error, AUTO must give the
 * CPU path's bytes: never a wrong block. One kind per process (a trap kills
 * the CUDA context for good, as a real device fault does). */
static int fault(const char *kind)
{
    setenv("TPS_GPU_INJECT_FAULT", kind, 1);
    tps_context *ctx = tps_context_create();
    for (int local = 0; local < 2; ++local) {
        fixture f;
        if (!make_fixture_mode(&f, local ? 6000 : 2000, 0, 0, 1, 0,
                               local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL)) {
            ++failures;
            continue;
        }
        enum { W = 300, H = 200 };
        double *cpu = malloc(sizeof(double) * W * H), *got = malloc(sizeof(double) * W * H);
        tps_grid g;
        tps_grid_from_geotransform(&g, f.gt, 0, 0, W, H);
        tps_output oc = {0, cpu, TPS_FLOAT64, 8, 8 * W}, og = {0, got, TPS_FLOAT64, 8, 8 * W};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.num_threads = 4;
        eo.device = TPS_DEVICE_CPU;
        CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &oc, &eo) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        for (int round = 0; round < 2; ++round) {
            eo.device = TPS_DEVICE_GPU;
            tps_status st = tps_evaluate_grid(ctx, f.model, &g, 1, &og, &eo);
            CHECK(st == TPS_ERR_DEVICE_UNAVAILABLE, "%s %s round %d: DEVICE=GPU gave %d",
                  kind, local ? "local" : "global", round, (int)st);
            printf("%s, %s model, DEVICE=GPU: %s\n", kind, local ? "local" : "global",
                   tps_context_errmsg(ctx));
            CHECK(strstr(tps_context_errmsg(ctx), "GPU") != NULL, "message: %s",
                  tps_context_errmsg(ctx));
            for (size_t k = 0; k < (size_t)W * H; ++k)
                got[k] = NAN;
            eo.device = TPS_DEVICE_AUTO;
            CHECK(tps_evaluate_grid(ctx, f.model, &g, 1, &og, &eo) == TPS_OK, "AUTO: %s",
                  tps_context_errmsg(ctx));
            CHECK(memcmp(cpu, got, sizeof(double) * W * H) == 0,
                  "%s %s round %d: AUTO's bytes differ from the CPU path's", kind,
                  local ? "local" : "global", round);
        }
        free(cpu);
        free(got);
        tps_model_destroy(f.model);
    }
    tps_context_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "parity";
    char why[512];
    const int expected = gpu_expected(why, sizeof why);
    tps_context *ctx = tps_context_create();
    int skip = 0;
    if (strcmp(what, "fallback") == 0) {
        if (expected) {
            printf("SKIP: the probe finds %s; run with CUDA_VISIBLE_DEVICES= to test the "
                   "fallback\n", why);
            skip = 1;
        } else {
            printf("fallback: %s\n", why);
            fallback();
        }
    } else if (!expected) {
        printf("SKIP: %s\n", why);
        skip = 1;
    } else {
        /* The probe found a GPU: the engine must be able to use it. */
        printf("the probe finds %s: every GPU check must pass\n", why);
        const tps_status st = tps_device_check(ctx, TPS_DEVICE_GPU);
        CHECK(st == TPS_OK, "a GPU is present but the engine cannot use it: %s",
              tps_context_errmsg(ctx));
        if (st == TPS_OK) {
            printf("GPU: %s\n", tps_gpu_description());
            if (strncmp(what, "fault_", 6) == 0)
                fault(what + 6);
            else if (strcmp(what, "local_gcv") == 0)
                local_gcv_parity();
            else
                parity();
        }
    }
    tps_context_destroy(ctx);
    if (skip)
        return 77;
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

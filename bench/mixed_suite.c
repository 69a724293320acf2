/*
 * mixed_suite.c: PRECISION=MIXED on a suite of generated fields (issue 16):
 * N from 100 to 20,000, smooth to noise, offset, elongated and clustered
 * points, grids covering the points, past them, zoomed, coarse, rotated,
 * several bands. The field sampled at uniformly random points over a
 * 1000 x 1000 box and read on 2048^2 cells over the box is issue 16's case.
 *   tps_mixed_suite cpu   on this machine, through the CPU emulation of the
 *                         kernel (core/mixed_emulate.c; lg2.approx modelled
 *                         within its documented error), on sampled blocks:
 *                         the error of the kernel before issue 16 (emulated
 *                         too), of the kernel now, its bound, its fallbacks,
 *                         against the CPU path; exit 1 when an error exceeds
 *                         its bound or the tolerance
 *   tps_mixed_suite gpu   on the GPU, through the engine: each field's whole
 *                         grid in DOUBLE and MIXED, the largest |MIXED -
 *                         DOUBLE| / range, the stats (blocks recomputed in
 *                         DOUBLE, failed self-checks, the bound), the wall
 *                         time of each, and the GPU against the emulation on
 *                         two blocks; exit 1 when a field's error exceeds the
 *                         tolerance or a self-check failed
 * Fields of more than 10,000 points only with the GPU (their CPU solves
 * take minutes here). Prints JSON lines, then a Markdown table.
 */
#include "eval.h"
#include "gpu_backend.h"
#include "mixed.h"
#include "mixed_fields.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOLERANCE 1e-5

enum { MAXB = MF_BANDS };

typedef mixed_field field;

/* name, n, layout, bands' values, lambda, grid (autotest/c/mixed_fields.h);
 * the grid 2048^2 pixels, MF_COARSE 256^2. */
static const field suite[] = {
    {"issue 16 (sin 9u cos 6v)", 1000, MF_BOX, {MF_ISSUE16, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"issue 16", 3000, MF_BOX, {MF_ISSUE16, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"issue 16", 10000, MF_BOX, {MF_ISSUE16, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"test_gpu's (sin 6u cos 4v)", 1000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"test_gpu's", 10000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"smooth (sin 2u cos 1.5v)", 2000, MF_BOX, {MF_SMOOTH, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"Franke", 2000, MF_BOX, {MF_FRANKE, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"bump x 100", 3000, MF_BOX, {MF_BUMP, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"rough (sin 20u cos 17v)", 1000, MF_BOX, {MF_ROUGH, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"rough", 5000, MF_BOX, {MF_ROUGH, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"noise", 1000, MF_BOX, {MF_NOISE, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"noise, smoothed (1e6)", 2000, MF_BOX, {MF_NOISE, MF_NONE, MF_NONE}, 1e6, MF_COVER},
    {"UTM offset, 20 km", 3000, MF_UTM, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"elongated 4:1", 3000, MF_ELONGATED, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"clustered (80% in 0.25%)", 3000, MF_CLUSTERED, {MF_SMOOTH, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"grid rotated, 50% past", 2000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_ROTATED},
    {"grid zoomed x10", 2000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_ZOOM},
    {"grid coarse, 256^2", 2000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COARSE},
    {"few points", 100, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"lattice 50 x 50", 2500, MF_LATTICE, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"3 bands (wiggly, bump, NaN)", 2000, MF_BOX, {MF_WIGGLY, MF_BUMP, MF_PRODUCT_HOLES},
        0, MF_COVER},
    {"quadratic", 1500, MF_BOX, {MF_QUADRATIC, MF_NONE, MF_NONE}, 0, MF_COVER},
    {"test_gpu's", 20000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER},
};

typedef struct built {
    tps_model *model;
    tps_grid grid;
    size_t nb;
    double range[MAXB], sum_abs_h[MAXB];
} built;

static int build(const field *f, int threads, built *bt)
{
    tps_context *ctx = tps_context_create();
    bt->model = mixed_field_model(ctx, f, threads, &bt->nb);
    if (!bt->model)
        fprintf(stderr, "%s: %s\n", f->name, tps_context_errmsg(ctx));
    tps_context_destroy(ctx);
    if (!bt->model)
        return 0;
    for (size_t b = 0; b < bt->nb; ++b) {
        const tps_band_info *bi = &bt->model->band_info[b];
        bt->range[b] = bi->value_max - bi->value_min;
        bt->sum_abs_h[b] = 0;
        for (size_t i = 0; i < bt->model->n; ++i)
            bt->sum_abs_h[b] += fabs(bt->model->half_weights[b][i]);
    }
    mixed_field_grid(f, 2048, 2048, 256, 256, &bt->grid);
    return 1;
}

/* ---- the kernel before issue 16, emulated (its error is the "before"
 * column): points in the model's order as FP32, weights h ln 2 in FP32,
 * a thread of 4 pixels 128 columns apart centred on its mean squared
 * distance to the points, tiles of 256 summed with Kahan, the FP64 end. */
typedef struct old_kernel {
    size_t n_pad;
    float *u, *v, *w;
    double mu, mv, spread, mo[4];
} old_kernel;

static void old_setup(const tps_model *md, size_t band, old_kernel *o)
{
    o->n_pad = (md->n + 255) / 256 * 256;
    o->u = calloc(o->n_pad, sizeof(float));
    o->v = calloc(o->n_pad, sizeof(float));
    o->w = calloc(o->n_pad, sizeof(float));
    double su = 0, sv = 0, ss = 0;
    memset(o->mo, 0, sizeof o->mo);
    for (size_t i = 0; i < md->n; ++i) {
        o->u[i] = (float)md->u[i];
        o->v[i] = (float)md->v[i];
        o->w[i] = (float)(md->half_weights[band][i] * 0.69314718055994530942);
        su += md->u[i];
        sv += md->v[i];
        const double wf = o->w[i], uf = o->u[i], vf = o->v[i];
        o->mo[0] += wf;
        o->mo[1] += wf * uf;
        o->mo[2] += wf * vf;
        o->mo[3] += wf * fma(uf, uf, vf * vf);
    }
    o->mu = su / (double)md->n;
    o->mv = sv / (double)md->n;
    for (size_t i = 0; i < md->n; ++i)
        ss += (md->u[i] - o->mu) * (md->u[i] - o->mu) + (md->v[i] - o->mv) * (md->v[i] - o->mv);
    o->spread = ss / (double)md->n;
}

static void old_free(old_kernel *o)
{
    free(o->u);
    free(o->v);
    free(o->w);
}

/* The old kernel's sum at column col, row row of a read of the whole grid. */
static double old_sum(const old_kernel *o, const tps_window *w, size_t col, size_t row)
{
    const size_t blk = col / 512, tid = col % 128, p = (col % 512) / 128;
    double pu[4], pv[4], mean_u = 0, mean_v = 0;
    for (size_t k = 0; k < 4; ++k) {
        size_t c = blk * 512 + k * 128 + tid;
        if (c >= w->ncols)
            c = w->ncols - 1;
        tps_cell_centre(w, (double)c, (double)row, &pu[k], &pv[k]);
        mean_u += pu[k];
        mean_v += pv[k];
    }
    const double du = mean_u / 4 - o->mu, dv = mean_v / 4 - o->mv;
    const float a = exp2f(-0.5f * (tps_mixed_lg2((float)fma(du, du, fma(dv, dv, o->spread))) + 2.0f));
    const float su = a * (float)pu[p], sv = a * (float)pv[p];
    double acc = 0;
    for (size_t t0 = 0; t0 < o->n_pad; t0 += 256) {
        float part = 0, comp = 0;
        for (size_t k = t0; k < t0 + 256; ++k) {
            const float dx = fmaf(-a, o->u[k], su), dy = fmaf(-a, o->v[k], sv);
            const float s2 = fmaf(dx, dx, fmaf(dy, dy, 1e-30f));
            const float phi = s2 * tps_mixed_lg2(s2);
            const float y = fmaf(o->w[k], phi, -comp), t = part + y;
            comp = (t - part) - y;
            part = t;
        }
        acc += (double)part - (double)comp;
    }
    const double a2 = (double)a * (double)a, L = log2(a2);
    const double qu = (double)su / (double)a, qv = (double)sv / (double)a;
    const double q2 = fma(qu, qu, qv * qv);
    const double swr2 = fma(o->mo[0], q2, fma(-2.0 * qu, o->mo[1], fma(-2.0 * qv, o->mo[2], o->mo[3])));
    return acc / a2 - L * swr2;
}

/* ---- one field ---- */

typedef struct row {
    const char *name;
    size_t n, side, nb;
    double h_range;   /* 2 sum |h| / range: how much the terms cancel */
    double old_err;   /* cpu: the old kernel's, emulated */
    double err;       /* cpu: the emulation's; gpu: |MIXED - DOUBLE| */
    double emu_diff;  /* gpu: |GPU - emulation| on two blocks */
    double t_double, t_mixed;
    tps_eval_stats st;
} row;

/* The field's blocks sampled (stride), each a window of its own. */
static int run_cpu(const field *f, const built *bt, row *r)
{
    const tps_grid *g = &bt->grid;
    const size_t bx_n = (g->ncols + 31) / 32, by_n = (g->nrows + 15) / 16;
    const size_t stride = bx_n / 6 > 1 ? bx_n / 6 : 1;
    double emu[MAXB * 512], cpu[MAXB * 512];
    tps_context *ctx = tps_context_create();
    const tps_window w = tps_window_of(bt->model, g);
    old_kernel ok;
    old_setup(bt->model, 0, &ok);
    int bad = 0;
    memset(&r->st, 0, sizeof r->st);
    for (size_t by = stride / 2; by < by_n; by += 2 * stride)
        for (size_t bx = stride / 2; bx < bx_n; bx += stride) {
            tps_grid sub = *g;
            sub.first_col = bx * 32;
            sub.first_row = by * 16;
            sub.ncols = g->ncols - sub.first_col < 32 ? g->ncols - sub.first_col : 32;
            sub.nrows = g->nrows - sub.first_row < 16 ? g->nrows - sub.first_row : 16;
            const size_t np = sub.ncols * sub.nrows;
            tps_output oe[MAXB], oc[MAXB];
            for (size_t b = 0; b < bt->nb; ++b) {
                oe[b] = (tps_output){b, emu + b * np, TPS_FLOAT64, 8, (ptrdiff_t)(8 * sub.ncols)};
                oc[b] = (tps_output){b, cpu + b * np, TPS_FLOAT64, 8, (ptrdiff_t)(8 * sub.ncols)};
            }
            tps_eval_options eo;
            tps_eval_options_init(&eo);
            eo.device = TPS_DEVICE_CPU;
            tps_eval_stats st;
            if (tps_evaluate_grid(ctx, bt->model, &sub, bt->nb, oc, &eo) != TPS_OK ||
                tps_mixed_emulate_grid(ctx, bt->model, &sub, bt->nb, oe, TOLERANCE, 1, 0, &st) !=
                    TPS_OK) {
                fprintf(stderr, "%s: %s\n", f->name, tps_context_errmsg(ctx));
                tps_context_destroy(ctx);
                old_free(&ok);
                return 0;
            }
            r->st.mixed_blocks += st.mixed_blocks;
            r->st.fallback_blocks += st.fallback_blocks;
            r->st.check_failures += st.check_failures;
            r->st.max_error_estimate = fmax(r->st.max_error_estimate, st.max_error_estimate);
            for (size_t b = 0; b < bt->nb; ++b) {
                double e = 0;
                for (size_t k = 0; k < np; ++k)
                    e = fmax(e, fabs(emu[b * np + k] - cpu[b * np + k]));
                e /= bt->range[b];
                r->err = fmax(r->err, e);
                bad |= !(e <= TOLERANCE) || (!st.fallback_blocks && !(e <= st.max_error_estimate));
            }
            /* the old kernel, band 0, on a quarter of the block's pixels */
            for (size_t k = 0; k < np; k += 4) {
                const size_t c = sub.first_col + k % sub.ncols, rr = sub.first_row + k / sub.ncols;
                double u, v;
                tps_cell_centre(&w, (double)c, (double)rr, &u, &v);
                const double *a = bt->model->affine[0];
                const double old = old_sum(&ok, &w, c, rr) + a[0] + a[1] * u + a[2] * v;
                r->old_err = fmax(r->old_err, fabs(old - cpu[k]) / bt->range[0]);
            }
        }
    old_free(&ok);
    tps_context_destroy(ctx);
    return !bad && r->st.check_failures == 0;
}

static int run_gpu(const field *f, const built *bt, row *r)
{
    const tps_grid *g = &bt->grid;
    const size_t np = g->ncols * g->nrows;
    float *d = malloc(sizeof(float) * np * bt->nb), *m = malloc(sizeof(float) * np * bt->nb);
    double *md = malloc(sizeof(double) * np * bt->nb), *mm = malloc(sizeof(double) * np * bt->nb);
    tps_context *ctx = tps_context_create();
    int ok = d && m && md && mm;
    for (int pass = 0; pass < 3 && ok; ++pass) { /* a warm-up (the upload), then the two */
        tps_output o[MAXB];
        for (size_t b = 0; b < bt->nb; ++b)
            o[b] = (tps_output){b, (pass == 2 ? m : d) + b * np, TPS_FLOAT32, 4,
                                (ptrdiff_t)(4 * g->ncols)};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_GPU;
        eo.precision = pass == 2 ? TPS_PRECISION_MIXED : TPS_PRECISION_DOUBLE;
        eo.tolerance = TOLERANCE;
        eo.stats = &r->st;
        const double t0 = tps_now_seconds();
        ok = tps_evaluate_grid(ctx, bt->model, g, bt->nb, o, &eo) == TPS_OK;
        *(pass == 2 ? &r->t_mixed : &r->t_double) = tps_now_seconds() - t0;
    }
    /* Float64 for the errors (Float32 outputs above, as a raster is read) */
    for (int pass = 0; pass < 2 && ok; ++pass) {
        tps_output o[MAXB];
        for (size_t b = 0; b < bt->nb; ++b)
            o[b] = (tps_output){b, (pass ? mm : md) + b * np, TPS_FLOAT64, 8,
                                (ptrdiff_t)(8 * g->ncols)};
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_GPU;
        eo.precision = pass ? TPS_PRECISION_MIXED : TPS_PRECISION_DOUBLE;
        eo.tolerance = TOLERANCE;
        eo.stats = pass ? &r->st : NULL;
        ok = tps_evaluate_grid(ctx, bt->model, g, bt->nb, o, &eo) == TPS_OK;
    }
    if (!ok)
        fprintf(stderr, "%s: %s\n", f->name, tps_context_errmsg(ctx));
    for (size_t b = 0; ok && b < bt->nb; ++b)
        for (size_t k = 0; k < np; ++k)
            r->err = fmax(r->err, fabs(mm[b * np + k] - md[b * np + k]) / bt->range[b]);
    /* the GPU against the emulation, on two blocks */
    for (int s = 0; ok && s < 2; ++s) {
        tps_grid sub = *g;
        sub.first_col = (s ? g->ncols / 2 : 0) / 32 * 32;
        sub.first_row = (s ? g->nrows / 3 : 0) / 16 * 16;
        sub.ncols = 32;
        sub.nrows = 16;
        double emu[MAXB * 512];
        tps_output o[MAXB];
        for (size_t b = 0; b < bt->nb; ++b)
            o[b] = (tps_output){b, emu + b * 512, TPS_FLOAT64, 8, 8 * 32};
        tps_eval_stats st;
        ok = tps_mixed_emulate_grid(ctx, bt->model, &sub, bt->nb, o, TOLERANCE, 1, 0, &st) ==
             TPS_OK;
        for (size_t b = 0; ok && b < bt->nb; ++b)
            for (size_t k = 0; k < 512; ++k) {
                const size_t i = (sub.first_row + k / 32) * g->ncols + sub.first_col + k % 32;
                r->emu_diff = fmax(r->emu_diff, fabs(emu[b * 512 + k] - mm[b * np + i]) / bt->range[b]);
            }
    }
    tps_context_destroy(ctx);
    free(d);
    free(m);
    free(md);
    free(mm);
    return ok && r->err <= TOLERANCE && r->st.check_failures == 0;
}

int main(int argc, char **argv)
{
    const int gpu = argc > 1 && strcmp(argv[1], "gpu") == 0;
    if (argc < 2 || (!gpu && strcmp(argv[1], "cpu") != 0)) {
        fprintf(stderr, "usage: tps_mixed_suite cpu|gpu\n");
        return 2;
    }
    const int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (gpu) {
        tps_context *ctx = tps_context_create();
        if (tps_device_check(ctx, TPS_DEVICE_GPU) != TPS_OK) {
            fprintf(stderr, "no usable GPU: %s\n", tps_context_errmsg(ctx));
            return 1;
        }
        tps_context_destroy(ctx);
        printf("# GPU: %s; tolerance %g x range\n", tps_gpu_description(), TOLERANCE);
    } else {
        printf("# CPU emulation of the MIXED kernel (lg2.approx: log2f + a pseudo-random error "
               "uniform within its documented bound); tolerance %g x range\n", TOLERANCE);
    }
    const size_t n_fields = sizeof suite / sizeof suite[0];
    row rows[sizeof suite / sizeof suite[0]];
    int all_ok = 1;
    size_t done = 0;
    for (size_t k = 0; k < n_fields; ++k) {
        const field *f = &suite[k];
        if (!gpu && f->n > 10000)
            continue;
        built bt;
        if (!build(f, threads, &bt)) {
            all_ok = 0;
            continue;
        }
        row *r = &rows[done++];
        memset(r, 0, sizeof *r);
        r->name = f->name;
        r->n = f->n;
        r->side = bt.grid.ncols;
        r->nb = bt.nb;
        r->h_range = 2 * bt.sum_abs_h[0] / bt.range[0];
        const int ok = gpu ? run_gpu(f, &bt, r) : run_cpu(f, &bt, r);
        all_ok &= ok;
        printf("{\"field\": \"%s\", \"n\": %zu, \"grid\": %zu, \"bands\": %zu, "
               "\"sum_abs_w_over_range\": %.3g, \"%s\": %.3g, \"old_err\": %.3g, "
               "\"bound\": %.3g, \"blocks\": %zu, \"fallback_blocks\": %zu, "
               "\"check_failures\": %zu, \"gpu_minus_emulation\": %.3g, \"double_s\": %.4f, "
               "\"mixed_s\": %.4f, \"ok\": %s}\n",
               f->name, f->n, r->side, r->nb, r->h_range, gpu ? "err_vs_double" : "err_vs_cpu",
               r->err, r->old_err, r->st.max_error_estimate, r->st.mixed_blocks,
               r->st.fallback_blocks, r->st.check_failures, r->emu_diff, r->t_double, r->t_mixed,
               ok ? "true" : "false");
        fflush(stdout);
        tps_model_destroy(bt.model);
    }
    if (gpu) {
        printf("\n| field | N | grid | 2 sum\\|h\\| / range | MIXED error (x range, vs DOUBLE) | "
               "bound | blocks recomputed in DOUBLE | failed self-checks | GPU - emulation | "
               "DOUBLE s | MIXED s |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (size_t k = 0; k < done; ++k) {
            const row *r = &rows[k];
            printf("| %s | %zu | %zu² | %.0f | %.1e | %.1e | %zu of %zu | %zu | %.1e | %.3f | "
                   "%.3f |\n",
                   r->name, r->n, r->side, r->h_range, r->err, r->st.max_error_estimate,
                   r->st.fallback_blocks, r->st.mixed_blocks, r->st.check_failures, r->emu_diff,
                   r->t_double, r->t_mixed);
        }
    } else {
        printf("\n| field | N | grid | 2 sum\\|h\\| / range | before (emulated) | now (emulated) | "
               "bound | blocks recomputed in DOUBLE |\n|---|---|---|---|---|---|---|---|\n");
        for (size_t k = 0; k < done; ++k) {
            const row *r = &rows[k];
            printf("| %s | %zu | %zu² | %.0f | %.1e | %.1e | %.1e | %zu of %zu |\n", r->name, r->n,
                   r->side, r->h_range, r->old_err, r->err, r->st.max_error_estimate,
                   r->st.fallback_blocks, r->st.mixed_blocks);
        }
    }
    printf("\n%s\n", all_ok ? "every field within the tolerance (or recomputed in DOUBLE)"
                            : "FAILED: a field off its tolerance or bound, or a failed check");
    return all_ok ? 0 : 1;
}

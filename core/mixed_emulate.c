/* mixed_emulate.c: PRECISION=MIXED on the CPU, for the engine's tests and
 * benchmarks only (tps_testing.h): the GPU kernel's blocks, their error
 * bound, near and far fields, self-check and DOUBLE fallback (gpu/mixed.cu),
 * with the same arithmetic: the functions of mixed.h, FP32 and FP64 as on
 * the device. What cannot run here is modelled: the special-function unit's
 * lg2.approx as glibc's log2f plus a deterministic pseudo-random error,
 * uniform within kappa x its documented bound (tps_mixed_lg2), and DOUBLE
 * as the CPU path. Slow: a reference for the arithmetic, not a path of the
 * engine. */
#include "eval.h"
#include "mixed.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    ROWS = TPS_MIXED_BLOCK_ROWS,
    COLS = TPS_MIXED_BLOCK_COLS,
    PIX = TPS_MIXED_PIX,
    NB_MAX = 4 /* bands per pass, as on the GPU */
};

static double lg2_kappa = 1.0;

void tps_mixed_set_lg2_model(double kappa)
{
    lg2_kappa = kappa;
}

static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* lg2.approx.ftz.f32 as documented (CUDA C Programming Guide, intrinsic
 * functions: __log2f): absolute error <= 2^-22 on [0.5, 2], else <= 2 ulp.
 * log2f's own error (< 1 ulp) and the final rounding are kept inside. */
float tps_mixed_lg2(float s)
{
    const float l = log2f(s);
    if (lg2_kappa == 0.0 || !(s > 0.0f) || isinf(s))
        return l;
    int e = 0;
    (void)frexpf(l, &e);
    const double ulp = l != 0.0f ? ldexp(1.0, e - 24) : 0x1p-149;
    const double bound = s >= 0.5f && s <= 2.0f ? 0x1p-22 : 2.0 * ulp;
    const double room = fmax(bound - 1.5 * ulp, 0.0);
    uint32_t bits;
    memcpy(&bits, &s, sizeof bits);
    /* kappa < 0: always +|kappa| x the room, the sign of a systematic error */
    const double r = lg2_kappa < 0.0 ? 1.0 : (double)mix32(bits) / 2147483648.0 - 1.0;
    return (float)((double)l + fabs(lg2_kappa) * room * r);
}

typedef struct emu {
    const tps_model *md;
    tps_mixed_layout L;
    tps_window w;
    const tps_grid *grid;
    int same_v;
    double tolerance;
    double budget; /* for truncation: tps_mixed_trunc_budget, the model's */
    size_t force_every;
    tps_eval_stats *stats;
} emu;

/* A pass: up to NB_MAX outputs of consecutive model bands. */
typedef struct pass {
    int band0, nb;
    const tps_output *out[NB_MAX];
    double tol[NB_MAX], inv_range[NB_MAX], abs_h[NB_MAX];
} pass;

/* A far cluster's sum at one thread's PIX pixels (the kernel's far_sums). */
static void far_sums(const double *geo, const double *coef, int p, const pass *ps,
                     const double *pu, const double *pv, double (*acc)[PIX])
{
    double zr[PIX], zi[PIX], r2[PIX], lnr2[PIX], er[PIX], ei[PIX];
    for (int k = 0; k < PIX; ++k) {
        zr[k] = pu[k] - geo[0];
        zi[k] = pv[k] - geo[1];
        r2[k] = fma(zr[k], zr[k], zi[k] * zi[k]);
        const double inv = 1.0 / r2[k];
        lnr2[k] = log(r2[k]);
        er[k] = zr[k] * inv;
        ei[k] = -zi[k] * inv;
    }
    for (int b = 0; b < ps->nb; ++b)
        tps_mixed_m2p(coef + (size_t)(ps->band0 + b) * TPS_MIXED_COEF, p, PIX, zr, zi, r2, lnr2,
                      er, ei, acc[b]);
}

/* One thread's near sum of group g: its PIX pixels (same row). */
static void near_group(const emu *E, size_t g, int j, const pass *ps, const double *pu,
                       const double *pv, double (*acc)[PIX])
{
    const tps_mixed_layout *L = &E->L;
    const double *geo = L->group + 4 * g;
    const float a = ldexpf(1.0f, j);
    float x[PIX], y[PIX], part[NB_MAX][PIX], comp[NB_MAX][PIX];
    for (int k = 0; k < PIX; ++k) {
        x[k] = (float)ldexp(pu[k] - geo[0], j);
        y[k] = (float)ldexp(pv[k] - geo[1], j);
        for (int b = 0; b < ps->nb; ++b)
            part[b][k] = comp[b][k] = 0.0f;
    }
    const size_t i0 = g * TPS_MIXED_GROUP;
    for (size_t i = i0; i < i0 + TPS_MIXED_GROUP; ++i) {
        const float qu = L->q[2 * i], qv = L->q[2 * i + 1];
        const float dy0 = tps_mixed_dy2(a, qv, y[0]);
        for (int k = 0; k < PIX; ++k) {
            const float dy2 = E->same_v ? dy0 : tps_mixed_dy2(a, qv, y[k]);
            const float phi = tps_mixed_phi(a, qu, x[k], dy2);
            for (int b = 0; b < ps->nb; ++b) {
                const size_t o = (size_t)(ps->band0 + b) * L->n_pad + i;
                tps_mixed_kahan(L->w[o], L->wlo[o], phi, &part[b][k], &comp[b][k]);
            }
        }
    }
    for (int b = 0; b < ps->nb; ++b) {
        const double *mo = L->group_near + (g * L->n_bands + (size_t)(ps->band0 + b)) * 4;
        for (int k = 0; k < PIX; ++k)
            acc[b][k] += tps_mixed_near_finish(part[b][k], comp[b][k], j, x[k], y[k], mo);
    }
}

/* The kernel sums (no affine part) of one thread's pixels. */
static void thread_sums(const emu *E, const double box[4], const pass *ps, const double *pu,
                        const double *pv, double (*acc)[PIX])
{
    const tps_mixed_layout *L = &E->L;
    for (int b = 0; b < ps->nb; ++b)
        for (int k = 0; k < PIX; ++k)
            acc[b][k] = 0.0;
    for (size_t t = 0; t < L->n_tiles; ++t) {
        int p, j;
        double rmin, rmax;
        tps_mixed_plan(box, L->tile + 4 * t, E->budget, &p, &j, &rmin, &rmax);
        if (p > 0)
            far_sums(L->tile + 4 * t, L->tile_coef + t * L->n_bands * TPS_MIXED_COEF, p, ps, pu,
                     pv, acc);
        if (p != 0)
            continue;
        for (size_t g = t * TPS_MIXED_TILE_GROUPS; g < (t + 1) * TPS_MIXED_TILE_GROUPS; ++g) {
            tps_mixed_plan(box, L->group + 4 * g, E->budget, &p, &j, &rmin, &rmax);
            if (p > 0) {
                far_sums(L->group + 4 * g, L->group_coef + g * L->n_bands * TPS_MIXED_COEF, p, ps,
                         pu, pv, acc);
            } else if (p == 0) {
                near_group(E, g, j, ps, pu, pv, acc);
            }
        }
    }
}

/* The model's sum at (pu, pv) in FP64: the self-check's reference. */
static double fp64_sum(const tps_model *md, size_t band, double pu, double pv)
{
    double s = 0.0;
    for (size_t i = 0; i < md->n; ++i) {
        const double dx = pu - md->u[i], dy = pv - md->v[i];
        const double r2 = fma(dx, dx, fma(dy, dy, 1e-300));
        s = fma(md->half_weights[band][i], r2 * log(r2), s);
    }
    return s;
}

/* Block (bx, by) of the grid (absolute block indices): its pixels inside
 * the window into the pass's outputs. */
static tps_status emulate_block(tps_context *ctx, const emu *E, const pass *ps, size_t bx,
                                size_t by)
{
    const tps_model *md = E->md;
    static const double far = 1e308;
    double pu[ROWS][COLS], pv[ROWS][COLS];
    double box[4] = {far, -far, far, -far};
    for (int r = 0; r < ROWS; ++r)
        for (int c = 0; c < COLS; ++c) {
            tps_cell_centre(&E->w, (double)(bx * COLS + (size_t)c), (double)(by * ROWS + (size_t)r),
                            &pu[r][c], &pv[r][c]);
            box[0] = fmin(box[0], pu[r][c]);
            box[1] = fmax(box[1], pu[r][c]);
            box[2] = fmin(box[2], pv[r][c]);
            box[3] = fmax(box[3], pv[r][c]);
        }
    const tps_mixed_layout *L = &E->L;
    double bound[NB_MAX] = {0};
    const size_t tc = L->n_bands * TPS_MIXED_COEF;
    for (size_t g = 0; g < L->n_groups; ++g) {
        const size_t t = g / TPS_MIXED_TILE_GROUPS;
        int tp, gp, gj;
        tps_mixed_group_bound(box, L->tile + 4 * t, L->tile_coef + t * tc,
                              (int)(g % TPS_MIXED_TILE_GROUPS),
                              L->group + 4 * t * TPS_MIXED_TILE_GROUPS,
                              L->group_coef + t * TPS_MIXED_TILE_GROUPS * tc, L->n_bands,
                              ps->band0, ps->nb, E->budget, bound, &tp, &gp, &gj);
    }
    int fail = E->force_every && (bx + by) % E->force_every == 0, violation = 0;
    for (int b = 0; b < ps->nb; ++b)
        fail |= !(bound[b] <= ps->tol[b]);
    double acc[NB_MAX][ROWS][COLS];
    if (!fail) {
        for (int r = 0; r < ROWS; ++r)
            for (int c0 = 0; c0 < COLS; c0 += PIX) {
                double a[NB_MAX][PIX];
                thread_sums(E, box, ps, &pu[r][c0], &pv[r][c0], a);
                for (int b = 0; b < ps->nb; ++b)
                    for (int k = 0; k < PIX; ++k)
                        acc[b][r][c0 + k] = a[b][k];
            }
        /* The self-check: one pixel, chosen by the block's indices. */
        int sr, sc;
        tps_mixed_sample(bx, by, &sr, &sc);
        for (int b = 0; b < ps->nb; ++b) {
            const double ref = fp64_sum(md, (size_t)(ps->band0 + b), pu[sr][sc], pv[sr][sc]);
            const double slack = tps_mixed_check_slack(ps->abs_h[b], pu[sr][sc], pv[sr][sc]);
            if (!(fabs(acc[b][sr][sc] - ref) <= bound[b] + slack))
                violation = 1;
        }
        fail |= violation;
    }
    /* The window's share of the block. */
    const size_t c_lo = bx * COLS, r_lo = by * ROWS;
    const size_t wc0 = E->w.first_col, wr0 = E->w.first_row;
    const size_t c0 = c_lo > wc0 ? c_lo : wc0, r0 = r_lo > wr0 ? r_lo : wr0;
    const size_t c1 = c_lo + COLS < wc0 + E->w.ncols ? c_lo + COLS : wc0 + E->w.ncols;
    const size_t r1 = r_lo + ROWS < wr0 + E->w.nrows ? r_lo + ROWS : wr0 + E->w.nrows;
    if (fail) {
        /* DOUBLE: the CPU path's values. */
        tps_grid sub = *E->grid;
        sub.first_col = c0;
        sub.first_row = r0;
        sub.ncols = c1 - c0;
        sub.nrows = r1 - r0;
        tps_output o[NB_MAX];
        for (int b = 0; b < ps->nb; ++b) {
            o[b] = *ps->out[b];
            o[b].data = (char *)o[b].data + (ptrdiff_t)(r0 - wr0) * o[b].line_stride +
                        (ptrdiff_t)(c0 - wc0) * o[b].pixel_stride;
        }
        tps_eval_options eo;
        tps_eval_options_init(&eo);
        eo.device = TPS_DEVICE_CPU;
        const tps_status st = tps_evaluate_grid(ctx, md, &sub, (size_t)ps->nb, o, &eo);
        if (st != TPS_OK)
            return st;
    } else {
        for (size_t r = r0; r < r1; ++r)
            for (size_t c = c0; c < c1; ++c)
                for (int b = 0; b < ps->nb; ++b) {
                    const double *a = md->affine[ps->band0 + b];
                    const double x = pu[r - r_lo][c - c_lo], y = pv[r - r_lo][c - c_lo];
                    tps_output_store(ps->out[b], r - wr0, c - wc0,
                                     acc[b][r - r_lo][c - c_lo] + a[0] + a[1] * x + a[2] * y);
                }
    }
    tps_eval_stats *st = E->stats;
    st->mixed_blocks++;
    st->fallback_blocks += (size_t)fail;
    st->check_failures += (size_t)violation;
    if (!fail)
        for (int b = 0; b < ps->nb; ++b)
            st->max_error_estimate = fmax(st->max_error_estimate, bound[b] * ps->inv_range[b]);
    return TPS_OK;
}

tps_status tps_mixed_emulate_grid(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                                  size_t n_outputs, const tps_output *outputs, double tolerance,
                                  size_t block_stride, size_t force_every, tps_eval_stats *stats)
{
    tps_clear_error(ctx);
    if (!model || model->local || !grid || !stats || (n_outputs && !outputs))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             "MIXED emulation: a global model, a grid and stats are needed");
    for (size_t k = 0; k < n_outputs; ++k)
        if (outputs[k].band >= model->n_bands || outputs[k].quantity != TPS_QUANTITY_VALUE)
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "MIXED emulation: output %zu is not a value band", k);
    memset(stats, 0, sizeof *stats);
    emu E;
    memset(&E, 0, sizeof E);
    E.md = model;
    E.grid = grid;
    E.w = tps_window_of(model, grid);
    E.same_v = E.w.cv == 0.0;
    E.tolerance = tolerance > 0.0 ? tolerance : TPS_DEFAULT_TOLERANCE;
    E.force_every = force_every;
    E.stats = stats;
    if (tps_mixed_layout_build(&E.L, model->n, model->u, model->v, model->n_bands,
                               (const double *const *)model->half_weights) != TPS_OK)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the MIXED layout");
    /* The budget from every band, as the GPU's upload has them (gpu/global.cu). */
    {
        double *range = calloc(model->n_bands, sizeof *range);
        if (!range) {
            tps_mixed_layout_free(&E.L);
            return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the MIXED layout");
        }
        for (size_t b = 0; b < model->n_bands; ++b)
            range[b] = model->band_info[b].value_max - model->band_info[b].value_min;
        E.budget = tps_mixed_trunc_budget(E.tolerance, range, E.L.abs_h, model->n_bands);
        free(range);
    }
    if (block_stride < 1)
        block_stride = 1;
    tps_status st = TPS_OK;
    const tps_window *w = &E.w;
    const size_t bx0 = w->first_col / COLS, bx1 = (w->first_col + w->ncols + COLS - 1) / COLS;
    const size_t by0 = w->first_row / ROWS, by1 = (w->first_row + w->nrows + ROWS - 1) / ROWS;
    for (size_t k0 = 0; k0 < n_outputs && st == TPS_OK;) {
        pass ps;
        memset(&ps, 0, sizeof ps);
        ps.band0 = (int)outputs[k0].band;
        while (k0 + (size_t)ps.nb < n_outputs && ps.nb < NB_MAX &&
               outputs[k0 + (size_t)ps.nb].band == outputs[k0].band + (size_t)ps.nb) {
            const int b = ps.nb++;
            const tps_band_info *bi = &model->band_info[ps.band0 + b];
            const double range = bi->value_max - bi->value_min;
            ps.out[b] = &outputs[k0 + (size_t)b];
            ps.tol[b] = E.tolerance * range;
            ps.inv_range[b] = range > 0.0 ? 1.0 / range : 0.0;
            ps.abs_h[b] = E.L.abs_h[ps.band0 + b];
        }
        for (size_t by = by0; by < by1 && st == TPS_OK; ++by)
            for (size_t bx = bx0; bx < bx1 && st == TPS_OK; ++bx)
                if ((by - by0) % block_stride == 0 && (bx - bx0) % block_stride == 0)
                    st = emulate_block(ctx, &E, &ps, bx, by);
        k0 += (size_t)ps.nb;
    }
    tps_mixed_layout_free(&E.L);
    return st;
}

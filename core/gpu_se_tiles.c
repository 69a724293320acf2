/* gpu_se_tiles.c: a GPU request's standard errors in tiles of low rank
 * (se_tile.h's tiles; docs/design.md, "Tiles in low rank", "The GPU
 * port"). The host plans each tile as the CPU does (its near points and
 * guard targets, tps_se_tile_frame_make: O(N) a tile), the device computes
 * a group of TPS_GPU_SE_GROUP^2 tiles at once (gpu/se_tiles.cu, all the
 * Chebyshev nodes' columns: no compression), and the host checks each
 * tile's guards as the CPU does; a tile refused by them, or too dense for
 * tiles, is computed by the exact blocks (gpu/se.cu) as a whole tile.
 * Groups and tiles are aligned on the grid's absolute cells and computed
 * whole, so a cell's bytes depend only on its tile, never on the window. */
#include "gpu_backend.h"
#include "se_tile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(TPS_GPU_SE_TILE == TPS_SE_TILE && TPS_GPU_SE_NODES == TPS_SE_TILE_NODES &&
                   TPS_GPU_SE_GUARDS == TPS_SE_TILE_GUARDS &&
                   TPS_GPU_SE_MAX_COLS == TPS_SE_TILE_MAX_COLS,
               "the device's tiles are se_tile.h's");

enum {
    T = TPS_SE_TILE,
    Q = TPS_SE_TILE_NODES,
    G = TPS_SE_TILE_GUARDS,
    GR = TPS_GPU_SE_GROUP,
    S = GR * GR,
    SIDE = GR * T,
    OUTSIDE = 255 /* a slot without a cell of the window */
};

/* One request's buffers for its groups. */
typedef struct group_work {
    tps_gpu_se_tile rec[S];
    unsigned char kind[S]; /* tps_se_tile_kind, or OUTSIDE */
    double guards[S * G * 3];
    int near[S * TPS_SE_TILE_MAX_COLS];
    unsigned char *is_near; /* n */
    double *col;            /* n */
    double *zs;             /* n_cov x SIDE^2, the group's covariates */
    double *out;            /* SIDE^2 */
    double *tzs, *tout;     /* an exact tile's covariates (n_cov x T^2) and values (T^2) */
} group_work;

typedef struct tiled_output {
    tps_context *ctx;
    const tps_eval_job *job;
    const tps_output *o;
    const tps_se_factor *f;
    tps_gpu_se *dev;
    double rho;
    int forced; /* the test hook: every tile as if its guard had refused it */
    size_t counts[5];
    group_work *gw;
} tiled_output;

/* Window cell (row, col)'s variance (over rho) into the output. */
static void store(const tiled_output *to, size_t row, size_t col, double var)
{
    tps_derivs d;
    tps_derivs_zero(&d);
    d.var = to->rho * var;
    tps_output_store(to->o, row, col,
                     tps_quantity_eval(to->o->quantity, &d, to->job->model->scale, NULL));
}

/* The window's part [lo, hi) of [a, a + len) on one axis. */
static void clip(size_t a, size_t len, size_t first, size_t count, size_t *lo, size_t *hi)
{
    *lo = a > first ? a : first;
    *hi = a + len < first + count ? a + len : first + count;
}

/* Slot s's tile computed exactly, as a whole tile (its covariates those
 * of the group: 0 outside the window), into the window's cells. */
static tps_status exact_tile(tiled_output *to, size_t x0, size_t y0, int s)
{
    group_work *gw = to->gw;
    const tps_window *w = &to->job->t.w;
    const size_t nc = to->job->model->n_cov;
    const size_t c0 = x0 + (size_t)(s % GR) * T, r0 = y0 + (size_t)(s / GR) * T;
    tps_window tw = *w;
    tw.first_col = c0;
    tw.first_row = r0;
    tw.ncols = T;
    tw.nrows = T;
    for (size_t k = 0; k < nc; ++k)
        for (size_t j = 0; j < T; ++j)
            memcpy(gw->tzs + (k * T + j) * T,
                   gw->zs + k * SIDE * SIDE + (r0 - y0 + j) * SIDE + (c0 - x0), sizeof(double) * T);
    tps_error err = {TPS_OK, ""};
    if (tps_gpu_se_variance(to->dev, &tw, nc ? gw->tzs : NULL, gw->tout, to->job->gpu_max_bytes,
                            &err) != TPS_OK)
        return tps_set_error(to->ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU standard error: %s",
                             err.message);
    size_t i0, i1, j0, j1;
    clip(c0, T, w->first_col, w->ncols, &i0, &i1);
    clip(r0, T, w->first_row, w->nrows, &j0, &j1);
    for (size_t j = j0; j < j1; ++j)
        for (size_t i = i0; i < i1; ++i)
            store(to, j - w->first_row, i - w->first_col, gw->tout[(j - r0) * T + (i - c0)]);
    return TPS_OK;
}

/* Slot s's record from its frame. */
static void record(tiled_output *to, int s, size_t c0, size_t r0, const tps_se_tile_frame *fr,
                   size_t near_at)
{
    tps_gpu_se_tile *rec = &to->gw->rec[s];
    const size_t m = to->f->m;
    rec->active = 1;
    rec->n_near = (int)fr->n_near;
    rec->n_guards = (int)fr->n_guards;
    rec->c0 = c0;
    rec->r0 = r0;
    rec->near_at = near_at;
    tps_se_tile_nodes(&to->job->t.w, c0, r0, rec->nu, rec->nv);
    for (size_t g = 0; g < fr->n_guards; ++g) {
        rec->gu[g] = fr->gu[g];
        rec->gv[g] = fr->gv[g];
        memcpy(rec->gh + g * TPS_MAX_FIXED, fr->gh + g * m, sizeof(double) * m);
        tps_se_tile_weights(fr->gs[g], rec->gl + g * 2 * Q);
        tps_se_tile_weights(fr->gt[g], rec->gl + g * 2 * Q + Q);
    }
}

/* The group whose first absolute cell is (x0, y0). */
static tps_status group(tiled_output *to, size_t x0, size_t y0)
{
    group_work *gw = to->gw;
    const tps_eval_job *job = to->job;
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    const size_t nc = md->n_cov;
    /* the group's covariates, 0 outside the window */
    size_t i0, i1, j0, j1;
    clip(x0, SIDE, w->first_col, w->ncols, &i0, &i1);
    clip(y0, SIDE, w->first_row, w->nrows, &j0, &j1);
    if (nc) {
        memset(gw->zs, 0, sizeof(double) * nc * SIDE * SIDE);
        for (size_t j = j0; j < j1; ++j)
            tps_covariates_load(md, job->cov, 1, j - w->first_row, i0 - w->first_col, i1 - i0,
                                gw->zs + (j - y0) * SIDE + (i0 - x0), SIDE * SIDE);
    }
    /* each tile's plan */
    size_t n_near = 0;
    int active = 0;
    memset(gw->rec, 0, sizeof gw->rec);
    for (int s = 0; s < S; ++s) {
        const size_t c0 = x0 + (size_t)(s % GR) * T, r0 = y0 + (size_t)(s / GR) * T;
        if (c0 >= i1 || c0 + T <= i0 || r0 >= j1 || r0 + T <= j0) {
            gw->kind[s] = OUTSIDE;
            continue;
        }
        tps_se_tile_frame fr;
        tps_se_tile_kind kind = tps_se_tile_frame_make(to->f, w, c0, r0, gw->near + n_near,
                                                       gw->is_near, gw->col, &fr);
        if (to->forced && kind == TPS_SE_TILE_LOWRANK)
            kind = TPS_SE_TILE_GUARD;
        gw->kind[s] = (unsigned char)kind;
        if (kind != TPS_SE_TILE_LOWRANK)
            continue;
        record(to, s, c0, r0, &fr, n_near);
        n_near += fr.n_near;
        active = 1;
    }
    if (active) {
        tps_error err = {TPS_OK, ""};
        if (tps_gpu_se_tile_group(to->dev, w, gw->rec, gw->near, n_near, nc ? gw->zs : NULL,
                                  gw->out, gw->guards, &err) != TPS_OK)
            return tps_set_error(to->ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                                 "GPU standard error (tiles): %s", err.message);
    }
    /* the guards, then the cells */
    for (int s = 0; s < S; ++s) {
        if (gw->kind[s] == OUTSIDE)
            continue;
        for (int g = 0; g < gw->rec[s].n_guards && gw->kind[s] == TPS_SE_TILE_LOWRANK; ++g) {
            const double *gd = gw->guards + (s * G + g) * 3;
            double ratio;
            if (!tps_se_tile_guard_pass(gd[0], gd[1], gd[2], &ratio))
                gw->kind[s] = TPS_SE_TILE_GUARD;
        }
        ++to->counts[gw->kind[s]];
        if (gw->kind[s] != TPS_SE_TILE_LOWRANK) {
            const tps_status st = exact_tile(to, x0, y0, s);
            if (st != TPS_OK)
                return st;
            continue;
        }
        to->counts[3] += (size_t)gw->rec[s].n_near;
        to->counts[4] += (size_t)Q * Q;
        const size_t c0 = x0 + (size_t)(s % GR) * T, r0 = y0 + (size_t)(s / GR) * T;
        size_t a0, a1, b0, b1;
        clip(c0, T, w->first_col, w->ncols, &a0, &a1);
        clip(r0, T, w->first_row, w->nrows, &b0, &b1);
        for (size_t j = b0; j < b1; ++j)
            for (size_t i = a0; i < a1; ++i)
                store(to, j - w->first_row, i - w->first_col,
                      gw->out[(j - y0) * SIDE + (i - x0)]);
    }
    return TPS_OK;
}

tps_status tps_gpu_se_tiles_output(tps_context *ctx, const tps_eval_job *job,
                                   const tps_output *o, const tps_se_factor *f,
                                   struct tps_gpu_se *dev, double rho, int *done)
{
    const tps_window *w = &job->t.w;
    *done = 0;
    const int mode = tps_se_tiles_mode();
    double fc;
    if (mode == 1 || tps_se_tiles_pay(f, w, &fc) < (mode == 2 ? 1 : 2))
        return TPS_OK;
    double lag[Q * T];
    for (int i = 0; i < T; ++i)
        tps_se_tile_weights((double)i, lag + i * Q);
    tps_error err = {TPS_OK, ""};
    if (tps_gpu_se_tiles_prepare(dev, lag, job->gpu_max_bytes, &err) != TPS_OK) {
        tps_log(ctx, TPS_LOG_DEBUG, "band %zu: standard errors on the GPU by exact blocks: %s",
                o->band + 1, err.message);
        return TPS_OK;
    }
    tps_log(ctx, TPS_LOG_DEBUG,
            "band %zu: standard errors on the GPU in tiles of %d^2 cells (exactly: %.3g flops a "
            "cell)", o->band + 1, T, (double)(f->n - f->m) * (double)(f->n - f->m));
    const size_t nc = job->model->n_cov;
    tiled_output to = {ctx, job, o, f, dev, rho, mode == 3, {0, 0, 0, 0, 0}, NULL};
    group_work *gw = to.gw = calloc(1, sizeof *gw);
    if (gw) {
        gw->is_near = malloc(f->n);
        gw->col = malloc(sizeof(double) * f->n);
        gw->zs = malloc(sizeof(double) * (nc ? nc : 1) * SIDE * SIDE);
        gw->out = malloc(sizeof(double) * SIDE * SIDE);
        gw->tzs = malloc(sizeof(double) * (nc ? nc : 1) * T * T);
        gw->tout = malloc(sizeof(double) * T * T);
    }
    tps_status st = TPS_OK;
    if (!gw || !gw->is_near || !gw->col || !gw->zs || !gw->out || !gw->tzs || !gw->tout)
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for standard errors");
    const size_t gx0 = w->first_col / SIDE, gx1 = (w->first_col + w->ncols - 1) / SIDE;
    const size_t gy0 = w->first_row / SIDE, gy1 = (w->first_row + w->nrows - 1) / SIDE;
    for (size_t gy = gy0; gy <= gy1 && st == TPS_OK; ++gy)
        for (size_t gx = gx0; gx <= gx1 && st == TPS_OK; ++gx)
            st = group(&to, gx * SIDE, gy * SIDE);
    if (st == TPS_OK) {
        const double lr = to.counts[0] ? (double)to.counts[0] : 1.0;
        tps_log(ctx, TPS_LOG_DEBUG,
                "standard errors on the GPU: %zu tiles in low rank (on average %.1f near "
                "points), %zu exactly (%zu too dense, %zu by their guard cells)",
                to.counts[0], (double)to.counts[3] / lr, to.counts[1] + to.counts[2],
                to.counts[1], to.counts[2]);
        tps_se_tile_counts_record(to.counts);
        *done = 1;
    }
    if (gw) {
        free(gw->is_near);
        free(gw->col);
        free(gw->zs);
        free(gw->out);
        free(gw->tzs);
        free(gw->tout);
        free(gw);
    }
    return st;
}

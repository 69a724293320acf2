/* local_cv.c: cross-validation of LOCAL models (docs/design.md, "GCV and
 * leave-one-out on local models").
 *
 * A local model is a linear smoother: at a data point,
 *     f(x_i) = sum_p W_p(x_i) f_p(x_i) = sum_p W_p(x_i) (A_p z_p)_i,
 * W_p = w_p / S the blend weights (S_i = sum_q w_q(x_i)), A_p patch p's
 * influence matrix. So its influence matrix A = sum_p diag(W_p) A_p (each
 * A_p placed at its points) has the diagonal A_ii = sum_p W_p(x_i) (A_p)_ii
 * and its residual is r_i = sum_p W_p(x_i) r_p,i (the W_p sum to 1): the GCV
 * score N ||r||^2 / (N - tr A)^2 of the surface the model delivers is
 * assembled exactly from the patches' smoothers. Likewise, with the
 * partition kept, the spline fitted without point i is the blend of the
 * patch splines fitted without it, so the leave-one-out residual is the
 * blend of the patches' own (Rippa's closed form, or r_p,i / (1 - A_p,ii)).
 *
 * tps_local_gcv_select finds one lambda for the whole model: each patch's
 * smoother in its eigenbasis (solve.c, tps_spline_eigen_*: O(p^3) per patch,
 * on the CPU threads or batched on the GPU), its residuals, diagonals and
 * leave-one-out residuals at every lambda of a log grid (two matrix
 * products), blended into per-point sums. A point's sums are kept only
 * while patches containing it are still to come: patches are taken in
 * Morton order, so the live points are about a wave's and a front's, and a
 * point whose last patch is done is folded into the grid's totals. */
#include "blend.h"
#include "gpu_backend.h"
#include "internal.h"
#include "local.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lambda grid: 10 points per decade (steps of x1.26: GCV's minimum is flat
 * on that scale), at most this many. */
#define GRID_PER_DECADE 10
#define GRID_MAX 200
/* The grid spans the eigenvalues of the first wave's patches (in the user's
 * units), this factor beyond each end: there every patch interpolates or
 * fits its plane, and the score no longer changes. */
#define GRID_MARGIN 100.0
/* Patches in the first wave picked to span the sizes (that wave sets the grid). */
#define PILOT 16
/* Patches per wave: per CPU thread, and at most on the GPU. */
#define WAVE_PER_THREAD 4
#define WAVE_GPU_MAX 256
/* Bytes the GPU's eigenvectors of one wave may take on the host. */
#define WAVE_GPU_BYTES ((size_t)1 << 30)
#define NO_SLOT UINT32_MAX

/* ---- the search ---- */

typedef struct gcv_patch {
    size_t p, n, m;      /* patch index; its points with a value, n - 3 */
    size_t *idx;         /* their model indices */
    double *su, *sv, *rows, *z, *blend; /* patch frame, D (NULL), values, W_p at each */
    double *pq, *qz;     /* D P = Q R (dgeqrf's form), Q^T D z */
    double tau[3];
    double *e, *c, *basis, *vec; /* eigenvalues, U^T D z, U; the GPU's V (m x m) */
    double *dc;          /* covariates: n_cov x n values D c_k (scaled columns) */
    double *contrib;     /* per point `width` values: W r~ at each lambda, then W e
                          * (LOO); with covariates then W D r(c_k), D t_k (local_cov.c) */
    double *trace;       /* L values: sum_i W_p (1 - A_p,ii) */
    int on_gpu;
    tps_error err;
} gcv_patch;

typedef struct gcv_run {
    const tps_local_gcv_args *a;
    const struct tps_local *lc;
    size_t *order;       /* patches in the order they are taken */
    gcv_patch *wave;
    size_t w0;           /* the wave: order[w0 ..] */
    size_t L;
    size_t nc, width;    /* covariates; values per point: (2 + 2 nc) L */
    double *cov_sums;    /* L x tps_local_cov_gcv_width(nc): their reductions */
    double *grid;        /* L values, user units */
    /* live points: slot_of[i], remaining[i] patches to come */
    uint32_t *slot_of, *remaining, *free_slots;
    size_t n_free, n_slots, cap_slots;
    double *rows;        /* n_slots x 2L */
    double *rss, *loo_ss, *loo_sa, *trace; /* L each */
    size_t fixed_bytes;  /* what the pass holds besides the slots */
    size_t gpu_patches;
    double plane_lambda; /* the first wave's largest eigenvalue, user units */
} gcv_run;

static void free_patch(gcv_patch *g)
{
    free(g->idx);
    free(g->su);
    free(g->e);
    free(g->basis);
    free(g->vec);
    free(g->contrib);
    memset(g, 0, sizeof *g);
}

/* The patch's points with a value, its frame and D P = Q R. */
static void gather(size_t k, int thread, void *user)
{
    (void)thread;
    gcv_run *run = user;
    const tps_local_gcv_args *a = run->a;
    const tps_model *md = a->md;
    gcv_patch *g = &run->wave[k];
    const size_t p = run->order[run->w0 + k];
    const patch *pt = &run->lc->patches[p];
    g->p = p;
    const size_t np = pt->n ? pt->n : 1;
    g->idx = malloc(sizeof(size_t) * np);
    const size_t nc = md->n_cov;
    g->su = malloc(sizeof(double) * np * (9 + nc)); /* su sv rows z blend qz pq(3) dc(nc) */
    if (!g->idx || !g->su) {
        tps_error_set(&g->err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu", p + 1);
        return;
    }
    a->points(a->user, p, g->idx);
    size_t n = 0;
    for (size_t k2 = 0; k2 < pt->n; ++k2)
        if (isfinite(a->z[g->idx[k2]]))
            g->idx[n++] = g->idx[k2];
    g->n = n;
    g->m = n > 3 ? n - 3 : 0;
    g->sv = g->su + np;
    g->rows = a->weights ? g->su + 2 * np : NULL;
    g->z = g->su + 3 * np;
    g->blend = g->su + 4 * np;
    g->qz = g->su + 5 * np;
    g->pq = g->su + 6 * np;
    g->dc = nc ? g->su + 9 * np : NULL;
    for (size_t j = 0; j < n; ++j) {
        const size_t i = g->idx[j];
        /* The frame of the patch's solve (local_build.c): the same numbers. */
        g->su[j] = (md->u[i] - pt->pcx) / pt->ps;
        g->sv[j] = (md->v[i] - pt->pcy) / pt->ps;
        if (g->rows)
            g->rows[j] = sqrt(a->weights[i]);
        g->z[j] = a->z[i];
        g->blend[j] = tps_patch_bump(pt, md->u[i], md->v[i]) / a->S[i];
        for (size_t c = 0; c < nc; ++c)
            g->dc[c * np + j] = (g->rows ? g->rows[j] : 1.0) *
                                tps_covariate_at(md, c, i);
    }
    char what[96];
    snprintf(what, sizeof what, "%s, patch %zu of %zu", a->what, p + 1, run->lc->n_patches);
    tps_spline_eigen_prepare(&g->err, n, g->su, g->sv, g->rows, g->z, g->pq, g->tau, g->qz, what);
}

/* The eigenbasis: from the GPU's V, or computed here. */
static void eigen(size_t k, int thread, void *user)
{
    (void)thread;
    gcv_run *run = user;
    gcv_patch *g = &run->wave[k];
    if (g->err.code != TPS_OK)
        return;
    const size_t n = g->n, m = g->m;
    if (!g->e)
        g->e = malloc(sizeof(double) * (2 * m + 2));
    g->c = g->e ? g->e + m + 1 : NULL;
    g->basis = malloc(sizeof(double) * n * m);
    if (!g->e || !g->basis) {
        tps_error_set(&g->err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu's GCV",
                      g->p + 1);
        return;
    }
    if (g->on_gpu) {
        tps_spline_eigen_finish(n, g->pq, g->tau, g->qz, g->vec, m, g->c, g->basis);
    } else {
        double *mat = malloc(sizeof(double) * (n * n + 2 * n));
        if (!mat) {
            tps_error_set(&g->err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu's GCV",
                          g->p + 1);
            return;
        }
        char what[96];
        snprintf(what, sizeof what, "%s, patch %zu of %zu", run->a->what, g->p + 1,
                 run->lc->n_patches);
        if (tps_spline_eigen_cpu(&g->err, n, g->su, g->sv, g->rows, g->pq, g->tau, mat,
                                 mat + n * n, mat + n * n + n, g->e, what) == TPS_OK)
            tps_spline_eigen_finish(n, g->pq, g->tau, g->qz, mat + 3 * n + 3, n, g->c, g->basis);
        free(mat);
    }
    free(g->vec);
    g->vec = NULL;
}

/* The patch's residuals, diagonals and LOO residuals at every lambda of the
 * grid, weighted by W_p: R = U (c o S), Dg = (U o U) S with S_kl =
 * lambda_l / (e_k + lambda_l) in the patch's units. */
static void contribute(size_t k, int thread, void *user)
{
    (void)thread;
    gcv_run *run = user;
    gcv_patch *g = &run->wave[k];
    if (g->err.code != TPS_OK)
        return;
    const size_t n = g->n, m = g->m, L = run->L;
    const patch *pt = &run->lc->patches[g->p];
    const size_t W = run->width;
    double *smat = malloc(sizeof(double) * m * L * 2);
    double *prod = malloc(sizeof(double) * n * L * 2);
    g->contrib = malloc(sizeof(double) * (n * W + L));
    if (!smat || !prod || !g->contrib) {
        free(smat);
        free(prod);
        tps_error_set(&g->err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu's GCV",
                      g->p + 1);
        return;
    }
    g->trace = g->contrib + n * W;
    /* lambda in the patch frame, as the patch's solve computes it. */
    const double unit = run->a->md->scale * pt->ps;
    double *cs = smat + m * L;
    for (size_t l = 0; l < L; ++l) {
        const double lp = run->grid[l] / (unit * unit);
        for (size_t j = 0; j < m; ++j) {
            /* B is positive semidefinite: a rounding below 0 is 0. */
            const double s = lp / (fmax(g->e[j], 0.0) + lp);
            smat[l * m + j] = s;
            cs[l * m + j] = s * g->c[j];
        }
    }
    const int ni = (int)n, mi = (int)m, li = (int)L;
    double *r = prod, *dg = prod + n * L;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ni, li, mi, 1.0, g->basis, ni, cs, mi,
                0.0, r, ni);
    if (run->nc && !tps_local_cov_gcv_patch(n, m, L, run->nc, g->basis, smat, g->dc,
                                            pt->n ? pt->n : 1, g->blend, W, g->contrib)) {
        free(smat);
        free(prod);
        tps_error_set(&g->err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu's GCV",
                      g->p + 1);
        return;
    }
    for (size_t i = 0; i < n * m; ++i)
        g->basis[i] *= g->basis[i];
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ni, li, mi, 1.0, g->basis, ni, smat,
                mi, 0.0, dg, ni);
    free(g->basis);
    g->basis = NULL;
    free(smat);
    for (size_t l = 0; l < L; ++l)
        g->trace[l] = 0.0;
    for (size_t j = 0; j < n; ++j) {
        const double w = g->blend[j], d = g->rows ? g->rows[j] : 1.0;
        double *out = g->contrib + j * W;
        for (size_t l = 0; l < L; ++l) {
            const double rl = r[l * n + j], dl = dg[l * n + j];
            out[l] = w * rl;               /* D r: the weighted residual */
            out[L + l] = w > 0.0 ? w * rl / (d * dl) : 0.0; /* r / (1 - A_ii), band units */
            g->trace[l] += w * dl;
        }
    }
    free(prod);
}

static tps_status grow_slots(tps_context *ctx, gcv_run *run)
{
    const size_t cap = run->cap_slots ? 2 * run->cap_slots : 4096;
    const size_t row = run->width * sizeof(double);
    const size_t max = run->a->max_memory;
    if (cap > UINT32_MAX - 1 ||
        (max && (run->fixed_bytes > max || cap * row > max - run->fixed_bytes)))
        return tps_set_error(ctx, TPS_ERR_MEMORY_LIMIT,
                             "%s: GCV of the local model needs more than %zu bytes, more than "
                             "the %zu bytes allowed", run->a->what,
                             run->fixed_bytes + cap * row, max);
    double *rows = realloc(run->rows, cap * row);
    uint32_t *fs = realloc(run->free_slots, cap * sizeof(uint32_t));
    if (rows)
        run->rows = rows;
    if (fs)
        run->free_slots = fs;
    if (!rows || !fs)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for GCV",
                             run->a->what);
    run->cap_slots = cap;
    return TPS_OK;
}

/* Adds a patch's sums to its points' (in the order patches are taken, so
 * the sums do not depend on the threads) and folds each point whose last
 * patch this was into the totals. */
static tps_status accumulate(tps_context *ctx, gcv_run *run, const gcv_patch *g)
{
    const size_t L = run->L, L2 = run->width, nc = run->nc;
    const tps_model *md = run->a->md;
    for (size_t l = 0; l < L; ++l)
        run->trace[l] += g->trace[l];
    for (size_t j = 0; j < g->n; ++j) {
        /* On the support's edge: not counted in cover, unless there are
         * covariates (E^T W c has the patch's term there). */
        if (!(g->blend[j] > 0.0) && !nc)
            continue;
        const size_t i = g->idx[j];
        uint32_t s = run->slot_of[i];
        if (s == NO_SLOT) {
            if (run->n_free) {
                s = run->free_slots[--run->n_free];
            } else {
                if (run->n_slots == run->cap_slots) {
                    tps_status st = grow_slots(ctx, run);
                    if (st != TPS_OK)
                        return st;
                }
                s = (uint32_t)run->n_slots++;
            }
            run->slot_of[i] = s;
            memset(run->rows + (size_t)s * L2, 0, sizeof(double) * L2);
        }
        double *row = run->rows + (size_t)s * L2;
        const double *add = g->contrib + j * L2;
        for (size_t l = 0; l < L2; ++l)
            row[l] += add[l];
        if (--run->remaining[i] == 0) {
            for (size_t l = 0; l < L; ++l) {
                run->rss[l] += row[l] * row[l];
                run->loo_ss[l] += row[L + l] * row[L + l];
                run->loo_sa[l] += fabs(row[L + l]);
            }
            if (nc) {
                double dc[TPS_MAX_COVARIATES];
                const double d = run->a->weights ? sqrt(run->a->weights[i]) : 1.0;
                for (size_t c = 0; c < nc; ++c)
                    dc[c] = d * tps_covariate_at(md, c, i);
                tps_local_cov_gcv_fold(nc, L, row, row + 2 * L, row + (2 + nc) * L, dc,
                                       run->cov_sums);
            }
            run->slot_of[i] = NO_SLOT;
            run->free_slots[run->n_free++] = s;
        }
    }
    return TPS_OK;
}

/* The grid from the first wave's eigenvalues, in the user's units (lambda_user
 * = lambda_patch (scale ps)^2): lambda = 10^(j/10) over their range, widened
 * by GRID_MARGIN at each end. */
static tps_status set_grid(tps_context *ctx, gcv_run *run, size_t count)
{
    double lo = INFINITY, hi = 0.0;
    for (size_t k = 0; k < count; ++k) {
        const gcv_patch *g = &run->wave[k];
        const double unit = run->a->md->scale * run->lc->patches[g->p].ps;
        const double emax = g->e[g->m - 1];
        if (!(emax > 0.0))
            continue;
        const double emin = g->e[0] > 1e-12 * emax ? g->e[0] : 1e-12 * emax;
        lo = fmin(lo, emin * unit * unit);
        hi = fmax(hi, emax * unit * unit);
    }
    if (!(hi > 0.0) || !(lo <= hi))
        return tps_set_error(ctx, TPS_ERR_SINGULAR,
                             "%s: the patches' spline systems are degenerate (no positive "
                             "eigenvalue): GCV cannot choose a smoothing", run->a->what);
    run->plane_lambda = hi;
    double j0 = floor(GRID_PER_DECADE * log10(lo / GRID_MARGIN));
    double j1 = ceil(GRID_PER_DECADE * log10(hi * GRID_MARGIN));
    double step = 1.0;
    while ((j1 - j0) / step + 1.0 > GRID_MAX)
        step += 1.0;
    run->L = (size_t)floor((j1 - j0) / step) + 1;
    run->width = (2 + 2 * run->nc) * run->L;
    run->grid = malloc(sizeof(double) * run->L * 5);
    run->cov_sums = run->nc ? calloc(run->L * tps_local_cov_gcv_width(run->nc), sizeof(double))
                            : NULL;
    if (!run->grid || (run->nc && !run->cov_sums))
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", run->a->what);
    for (size_t l = 0; l < run->L; ++l)
        run->grid[l] = pow(10.0, (j0 + step * (double)l) / GRID_PER_DECADE);
    run->rss = run->grid + run->L;
    run->loo_ss = run->rss + run->L;
    run->loo_sa = run->loo_ss + run->L;
    run->trace = run->loo_sa + run->L;
    memset(run->rss, 0, sizeof(double) * run->L * 4);
    return TPS_OK;
}

/* Morton order of the patch centres, so that consecutive patches are
 * neighbours and a point's patches come close together. */
typedef struct keyed {
    uint64_t key;
    size_t p;
} keyed;

static int compare_keyed(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->p < b->p ? -1 : (a->p > b->p);
}

static uint64_t spread_bits(uint64_t x) /* 32 bits to the even bits of 64 */
{
    x &= 0xffffffffULL;
    x = (x | (x << 16)) & 0x0000ffff0000ffffULL;
    x = (x | (x << 8)) & 0x00ff00ff00ff00ffULL;
    x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0fULL;
    x = (x | (x << 2)) & 0x3333333333333333ULL;
    x = (x | (x << 1)) & 0x5555555555555555ULL;
    return x;
}

/* The order: PILOT patches that span the patch sizes (smallest and largest
 * support, fewest and most points, the rest spread along the Morton
 * order) first, as they set the grid; then the others in Morton order. */
static int patch_order(const struct tps_local *lc, size_t pilot, size_t *order)
{
    const size_t np = lc->n_patches;
    keyed *ks = malloc(sizeof(keyed) * np);
    unsigned char *picked = calloc(np, 1);
    if (!ks || !picked) {
        free(ks);
        free(picked);
        return -1;
    }
    const double du = lc->bu1 - lc->bu0, dv = lc->bv1 - lc->bv0;
    for (size_t p = 0; p < np; ++p) {
        const patch *pt = &lc->patches[p];
        const double fu = du > 0.0 ? (pt->cx - lc->bu0) / du : 0.0;
        const double fv = dv > 0.0 ? (pt->cy - lc->bv0) / dv : 0.0;
        const uint64_t qu = (uint64_t)(fmin(fmax(fu, 0.0), 1.0) * 4294967295.0);
        const uint64_t qv = (uint64_t)(fmin(fmax(fv, 0.0), 1.0) * 4294967295.0);
        ks[p] = (keyed){spread_bits(qu) | (spread_bits(qv) << 1), p};
    }
    qsort(ks, np, sizeof(keyed), compare_keyed);
    if (pilot > np)
        pilot = np;
    size_t ext[4] = {0, 0, 0, 0}; /* smallest and largest ps, fewest and most points */
    for (size_t p = 1; p < np; ++p) {
        const patch *pt = &lc->patches[p];
        if (pt->ps < lc->patches[ext[0]].ps)
            ext[0] = p;
        if (pt->ps > lc->patches[ext[1]].ps)
            ext[1] = p;
        if (pt->n < lc->patches[ext[2]].n)
            ext[2] = p;
        if (pt->n > lc->patches[ext[3]].n)
            ext[3] = p;
    }
    size_t want = 0;
    for (size_t k = 0; k < 4 && want < pilot; ++k)
        if (!picked[ext[k]]) {
            picked[ext[k]] = 1;
            ++want;
        }
    for (size_t k = 0; k < pilot && want < pilot; ++k) { /* spread along the order */
        const size_t p = ks[k * np / pilot].p;
        if (!picked[p]) {
            picked[p] = 1;
            ++want;
        }
    }
    for (size_t k = 0; k < np && want < pilot; ++k)
        if (!picked[ks[k].p]) {
            picked[ks[k].p] = 1;
            ++want;
        }
    size_t o = 0;
    for (size_t k = 0; k < np; ++k)
        if (picked[ks[k].p])
            order[o++] = ks[k].p;
    for (size_t k = 0; k < np; ++k)
        if (!picked[ks[k].p])
            order[o++] = ks[k].p;
    free(ks);
    free(picked);
    return 0;
}

size_t tps_local_gcv_bytes(const struct tps_local *lc, size_t n_points, size_t n_cov,
                           int threads, int gpu)
{
    size_t largest = 0;
    for (size_t p = 0; p < lc->n_patches; ++p)
        largest = lc->patches[p].n > largest ? lc->patches[p].n : largest;
    const size_t n = largest, wave = gpu ? WAVE_GPU_MAX : (size_t)WAVE_PER_THREAD * threads;
    /* the GPU's eigenvectors and the basis made from them, or the basis */
    const size_t per_patch =
        n * ((gpu ? 2 : 1) * n + 2 * GRID_MAX * (1 + 2 * n_cov) + 12 + n_cov) * sizeof(double);
    /* the points' bookkeeping; a wave's bases and sums; each thread's
     * system and LAPACK's workspace; a start of the live points' sums */
    return n_points * (sizeof(double) + 3 * sizeof(uint32_t)) +
           (wave > PILOT ? wave : PILOT) * per_patch +
           (size_t)(threads < 1 ? 1 : threads) * 3 * n * n * sizeof(double) +
           4096 * 2 * GRID_MAX * (1 + n_cov) * sizeof(double);
}

static size_t wave_size(const struct tps_local *lc, int threads, int gpu)
{
    size_t wave = (size_t)WAVE_PER_THREAD * (size_t)threads;
    if (gpu) {
        size_t largest = 4;
        for (size_t p = 0; p < lc->n_patches; ++p)
            largest = lc->patches[p].n > largest ? lc->patches[p].n : largest;
        wave = WAVE_GPU_BYTES / (largest * largest * sizeof(double));
        wave = wave > WAVE_GPU_MAX ? WAVE_GPU_MAX : wave;
    }
    if (wave < PILOT)
        wave = PILOT;
    return wave < lc->n_patches ? wave : lc->n_patches;
}

/* The GPU's eigendecompositions of a wave's patches; those it did not do
 * stay on_gpu = 0 (the CPU does them). */
static void wave_on_gpu(tps_context *ctx, gcv_run *run, size_t count)
{
    tps_gpu_eigen_system *sys = calloc(count, sizeof *sys);
    if (!sys)
        return;
    size_t submitted = 0;
    for (size_t k = 0; k < count; ++k) {
        gcv_patch *g = &run->wave[k];
        sys[k].status = TPS_ERR_DEVICE_UNAVAILABLE;
        if (g->err.code != TPS_OK)
            continue;
        g->e = malloc(sizeof(double) * (2 * g->m + 2));
        g->vec = malloc(sizeof(double) * g->m * g->m);
        if (!g->e || !g->vec)
            continue; /* the CPU's path reports it */
        sys[k] = (tps_gpu_eigen_system){g->n, g->su, g->sv, g->rows, g->pq,
                                        {g->tau[0], g->tau[1], g->tau[2]}, g->e, g->vec,
                                        TPS_ERR_DEVICE_UNAVAILABLE};
        ++submitted;
    }
    tps_error err = {TPS_OK, ""};
    if (submitted && tps_gpu_eigen_batch(count, sys, run->a->gpu_max_bytes, &err) != TPS_OK)
        tps_log(ctx, TPS_LOG_DEBUG, "%s: batched GPU eigendecomposition: %s; the rest on the CPU",
                run->a->what, err.message);
    for (size_t k = 0; k < count; ++k) {
        gcv_patch *g = &run->wave[k];
        g->on_gpu = sys[k].status == TPS_OK;
        run->gpu_patches += g->on_gpu ? 1 : 0;
        if (!g->on_gpu) {
            free(g->vec);
            g->vec = NULL;
        }
    }
    free(sys);
}

static tps_status first_error(tps_context *ctx, const gcv_run *run, size_t count)
{
    for (size_t k = 0; k < count; ++k)
        if (run->wave[k].err.code != TPS_OK)
            return tps_raise(ctx, &run->wave[k].err);
    return TPS_OK;
}

/* What a wave runs on the threads. */
static void eigen_and_contribute(size_t k, int thread, void *user)
{
    eigen(k, thread, user);
    contribute(k, thread, user);
}

static void gather_eigen(size_t k, int thread, void *user)
{
    gather(k, thread, user);
    eigen(k, thread, user);
}

static void gather_eigen_contribute(size_t k, int thread, void *user)
{
    gather(k, thread, user);
    eigen(k, thread, user);
    contribute(k, thread, user);
}

tps_status tps_local_gcv_select(tps_context *ctx, const tps_local_gcv_args *a,
                                tps_gcv_result *res, tps_local_gcv_stats *stats)
{
    const struct tps_local *lc = a->lc;
    const size_t np = lc->n_patches, n = a->md->n;
    const int threads = a->threads < 1 ? 1 : a->threads;
    size_t n_band = 0;
    for (size_t i = 0; i < n; ++i)
        n_band += isfinite(a->z[i]) ? 1 : 0;
    if (n_band < 4)
        return tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                             "%s: GCV needs at least 4 distinct usable points, got %zu", a->what,
                             n_band);
    const size_t wave = wave_size(lc, threads, a->try_gpu);
    gcv_run run = {0};
    run.a = a;
    run.lc = lc;
    run.nc = a->md->n_cov;
    run.order = malloc(sizeof(size_t) * np);
    run.wave = calloc(wave, sizeof(gcv_patch));
    run.slot_of = malloc(sizeof(uint32_t) * n);
    run.remaining = malloc(sizeof(uint32_t) * n);
    run.fixed_bytes = tps_local_gcv_bytes(lc, n, run.nc, threads, a->try_gpu);
    tps_status st = TPS_OK;
    if (!run.order || !run.wave || !run.slot_of || !run.remaining ||
        patch_order(lc, PILOT < wave ? PILOT : wave, run.order) != 0) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for GCV", a->what);
        goto done;
    }
    for (size_t i = 0; i < n; ++i) {
        run.slot_of[i] = NO_SLOT;
        run.remaining[i] = a->cover[i];
    }
    tps_progress_stage("%s: GCV over %zu patches (eigendecompositions)", a->what, np);
    for (size_t w0 = 0; w0 < np && st == TPS_OK; w0 += wave) {
        const size_t count = np - w0 < wave ? np - w0 : wave;
        run.w0 = w0;
        memset(run.wave, 0, sizeof(gcv_patch) * count);
        /* The patches' own steps report nothing: the wave does. */
        tps_progress_state quiet;
        tps_progress_state *const outer = tps_progress_begin(&quiet, NULL);
        if (a->try_gpu) {
            tps_parallel_for(count, threads, gather, &run);
            wave_on_gpu(ctx, &run, count);
            tps_parallel_for(count, threads, run.grid ? eigen_and_contribute : eigen, &run);
        } else {
            tps_parallel_for(count, threads, run.grid ? gather_eigen_contribute : gather_eigen,
                             &run);
        }
        tps_progress_end(outer);
        st = first_error(ctx, &run, count);
        if (st == TPS_OK && !run.grid) {
            st = set_grid(ctx, &run, count);
            if (st == TPS_OK) {
                tps_progress_begin(&quiet, NULL);
                tps_parallel_for(count, threads, contribute, &run);
                tps_progress_end(outer);
                st = first_error(ctx, &run, count);
            }
        }
        for (size_t k = 0; k < count && st == TPS_OK; ++k)
            st = accumulate(ctx, &run, &run.wave[k]);
        for (size_t k = 0; k < count; ++k)
            free_patch(&run.wave[k]);
        tps_progress((double)(w0 + count) / (double)np);
    }
    if (st != TPS_OK)
        goto done;
    if (run.n_free != run.n_slots) {
        st = tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: GCV: %zu points not covered by every "
                           "patch that holds them", a->what, run.n_slots - run.n_free);
        goto done;
    }
    /* GCV(lambda) = N ||D r||^2 / (N - tr A)^2, N - tr A = sum of the blended
     * 1 - A_ii; the first smallest. */
    size_t best = run.L;
    double best_score = INFINITY;
    for (size_t l = 0; l < run.L; ++l) {
        /* With covariates: the residual and trace of the model with
         * b(lambda) (local_cov.c); a singular G scores infinity. */
        if (run.nc &&
            !tps_local_cov_gcv_score(run.nc, run.cov_sums + l * tps_local_cov_gcv_width(run.nc),
                                     &run.rss[l], &run.trace[l]))
            run.rss[l] = INFINITY;
        const double t = run.trace[l];
        const double score = t > 0.0 ? (double)n_band * run.rss[l] / (t * t) : INFINITY;
        if (score < best_score) {
            best_score = score;
            best = l;
        }
    }
    if (best == run.L) {
        st = tps_set_error(ctx, TPS_ERR_SINGULAR, "%s: the GCV score is not finite at any "
                           "smoothing", a->what);
        goto done;
    }
    /* Every value equal: the affine parts fit them at any lambda, so the
     * score is 0 at every lambda (what the sums hold is rounding): GCV has
     * no minimum. The smoothest of the range, lambda -> infinity as far as
     * the patches can tell (each its plane, here the constant). */
    int constant = 1;
    double first = NAN;
    for (size_t i = 0; i < n && constant; ++i) {
        if (!isfinite(a->z[i]))
            continue;
        if (isnan(first))
            first = a->z[i];
        constant = a->z[i] == first;
    }
    if (constant) {
        best = run.L - 1;
        best_score = 0.0;
        run.loo_ss[best] = run.loo_sa[best] = 0.0;
        tps_log(ctx, TPS_LOG_WARNING,
                "%s: all %zu values are equal (%.17g): GCV's score is 0 at every smoothing, so "
                "it has no minimum; the largest smoothing searched is used (%.6g), and any "
                "other would give the same surface, that constant", a->what, n_band, first,
                run.grid[best]);
    }
    res->lambda = run.grid[best];
    res->score = best_score;
    res->effective_df = (double)n_band - run.trace[best];
    /* With covariates the blended leave-one-out needs b and G at the chosen
     * lambda for every point: formed by the build's pass at that lambda
     * (local_cov.c), not here. */
    res->loo_rmse = run.nc ? NAN : sqrt(run.loo_ss[best] / (double)n_band);
    res->loo_mae = run.nc ? NAN : run.loo_sa[best] / (double)n_band;
    if (stats)
        *stats = (tps_local_gcv_stats){run.grid[0], run.grid[run.L - 1], run.L, best,
                                       run.n_slots, run.gpu_patches, run.plane_lambda};

done:
    for (size_t k = 0; run.wave && k < wave; ++k)
        free_patch(&run.wave[k]);
    free(run.wave);
    free(run.order);
    free(run.slot_of);
    free(run.remaining);
    free(run.free_slots);
    free(run.rows);
    free(run.grid);
    free(run.cov_sums);
    return st;
}

/* ---- what a local build calls (local_build.c) ---- */

tps_status tps_local_cv_start(tps_context *ctx, tps_model *md, const struct tps_local *lc,
                              tps_patch_points_fn points, void *user, double *const *merged,
                              double *const *merged_w, const tps_fit_options *options,
                              int try_gpu, size_t budget, double *smoothing, double **S,
                              double ***loo_sum)
{
    const size_t nb = md->n_bands;
    const int threads = options->num_threads < 1 ? 1 : options->num_threads;
    size_t n_gcv = 0;
    for (size_t b = 0; b < nb; ++b)
        n_gcv += md->band_info[b].smoothing_gcv ? 1 : 0;
    uint32_t *cover = n_gcv ? malloc(sizeof(uint32_t) * md->n) : NULL;
    *S = malloc(sizeof(double) * md->n);
    *loo_sum = calloc(nb, sizeof(double *));
    tps_status st = TPS_OK;
    if (!*S || !*loo_sum || (n_gcv && !cover)) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for cross-validation");
        goto done;
    }
    for (size_t b = 0; b < nb; ++b) {
        /* GCV bands have theirs from the search, except with covariates
         * (local_cov.c forms them at the chosen lambda). */
        if (md->band_info[b].smoothing_gcv ? !md->n_cov : !options->cross_validation)
            continue;
        if (!((*loo_sum)[b] = calloc(md->n, sizeof(double)))) {
            st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for cross-validation");
            goto done;
        }
    }
    st = tps_local_point_blend(ctx, md, lc, points, user, *S, cover, md->n_cov > 0);
    for (size_t b = 0; b < nb && st == TPS_OK; ++b) {
        tps_band_info *bi = &md->band_info[b];
        if (!bi->smoothing_gcv)
            continue;
        char what[32];
        /* A re-partitioned pass (local_size.c) is a stage of its own. */
        snprintf(what, sizeof what, lc->gcv_pass > 1 ? "band %zu, pass %d" : "band %zu", b + 1,
                 lc->gcv_pass);
        const tps_local_gcv_args args = {md, lc, points, user, *S, cover, merged[b],
                                         merged_w ? merged_w[b] : NULL, threads, try_gpu,
                                         options->gpu_max_memory, budget, what};
        tps_gcv_result res;
        tps_local_gcv_stats stats;
        const double t0 = tps_now_seconds();
        st = tps_local_gcv_select(ctx, &args, &res, &stats);
        if (st != TPS_OK)
            break;
        bi->smoothing = smoothing[b] = res.lambda;
        bi->gcv_score = res.score;
        bi->effective_df = res.effective_df;
        bi->loo_rmse = res.loo_rmse;
        bi->loo_mae = res.loo_mae;
        tps_log(ctx, TPS_LOG_DEBUG,
                "%s: GCV chose smoothing %.6g (%.3g effective degrees of freedom of %zu; grid "
                "%.3g .. %.3g, %zu values, point %zu) over %zu patches (%zu eigendecompositions "
                "on the GPU) in %.3f s (sums of %zu points held at most)", what, bi->smoothing,
                bi->effective_df, bi->n_points, stats.grid_lo, stats.grid_hi, stats.grid_points,
                stats.chosen + 1, lc->n_patches, stats.gpu_patches, tps_now_seconds() - t0,
                stats.live_peak);
        if (res.lambda > stats.plane_lambda && res.score > 0.0)
            tps_log(ctx, TPS_LOG_WARNING,
                    "%s: GCV chose smoothing %.6g, above the largest eigenvalue of the patch "
                    "splines (%.6g): each patch is close to its least-squares plane, so the data "
                    "favour smoothing over longer distances than a patch spans; a larger "
                    "PatchPoints (now %zu) lets the local model follow",
                    what, res.lambda, stats.plane_lambda, options->patch_points);
    }
done:
    free(cover);
    return st;
}

void tps_local_cv_finish(tps_model *md, double *const *merged, double *const *loo_sum)
{
    for (size_t b = 0; b < md->n_bands; ++b) {
        if (!loo_sum[b])
            continue;
        double ss = 0.0, sa = 0.0;
        for (size_t i = 0; i < md->n; ++i) {
            if (isfinite(merged[b][i])) {
                ss += loo_sum[b][i] * loo_sum[b][i];
                sa += fabs(loo_sum[b][i]);
            }
        }
        const double n = (double)md->band_info[b].n_points;
        md->band_info[b].loo_rmse = sqrt(ss / n);
        md->band_info[b].loo_mae = sa / n;
    }
}

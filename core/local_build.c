/* local_build.c: LOCAL models, a partition of unity over overlapping patches.
 *
 * A dense spline needs N^2 memory and N^3 time; beyond ~10^4 points that is
 * out of reach. Here the surface is
 *     f(x) = sum_p W_p(x) f_p(x),   W_p = w_p / sum_q w_q,
 * where f_p is a thin plate spline solved over the points of patch p only
 * and w_p a C2 bump that vanishes outside the patch. Construction
 * (docs/design.md, "Local mode", says why each choice):
 *  - a quadtree over the points' bounding box (scaled coordinates), a cell
 *    split while it holds more than patch_points points, then balanced (no
 *    leaf's patch reaches a cell two levels deeper);
 *  - each leaf cell gives a patch: the cell enlarged by `overlap` around its
 *    centre, grown further (x1.5 steps, the last one bisected) until every band has at least
 *    MIN_PATCH_POINTS usable points that do not lie on one line (or the
 *    patch covers every point);
 *  - per patch, the dense solve of solve.c in the patch's own centred,
 *    scaled frame, with lambda rescaled so that it means what it means
 *    globally (the same penalised least squares problem, restricted to the
 *    patch's points);
 *  - w_p(u, v) = b((u - cx) / hx) b((v - cy) / hy), b(t) = (1 - t^2)^3 on
 *    |t| < 1: C2, so the blend is C2 wherever the patch splines are (they
 *    are C1 at their nodes, C-infinity elsewhere): no seams;
 *  - the leaf cells tile the bounding box and each lies strictly inside its
 *    patch, so sum_q w_q > 0 there; outside the box the weights are taken at
 *    the point clamped into the box, while the patch splines are evaluated
 *    at the point itself (their own extrapolation, blended).
 * Evaluation: cpu_local.c (values), cpu_local_deriv.c (other quantities),
 * gpu_eval.c (on the GPU); the patch lookup: local_lookup.c; saved models:
 * local_io.c. */
#include "blend.h"
#include "gpu_backend.h"
#include "internal.h"
#include "local.h"
#include "local_size.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fewest usable points per band a patch solves with (unless the band has
 * fewer in all): fewer would make a patch an almost affine fit. */
#define MIN_PATCH_POINTS 20
/* Points are distinct, so cells separate them long before this depth. */
#define MAX_DEPTH 48
/* Patch growth per step while it lacks points. */
#define GROW 1.5
/* Smallest eigenvalue ratio of a patch's point covariance: below, the
 * points are (nearly) on a line and the patch's plane is undetermined. */
#define COLLINEAR_RATIO 1e-6

typedef struct node {
    double u0, v0, u1, v1;
    size_t begin, end; /* its points: perm[begin .. end) */
    size_t child;      /* 0: a leaf; else the first of its 4 children */
    int depth;
} node;

typedef struct band_stats {
    size_t n;
    double su, sv, suu, svv, suv; /* relative to the patch centre */
} band_stats;

/* ---- the build ---- */

typedef struct build {
    const tps_model *md;
    double *const *merged;
    double *const *merged_w; /* NULL, or per-point weights per band */
    size_t n_bands;
    size_t *perm;
    node *nodes;
    size_t n_nodes;
    size_t *leaves; /* node index of each patch */
    size_t *band_total; /* usable points per band, over all points */
    struct tps_local *lc;
    band_stats *stats;  /* n_bands per thread */
    /* The first error of the parallel phases (lowest patch index wins, so the
     * message does not depend on thread timing). */
    pthread_mutex_t lock;
    size_t err_patch;
    tps_error err;
    double *smoothing;       /* per band, user units (GCV: the chosen one) */
    double scale;            /* the model's scale: user units per scaled unit */
    size_t patch_points; /* a cell's most points */
    size_t entries, largest; /* the patches' points: in all, the most in one */
    size_t n_solves, n_gpu_solves;
    /* Leave-one-out (cross_validation): the blend's denominator at each
     * point, and per band NULL or the blended LOO residuals. */
    double *S;
    double **loo_sum;
    /* The wave of patches being solved: work[p - wave0]. */
    struct patch_work *work;
    size_t wave0;
    /* Linear covariates: NULL, or their sums over the patches (local_cov.c). */
    tps_local_cov *cov;
} build;

static void record_error(build *bd, size_t p, const tps_error *err)
{
    pthread_mutex_lock(&bd->lock);
    if (bd->err.code == TPS_OK || p < bd->err_patch) {
        bd->err = *err;
        bd->err_patch = p;
    }
    pthread_mutex_unlock(&bd->lock);
}

static size_t partition(size_t *perm, size_t begin, size_t end, const double *c, double mid)
{
    size_t i = begin, j = end;
    while (i < j) {
        if (c[perm[i]] < mid)
            ++i;
        else {
            --j;
            size_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
    return i;
}

/* Splits node k into four children appended to the node array. */
static tps_status split_node(tps_context *ctx, build *bd, size_t k, size_t *cap)
{
    const tps_model *md = bd->md;
    if (bd->n_nodes + 4 > *cap) {
        node *grown = realloc(bd->nodes, sizeof(node) * *cap * 2);
        if (!grown)
            return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch tree");
        bd->nodes = grown;
        *cap *= 2;
    }
    const node nd = bd->nodes[k];
    const double mu = 0.5 * (nd.u0 + nd.u1), mv = 0.5 * (nd.v0 + nd.v1);
    size_t s1 = partition(bd->perm, nd.begin, nd.end, md->v, mv);
    size_t s0 = partition(bd->perm, nd.begin, s1, md->u, mu);
    size_t s2 = partition(bd->perm, s1, nd.end, md->u, mu);
    const size_t c = bd->n_nodes;
    bd->nodes[k].child = c;
    bd->nodes[c + 0] = (node){nd.u0, nd.v0, mu, mv, nd.begin, s0, 0, nd.depth + 1};
    bd->nodes[c + 1] = (node){mu, nd.v0, nd.u1, mv, s0, s1, 0, nd.depth + 1};
    bd->nodes[c + 2] = (node){nd.u0, mv, mu, nd.v1, s1, s2, 0, nd.depth + 1};
    bd->nodes[c + 3] = (node){mu, mv, nd.u1, nd.v1, s2, nd.end, 0, nd.depth + 1};
    bd->n_nodes += 4;
    return TPS_OK;
}

/* Whether a node deeper than `depth` meets the box |u - cx| <= hx,
 * |v - cy| <= hy. */
static int deeper_node_within(const build *bd, double cx, double cy, double hx, double hy,
                              int depth)
{
    size_t stack[4 * MAX_DEPTH + 8];
    size_t top = 0;
    stack[top++] = 0;
    while (top) {
        const node *nd = &bd->nodes[stack[--top]];
        if (nd->u1 < cx - hx || nd->u0 > cx + hx || nd->v1 < cy - hy || nd->v0 > cy + hy)
            continue;
        if (nd->depth > depth)
            return 1;
        if (nd->child)
            for (size_t q = 0; q < 4; ++q)
                stack[top++] = nd->child + q;
    }
    return 0;
}

static tps_status build_tree(tps_context *ctx, build *bd, size_t patch_points, double overlap)
{
    const tps_model *md = bd->md;
    const struct tps_local *lc = bd->lc;
    size_t cap = 64;
    bd->nodes = malloc(sizeof(node) * cap);
    bd->perm = malloc(sizeof(size_t) * md->n);
    if (!bd->nodes || !bd->perm)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch tree");
    for (size_t i = 0; i < md->n; ++i)
        bd->perm[i] = i;
    bd->nodes[0] = (node){lc->bu0, lc->bv0, lc->bu1, lc->bv1, 0, md->n, 0, 0};
    bd->n_nodes = 1;
    /* Breadth first: children are appended and visited in turn. */
    for (size_t k = 0; k < bd->n_nodes; ++k) {
        const node nd = bd->nodes[k];
        if (nd.end - nd.begin <= patch_points || nd.depth >= MAX_DEPTH)
            continue;
        tps_status st = split_node(ctx, bd, k, &cap);
        if (st != TPS_OK)
            return st;
    }
    /* Balance: a leaf's patch (the cell enlarged by `overlap`) may only
     * reach cells at most one level deeper. Without this a large, sparse
     * cell beside a dense cluster has a patch that swallows the cluster:
     * thousands of points in one O(n^3) solve (measured: 5,000 points, a
     * cluster of 1e-3 of the box plus 50 outliers, patches of 4,971 points
     * and 74 s; 20,000 points: over 5 minutes). Splitting such leaves until
     * no patch reaches two levels deeper bounds a patch to a few cells'
     * points whatever the density. Repeated until nothing splits: a split
     * can make a neighbour's patch reach deeper cells. */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t k = 0; k < bd->n_nodes; ++k) {
            const node nd = bd->nodes[k];
            if (nd.child || nd.depth >= MAX_DEPTH)
                continue;
            const double hx = 0.5 * overlap * (nd.u1 - nd.u0), hy = 0.5 * overlap * (nd.v1 - nd.v0);
            if (!deeper_node_within(bd, 0.5 * (nd.u0 + nd.u1), 0.5 * (nd.v0 + nd.v1), hx, hy,
                                    nd.depth + 1))
                continue;
            tps_status st = split_node(ctx, bd, k, &cap);
            if (st != TPS_OK)
                return st;
            changed = 1;
        }
    }
    return TPS_OK;
}

/* Calls visit(i) for each point i with |u - cx| <= hx and |v - cy| <= hy,
 * in tree order (deterministic). */
typedef void (*visit_fn)(size_t i, void *user);
static void query(const build *bd, double cx, double cy, double hx, double hy, visit_fn visit,
                  void *user)
{
    const tps_model *md = bd->md;
    const double qu0 = cx - hx, qu1 = cx + hx, qv0 = cy - hy, qv1 = cy + hy;
    size_t stack[4 * MAX_DEPTH + 8];
    size_t top = 0;
    stack[top++] = 0;
    while (top) {
        const node *nd = &bd->nodes[stack[--top]];
        if (nd->u1 < qu0 || nd->u0 > qu1 || nd->v1 < qv0 || nd->v0 > qv1 || nd->end == nd->begin)
            continue;
        if (nd->child) {
            /* Pushed in reverse so that children are visited in order. */
            for (int q = 3; q >= 0; --q)
                stack[top++] = nd->child + (size_t)q;
            continue;
        }
        for (size_t k = nd->begin; k < nd->end; ++k) {
            size_t i = bd->perm[k];
            if (fabs(md->u[i] - cx) <= hx && fabs(md->v[i] - cy) <= hy)
                visit(i, user);
        }
    }
}

typedef struct count_visit {
    const build *bd;
    band_stats *st;
    double cx, cy;
    size_t n;
} count_visit;

static void count_point(size_t i, void *user)
{
    count_visit *cv = user;
    const double du = cv->bd->md->u[i] - cv->cx, dv = cv->bd->md->v[i] - cv->cy;
    cv->n++;
    for (size_t b = 0; b < cv->bd->n_bands; ++b) {
        if (!isfinite(cv->bd->merged[b][i]))
            continue;
        band_stats *s = &cv->st[b];
        s->n++;
        s->su += du;
        s->sv += dv;
        s->suu += du * du;
        s->svv += dv * dv;
        s->suv += du * dv;
    }
}

static int spans_area(const band_stats *s)
{
    if (s->n < 3)
        return 0;
    const double n = (double)s->n, mu = s->su / n, mv = s->sv / n;
    const double cuu = s->suu / n - mu * mu, cvv = s->svv / n - mv * mv;
    const double cuv = s->suv / n - mu * mv;
    const double tr = cuu + cvv;
    return tr > 0.0 && cuu * cvv - cuv * cuv > COLLINEAR_RATIO * tr * tr;
}

/* Counts the patch's points at its current support into pt->n and st;
 * whether the support is enough: every band has MIN_PATCH_POINTS usable
 * points spanning an area (or all it has), or it covers every point. */
static int patch_enough(build *bd, patch *pt, band_stats *st)
{
    const struct tps_local *lc = bd->lc;
    memset(st, 0, sizeof *st * bd->n_bands);
    count_visit cv = {bd, st, pt->cx, pt->cy, 0};
    query(bd, pt->cx, pt->cy, pt->hx, pt->hy, count_point, &cv);
    pt->n = cv.n;
    if (pt->cx - pt->hx <= lc->bu0 && pt->cx + pt->hx >= lc->bu1 && pt->cy - pt->hy <= lc->bv0 &&
        pt->cy + pt->hy >= lc->bv1)
        return 1;
    for (size_t b = 0; b < bd->n_bands; ++b) {
        size_t want = bd->band_total[b] < MIN_PATCH_POINTS ? bd->band_total[b] : MIN_PATCH_POINTS;
        if (st[b].n < want || !spans_area(&st[b]))
            return 0;
    }
    return 1;
}

/* Phase 1 (parallel over leaves): the patch's final support and size. A
 * leaf with too few points grows by GROW until it has enough; when that
 * last step took in far more than a cell holds (a sparse cell beside a
 * dense cluster: the step would swallow the cluster, and a patch of the
 * cluster's thousands of points costs an O(n^3) solve), the smallest
 * growth in that step that is enough is found by bisection instead. */
static void grow_patch(build *bd, patch *pt, band_stats *st)
{
    const node *nd = &bd->nodes[bd->leaves[pt - bd->lc->patches]];
    pt->cx = 0.5 * (nd->u0 + nd->u1);
    pt->cy = 0.5 * (nd->v0 + nd->v1);
    const double hx0 = pt->hx, hy0 = pt->hy;
    double lo = 1.0, hi = 1.0;
    while (!patch_enough(bd, pt, st)) {
        lo = hi;
        hi *= GROW;
        pt->hx = hx0 * hi;
        pt->hy = hy0 * hi;
    }
    if (hi == 1.0 || pt->n <= bd->patch_points)
        return;
    for (int k = 0; k < 40; ++k) { /* (lo, hi]: lo not enough, hi enough */
        const double mid = 0.5 * (lo + hi);
        pt->hx = hx0 * mid;
        pt->hy = hy0 * mid;
        if (patch_enough(bd, pt, st))
            hi = mid;
        else
            lo = mid;
    }
    pt->hx = hx0 * hi;
    pt->hy = hy0 * hi;
    patch_enough(bd, pt, st); /* pt->n at the final support */
}

static void size_patch(size_t p, int thread, void *user)
{
    build *bd = user;
    patch *pt = &bd->lc->patches[p];
    grow_patch(bd, pt, bd->stats + (size_t)thread * bd->n_bands);
    /* The patch spline's frame: centred on its support, its longer half-side
     * 1 (what its solve and GCV use). */
    pt->pcx = pt->cx;
    pt->pcy = pt->cy;
    pt->ps = fmax(pt->hx, pt->hy);
}

typedef struct collect_visit {
    size_t *index;
    size_t n;
} collect_visit;

static void collect_point(size_t i, void *user)
{
    collect_visit *cv = user;
    cv->index[cv->n++] = i;
}

/* Patch p's pt->n points, in tree order (tps_patch_points_fn). */
static void gather_patch_points(void *user, size_t p, size_t *index)
{
    const build *bd = user;
    const patch *pt = &bd->lc->patches[p];
    collect_visit cv = {index, 0};
    query(bd, pt->cx, pt->cy, pt->hx, pt->hy, collect_point, &cv);
}

/* Phase 2, by waves of patches: gather each patch's points and set up one
 * dense solve per group of bands (same lambda, same missing values), solve
 * the wave's systems together (tps_solve_dense_batch: on the CPU threads,
 * or factorised in batches on the GPU), store the weights. */
typedef struct group_solve {
    size_t ng, m;
    size_t *bands; /* ng model bands */
    size_t *sub;   /* m indices into the patch's points */
    double *su, *sv, *noise, *zw; /* m each; zw: ng values then ng weights */
    size_t *idx;   /* leave-one-out: the m model indices, and (M^-1)_ii */
    double *loo;
    const double **z;
    double **w;
    double (*a)[3];
    tps_dense_job job;
} group_solve;

typedef struct patch_work {
    size_t n_groups;
    group_solve *groups; /* up to n_bands */
} patch_work;

static void free_group(group_solve *gs)
{
    free(gs->bands);
    free(gs->sub);
    free(gs->su);
    free(gs->sv);
    free(gs->noise);
    free(gs->idx);
    free(gs->loo);
    free(gs->zw);
    free(gs->z);
    free(gs->w);
    free(gs->a);
    memset(gs, 0, sizeof *gs);
}

static void prepare_patch(size_t p, int thread, void *user)
{
    (void)thread;
    build *bd = user;
    struct tps_local *lc = bd->lc;
    const tps_model *md = bd->md;
    patch *pt = &lc->patches[p];
    patch_work *pw = &bd->work[p - bd->wave0];
    const size_t nb = bd->n_bands, n = pt->n, nc = md->n_cov;
    /* With covariates: each covariate's c_k and W_p c_k (local_cov.c). */
    const size_t nr = 2 * nc;
    tps_error err = {TPS_OK, ""};

    pt->index = malloc(sizeof(size_t) * (n ? n : 1));
    pt->u = malloc(sizeof(double) * (n ? n : 1));
    pt->v = malloc(sizeof(double) * (n ? n : 1));
    pt->hw = calloc(nb, sizeof(double *));
    pt->affine = calloc(nb, sizeof(double[3]));
    pw->groups = calloc(nb, sizeof(group_solve));
    pw->n_groups = 0;
    char *assigned = calloc(nb, 1);
    int ok = pt->index && pt->u && pt->v && pt->hw && pt->affine && pw->groups && assigned;
    for (size_t b = 0; ok && b < nb; ++b)
        ok = (pt->hw[b] = calloc(n ? n : 1, sizeof(double))) != NULL;
    if (!ok) {
        tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu (%zu points)",
                      p + 1, n);
        goto done;
    }
    gather_patch_points(bd, p, pt->index);
    for (size_t k = 0; k < n; ++k) {
        pt->u[k] = (md->u[pt->index[k]] - pt->pcx) / pt->ps;
        pt->v[k] = (md->v[pt->index[k]] - pt->pcy) / pt->ps;
    }
    for (size_t b = 0; b < nb; ++b) {
        if (assigned[b])
            continue;
        group_solve *gs = &pw->groups[pw->n_groups++];
        gs->bands = malloc(sizeof(size_t) * nb);
        gs->sub = malloc(sizeof(size_t) * (n ? n : 1));
        gs->su = malloc(sizeof(double) * (n ? n : 1));
        gs->sv = malloc(sizeof(double) * (n ? n : 1));
        gs->noise = bd->merged_w ? malloc(sizeof(double) * (n ? n : 1)) : NULL;
        /* The group's bands, then each covariate's column: more
         * right-hand sides of the same factorisation. */
        gs->zw = malloc(sizeof(double) * (n ? n : 1) * 2 * (nb + nr));
        gs->z = malloc(sizeof(double *) * (nb + nr));
        gs->w = malloc(sizeof(double *) * (nb + nr));
        gs->a = malloc(sizeof(double[3]) * (nb + nr));
        if (!gs->bands || !gs->sub || !gs->su || !gs->sv || (bd->merged_w && !gs->noise) ||
            !gs->zw || !gs->z || !gs->w || !gs->a) {
            tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY,
                          "out of memory for patch %zu (%zu points)", p + 1, n);
            goto done;
        }
        for (size_t c = b; c < nb; ++c) {
            int same = !assigned[c] && bd->smoothing[c] == bd->smoothing[b];
            for (size_t k = 0; same && k < n; ++k)
                same = isfinite(bd->merged[b][pt->index[k]]) ==
                       isfinite(bd->merged[c][pt->index[k]]);
            if (same) {
                gs->bands[gs->ng++] = c;
                assigned[c] = 1;
            }
        }
        int want_loo = 0;
        for (size_t g = 0; g < gs->ng; ++g)
            want_loo |= bd->loo_sum && bd->loo_sum[gs->bands[g]] != NULL;
        if (want_loo || nc) {
            gs->idx = malloc(sizeof(size_t) * (n ? n : 1));
            gs->loo = want_loo ? malloc(sizeof(double) * (n ? n : 1)) : NULL;
            if (!gs->idx || (want_loo && !gs->loo)) {
                tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY,
                              "out of memory for patch %zu (%zu points)", p + 1, n);
                goto done;
            }
        }
        for (size_t k = 0; k < n; ++k) {
            if (isfinite(bd->merged[b][pt->index[k]])) {
                if (gs->idx)
                    gs->idx[gs->m] = pt->index[k];
                gs->sub[gs->m] = k;
                gs->su[gs->m] = pt->u[k];
                gs->sv[gs->m] = pt->v[k];
                if (gs->noise) /* the group shares its missing values, so its weights */
                    gs->noise[gs->m] = 1.0 / bd->merged_w[b][pt->index[k]];
                ++gs->m;
            }
        }
        for (size_t g = 0; g < gs->ng; ++g) {
            double *zg = gs->zw + 2 * g * gs->m;
            for (size_t k = 0; k < gs->m; ++k)
                zg[k] = bd->merged[gs->bands[g]][pt->index[gs->sub[k]]];
            gs->z[g] = zg;
            gs->w[g] = zg + gs->m;
        }
        for (size_t c = 0; c < nr; ++c) {
            gs->z[gs->ng + c] = gs->zw + 2 * (gs->ng + c) * gs->m;
            gs->w[gs->ng + c] = gs->zw + (2 * (gs->ng + c) + 1) * gs->m;
        }
        if (nc)
            tps_local_cov_columns(bd->cov, pt, gs->m, pt->index, gs->sub,
                                  (double *const *)(gs->z + gs->ng));
        /* lambda is in user units squared (tps.h); the patch frame's unit is
         * scale * ps user units, so the patch solves the very penalised
         * least squares problem of the global spline, on its own points. */
        const double unit = bd->scale * pt->ps;
        tps_dense_job *job = &gs->job;
        job->status = TPS_ERR_INTERNAL; /* until solved */
        job->n = gs->m;
        job->u = gs->su;
        job->v = gs->sv;
        job->lambda = bd->smoothing[b] / (unit * unit);
        job->noise = gs->noise;
        job->loo_diag = gs->loo;
        job->n_rhs = gs->ng + nr;
        job->z = gs->z;
        job->w = gs->w;
        job->a = gs->a;
        snprintf(job->what, sizeof job->what, "patch %zu of %zu, band %zu", p + 1,
                 lc->n_patches, b + 1);
    }
done:
    if (err.code != TPS_OK)
        record_error(bd, p, &err);
    free(pt->index);
    pt->index = NULL;
    free(assigned);
}

static void store_patch(size_t p, int thread, void *user)
{
    (void)thread;
    build *bd = user;
    patch *pt = &bd->lc->patches[p];
    patch_work *pw = &bd->work[p - bd->wave0];
    for (size_t i = 0; i < pw->n_groups; ++i) {
        group_solve *gs = &pw->groups[i];
        /* A job the wave did not run (an earlier failure) stays
         * TPS_ERR_INTERNAL with no message: that failure is reported. */
        if (gs->job.status == TPS_OK) {
            for (size_t g = 0; g < gs->ng; ++g) {
                for (size_t k = 0; k < gs->m; ++k)
                    pt->hw[gs->bands[g]][gs->sub[k]] = 0.5 * gs->w[g][k];
                memcpy(pt->affine[gs->bands[g]], gs->a[g], sizeof gs->a[g]);
            }
        } else if (gs->job.err.code != TPS_OK) {
            record_error(bd, p, &gs->job.err);
        }
        free_group(gs);
    }
    free(pw->groups);
    pw->groups = NULL;
    pw->n_groups = 0;
}

/* A wave's leave-one-out residuals, w_i / (M^-1)_ii per patch (Rippa),
 * blended: serially, in patch order, so the sums do not depend on the
 * threads. */
static void add_loo(build *bd, size_t count)
{
    const tps_model *md = bd->md;
    for (size_t i = 0; i < count; ++i) {
        const patch *pt = &bd->lc->patches[bd->wave0 + i];
        const patch_work *pw = &bd->work[i];
        for (size_t q = 0; q < pw->n_groups; ++q) {
            const group_solve *gs = &pw->groups[q];
            if (!gs->loo || gs->job.status != TPS_OK)
                continue;
            for (size_t g = 0; g < gs->ng; ++g) {
                double *sum = bd->loo_sum[gs->bands[g]];
                for (size_t k = 0; sum && k < gs->m; ++k) {
                    const size_t j = gs->idx[k];
                    const double w = tps_bump((md->u[j] - pt->cx) / pt->hx) *
                                     tps_bump((md->v[j] - pt->cy) / pt->hy);
                    if (w > 0.0)
                        sum[j] += w / bd->S[j] * (gs->w[g][k] / gs->loo[k]);
                }
            }
        }
    }
}

/* A wave's covariate sums (local_cov.c), serially in patch order. */
static void add_cov(build *bd, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        const size_t p = bd->wave0 + i;
        const patch_work *pw = &bd->work[i];
        for (size_t q = 0; q < pw->n_groups; ++q) {
            const group_solve *gs = &pw->groups[q];
            if (gs->job.status != TPS_OK)
                continue;
            if (!tps_local_cov_add(bd->cov, bd->md, &bd->lc->patches[p], p, gs->ng, gs->bands,
                                   gs->m, gs->idx, gs->sub, gs->w,
                                   (const double(*)[3])gs->a, gs->loo, bd->loo_sum)) {
                tps_error oom;
                tps_error_set(&oom, TPS_ERR_OUT_OF_MEMORY,
                              "out of memory for patch %zu's covariates", p + 1);
                record_error(bd, p, &oom);
                return;
            }
        }
    }
}

static void prepare_patch_in_wave(size_t i, int thread, void *user)
{
    prepare_patch(((build *)user)->wave0 + i, thread, user);
}

static void store_patch_in_wave(size_t i, int thread, void *user)
{
    store_patch(((build *)user)->wave0 + i, thread, user);
}

/* Patches per wave: the systems solved together (on the GPU, one batched
 * factorisation call per size class), a bound on the memory they hold, and
 * the steps of the progress report: about n_patches / 32, within these. */
#define WAVE_PATCHES 512
#define WAVE_PATCHES_MIN 16

static void solve_patches(build *bd, int threads, int try_gpu, size_t gpu_max_bytes)
{
    struct tps_local *lc = bd->lc;
    tps_dense_job *jobs = NULL;
    size_t wave = lc->n_patches / 32;
    wave = wave < WAVE_PATCHES_MIN ? WAVE_PATCHES_MIN : wave > WAVE_PATCHES ? WAVE_PATCHES : wave;
    for (size_t w0 = 0; w0 < lc->n_patches && bd->err.code == TPS_OK; w0 += wave) {
        const size_t count = lc->n_patches - w0 < wave ? lc->n_patches - w0 : wave;
        bd->wave0 = w0;
        memset(bd->work, 0, sizeof(patch_work) * count);
        /* The patches' own solves report no progress: the wave does. */
        tps_progress_state quiet;
        tps_progress_state *const outer_progress = tps_progress_begin(&quiet, NULL);
        tps_parallel_for(count, threads, prepare_patch_in_wave, bd);
        size_t n_jobs = 0;
        for (size_t i = 0; i < count; ++i)
            n_jobs += bd->work[i].n_groups;
        jobs = realloc(jobs, sizeof(tps_dense_job) * (n_jobs ? n_jobs : 1));
        if (!jobs) {
            tps_error oom;
            tps_error_set(&oom, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch solves");
            record_error(bd, w0, &oom);
        } else if (bd->err.code == TPS_OK) {
            size_t j = 0;
            for (size_t i = 0; i < count; ++i)
                for (size_t g = 0; g < bd->work[i].n_groups; ++g)
                    jobs[j++] = bd->work[i].groups[g].job;
            /* Each job carries its own error; the first is recorded below. */
            tps_solve_dense_batch(NULL, n_jobs, jobs, threads, try_gpu, gpu_max_bytes);
            j = 0;
            for (size_t i = 0; i < count; ++i)
                for (size_t g = 0; g < bd->work[i].n_groups; ++g) {
                    bd->work[i].groups[g].job = jobs[j];
                    bd->n_solves += jobs[j].status == TPS_OK;
                    bd->n_gpu_solves += jobs[j].status == TPS_OK && jobs[j].used_gpu;
                    ++j;
                }
            if (bd->loo_sum)
                add_loo(bd, count);
            if (bd->cov)
                add_cov(bd, count);
        }
        tps_parallel_for(count, threads, store_patch_in_wave, bd);
        tps_progress_end(outer_progress);
        tps_progress((double)(w0 + count) / (double)lc->n_patches);
    }
    free(jobs);
}

/* The memory guard, once the patch sizes are known and before the
 * patches' arrays and systems are allocated: every patch keeps its points
 * and weights; `threads` patch systems are solved at once. */
static tps_status check_memory(tps_context *ctx, build *bd, const tps_fit_options *options,
                               int threads, int try_gpu, size_t *gcv_budget)
{
    const tps_model *md = bd->md;
    const struct tps_local *lc = bd->lc;
    const size_t nb = bd->n_bands;
    size_t entries = 0, largest = 0;
    for (size_t p = 0; p < lc->n_patches; ++p) {
        entries += lc->patches[p].n;
        largest = lc->patches[p].n > largest ? lc->patches[p].n : largest;
    }
    bd->entries = entries;
    bd->largest = largest;
    const size_t kept = entries * sizeof(double) * (2 + nb) +
                        lc->n_patches * (sizeof(patch) + nb * (sizeof(double *) + 24)) +
                        tps_local_cov_bytes(md, entries, lc->n_patches);
    const size_t per_solve = tps_solve_bytes(largest, nb) +
                             largest * (sizeof(size_t) * 2 + sizeof(double) * (2 + 2 * nb));
    const size_t tree = md->n * sizeof(size_t) + bd->n_nodes * sizeof(node);
    const size_t lookup = (lc->n_patches * 4 + 2 * (size_t)MAX_GRID) * sizeof(size_t);
    /* A wave's set-up systems: per point the patch copies (su, sv, noise,
     * values and weights) and the solve's QR, right-hand sides and columns. */
    const size_t wave = (lc->n_patches < WAVE_PATCHES ? lc->n_patches : WAVE_PATCHES) *
                        largest * sizeof(double) * (9 + 3 * (nb + 2 * md->n_cov));
    /* Cross-validation: the blend's sums at the points, LOO residuals per
     * band (with covariates, GCV bands' too, and local_cov.c's sums); GCV's
     * pass runs before the solves (and frees what it took). */
    size_t n_gcv = 0, n_loo = 0;
    for (size_t b = 0; b < nb; ++b) {
        n_gcv += md->band_info[b].smoothing_gcv ? 1 : 0;
        n_loo += options->cross_validation && !md->band_info[b].smoothing_gcv ? 1 : 0;
    }
    const size_t cv_doubles =
        1 + n_loo + (md->n_cov ? n_gcv + nb * (1 + 2 * md->n_cov) : 0);
    const size_t cv = n_gcv + n_loo ? md->n * (sizeof(double) * cv_doubles + sizeof(uint32_t))
                                    : 0;
    const size_t gcv = n_gcv ? tps_local_gcv_bytes(lc, md->n, md->n_cov, threads, try_gpu) : 0;
    const size_t solves = kept + (size_t)threads * per_solve + wave;
    const size_t need = (solves > gcv ? solves : gcv) + tree + lookup + cv;
    if (options->max_memory && need > options->max_memory)
        return tps_set_error(
            ctx, TPS_ERR_MEMORY_LIMIT, "the local %s of %zu points in %zu patches (up to %zu "
            "points each, %d at a time) needs %zu bytes (%.2f GiB), more than the %zu bytes "
            "allowed", gcv > solves ? "GCV" : "solve", md->n, lc->n_patches, largest, threads,
            need, (double)need / 1073741824.0, options->max_memory);
    /* What GCV's pass may take (0: no limit). */
    *gcv_budget = options->max_memory ? options->max_memory - (tree + lookup + cv) : 0;
    return TPS_OK;
}

/* The quadtree of cells of at most patch_points points and their patches,
 * sized (support, frame, points) but not solved. */
static tps_status make_partition(tps_context *ctx, build *bd, size_t patch_points, double overlap,
                                 int threads)
{
    struct tps_local *lc = bd->lc;
    bd->patch_points = patch_points;
    tps_status st = build_tree(ctx, bd, patch_points, overlap);
    if (st != TPS_OK)
        return st;
    for (size_t k = 0; k < bd->n_nodes; ++k)
        lc->n_patches += bd->nodes[k].child ? 0 : 1;
    lc->patches = calloc(lc->n_patches, sizeof(patch));
    bd->leaves = malloc(sizeof(size_t) * lc->n_patches);
    if (!bd->stats)
        bd->stats = malloc(sizeof(band_stats) * bd->n_bands * (size_t)threads);
    if (!lc->patches || !bd->leaves || !bd->stats)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for %zu patches",
                             lc->n_patches);
    for (size_t k = 0, p = 0; k < bd->n_nodes; ++k) {
        if (bd->nodes[k].child)
            continue;
        const node *nd = &bd->nodes[k];
        bd->leaves[p] = k;
        lc->patches[p].hx = 0.5 * overlap * (nd->u1 - nd->u0);
        lc->patches[p].hy = 0.5 * overlap * (nd->v1 - nd->v0);
        ++p;
    }
    tps_parallel_for(lc->n_patches, threads, size_patch, bd);
    return TPS_OK;
}

/* The rebuilds GCV's patch sizing asks for (local_size.c). */
typedef struct sizing {
    build *bd;
    const tps_fit_options *options;
    int threads, try_gpu;
} sizing;

static size_t view_nodes(void *user, tps_size_node *view)
{
    const build *bd = ((const sizing *)user)->bd;
    for (size_t k = 0; view && k < bd->n_nodes; ++k) {
        const node *nd = &bd->nodes[k];
        view[k] = (tps_size_node){nd->u0, nd->v0, nd->u1, nd->v1, nd->end - nd->begin, nd->child};
    }
    return bd->n_nodes;
}

static tps_status repartition(void *user, tps_context *ctx, size_t patch_points, double overlap,
                              size_t *gcv_budget)
{
    const sizing *sz = user;
    build *bd = sz->bd; /* its patches are not solved yet: they own nothing */
    free(bd->lc->patches);
    free(bd->perm);
    free(bd->nodes);
    free(bd->leaves);
    bd->lc->patches = NULL;
    bd->perm = bd->leaves = NULL;
    bd->nodes = NULL;
    bd->lc->n_patches = bd->n_nodes = 0;
    tps_status st = make_partition(ctx, bd, patch_points, overlap, sz->threads);
    return st == TPS_OK ? check_memory(ctx, bd, sz->options, sz->threads, sz->try_gpu, gcv_budget)
                        : st;
}

tps_status tps_local_build(tps_context *ctx, tps_model *md, double *const *merged,
                           double *const *merged_w, const tps_fit_options *options)
{
    const double t0 = tps_now_seconds();
    const size_t nb = md->n_bands;
    const int threads = options->num_threads < 1 ? 1 : options->num_threads;
    size_t patch_points = options->patch_points;
    double overlap = options->overlap;
    if (md->n < 3)
        return tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                             "%zu distinct usable point%s, at least 3 are needed", md->n,
                             md->n == 1 ? "" : "s");
    build bd = {0};
    bd.md = md;
    bd.merged = merged;
    bd.merged_w = merged_w;
    bd.n_bands = nb;
    bd.scale = md->scale;
    tps_status st = TPS_OK;
    double *smoothing = malloc(sizeof(double) * nb);
    bd.band_total = calloc(nb, sizeof(size_t));
    struct tps_local *lc = calloc(1, sizeof *lc);
    if (!smoothing || !bd.band_total || !lc || pthread_mutex_init(&bd.lock, NULL) != 0) {
        free(smoothing);
        free(bd.band_total);
        free(lc);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    bd.lc = lc;
    lc->n_bands = nb;
    for (size_t b = 0; b < nb; ++b) {
        smoothing[b] = md->band_info[b].smoothing;
        bd.band_total[b] = md->band_info[b].n_points;
    }
    bd.smoothing = smoothing;

    /* All points on one line: the quadtree would split a zero-width box. */
    band_stats all = {0};
    for (size_t i = 0; i < md->n; ++i) {
        all.n++;
        all.su += md->u[i];
        all.sv += md->v[i];
        all.suu += md->u[i] * md->u[i];
        all.svv += md->v[i] * md->v[i];
        all.suv += md->u[i] * md->v[i];
    }
    local_box(lc, md);
    if (!spans_area(&all) || !(lc->bu1 > lc->bu0) || !(lc->bv1 > lc->bv0)) {
        st = tps_set_error(ctx, TPS_ERR_COLLINEAR,
                           "all %zu points lie on (or very near) one line; a surface needs "
                           "points that span an area", md->n);
        goto done;
    }

    /* A covariate collinear with [1 x y] over a band's points: refused as
     * a global model refuses it, before any patch is solved. */
    if (md->n_cov) {
        st = tps_local_cov_check(ctx, md, merged, options->covariate_names);
        if (st != TPS_OK)
            goto done;
    }
    st = make_partition(ctx, &bd, patch_points, overlap, threads);
    if (st != TPS_OK)
        goto done;

    /* The factorisations (and GCV's eigendecompositions) in batches on the
     * GPU where one can solve (as for a global model: unless DEVICE=CPU),
     * else on the CPU threads. */
    const int try_gpu = options->device != TPS_DEVICE_CPU &&
                        tps_gpu_solve_available(NULL) == TPS_OK;
    size_t gcv_budget = 0;
    st = check_memory(ctx, &bd, options, threads, try_gpu, &gcv_budget);
    if (st != TPS_OK)
        goto done;
    int any_cv = options->cross_validation; /* a GCV band, or LOO for the others */
    for (size_t b = 0; b < nb; ++b)
        any_cv |= md->band_info[b].smoothing_gcv;

    /* One patch per thread, each factorisation on its own thread: OpenBLAS's
     * own threads on top would contend for the same cores (measured: 100,000
     * points, 2 cores, 7.9 s with them, 2.8 s without). The setting is
     * process-wide, so it is restored at once; a global solve running in
     * another thread meanwhile runs single-threaded, never wrong. */
    bd.work = calloc(WAVE_PATCHES, sizeof(patch_work));
    if (!bd.work) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch solves");
        goto done;
    }
    if (threads > 1)
        tps_blas_single_begin();
    sizing sz = {&bd, options, threads, try_gpu};
    const tps_size_build sb = {&sz, view_nodes, repartition};
    if (any_cv)
        st = tps_local_gcv_passes(ctx, md, lc, gather_patch_points, &bd, &sb, merged, merged_w,
                                  options, try_gpu, gcv_budget, smoothing, &bd.S, &bd.loo_sum,
                                  &patch_points, &overlap);
    /* The covariates' sums follow the final partition (GCV may have made
     * the patches again, larger). */
    if (st == TPS_OK && md->n_cov) {
        bd.cov = tps_local_cov_create(md, lc, gather_patch_points, &bd, any_cv);
        if (!bd.cov)
            st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                               "out of memory for the covariates' sums");
    }
    if (st == TPS_OK) {
        tps_progress_stage("solving %zu patches", lc->n_patches);
        solve_patches(&bd, threads, try_gpu, options->gpu_max_memory);
    }
    if (threads > 1)
        tps_blas_single_end();
    if (st != TPS_OK)
        goto done;
    if (bd.err.code == TPS_OK)
        tps_progress(1.0);
    if (bd.err.code != TPS_OK) {
        st = tps_raise(ctx, &bd.err);
        goto done;
    }
    if (bd.cov) {
        st = tps_local_cov_finish(ctx, bd.cov, md, lc, options->covariate_names, threads,
                                  bd.loo_sum);
        if (st != TPS_OK)
            goto done;
    }
    st = build_lookup(ctx, lc);
    if (st != TPS_OK)
        goto done;
    if (bd.loo_sum)
        tps_local_cv_finish(md, merged, bd.loo_sum);
    md->info.n_factorisations = bd.n_solves;
    md->info.n_patches = lc->n_patches;
    md->info.patch_points = patch_points;
    md->info.overlap = overlap;
    md->info.solve_device = bd.n_gpu_solves ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    tps_log(ctx, TPS_LOG_DEBUG,
            "local model: %zu patches of up to %zu points (%.1f on average, cells of up to %zu "
            "points, overlap %.3g), %zu factorisations (%zu on the GPU) in %.3f s",
            lc->n_patches, bd.largest, (double)bd.entries / (double)lc->n_patches, patch_points,
            overlap, bd.n_solves, bd.n_gpu_solves, tps_now_seconds() - t0);
    md->local = lc;
    lc = NULL;

done:
    tps_local_destroy(lc);
    pthread_mutex_destroy(&bd.lock);
    free(smoothing);
    free(bd.band_total);
    free(bd.perm);
    free(bd.nodes);
    free(bd.leaves);
    free(bd.stats);
    free(bd.work);
    tps_local_cov_destroy(bd.cov);
    free(bd.S);
    for (size_t b = 0; bd.loo_sum && b < nb; ++b)
        free(bd.loo_sum[b]);
    free(bd.loo_sum);
    return st;
}

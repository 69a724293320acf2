/* local.c: LOCAL models, a partition of unity over overlapping patches.
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
 * Evaluation of a chunk of pixels visits only the patches whose support
 * meets the chunk (a uniform grid over the box lists them) and runs the
 * SIMD kernel of eval_kernel.c over each patch's points for the pixels
 * inside its support. A pixel's value depends only on its own coordinates:
 * its patches are summed in patch order whatever chunk it falls in.
 * Derivative quantities (dz/dx, ..., the laplacian) are the blend's exact
 * derivatives, from the same candidate patches and a scalar pass per patch
 * (run_local_deriv_chunk; docs/design.md, "Derivative bands"). */
#include "gpu_backend.h"
#include "internal.h"
#include "local.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
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
/* Targets per evaluation work item (a multiple of the kernel tile). */
#define CHUNK 1024
/* The patch lookup grid has at most this many cells a side. */
#define MAX_GRID 1024

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

void tps_local_destroy(struct tps_local *lc)
{
    if (!lc)
        return;
    for (size_t p = 0; p < lc->n_patches; ++p) {
        patch *pt = &lc->patches[p];
        free(pt->index);
        free(pt->u);
        free(pt->v);
        if (pt->hw)
            for (size_t b = 0; b < lc->n_bands; ++b)
                free(pt->hw[b]);
        free(pt->hw);
        free(pt->affine);
    }
    free(lc->patches);
    free(lc->cell_start);
    free(lc->cell_patch);
    free(lc);
}

/* The points' bounding box in scaled units; build and load alike. */
void local_box(struct tps_local *lc, const tps_model *md)
{
    lc->bu0 = (md->info.min_x - md->cx) / md->scale;
    lc->bu1 = (md->info.max_x - md->cx) / md->scale;
    lc->bv0 = (md->info.min_y - md->cy) / md->scale;
    lc->bv1 = (md->info.max_y - md->cy) / md->scale;
}

/* The lookup grid over the box: about one cell per patch. */
void lookup_grid(struct tps_local *lc)
{
    size_t side = (size_t)ceil(sqrt((double)lc->n_patches)) + 1;
    lc->gx = lc->gy = side > MAX_GRID ? MAX_GRID : side;
    lc->gdu = (lc->bu1 - lc->bu0) / (double)lc->gx;
    lc->gdv = (lc->bv1 - lc->bv0) / (double)lc->gy;
    if (!(lc->gdu > 0.0))
        lc->gdu = 1.0;
    if (!(lc->gdv > 0.0))
        lc->gdv = 1.0;
}

/* The lookup cells a patch's support meets: columns i0..i1, rows j0..j1. */
void patch_cells(const struct tps_local *lc, const patch *pt, size_t *i0, size_t *i1,
                        size_t *j0, size_t *j1)
{
    *i0 = grid_cell(pt->cx - pt->hx, lc->bu0, lc->gdu, lc->gx);
    *i1 = grid_cell(pt->cx + pt->hx, lc->bu0, lc->gdu, lc->gx);
    *j0 = grid_cell(pt->cy - pt->hy, lc->bv0, lc->gdv, lc->gy);
    *j1 = grid_cell(pt->cy + pt->hy, lc->bv0, lc->gdv, lc->gy);
}

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
    tps_context err;
    const double *smoothing; /* per band, user units */
    double scale;            /* the model's scale: user units per scaled unit */
    size_t patch_points; /* a cell's most points */
    size_t n_solves, n_gpu_solves;
    /* The wave of patches being solved: work[p - wave0]. */
    struct patch_work *work;
    size_t wave0;
} build;

static void record_error(build *bd, size_t p, const tps_context *ctx)
{
    pthread_mutex_lock(&bd->lock);
    if (bd->err.status == TPS_OK || p < bd->err_patch) {
        bd->err = *ctx;
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
static void size_patch(size_t p, int thread, void *user)
{
    build *bd = user;
    const node *nd = &bd->nodes[bd->leaves[p]];
    patch *pt = &bd->lc->patches[p];
    band_stats *st = bd->stats + (size_t)thread * bd->n_bands;
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

typedef struct collect_visit {
    size_t *index;
    size_t n;
} collect_visit;

static void collect_point(size_t i, void *user)
{
    collect_visit *cv = user;
    cv->index[cv->n++] = i;
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
    const size_t nb = bd->n_bands, n = pt->n;
    tps_context ctx = {0};

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
        tps_set_error(&ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu (%zu points)",
                      p + 1, n);
        goto done;
    }
    collect_visit cv = {pt->index, 0};
    query(bd, pt->cx, pt->cy, pt->hx, pt->hy, collect_point, &cv);
    /* The patch frame: centred on its support, its longer half-side 1. */
    pt->pcx = pt->cx;
    pt->pcy = pt->cy;
    pt->ps = fmax(pt->hx, pt->hy);
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
        gs->zw = malloc(sizeof(double) * (n ? n : 1) * 2 * nb);
        gs->z = malloc(sizeof(double *) * nb);
        gs->w = malloc(sizeof(double *) * nb);
        gs->a = malloc(sizeof(double[3]) * nb);
        if (!gs->bands || !gs->sub || !gs->su || !gs->sv || (bd->merged_w && !gs->noise) ||
            !gs->zw || !gs->z || !gs->w || !gs->a) {
            tps_set_error(&ctx, TPS_ERR_OUT_OF_MEMORY,
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
        for (size_t k = 0; k < n; ++k) {
            if (isfinite(bd->merged[b][pt->index[k]])) {
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
        job->n_rhs = gs->ng;
        job->z = gs->z;
        job->w = gs->w;
        job->a = gs->a;
        snprintf(job->what, sizeof job->what, "patch %zu of %zu, band %zu", p + 1,
                 lc->n_patches, b + 1);
    }
done:
    if (ctx.status != TPS_OK)
        record_error(bd, p, &ctx);
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
        } else if (gs->job.err.status != TPS_OK) {
            record_error(bd, p, &gs->job.err);
        }
        free_group(gs);
    }
    free(pw->groups);
    pw->groups = NULL;
    pw->n_groups = 0;
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
    for (size_t w0 = 0; w0 < lc->n_patches && bd->err.status == TPS_OK; w0 += wave) {
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
            tps_context oom = {0};
            tps_set_error(&oom, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch solves");
            record_error(bd, w0, &oom);
        } else if (bd->err.status == TPS_OK) {
            size_t j = 0;
            for (size_t i = 0; i < count; ++i)
                for (size_t g = 0; g < bd->work[i].n_groups; ++g)
                    jobs[j++] = bd->work[i].groups[g].job;
            tps_context ctx = {0};
            tps_solve_dense_batch(&ctx, n_jobs, jobs, threads, try_gpu, gpu_max_bytes);
            j = 0;
            for (size_t i = 0; i < count; ++i)
                for (size_t g = 0; g < bd->work[i].n_groups; ++g) {
                    bd->work[i].groups[g].job = jobs[j];
                    bd->n_solves += jobs[j].status == TPS_OK;
                    bd->n_gpu_solves += jobs[j].status == TPS_OK && jobs[j].used_gpu;
                    ++j;
                }
        }
        tps_parallel_for(count, threads, store_patch_in_wave, bd);
        tps_progress_end(outer_progress);
        tps_progress((double)(w0 + count) / (double)lc->n_patches);
    }
    free(jobs);
}

size_t grid_cell(double x, double x0, double d, size_t n)
{
    double c = floor((x - x0) / d);
    if (!(c > 0.0))
        return 0;
    return c >= (double)n ? n - 1 : (size_t)c;
}

tps_status build_lookup(tps_context *ctx, struct tps_local *lc)
{
    lookup_grid(lc);
    size_t entries = 0;
    for (size_t p = 0; p < lc->n_patches; ++p)
        entries += lc->patches[p].n;
    lc->mean_patch_points = lc->n_patches ? (double)entries / (double)lc->n_patches : 0.0;
    const size_t cells = lc->gx * lc->gy;
    lc->cell_start = calloc(cells + 1, sizeof(size_t));
    if (!lc->cell_start)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch lookup");
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t p = 0; p < lc->n_patches; ++p) {
            const patch *pt = &lc->patches[p];
            size_t i0, i1, j0, j1;
            patch_cells(lc, pt, &i0, &i1, &j0, &j1);
            for (size_t j = j0; j <= j1; ++j)
                for (size_t i = i0; i <= i1; ++i) {
                    size_t c = j * lc->gx + i;
                    if (pass == 0)
                        lc->cell_start[c + 1]++;
                    else
                        lc->cell_patch[lc->cell_start[c]++] = p;
                }
        }
        if (pass == 0) {
            for (size_t c = 0; c < cells; ++c)
                lc->cell_start[c + 1] += lc->cell_start[c];
            lc->cell_patch = malloc(sizeof(size_t) * (lc->cell_start[cells] + 1));
            if (!lc->cell_patch)
                return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                                     "out of memory for the patch lookup");
        } else {
            /* The fill advanced each start to the next cell's: shift back. */
            for (size_t c = cells; c > 0; --c)
                lc->cell_start[c] = lc->cell_start[c - 1];
            lc->cell_start[0] = 0;
        }
    }
    return TPS_OK;
}

tps_status tps_local_build(tps_context *ctx, tps_model *md, double *const *merged,
                           double *const *merged_w, const tps_fit_options *options)
{
    const double t0 = tps_now_seconds();
    const size_t nb = md->n_bands;
    const int threads = options->num_threads < 1 ? 1 : options->num_threads;
    const size_t patch_points = options->patch_points;
    const double overlap = options->overlap;
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
    bd.patch_points = patch_points;
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

    st = build_tree(ctx, &bd, patch_points, overlap);
    if (st != TPS_OK)
        goto done;
    for (size_t k = 0; k < bd.n_nodes; ++k)
        lc->n_patches += bd.nodes[k].child ? 0 : 1;
    lc->patches = calloc(lc->n_patches, sizeof(patch));
    bd.leaves = malloc(sizeof(size_t) * lc->n_patches);
    bd.stats = malloc(sizeof(band_stats) * nb * (size_t)threads);
    if (!lc->patches || !bd.leaves || !bd.stats) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for %zu patches",
                           lc->n_patches);
        goto done;
    }
    for (size_t k = 0, p = 0; k < bd.n_nodes; ++k) {
        if (bd.nodes[k].child)
            continue;
        const node *nd = &bd.nodes[k];
        bd.leaves[p] = k;
        lc->patches[p].hx = 0.5 * overlap * (nd->u1 - nd->u0);
        lc->patches[p].hy = 0.5 * overlap * (nd->v1 - nd->v0);
        ++p;
    }
    tps_parallel_for(lc->n_patches, threads, size_patch, &bd);

    /* The memory guard, now that the patch sizes are known and before the
     * patches' arrays and systems are allocated: every patch keeps its
     * points and weights; `threads` patch systems are solved at once. */
    size_t entries = 0, largest = 0;
    for (size_t p = 0; p < lc->n_patches; ++p) {
        entries += lc->patches[p].n;
        largest = lc->patches[p].n > largest ? lc->patches[p].n : largest;
    }
    const size_t kept = entries * sizeof(double) * (2 + nb) +
                        lc->n_patches * (sizeof(patch) + nb * (sizeof(double *) + 24));
    const size_t per_solve = tps_solve_bytes(largest, nb) +
                             largest * (sizeof(size_t) * 2 + sizeof(double) * (2 + 2 * nb));
    const size_t tree = md->n * sizeof(size_t) + bd.n_nodes * sizeof(node);
    const size_t lookup = (lc->n_patches * 4 + 2 * (size_t)MAX_GRID) * sizeof(size_t);
    /* A wave's set-up systems: per point the patch copies (su, sv, noise,
     * values and weights) and the solve's QR, right-hand sides and columns. */
    const size_t wave = (lc->n_patches < WAVE_PATCHES ? lc->n_patches : WAVE_PATCHES) *
                        largest * sizeof(double) * (9 + 3 * nb);
    const size_t need = kept + (size_t)threads * per_solve + wave + tree + lookup;
    if (options->max_memory && need > options->max_memory) {
        st = tps_set_error(ctx, TPS_ERR_MEMORY_LIMIT,
                           "the local solve of %zu points in %zu patches (up to %zu points "
                           "each, %d at a time) needs %zu bytes (%.2f GiB), more than the %zu "
                           "bytes allowed", md->n, lc->n_patches, largest, threads, need,
                           (double)need / 1073741824.0, options->max_memory);
        goto done;
    }

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
    /* The factorisations in batches on the GPU where one can solve (as for
     * a global model: unless DEVICE=CPU), else on the CPU threads. */
    char why[512] = "";
    const int try_gpu = options->device != TPS_DEVICE_CPU &&
                        tps_gpu_solve_available(why, sizeof why) == 0;
    const int blas_threads = openblas_get_num_threads();
    if (threads > 1)
        openblas_set_num_threads(1);
    tps_progress_stage("solving %zu patches", lc->n_patches);
    solve_patches(&bd, threads, try_gpu, options->gpu_max_memory);
    if (threads > 1)
        openblas_set_num_threads(blas_threads);
    if (bd.err.status == TPS_OK)
        tps_progress(1.0);
    if (bd.err.status != TPS_OK) {
        st = tps_set_error(ctx, bd.err.status, "%s", bd.err.message);
        goto done;
    }
    st = build_lookup(ctx, lc);
    if (st != TPS_OK)
        goto done;
    md->info.n_factorisations = bd.n_solves;
    md->info.n_patches = lc->n_patches;
    md->info.solve_device = bd.n_gpu_solves ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
    tps_log(ctx, TPS_LOG_DEBUG,
            "local model: %zu patches of up to %zu points (%.1f on average, cells of up to %zu "
            "points, overlap %.3g), %zu factorisations (%zu on the GPU) in %.3f s",
            lc->n_patches, largest, (double)entries / (double)lc->n_patches, patch_points,
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
    return st;
}

/* ---- evaluation ---- */

typedef struct local_request {
    const tps_model *md;
    const struct tps_local *lc;
    tps_kernel_fn kernel;
    size_t n_bands;
    const size_t *bands;
    const tps_targets *t;
    char *scratch; /* per thread: scratch_bytes each */
    size_t scratch_bytes;
} local_request;

static int compare_size(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    return a < b ? -1 : (a > b);
}

static double clamp(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* The C2 bump (1 - t^2)^3 on |t| < 1. */
static double bump(double t)
{
    double s = 1.0 - t * t;
    return s > 0.0 ? s * s * s : 0.0;
}

/* The patches whose support may meet a chunk of `count` targets (pu, pv):
 * fills qu, qv with the targets clamped into the points' box (where the
 * weights are taken: extrapolation blends the patches nearest the box
 * edge) and cand with the patches listed in the lookup cells under the
 * clamped targets' bounding box, in patch order, so that every target sums
 * its patches in the same order whatever chunk it is in. NaN coordinates
 * give no patches (and NaN results). `mark` (n_patches bytes, zero) is
 * left zero. Returns how many patches. */
static size_t chunk_candidates(const struct tps_local *lc, size_t count, const double *pu,
                               const double *pv, double *qu, double *qv, size_t *cand,
                               unsigned char *mark)
{
    double mu0 = INFINITY, mu1 = -INFINITY, mv0 = INFINITY, mv1 = -INFINITY;
    for (size_t k = 0; k < count; ++k) {
        qu[k] = clamp(pu[k], lc->bu0, lc->bu1);
        qv[k] = clamp(pv[k], lc->bv0, lc->bv1);
        mu0 = fmin(mu0, qu[k]);
        mu1 = fmax(mu1, qu[k]);
        mv0 = fmin(mv0, qv[k]);
        mv1 = fmax(mv1, qv[k]);
    }
    if (!count || !(mu0 <= mu1 && mv0 <= mv1))
        return 0;
    size_t n_cand = 0;
    size_t i0 = grid_cell(mu0, lc->bu0, lc->gdu, lc->gx);
    size_t i1 = grid_cell(mu1, lc->bu0, lc->gdu, lc->gx);
    size_t j0 = grid_cell(mv0, lc->bv0, lc->gdv, lc->gy);
    size_t j1 = grid_cell(mv1, lc->bv0, lc->gdv, lc->gy);
    for (size_t j = j0; j <= j1; ++j)
        for (size_t i = i0; i <= i1; ++i) {
            const size_t c = j * lc->gx + i;
            for (size_t e = lc->cell_start[c]; e < lc->cell_start[c + 1]; ++e) {
                size_t p = lc->cell_patch[e];
                if (!mark[p]) {
                    mark[p] = 1;
                    cand[n_cand++] = p;
                }
            }
        }
    for (size_t e = 0; e < n_cand; ++e)
        mark[cand[e]] = 0;
    qsort(cand, n_cand, sizeof *cand, compare_size);
    return n_cand;
}

static void run_local_chunk(size_t item, int thread, void *user)
{
    local_request *rq = user;
    const struct tps_local *lc = rq->lc;
    const tps_targets *t = rq->t;
    const size_t nb = rq->n_bands;
    char *base = rq->scratch + rq->scratch_bytes * (size_t)thread;
    double *pu = (double *)base, *pv = pu + CHUNK, *qu = pv + CHUNK, *qv = qu + CHUNK;
    double *wsum = qv + CHUNK, *lu = wsum + CHUNK, *lv = lu + CHUNK, *wk = lv + CHUNK;
    double *acc = wk + CHUNK, *pacc = acc + nb * CHUNK;
    const double **wts = (const double **)(pacc + nb * CHUNK);
    size_t *idx = (size_t *)(wts + nb);
    size_t *cand = idx + CHUNK;
    unsigned char *mark = (unsigned char *)(cand + lc->n_patches);

    size_t row, col0;
    const size_t count = tps_targets_chunk(t, item, CHUNK, pu, pv, &row, &col0);
    const size_t n_cand = chunk_candidates(lc, count, pu, pv, qu, qv, cand, mark);
    memset(wsum, 0, sizeof(double) * CHUNK);
    memset(acc, 0, sizeof(double) * nb * CHUNK);
    const int same_v = t->is_grid && t->cv == 0.0;
    for (size_t e = 0; e < n_cand; ++e) {
        const patch *pt = &lc->patches[cand[e]];
        size_t sel = 0;
        for (size_t k = 0; k < count; ++k) {
            double w = bump((qu[k] - pt->cx) / pt->hx) * bump((qv[k] - pt->cy) / pt->hy);
            if (w > 0.0) {
                idx[sel] = k;
                wk[sel] = w;
                lu[sel] = (pu[k] - pt->pcx) / pt->ps;
                lv[sel] = (pv[k] - pt->pcy) / pt->ps;
                ++sel;
            }
        }
        if (!sel)
            continue;
        const size_t m = (sel + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
        for (size_t k = sel; k < m; ++k) {
            lu[k] = lu[sel - 1];
            lv[k] = lv[sel - 1];
        }
        for (size_t b = 0; b < nb; ++b)
            wts[b] = pt->hw[rq->bands[b]];
        tps_kernel_job job = {pt->n, pt->u, pt->v, nb, wts, m, lu, lv, same_v, pacc};
        rq->kernel(&job);
        for (size_t b = 0; b < nb; ++b) {
            const double *a = pt->affine[rq->bands[b]];
            const double *sum = pacc + b * m;
            double *ab = acc + b * CHUNK;
            for (size_t s = 0; s < sel; ++s)
                ab[idx[s]] += wk[s] * (sum[s] + a[0] + a[1] * lu[s] + a[2] * lv[s]);
        }
        for (size_t s = 0; s < sel; ++s)
            wsum[idx[s]] += wk[s];
    }
    for (size_t b = 0; b < nb; ++b) {
        const double *ab = acc + b * CHUNK;
        if (t->is_grid) {
            const tps_output *o = &t->outputs[b];
            char *dst = (char *)o->data + (ptrdiff_t)row * o->line_stride +
                        (ptrdiff_t)col0 * o->pixel_stride;
            for (size_t k = 0; k < count; ++k) {
                /* wsum > 0 inside the box by construction; NaN only for NaN targets. */
                double value = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
                if (o->type == TPS_FLOAT32) {
                    float f = (float)value;
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &f, sizeof f);
                } else {
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &value, sizeof value);
                }
            }
        } else {
            double *dst = t->pts_out[b] + col0;
            for (size_t k = 0; k < count; ++k)
                dst[k] = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
        }
    }
}

/* Work items of a local request over t (chunks of CHUNK targets) and the
 * threads worth starting for them. */
static size_t local_items(const tps_targets *t, int num_threads, int *threads)
{
    size_t n_items;
    double targets;
    if (t->is_grid) {
        n_items = (t->ncols + CHUNK - 1) / CHUNK * t->nrows;
        targets = (double)t->ncols * (double)t->nrows;
    } else {
        n_items = (t->n_pts + CHUNK - 1) / CHUNK;
        targets = (double)t->n_pts;
    }
    *threads = num_threads < 1 ? 1 : num_threads;
    /* A target costs a few patches of a few hundred points: threads pay
     * from a few hundred targets on. */
    if (targets < 256.0)
        *threads = 1;
    if ((size_t)*threads > n_items)
        *threads = (int)n_items;
    return n_items;
}

/* Per-thread scratch of `doubles` doubles and `pointers` pointers, then
 * the chunk's target indices (CHUNK) and the candidate list and marks
 * (n_patches each), rounded to cache lines. */
static size_t local_scratch_bytes(const struct tps_local *lc, size_t doubles, size_t pointers)
{
    const size_t bytes = sizeof(double) * doubles + sizeof(double *) * pointers +
                         sizeof(size_t) * (CHUNK + lc->n_patches) + lc->n_patches + 64;
    return (bytes + 63) / 64 * 64;
}

tps_status tps_local_evaluate(tps_context *ctx, const tps_model *md, tps_kernel_fn kernel,
                              size_t n_bands, const size_t *bands, const tps_targets *t,
                              int num_threads)
{
    const struct tps_local *lc = md->local;
    local_request rq = {md, lc, kernel, n_bands, bands, t, NULL, 0};
    int threads;
    const size_t n_items = local_items(t, num_threads, &threads);
    if (n_items == 0)
        return TPS_OK;
    rq.scratch_bytes = local_scratch_bytes(lc, CHUNK * (8 + 2 * n_bands), n_bands);
    rq.scratch = calloc((size_t)threads, rq.scratch_bytes);
    if (!rq.scratch)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for evaluation buffers");
    tps_parallel_for(n_items, threads, run_local_chunk, &rq);
    free(rq.scratch);
    return TPS_OK;
}

/* ---- derivative quantities ---- */

/* The bump b(t) = (1 - t^2)^3 and its t-derivatives b'(t) = -6t (1 - t^2)^2,
 * b''(t) = 6 (1 - t^2)(5t^2 - 1); all 0 for |t| >= 1, where b vanishes
 * with both (it is C2). b[0] is bump(t) bit for bit. */
static void bump_derivatives(double t, double b[3])
{
    const double s = 1.0 - t * t;
    if (s > 0.0) {
        b[0] = s * s * s;
        b[1] = -6.0 * t * s * s;
        b[2] = 6.0 * s * (5.0 * t * t - 1.0);
    } else {
        b[0] = b[1] = b[2] = 0.0;
    }
}

typedef struct local_deriv_request {
    const tps_model *md;
    const struct tps_local *lc;
    const tps_targets *t;
    size_t n_outputs;
    const size_t *first; /* tps_outputs_first_of_band */
    char *scratch;
    size_t scratch_bytes;
} local_deriv_request;

/* Planes of CHUNK doubles a derivative chunk uses besides 4 per output:
 * pu, pv, qu, qv; per selected target lu, lv, w, wu, wv, wl; the sums
 * S, Su, Sv, Sl; a patch spline's val, gu, gv, lap. */
#define DERIV_PLANES 18

/* With S = sum_p w_p and N = sum_p w_p f_p (f_p the patch spline, w_p its
 * bump weight at the clamped target), f = N / S and
 *   grad f = (grad N - f grad S) / S,
 *   lap f  = (lap N - 2 grad f . grad S - f lap S) / S,
 *   grad N = sum_p (grad w_p f_p + w_p grad f_p),
 *   lap N  = sum_p (lap w_p f_p + 2 grad w_p . grad f_p + w_p lap f_p),
 * in the model's scaled units (u, v). A patch spline's derivatives come
 * from its own frame (l = (u - pc) / ps: one 1/ps per derivative); a
 * weight's from b', b'' and 1/h per derivative, and are 0 along an axis
 * on which the target lies outside the points' box (the weights are taken
 * at the clamped target there: constant along that axis). */
static void run_local_deriv_chunk(size_t item, int thread, void *user)
{
    local_deriv_request *rq = user;
    const struct tps_local *lc = rq->lc;
    const tps_targets *t = rq->t;
    double *pu = (double *)(rq->scratch + rq->scratch_bytes * (size_t)thread);
    double *pv = pu + CHUNK, *qu = pv + CHUNK, *qv = qu + CHUNK;
    double *lu = qv + CHUNK, *lv = lu + CHUNK, *w = lv + CHUNK, *wu = w + CHUNK,
           *wv = wu + CHUNK, *wl = wv + CHUNK;
    double *S = wl + CHUNK, *Su = S + CHUNK, *Sv = Su + CHUNK, *Sl = Sv + CHUNK;
    double *val = Sl + CHUNK, *gu = val + CHUNK, *gv = gu + CHUNK, *lap = gv + CHUNK;
    double *acc = lap + CHUNK; /* output b: N, Nu, Nv, Nl at acc + 4 CHUNK b */
    size_t *idx = (size_t *)(acc + 4 * CHUNK * rq->n_outputs);
    size_t *cand = idx + CHUNK;
    unsigned char *mark = (unsigned char *)(cand + lc->n_patches);

    size_t row, col0;
    const size_t count = tps_targets_chunk(t, item, CHUNK, pu, pv, &row, &col0);
    const size_t n_cand = chunk_candidates(lc, count, pu, pv, qu, qv, cand, mark);
    memset(S, 0, sizeof(double) * 4 * CHUNK);
    memset(acc, 0, sizeof(double) * 4 * CHUNK * rq->n_outputs);
    for (size_t e = 0; e < n_cand; ++e) {
        const patch *pt = &lc->patches[cand[e]];
        size_t sel = 0;
        for (size_t k = 0; k < count; ++k) {
            double bu[3], bv[3];
            bump_derivatives((qu[k] - pt->cx) / pt->hx, bu);
            bump_derivatives((qv[k] - pt->cy) / pt->hy, bv);
            const double wk = bu[0] * bv[0];
            if (!(wk > 0.0))
                continue;
            /* Inside the box (edges included) along an axis, or clamped. */
            const int free_u = pu[k] >= lc->bu0 && pu[k] <= lc->bu1;
            const int free_v = pv[k] >= lc->bv0 && pv[k] <= lc->bv1;
            idx[sel] = k;
            w[sel] = wk;
            wu[sel] = free_u ? bu[1] / pt->hx * bv[0] : 0.0;
            wv[sel] = free_v ? bu[0] * bv[1] / pt->hy : 0.0;
            wl[sel] = (free_u ? bu[2] / (pt->hx * pt->hx) * bv[0] : 0.0) +
                      (free_v ? bu[0] * bv[2] / (pt->hy * pt->hy) : 0.0);
            lu[sel] = (pu[k] - pt->pcx) / pt->ps;
            lv[sel] = (pv[k] - pt->pcy) / pt->ps;
            ++sel;
        }
        for (size_t s = 0; s < sel; ++s) {
            const size_t k = idx[s];
            S[k] += w[s];
            Su[k] += wu[s];
            Sv[k] += wv[s];
            Sl[k] += wl[s];
        }
        for (size_t b = 0; sel && b < rq->n_outputs; ++b) {
            if (rq->first[b] != b)
                continue;
            const size_t band = t->outputs[b].band;
            tps_spline_sums(pt->n, pt->u, pt->v, pt->hw[band], sel, lu, lv, val, gu, gv, lap);
            const double *a = pt->affine[band];
            const double inv = 1.0 / pt->ps;
            double *N = acc + 4 * CHUNK * b, *Nu = N + CHUNK, *Nv = Nu + CHUNK,
                   *Nl = Nv + CHUNK;
            for (size_t s = 0; s < sel; ++s) {
                const size_t k = idx[s];
                const double f = val[s] + a[0] + a[1] * lu[s] + a[2] * lv[s];
                const double fu = (gu[s] + a[1]) * inv, fv = (gv[s] + a[2]) * inv;
                const double fl = lap[s] * inv * inv;
                N[k] += w[s] * f;
                Nu[k] += wu[s] * f + w[s] * fu;
                Nv[k] += wv[s] * f + w[s] * fv;
                Nl[k] += wl[s] * f + 2.0 * (wu[s] * fu + wv[s] * fv) + w[s] * fl;
            }
        }
    }
    static const double no_affine[3] = {0.0, 0.0, 0.0};
    for (size_t b = 0; b < rq->n_outputs; ++b) {
        const tps_output *o = &t->outputs[b];
        const double *N = acc + 4 * CHUNK * rq->first[b], *Nu = N + CHUNK, *Nv = Nu + CHUNK,
                     *Nl = Nv + CHUNK;
        for (size_t k = 0; k < count; ++k) {
            double q = NAN; /* S > 0 inside the box by construction; 0 for NaN targets */
            if (S[k] > 0.0) {
                const double f = N[k] / S[k];
                const double fu = (Nu[k] - f * Su[k]) / S[k], fv = (Nv[k] - f * Sv[k]) / S[k];
                const double fl = (Nl[k] - 2.0 * (fu * Su[k] + fv * Sv[k]) - f * Sl[k]) / S[k];
                q = tps_deriv_quantity(o->quantity, fu, fv, fl, no_affine, rq->md->scale);
            }
            tps_output_store(o, row, col0 + k, q);
        }
    }
}

tps_status tps_local_evaluate_deriv(tps_context *ctx, const tps_model *md, const tps_targets *t,
                                    size_t n_outputs, int num_threads)
{
    const struct tps_local *lc = md->local;
    int threads;
    const size_t n_items = local_items(t, num_threads, &threads);
    if (n_items == 0 || n_outputs == 0)
        return TPS_OK;
    local_deriv_request rq = {md, lc, t, n_outputs, NULL, NULL, 0};
    rq.scratch_bytes = local_scratch_bytes(lc, CHUNK * (DERIV_PLANES + 4 * n_outputs), 0);
    rq.scratch = calloc((size_t)threads, rq.scratch_bytes);
    size_t *first = malloc(sizeof(size_t) * n_outputs);
    if (!rq.scratch || !first) {
        free(rq.scratch);
        free(first);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                             "out of memory for derivative evaluation buffers");
    }
    tps_outputs_first_of_band(t->outputs, n_outputs, first);
    rq.first = first;
    tps_parallel_for(n_items, threads, run_local_deriv_chunk, &rq);
    free(rq.scratch);
    free(first);
    return TPS_OK;
}

/* ---- the GPU path ---- */

double tps_local_pairs(const struct tps_local *lc, double pixels)
{
    /* A pixel blends the patches over it: ~overlap^2 of them (each holding
     * its share of points); the average patch size is a fair proxy. */
    return pixels * 2.0 * lc->mean_patch_points;
}

struct tps_gpu_local *tps_local_upload(const struct tps_local *lc, size_t max_bytes, char *err,
                                       size_t errlen)
{
    tps_gpu_patch *gp = calloc(lc->n_patches ? lc->n_patches : 1, sizeof *gp);
    if (!gp) {
        snprintf(err, errlen, "out of host memory");
        return NULL;
    }
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        gp[p] = (tps_gpu_patch){pt->cx, pt->cy, pt->hx, pt->hy, pt->pcx, pt->pcy, pt->ps, pt->n,
                                pt->u, pt->v, (const double *const *)pt->hw,
                                (const double(*)[3])pt->affine};
    }
    const tps_gpu_lookup lookup = {lc->bu0, lc->bv0, lc->bu1, lc->bv1, lc->gx, lc->gy,
                                   lc->gdu, lc->gdv, lc->cell_start, lc->cell_patch};
    struct tps_gpu_local *gpu =
        tps_gpu_local_create(lc->n_patches, gp, lc->n_bands, &lookup, max_bytes, err, errlen);
    free(gp);
    return gpu;
}

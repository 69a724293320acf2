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
 * The patches' points and solves: local_patches.c (local_build.h has what
 * the two share); patches sized from GCV's lambda: local_size.c.
 * Evaluation: cpu_local.c (values), cpu_local_deriv.c (other quantities),
 * gpu_eval.c (on the GPU); the patch lookup: local_lookup.c; saved models:
 * local_io.c. */
#include "blend.h"
#include "gpu_backend.h"
#include "internal.h"
#include "local.h"
#include "local_build.h"
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
/* Patch growth per step while it lacks points. */
#define GROW 1.5
/* Smallest eigenvalue ratio of a patch's point covariance: below, the
 * points are (nearly) on a line and the patch's plane is undetermined. */
#define COLLINEAR_RATIO 1e-6



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
    size_t stack[4 * TPS_LOCAL_MAX_DEPTH + 8];
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
        if (nd.end - nd.begin <= patch_points || nd.depth >= TPS_LOCAL_MAX_DEPTH)
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
            if (nd.child || nd.depth >= TPS_LOCAL_MAX_DEPTH)
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
    tps_local_query(bd, pt->cx, pt->cy, pt->hx, pt->hy, count_point, &cv);
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
    bd.work = tps_local_work_create();
    if (!bd.work) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch solves");
        goto done;
    }
    if (threads > 1)
        tps_blas_single_begin();
    sizing sz = {&bd, options, threads, try_gpu};
    const tps_size_build sb = {&sz, view_nodes, repartition};
    if (any_cv)
        st = tps_local_gcv_passes(ctx, md, lc, tps_local_gather_patch_points, &bd, &sb, merged, merged_w,
                                  options, try_gpu, gcv_budget, smoothing, &bd.S, &bd.loo_sum,
                                  &patch_points, &overlap);
    /* The covariates' sums follow the final partition (GCV may have made
     * the patches again, larger). */
    if (st == TPS_OK && md->n_cov) {
        bd.cov = tps_local_cov_create(md, lc, tps_local_gather_patch_points, &bd, any_cv);
        if (!bd.cov)
            st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                               "out of memory for the covariates' sums");
    }
    if (st == TPS_OK) {
        tps_progress_stage("solving %zu patches", lc->n_patches);
        tps_local_solve_patches(&bd, threads, try_gpu, options->gpu_max_memory);
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

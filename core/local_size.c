/* local_size.c: the patch sizes a LOCAL model's GCV asks for (docs/design.md,
 * "Patch sizes for GCV").
 *
 * A smoothing spline is worse near the edge of its data, over about its
 * smoothing length h = (lambda / rho)^(1/4) (second order, 2-D; rho points
 * per unit area, lambda and rho in the same units, so lambda rho does not
 * depend on them). A cell's points take their value from patches whose
 * edges are at least (overlap - 1) / 2 cell sides away, so the blend is
 * as good as the global spline when that margin is a few h:
 *     (overlap - 1) / 2 * L >= KAPPA h,   L = sqrt(cell area),
 * i.e. in points, with rho the cell's own density n / A,
 *     n >= need(overlap) = (2 KAPPA / (overlap - 1))^2 sqrt(lambda rho).
 * KAPPA from docs/benchmarks.md (Franke, 30 % noise, N = 4,000-20,000: cells
 * of 3 h with Overlap 2 met the 5 % target, 1.8 h did not). Being in points
 * and the cell's own density, it asks for more points per cell where the
 * data are dense, as a clustered set needs.
 *
 * A larger PatchPoints T keeps a quadtree's nodes of at most T points
 * whole, so the partitions it would give are read off the tree already
 * built (a node of n <= T points is a leaf): no rebuild to compare them.
 * Their cost is estimated from the leaves' densities: a patch of n_p points
 * costs ~n_p^3 (its eigendecomposition). When no GCV pass on larger cells
 * fits the cap, the solve alone may still take them: ~8x cheaper per
 * patch than a GCV pass, at the last pass's lambda. */
#include "local_size.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The margin, in smoothing lengths. */
#define KAPPA 1.5
/* The share of the points whose cells must be large enough. */
#define QUANTILE 0.9
/* A re-partition must fall short by this factor less than the partition it
 * replaces: a GCV pass costs as much as the model's whole search. */
#define MATERIAL 1.25
/* When the cheapest partition that is large enough has Overlap 1.75, the
 * same cells with Overlap 2 are taken if they cost at most this factor more
 * (~2.1x: (2 / 1.75)^6, less at the box's edges): closer to the global
 * GCV in the measurements (docs/benchmarks.md), and GCV's lambda on the
 * larger partition is usually larger again (the smaller patches' lambda is
 * biased low). */
#define COST_SLACK 2.5
/* A walk's stack over the quadtree (local.h's depth bound). */
#define STACK (4 * TPS_LOCAL_MAX_DEPTH + 8)

typedef struct leaf_ratio {
    double ratio;
    size_t n;
} leaf_ratio;

static int by_ratio(const void *a, const void *b)
{
    const double x = ((const leaf_ratio *)a)->ratio, y = ((const leaf_ratio *)b)->ratio;
    return x < y ? -1 : x > y;
}

static double need_factor(double overlap)
{
    const double f = 2.0 * KAPPA / (overlap - 1.0);
    return f * f;
}

/* The leaves of the partition of threshold t (whole: the tree's own leaves)
 * into lr (n_nodes slots); returns how many hold points. *work: the
 * estimated sum of n_p^3 at `overlap` (box: NULL, not wanted). */
static size_t leaves(const tps_size_node *nodes, size_t t, int whole, double lambda_s,
                     double overlap, const double *box, leaf_ratio *lr, double *work)
{
    size_t stack[STACK], top = 0, count = 0;
    const double need = need_factor(overlap);
    double w = 0.0;
    stack[top++] = 0;
    while (top) {
        const tps_size_node *nd = &nodes[stack[--top]];
        if (nd->child && !(!whole && nd->n <= t)) {
            for (size_t q = 0; q < 4 && top < STACK; ++q)
                stack[top++] = nd->child + q;
            continue;
        }
        if (nd->n == 0)
            continue;
        const double du = nd->u1 - nd->u0, dv = nd->v1 - nd->v0;
        const double area = du * dv, rho = (double)nd->n / area;
        lr[count++] = (leaf_ratio){need * sqrt(lambda_s * rho) / (double)nd->n, nd->n};
        if (box) {
            const double cu = 0.5 * (nd->u0 + nd->u1), cv = 0.5 * (nd->v0 + nd->v1);
            const double hu = 0.5 * overlap * du, hv = 0.5 * overlap * dv;
            const double pu = fmin(cu + hu, box[2]) - fmax(cu - hu, box[0]);
            const double pv = fmin(cv + hv, box[3]) - fmax(cv - hv, box[1]);
            const double np = fmax((double)nd->n, rho * pu * pv);
            w += np * np * np;
        }
    }
    if (work)
        *work = w;
    return count;
}

/* The points' QUANTILE of the leaves' ratios. */
static double quantile(leaf_ratio *lr, size_t count)
{
    if (count == 0)
        return 0.0;
    qsort(lr, count, sizeof *lr, by_ratio);
    double total = 0.0, seen = 0.0;
    for (size_t k = 0; k < count; ++k)
        total += (double)lr[k].n;
    for (size_t k = 0; k < count; ++k) {
        seen += (double)lr[k].n;
        if (seen >= QUANTILE * total)
            return lr[k].ratio;
    }
    return lr[count - 1].ratio;
}

double tps_local_size_shortfall(const tps_size_node *nodes, size_t n_nodes, double lambda_s,
                                size_t patch_points, double overlap)
{
    leaf_ratio *lr = malloc(sizeof *lr * (n_nodes ? n_nodes : 1));
    if (!lr)
        return NAN;
    const double s = quantile(lr, leaves(nodes, patch_points, 1, lambda_s, overlap, NULL, lr,
                                         NULL));
    free(lr);
    return s;
}

static int by_size(const void *a, const void *b)
{
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* The partition to take from (patch_points, overlap), which falls short
 * by `now`: of the candidates whose work is at most work_left, the cheapest
 * one that does not fall short (its cells with Overlap 2 within
 * COST_SLACK), else, unless large_only, the least short. best->patch_points
 * 0: none (also when out of memory: the sizing is never needed). */
static void choose(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                   double lambda_s, size_t patch_points, double overlap, double work_left,
                   int large_only, tps_size_plan *best)
{
    *best = (tps_size_plan){0, 0.0, INFINITY, INFINITY};
    /* The thresholds that change the partition: the internal nodes' sizes. */
    size_t *sizes = malloc(sizeof(size_t) * (n_nodes + 1));
    leaf_ratio *lr = malloc(sizeof *lr * (n_nodes ? n_nodes : 1));
    tps_size_plan *plans = malloc(sizeof *plans * 2 * (n_nodes + 1));
    if (!sizes || !lr || !plans) {
        free(sizes);
        free(lr);
        free(plans);
        return;
    }
    size_t n_sizes = 0;
    sizes[n_sizes++] = patch_points;
    for (size_t k = 0; k < n_nodes; ++k)
        if (nodes[k].child && nodes[k].n > patch_points)
            sizes[n_sizes++] = nodes[k].n;
    qsort(sizes, n_sizes, sizeof(size_t), by_size);
    static const double overlaps[] = {2.0, 1.75};
    /* The candidates within work_left (at most two per size). */
    size_t n_plans = 0;
    double cheapest = INFINITY; /* the work of the cheapest that does not fall short */
    for (size_t k = 0; k < n_sizes; ++k) {
        if (k && sizes[k] == sizes[k - 1])
            continue;
        int any_within = 0;
        for (size_t j = 0; j < sizeof overlaps / sizeof overlaps[0]; ++j) {
            const double o = overlaps[j];
            if (sizes[k] == patch_points && o <= overlap) {
                any_within = 1; /* the partition already built: larger cells may follow */
                continue;
            }
            double work;
            const size_t count = leaves(nodes, sizes[k], sizes[k] == patch_points, lambda_s, o,
                                        box, lr, &work);
            if (work > work_left)
                continue;
            any_within = 1;
            const double s = quantile(lr, count);
            plans[n_plans++] = (tps_size_plan){sizes[k], o, s, work};
            if (s <= 1.0)
                cheapest = fmin(cheapest, work);
        }
        if (!any_within) /* larger cells only cost more */
            break;
    }
    for (size_t k = 0; k < n_plans; ++k)
        if (isfinite(cheapest) ? plans[k].shortfall <= 1.0 && plans[k].work == cheapest
                               : !large_only && plans[k].shortfall < best->shortfall)
            *best = plans[k];
    for (size_t k = 0; isfinite(cheapest) && k < n_plans; ++k)
        if (plans[k].patch_points == best->patch_points && plans[k].overlap > best->overlap &&
            plans[k].work <= COST_SLACK * cheapest)
            *best = plans[k];
    free(plans);
    free(sizes);
    free(lr);
}

/* The smoothing length as a share of the box's longer side, for the log. */
static double h_share(const tps_size_node *nodes, const double box[4], double lambda_s)
{
    const double h = pow(lambda_s * (box[2] - box[0]) * (box[3] - box[1]) / (double)nodes[0].n,
                         0.25);
    return h / fmax(box[2] - box[0], box[3] - box[1]);
}

/* The next partition for a GCV pass (final 0) or for the final solve at
 * the chosen lambda (final 1): what tps_local_size_next and _final share. */
static int decide(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                  double lambda_s, size_t patch_points, double overlap, double work_left,
                  int final, tps_size_plan *next, char *why, size_t why_size)
{
    const double h = h_share(nodes, box, lambda_s);
    const double now = tps_local_size_shortfall(nodes, n_nodes, lambda_s, patch_points, overlap);
    if (!(now > 1.0)) {
        snprintf(why, why_size, "the cells are large enough for smoothing length %.3g of the "
                 "box (shortfall %.3g)%s", h, now, final ? ": solved on them" : "");
        return 0;
    }
    tps_size_plan best;
    choose(nodes, n_nodes, box, lambda_s, patch_points, overlap, work_left, final, &best);
    if (best.patch_points == 0 || now < MATERIAL * best.shortfall) {
        if (final)
            snprintf(why, why_size, "the cells fall short by %.3g for smoothing length %.3g of "
                     "the box, and no partition large enough is within the final solve's share "
                     "(%.3g n^3): solved on them", now, h, work_left);
        else
            snprintf(why, why_size, "the cells fall short by %.3g for smoothing length %.3g of "
                     "the box, but no partition within the work cap (%.3g n^3 left) falls short "
                     "by less than %.3g", now, h, work_left, now / MATERIAL);
        return 0;
    }
    *next = best;
    snprintf(why, why_size, "the cells fall short by %.3g for smoothing length %.3g of the box: "
             "%s with cells of up to %zu points and Overlap %g (shortfall %.3g, estimated work "
             "%.3g n^3)", now, h, final ? "solved at this smoothing" : "re-partitioned",
             best.patch_points, best.overlap, best.shortfall, best.work);
    return 1;
}

int tps_local_size_next(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                        double lambda_s, size_t patch_points, double overlap, double work_left,
                        tps_size_plan *next, char *why, size_t why_size)
{
    return decide(nodes, n_nodes, box, lambda_s, patch_points, overlap, work_left, 0, next, why,
                  why_size);
}

int tps_local_size_final(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                         double lambda_s, size_t patch_points, double overlap, double work_left,
                         tps_size_plan *next, char *why, size_t why_size)
{
    return decide(nodes, n_nodes, box, lambda_s, patch_points, overlap, work_left, 1, next, why,
                  why_size);
}

tps_status tps_local_gcv_passes(tps_context *ctx, tps_model *md, struct tps_local *lc,
                                tps_patch_points_fn points, void *user,
                                const tps_size_build *sb, double *const *merged,
                                double *const *merged_w, const tps_fit_options *options,
                                int try_gpu, size_t budget, double *smoothing, double **S,
                                double ***loo_sum, size_t *patch_points, double *overlap)
{
    double spent = 0.0; /* the passes' work so far, sum of n_p^3 */
    for (int pass = 1;; ++pass) {
        lc->gcv_pass = pass;
        tps_status st = tps_local_cv_start(ctx, md, lc, points, user, merged, merged_w, options,
                                           try_gpu, budget, smoothing, S, loo_sum);
        double lambda = 0.0; /* sized for the largest */
        for (size_t b = 0; b < md->n_bands; ++b)
            if (md->band_info[b].smoothing_gcv)
                lambda = fmax(lambda, md->band_info[b].smoothing);
        if (st != TPS_OK || !md->size_patches || !(lambda > 0.0))
            return st;
        for (size_t p = 0; p < lc->n_patches; ++p) {
            const double np = (double)lc->patches[p].n;
            spent += np * np * np;
        }
        const size_t n_nodes = sb->nodes(sb->user, NULL);
        tps_size_node *view = malloc(sizeof *view * n_nodes);
        if (!view)
            return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        sb->nodes(sb->user, view);
        const double box[4] = {lc->bu0, lc->bv0, lc->bu1, lc->bv1};
        const double lambda_s = lambda / (md->scale * md->scale);
        tps_size_plan plan;
        char why[400], why_final[400] = "";
        int again = 0, final = 0;
        if (pass < TPS_LOCAL_SIZE_PASSES)
            again = tps_local_size_next(view, n_nodes, box, lambda_s, *patch_points, *overlap,
                                        TPS_LOCAL_SIZE_WORK_CAP - spent, &plan, why,
                                        sizeof why);
        else
            snprintf(why, sizeof why, "the last GCV pass");
        /* No GCV pass more: the solve alone may still take larger cells, at
         * this lambda, for about the search's time at most. */
        if (!again && tps_local_size_shortfall(view, n_nodes, lambda_s, *patch_points,
                                               *overlap) > 1.0)
            final = tps_local_size_final(view, n_nodes, box, lambda_s, *patch_points, *overlap,
                                         TPS_LOCAL_SIZE_SOLVE_RATIO *
                                             fmin(spent, TPS_LOCAL_SIZE_WORK_CAP),
                                         &plan, why_final, sizeof why_final);
        free(view);
        tps_log(ctx, TPS_LOG_DEBUG, "GCV pass %d (smoothing %.6g, %zu patches, cells of up to "
                "%zu points, overlap %.3g): %s%s%s", pass, lambda, lc->n_patches, *patch_points,
                *overlap, why, *why_final ? "; " : "", why_final);
        if (!again && !final)
            return TPS_OK;
        const size_t last_points = *patch_points;
        const double last_overlap = *overlap;
        *patch_points = plan.patch_points;
        *overlap = plan.overlap;
        st = sb->rebuild(sb->user, ctx, *patch_points, *overlap, &budget);
        if (st == TPS_ERR_MEMORY_LIMIT) {
            /* Larger cells are the sizing's option, never the model's
             * failure: the last pass's partition fitted the limit (its
             * blend and sums still hold: the same settings, the same
             * partition), and is solved. */
            tps_log(ctx, TPS_LOG_DEBUG, "cells of up to %zu points with overlap %.3g pass the "
                    "memory limit: solved on the last pass's partition", *patch_points,
                    *overlap);
            tps_clear_error(ctx);
            *patch_points = last_points;
            *overlap = last_overlap;
            return sb->rebuild(sb->user, ctx, *patch_points, *overlap, &budget);
        }
        if (st != TPS_OK)
            return st;
        if (again) { /* the next pass's blend and sums are of the new partition */
            free(*S);
            *S = NULL;
            for (size_t b = 0; *loo_sum && b < md->n_bands; ++b)
                free((*loo_sum)[b]);
            free(*loo_sum);
            *loo_sum = NULL;
            continue;
        }
        /* The solve's blend is of the new partition; its leave-one-out sums
         * (formed by the solves) start from zero. */
        for (size_t b = 0; *loo_sum && b < md->n_bands; ++b)
            if ((*loo_sum)[b])
                memset((*loo_sum)[b], 0, sizeof(double) * md->n);
        return tps_local_point_blend(ctx, md, lc, points, user, *S, NULL, 0);
    }
}

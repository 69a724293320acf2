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
 * costs ~n_p^3 (its eigendecomposition). */
#include "local_size.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The margin, in smoothing lengths. */
#define KAPPA 1.5
/* The share of the points whose cells must be large enough. */
#define QUANTILE 0.9
/* A re-partition must fall short by this factor less than the partition it
 * replaces: a GCV pass costs as much as the model's whole search. */
#define MATERIAL 1.25
/* Among the partitions that are large enough, those costing up to this
 * factor more than the cheapest are candidates too (the least short wins). */
#define COST_SLACK 1.5
/* Quadtree depth bound of local_build.c (MAX_DEPTH = 48): a walk's stack. */
#define STACK (4 * 48 + 8)

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

int tps_local_size_next(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                        double lambda_s, size_t patch_points, double overlap, double work_left,
                        tps_size_plan *next, char *why, size_t why_size)
{
    const double h_scaled = pow(lambda_s * (box[2] - box[0]) * (box[3] - box[1]) /
                                    (double)nodes[0].n, 0.25);
    const double now = tps_local_size_shortfall(nodes, n_nodes, lambda_s, patch_points, overlap);
    if (!(now > 1.0)) {
        snprintf(why, why_size, "the cells are large enough for smoothing length %.3g of the "
                 "box (shortfall %.3g)", h_scaled / fmax(box[2] - box[0], box[3] - box[1]), now);
        return 0;
    }
    /* The thresholds that change the partition: the internal nodes' sizes. */
    size_t *sizes = malloc(sizeof(size_t) * (n_nodes + 1));
    leaf_ratio *lr = malloc(sizeof *lr * (n_nodes ? n_nodes : 1));
    if (!sizes || !lr) {
        free(sizes);
        free(lr);
        snprintf(why, why_size, "out of memory for the sizing rule");
        return 0;
    }
    size_t n_sizes = 0;
    sizes[n_sizes++] = patch_points;
    for (size_t k = 0; k < n_nodes; ++k)
        if (nodes[k].child && nodes[k].n > patch_points)
            sizes[n_sizes++] = nodes[k].n;
    qsort(sizes, n_sizes, sizeof(size_t), by_size);
    static const double overlaps[] = {2.0, 1.75};
    /* The candidates within the cap (sizes[] is free once read: plans[]
     * gets its own slots, at most two per size). */
    tps_size_plan *plans = malloc(sizeof *plans * 2 * n_sizes);
    size_t n_plans = 0;
    double cheapest = INFINITY; /* the work of the cheapest that does not fall short */
    for (size_t k = 0; plans && k < n_sizes; ++k) {
        if (k && sizes[k] == sizes[k - 1])
            continue;
        int any_within = 0;
        for (size_t j = 0; j < sizeof overlaps / sizeof overlaps[0]; ++j) {
            const double o = overlaps[j];
            if (sizes[k] == patch_points && o <= overlap)
                continue; /* the partition already built */
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
    /* The least short of those within COST_SLACK of the cheapest that does
     * not fall short (or of all, when each does): the cells' sizes come in
     * steps of the points' random counts, and GCV's lambda on the larger
     * partition is usually larger again, so a step more at little extra
     * cost is worth it. */
    tps_size_plan best = {0, 0.0, INFINITY, INFINITY};
    for (size_t k = 0; k < n_plans; ++k)
        if (plans[k].work <= COST_SLACK * cheapest &&
            (plans[k].shortfall < best.shortfall ||
             (plans[k].shortfall == best.shortfall && plans[k].work < best.work)))
            best = plans[k];
    free(plans);
    free(sizes);
    free(lr);
    if (best.patch_points == 0 || now < MATERIAL * best.shortfall) {
        snprintf(why, why_size, "the cells fall short by %.3g for smoothing length %.3g of the "
                 "box, but no partition within the work cap (%.3g of %.3g n^3 left) falls "
                 "short by less than %.3g", now,
                 h_scaled / fmax(box[2] - box[0], box[3] - box[1]), work_left,
                 (double)TPS_LOCAL_SIZE_WORK_CAP, now / MATERIAL);
        return 0;
    }
    *next = best;
    snprintf(why, why_size, "the cells fall short by %.3g for smoothing length %.3g of the box: "
             "re-partitioned with cells of up to %zu points and Overlap %g (shortfall %.3g, "
             "estimated work %.3g n^3)", now, h_scaled / fmax(box[2] - box[0], box[3] - box[1]),
             best.patch_points, best.overlap, best.shortfall, best.work);
    return 1;
}

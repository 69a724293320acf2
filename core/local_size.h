/* local_size.h: the patch sizes a LOCAL model's GCV asks for (local_size.c;
 * docs/design.md, "Patch sizes for GCV"). */
#ifndef TPS_LOCAL_SIZE_H
#define TPS_LOCAL_SIZE_H

#include "local.h"

#include <stddef.h>

/* GCV passes at most: the first on the partition given, two re-partitioned. */
#define TPS_LOCAL_SIZE_PASSES 3
/* The GCV passes together may cost at most this sum of n_p^3 over their
 * patches (each patch's eigendecomposition ~n_p^3): a re-partition over it
 * is not made. */
#define TPS_LOCAL_SIZE_WORK_CAP 5e11
/* A patch's eigendecomposition (GCV) costs about this many times its
 * fixed-lambda solve (Cholesky factorisation and inverse; measured, docs/
 * benchmarks.md): the final solve's larger cells may cost this times the
 * passes' work (at most the cap's) in sum of n_p^3, about the search's
 * time again. */
#define TPS_LOCAL_SIZE_SOLVE_RATIO 8.0

/* A quadtree node as the rule sees it: its cell (the model's scaled units),
 * its points, its first child (0: a leaf of the partition built). */
typedef struct tps_size_node {
    double u0, v0, u1, v1;
    size_t n, child;
} tps_size_node;

/* A partition the rule asks for: cells split while they hold more than
 * patch_points points, patches of `overlap`. shortfall: the points' 90th
 * percentile of (points a cell needs) / (points it holds), <= 1 when the
 * cells are large enough; work: the sum of n_p^3 over its patches (their
 * eigendecompositions' cost), estimated from the cells' densities. */
typedef struct tps_size_plan {
    size_t patch_points;
    double overlap, shortfall, work;
} tps_size_plan;

/* How far the partition built with (patch_points, overlap) (nodes[0] the
 * root, over the box bu0..bv1) falls short for a spline of smoothing
 * lambda_s (scaled units): the plan's shortfall at these settings. */
double tps_local_size_shortfall(const tps_size_node *nodes, size_t n_nodes, double lambda_s,
                                size_t patch_points, double overlap);

/* Whether to re-partition: 1 and *next when the partition falls short and
 * one of larger cells or overlap, whose estimated work is at most
 * work_left, falls materially less short (the cheapest one that does not
 * fall short at all, else the least short); 0 otherwise. why: a line for
 * the debug log, either way. */
int tps_local_size_next(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                        double lambda_s, size_t patch_points, double overlap, double work_left,
                        tps_size_plan *next, char *why, size_t why_size);

/* After the last GCV pass: 1 and *next when the partition falls short for
 * lambda_s and one whose cells are large enough (the cheapest, Overlap 2 on
 * its cells as in tps_local_size_next), of estimated work at most
 * work_left, falls materially less short: the solve (at lambda_s, no GCV)
 * takes it. 0 otherwise; why as above. */
int tps_local_size_final(const tps_size_node *nodes, size_t n_nodes, const double box[4],
                         double lambda_s, size_t patch_points, double overlap, double work_left,
                         tps_size_plan *next, char *why, size_t why_size);

/* What the passes need of the build (local_build.c): the quadtree's nodes
 * (into view when not NULL; returns their count) and a rebuild of the
 * partition with other settings (*gcv_budget: what GCV may then take). */
typedef struct tps_size_build {
    void *user;
    size_t (*nodes)(void *user, tps_size_node *view);
    tps_status (*rebuild)(void *user, tps_context *ctx, size_t patch_points, double overlap,
                          size_t *gcv_budget);
} tps_size_build;

/* tps_local_cv_start (local.h, same arguments up to loo_sum) and, when the
 * model sizes its patches (md->size_patches) and a GCV band's lambda asks
 * for larger cells, rebuilds and GCV again (at most TPS_LOCAL_SIZE_PASSES
 * passes and TPS_LOCAL_SIZE_WORK_CAP of work); after the last pass, when
 * its cells still fall short, rebuilds once more for the solve alone
 * (tps_local_size_final; *S for the new partition, *loo_sum zeroed);
 * *patch_points and *overlap are the settings of the partition left
 * built. */
tps_status tps_local_gcv_passes(tps_context *ctx, tps_model *md, struct tps_local *lc,
                                tps_patch_points_fn points, void *user,
                                const tps_size_build *sb, double *const *merged,
                                double *const *merged_w, const tps_fit_options *options,
                                int try_gpu, size_t budget, double *smoothing, double **S,
                                double ***loo_sum, size_t *patch_points, double *overlap);

#endif

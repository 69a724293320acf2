/* local.h: what the files of LOCAL models share: the patches and the lookup
 * (local.c has the method). */
#ifndef TPS_LOCAL_H
#define TPS_LOCAL_H

#include "internal.h"

/* Targets per evaluation work item (a multiple of the kernel tile). */
#define CHUNK 1024
/* The patch lookup grid has at most this many cells a side. */
#define MAX_GRID 1024

typedef struct patch {
    double cx, cy, hx, hy; /* support: |u - cx| < hx, |v - cy| < hy (model's scaled units) */
    double pcx, pcy, ps;   /* the patch spline's frame: l = (u - pcx) / ps */
    size_t n;              /* points in the patch's spline */
    size_t *index;         /* their model indices (during the build only) */
    double *u, *v;         /* their coordinates in the patch frame */
    double **hw;           /* n_bands arrays of half-weights (0: missing in that band) */
    double (*affine)[3];
} patch;

struct tps_local {
    size_t n_patches, n_bands;
    patch *patches;
    double bu0, bv0, bu1, bv1; /* the points' bounding box, scaled */
    /* The patch lookup: a gx x gy grid over the box; cell c lists the patches
     * cell_patch[cell_start[c] .. cell_start[c + 1]) whose support meets it. */
    size_t gx, gy;
    double gdu, gdv;
    size_t *cell_start, *cell_patch;
    double mean_patch_points; /* for tps_local_pairs, set with the lookup */
};

/* The points' bounding box in scaled units; build and load alike. */
void local_box(struct tps_local *lc, const tps_model *md);
/* The lookup grid over the box: about one cell per patch. */
void lookup_grid(struct tps_local *lc);
/* The lookup cells a patch's support meets: columns i0..i1, rows j0..j1. */
void patch_cells(const struct tps_local *lc, const patch *pt, size_t *i0, size_t *i1, size_t *j0,
                 size_t *j1);
size_t grid_cell(double x, double x0, double d, size_t n);
tps_status build_lookup(tps_context *ctx, struct tps_local *lc);
/* The patches whose support may meet a chunk of `count` targets (local_lookup.c). */
size_t chunk_candidates(const struct tps_local *lc, size_t count, const double *pu,
                        const double *pv, double *qu, double *qv, size_t *cand,
                        unsigned char *mark);
/* Work items of a local request and the threads worth starting (local_eval.c). */
size_t local_items(const tps_targets *t, int num_threads, int *threads);
/* Per-thread scratch bytes of a local request (local_eval.c). */
size_t local_scratch_bytes(const struct tps_local *lc, size_t doubles, size_t pointers);

#endif

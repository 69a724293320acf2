/* local.h: what the files of LOCAL models share: the patches and the lookup
 * (local_build.c has the method). */
#ifndef TPS_LOCAL_H
#define TPS_LOCAL_H

#include "internal.h"

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
    double mean_patch_points; /* for tps_local_pairs_per_pixel, set with the lookup */
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

/* ---- evaluation (local_lookup.c; the CPU backend: cpu_local.c,
 * cpu_local_deriv.c) ---- */
/* A target costs a few patches of a few hundred points: threads pay from a
 * few hundred targets on. */
#define LOCAL_MIN_TARGETS_FOR_THREADS 256.0
/* A chunk's candidate patches: cand (n_patches), the selected targets' idx
 * (TPS_CHUNK), mark (n_patches bytes, all 0 between calls). */
typedef struct tps_local_chunk {
    size_t *idx, *cand;
    unsigned char *mark;
} tps_local_chunk;
/* Bytes of a tps_local_chunk's arrays, and the chunk laid out at mem (in
 * zeroed per-thread scratch, 8-byte aligned). */
size_t tps_local_chunk_bytes(const struct tps_local *lc);
tps_local_chunk tps_local_chunk_at(const struct tps_local *lc, void *mem);
/* The patches whose support may meet a chunk of `count` targets (pu, pv):
 * fills qu, qv with the targets clamped into the points' box (where the
 * weights are taken: extrapolation blends the patches nearest the box
 * edge) and ch->cand with the patches listed in the lookup cells under the
 * clamped targets' bounding box, in patch order, so that every target sums
 * its patches in the same order whatever chunk it is in. NaN coordinates
 * give no patches (and NaN results). Returns how many patches. */
size_t tps_local_candidates(const struct tps_local *lc, size_t count, const double *pu,
                            const double *pv, double *qu, double *qv, const tps_local_chunk *ch);

#endif

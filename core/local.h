/* local.h: what the files of LOCAL models share: the patches and the lookup
 * (local_build.c has the method). */
#ifndef TPS_LOCAL_H
#define TPS_LOCAL_H

#include "blend.h"
#include "internal.h"

#include <stdint.h>

/* A LOCAL model's quadtree stops splitting at this depth (points are
 * distinct, so cells separate them long before). */
#define TPS_LOCAL_MAX_DEPTH 48

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

/* Patch pt's partition-of-unity weight before normalisation at (u, v)
 * (scaled units): the C2 bump of each axis over its support. */
static inline double tps_patch_bump(const patch *pt, double u, double v)
{
    return tps_bump((u - pt->cx) / pt->hx) * tps_bump((v - pt->cy) / pt->hy);
}

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
    int gcv_pass; /* the build's GCV pass (local_build.c, cv_passes): from 1 */
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

/* ---- cross-validation (local_cv.c) ---- */
/* Patch p's points: fills index with its pt->n model point indices, in a
 * fixed order (the build's tree order). */
typedef void (*tps_patch_points_fn)(void *user, size_t p, size_t *index);
/* S[i] = sum_p w_p(x_i) at every model point (the blend's denominator),
 * and, unless cover is NULL, how many patches have w_p(x_i) > 0 (any
 * patch that holds the point, with cover_all). */
tps_status tps_local_point_blend(tps_context *ctx, const tps_model *md,
                                 const struct tps_local *lc, tps_patch_points_fn points,
                                 void *user, double *S, uint32_t *cover, int cover_all);
/* GCV's choice of one lambda for a band of a local model whose patches
 * are sized and framed (cx .. ps, n) but not yet solved. */
typedef struct tps_local_gcv_args {
    const tps_model *md;        /* the scaled points, scale */
    const struct tps_local *lc; /* the patches */
    tps_patch_points_fn points;
    void *user;
    const double *S;            /* tps_local_point_blend's */
    const uint32_t *cover;
    const double *z;            /* the band's values at the model's points, NaN: missing */
    const double *weights;      /* NULL, or the points' weights in this band */
    int threads, try_gpu;
    size_t gpu_max_bytes, max_memory; /* 0: no limit */
    const char *what;
} tps_local_gcv_args;
typedef struct tps_local_gcv_stats {
    double grid_lo, grid_hi;  /* the lambda grid searched (user units) */
    size_t grid_points, chosen;
    size_t live_peak;         /* most points whose sums were held at once */
    size_t gpu_patches;       /* patches whose eigendecomposition ran on the GPU */
    /* The largest eigenvalue of the first wave's patches' smoothers (user
     * units): above it every such patch is more than half its plane. */
    double plane_lambda;
} tps_local_gcv_stats;
/* res->lambda in the user's units; stats may be NULL. */
tps_status tps_local_gcv_select(tps_context *ctx, const tps_local_gcv_args *a,
                                tps_gcv_result *res, tps_local_gcv_stats *stats);
/* Bytes the selection holds besides its live points' sums (each 2 x
 * the grid's size doubles, checked as they grow). */
size_t tps_local_gcv_bytes(const struct tps_local *lc, size_t n_points, size_t n_cov,
                           int threads, int gpu);
/* Before a local model's solves (local_build.c), when a band has GCV or
 * cross_validation: *S (n doubles) the blend's denominator at the points,
 * *loo_sum (n_bands pointers) n zeros for each band of a fixed lambda with
 * cross_validation, else NULL; each GCV band's lambda chosen, stored in
 * its band_info and smoothing[b]. The caller frees *S and *loo_sum. */
tps_status tps_local_cv_start(tps_context *ctx, tps_model *md, const struct tps_local *lc,
                              tps_patch_points_fn points, void *user, double *const *merged,
                              double *const *merged_w, const tps_fit_options *options,
                              int try_gpu, size_t budget, double *smoothing, double **S,
                              double ***loo_sum);
/* After the solves: each LOO band's RMSE and MAE from its blended sums. */
void tps_local_cv_finish(tps_model *md, double *const *merged, double *const *loo_sum);

/* ---- linear covariates (local_cov.c) ---- */
/* One coefficient per covariate and band, estimated from the patches'
 * solves of each covariate's column (docs/design.md). */
typedef struct tps_local_cov tps_local_cov;
/* Before the patches: each band's fixed part [1 u v c_1 ..] over all its
 * points has full rank (the global model's test; names the covariate). */
tps_status tps_local_cov_check(tps_context *ctx, const tps_model *md, double *const *merged,
                               const char *const *names);
/* GCV with covariates (local_cv.c's pass; the method in local_cov.c):
 * patch p's extra per-point values at the L lambdas, from its basis U (n x
 * m), S (m x L: lambda / (e + lambda)), dc (n_cov columns of D c_k,
 * stride ldc) and blend weights W_p: at contrib + j width + 2 L, n_cov x L
 * values W_p D r_p(c_k), then n_cov x L values D E_p(W_p c_k). 0: out of
 * memory. */
int tps_local_cov_gcv_patch(size_t n, size_t m, size_t L, size_t nc, const double *basis,
                            const double *smat, const double *dc, size_t ldc,
                            const double *blend, size_t width, double *contrib);
/* Reductions per lambda held for the score. */
size_t tps_local_cov_gcv_width(size_t nc);
/* A point's completed sums folded into sums (L x width): rz its blended
 * D r(z) (L), rc its D r(c_k) (nc x L), t its D t_k (nc x L), dc D c_k. */
void tps_local_cov_gcv_fold(size_t nc, size_t L, const double *rz, const double *rc,
                            const double *t, const double *dc, double *sums);
/* At one lambda: rss and trace (the covariate-free sums on entry) become
 * the model's with b(lambda) = G^-1 h; 0 when G is singular there. */
int tps_local_cov_gcv_score(size_t nc, const double *sums, double *rss, double *trace);
/* Bytes the covariates add to a build of n_entries patch entries. */
size_t tps_local_cov_bytes(const tps_model *md, size_t n_entries, size_t n_patches);
/* For the patches of lc (their points: `points`); NULL: out of memory.
 * loo: leave-one-out's sums too. */
tps_local_cov *tps_local_cov_create(const tps_model *md, const struct tps_local *lc,
                                    tps_patch_points_fn points, void *user, int loo);
/* A group's covariate right-hand sides at its m points (model indices
 * index[sub[k]]): out[k] = c_k, out[n_cov + k] = W_p c_k (leave-one-out's
 * R^T c; solved always, so that a model does not depend on whether
 * cross-validation was asked for, to the last bit). */
void tps_local_cov_columns(const tps_local_cov *lcv, const patch *pt, size_t m,
                           const size_t *index, const size_t *sub, double *const *out);
tps_local_cov *tps_local_cov_destroy(tps_local_cov *lcv);
/* Patch p's solve of one group of bands (serially, in patch order): ng
 * bands, its m points (model indices idx, positions sub in the patch), w
 * and a: the ng bands' weights and affine parts, then tps_local_cov_columns'
 * (leave-one-out, for the bands whose loo_sum is not NULL: loo_diag the
 * patch's (M^-1)_ii). 0: out of memory. */
int tps_local_cov_add(tps_local_cov *lcv, const tps_model *md, const patch *pt, size_t p,
                      size_t ng, const size_t *bands, size_t m, const size_t *idx,
                      const size_t *sub, double *const *w, const double (*a)[3],
                      const double *loo_diag, double *const *loo_sum);
/* After every patch: each band's coefficients into md->cov_coef, each
 * patch's weights and affine parts made those of z - C b, and each
 * loo_sum band's blended leave-one-out residuals (add_loo's, of z) made
 * those of the model with covariates. */
tps_status tps_local_cov_finish(tps_context *ctx, tps_local_cov *lcv, tps_model *md,
                                struct tps_local *lc, const char *const *names, int threads,
                                double *const *loo_sum);

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

/* local_build.h: what the two halves of a LOCAL model's construction share
 * (private to core/): local_build.c makes the partition (the quadtree and
 * the patches' supports) and drives the build; local_patches.c solves the
 * patches in waves. */
#ifndef TPS_LOCAL_BUILD_H
#define TPS_LOCAL_BUILD_H

#include "internal.h"
#include "local.h"

#include <pthread.h>

/* Patches per wave: the systems solved together (on the GPU, one batched
 * factorisation call per size class), a bound on the memory they hold, and
 * the steps of the progress report: about n_patches / 32, within these. */
#define WAVE_PATCHES 512
#define WAVE_PATCHES_MIN 16

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

/* Calls visit(i, user) for every point i inside the box (cx, cy) +- (hx,
 * hy), in the quadtree's order. */
typedef void (*visit_fn)(size_t i, void *user);
void tps_local_query(const build *bd, double cx, double cy, double hx, double hy, visit_fn visit,
                     void *user);
/* Keeps the error of the lowest patch index (thread-safe). */
void tps_local_record_error(build *bd, size_t p, const tps_error *err);
/* The model indices of patch p's points (a tps_patch_points_fn). */
void tps_local_gather_patch_points(void *user, size_t p, size_t *index);
/* A wave's work records (free() them). NULL: out of memory. */
struct patch_work *tps_local_work_create(void);
/* Phase 2: every patch solved, by waves (local_patches.c); errors in bd->err. */
void tps_local_solve_patches(build *bd, int threads, int try_gpu, size_t gpu_max_bytes);

#endif

/* internal.h: what the engine's files share and the public API hides. */
#ifndef TPS_INTERNAL_H
#define TPS_INTERNAL_H

#include "tps.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tps_gpu_model;
struct tps_local;

struct tps_context {
    tps_status status;
    char message[1024];
    tps_log_fn log_fn;
    void *log_user;
};

/* The model works in centred, scaled coordinates u = (x - cx) / scale,
 * v = (y - cy) / scale, with the points' bounding box mapped into [-1, 1]:
 * the kernel matrix is then well scaled and the results do not depend on
 * where the user's CRS puts its origin. */
struct tps_model {
    size_t n;        /* distinct points */
    double cx, cy, scale;
    double *u, *v;   /* n scaled coordinates */
    size_t n_bands;
    /* Band b's kernel weights, halved: the kernel evaluates r^2 log(r^2),
     * which is twice phi(r) = r^2 log r. Zero for points missing in band b. */
    double **half_weights;
    double (*affine)[3]; /* band b: a0 + a1 u + a2 v */
    tps_band_info *band_info;
    tps_model_info info;
    /* LOCAL models (local.c): the patches. NULL for a global model, whose
     * surface is half_weights and affine (which a local model leaves zero). */
    struct tps_local *local;
    /* The device copy, made on the first GPU evaluation and shared by every
     * thread and handle that evaluates this model; freed with it. */
    pthread_mutex_t gpu_lock;
    struct tps_gpu_model *gpu;
    size_t gpu_uploads;
    int gpu_lock_ready;
};

/* ---- the GPU path (evaluate_gpu.c) ---- */
/* Below this many point-pixel pairs AUTO evaluates on the CPU: the GPU's
 * fixed costs (launch, transfer, synchronisation; ~0.1 ms) would dominate. */
#define TPS_GPU_MIN_PAIRS 2e7
tps_status tps_evaluate_grid_gpu(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                                 size_t n_outputs, const tps_output *outputs,
                                 tps_precision precision, size_t max_bytes);

/* ---- errors and messages (context.c) ---- */
tps_status tps_set_error(tps_context *ctx, tps_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tps_clear_error(tps_context *ctx);
void tps_log(tps_context *ctx, tps_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
double tps_now_seconds(void);

/* ---- the dense solve (solve.c) ---- */
/* Bytes the dense solve of n points needs at its peak. */
size_t tps_solve_bytes(size_t n, size_t n_rhs);
/* Solve (K + lambda I) w + P a = z, P^T w = 0 for n_rhs right-hand sides
 * over the n points (u, v), in scaled coordinates. w[r] (n values) and
 * a[r] (3 values) receive the solution of z[r]. With try_gpu the O(N^3)
 * part runs on the GPU when it can (*used_gpu says whether it did); else,
 * or when the GPU cannot, on the CPU. `what` names the bands for messages. */
tps_status tps_solve_dense(tps_context *ctx, size_t n, const double *u, const double *v,
                           double lambda, size_t n_rhs, const double *const *z, double **w,
                           double (*a)[3], int num_threads, int try_gpu, size_t gpu_max_bytes,
                           int *used_gpu, const char *what);
/* Automatic smoothing (GCV) for one right-hand side z over the n points
 * (u, v), scaled coordinates: one eigendecomposition of Q2^T K Q2, then
 * O(N) per trial lambda (docs/design.md). On the CPU. */
typedef struct tps_gcv_result {
    double lambda;       /* chosen, in scaled units */
    double score;        /* GCV(lambda) */
    double effective_df; /* tr A(lambda) */
    double loo_rmse, loo_mae;
} tps_gcv_result;
size_t tps_gcv_bytes(size_t n);
tps_status tps_gcv_select(tps_context *ctx, size_t n, const double *u, const double *v,
                          const double *z, int num_threads, tps_gcv_result *res, const char *what);
/* DEVICE=AUTO solves on the GPU from this many points: below, the CPU's
 * solve takes well under a second and the GPU's set-up (cuSOLVER handle,
 * transfers) would not pay. */
#define TPS_GPU_SOLVE_MIN_POINTS 3000

/* ---- parallel loops (parallel.c) ---- */
/* Calls body(item, thread, user) for item in [0, n_items) on up to
 * n_threads threads (the caller's thread is one of them). Items are taken
 * from a shared counter, so uneven items balance. Returns 0, or -1 if no
 * thread could be started at all (then nothing ran). */
typedef void (*tps_parallel_body)(size_t item, int thread, void *user);
int tps_parallel_for(size_t n_items, int n_threads, tps_parallel_body body, void *user);

/* ---- the evaluation kernel (eval_kernel.c, compiled once per ISA) ---- */
/* Pixels are handled in tiles of this many; callers pad target arrays to a
 * multiple of it. */
#define TPS_KERNEL_TILE 32
/* Points are visited in blocks of this many so that a block's coordinates
 * and weights stay in the L1/L2 cache while all tiles of a row pass over it. */
#define TPS_KERNEL_POINT_BLOCK 2048

typedef struct tps_kernel_job {
    size_t n_src;               /* source points */
    const double *su, *sv;      /* their scaled coordinates */
    size_t n_bands;
    const double *const *w;     /* n_bands arrays of n_src half-weights */
    size_t m;                   /* target points, a multiple of TPS_KERNEL_TILE */
    const double *pu, *pv;      /* their scaled coordinates */
    int same_v;                 /* all targets have v == pv[0] (a north-up grid row) */
    double *acc;                /* out: acc[b * m + k] = sum_i w[b][i] r^2 log r^2 */
} tps_kernel_job;

typedef void (*tps_kernel_fn)(const tps_kernel_job *job);
void tps_kernel_generic(const tps_kernel_job *job);
void tps_kernel_avx2(const tps_kernel_job *job);
void tps_kernel_avx512(const tps_kernel_job *job);

/* ---- local models (local.c) ---- */
/* Builds md->local over md's (scaled) points: the quadtree, the patches and
 * their solves, after checking the estimated peak memory against
 * options->max_memory. merged[b] holds band b's values (NaN: missing). */
tps_status tps_local_build(tps_context *ctx, tps_model *md, double *const *merged,
                           const tps_fit_options *options);
void tps_local_destroy(struct tps_local *local);
/* Saved local models (local.c lays out the local section, model_io.c the
 * rest; docs/design.md). The counts a saved local model's header carries:
 * patches, and patch points (the sum of the patches' sizes); fails when
 * the model is beyond what a load would take. */
tps_status tps_local_save_counts(tps_context *ctx, const struct tps_local *local,
                                 size_t *n_patches, size_t *n_entries);
/* Bytes of the local section for these counts; 0 when they are beyond any
 * model (checked before any arithmetic that could overflow). */
size_t tps_local_saved_bytes(size_t n_patches, size_t n_entries, size_t n_bands);
/* Writes the local section at *cursor and advances it by its size. */
void tps_local_write(const struct tps_local *local, unsigned char **cursor);
/* Reads a local section of these counts (tps_local_saved_bytes of them are
 * at *cursor) into md->local, checking every value; md's counts, centre,
 * scale and info must already be read and checked. Rebuilds the lookup. */
tps_status tps_local_read(tps_context *ctx, tps_model *md, const unsigned char **cursor,
                          size_t n_patches, size_t n_entries);


/* ---- evaluation helpers (evaluate.c) ---- */
/* Where an evaluation reads its targets and writes its values: a window of
 * a grid (scaled coordinates) into strided outputs, or scattered scaled
 * points into double arrays. Shared by the global and the local paths. */
typedef struct tps_targets {
    int is_grid;
    double u0, v0, cu, cv, ru, rv; /* grid origin, column step, row step */
    size_t first_col, first_row, ncols, nrows;
    const tps_output *outputs;
    const double *pts_u, *pts_v;
    size_t n_pts;
    double **pts_out;
} tps_targets;
/* The targets of work item `item` when a request is cut into runs of at
 * most `chunk` targets (a grid row is cut into ceil(ncols / chunk) items):
 * fills pu, pv and returns how many, with *row and *col0 saying where they
 * go. Grid targets come from their absolute cell index in a fixed order,
 * so a cell gets the same coordinates whatever window or chunk it is in. */
size_t tps_targets_chunk(const tps_targets *t, size_t item, size_t chunk, double *pu, double *pv,
                         size_t *row, size_t *col0);
/* A local model's evaluation (local.c). */
tps_status tps_local_evaluate(tps_context *ctx, const tps_model *md, tps_kernel_fn kernel,
                              size_t n_bands, const size_t *bands, const tps_targets *t,
                              int num_threads);
tps_kernel_fn tps_kernel_for(tps_cpu_kernel kernel);
/* Evaluate bands at scattered points given in scaled coordinates. */
tps_status tps_evaluate_scaled(tps_context *ctx, const tps_model *model, size_t n_bands,
                               const size_t *bands, size_t n, const double *u, const double *v,
                               double **out, int num_threads, tps_cpu_kernel kernel);

#ifdef __cplusplus
}
#endif

#endif

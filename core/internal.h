/* internal.h: what the engine's files share and the public API hides. */
#ifndef TPS_INTERNAL_H
#define TPS_INTERNAL_H

#include "error.h"
#include "tps.h"
#include "tps_testing.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tps_gpu_model;
struct tps_local;
struct tps_gpu_local;
struct tps_se_factor;

/* A context: the error carrier of its calls (error.h) and the caller's log
 * function. */
struct tps_context {
    tps_error err;
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
    /* LOCAL GCV: the patches are sized from the chosen lambda (no
     * PatchPoints or Overlap given; local_size.c). */
    int size_patches;
    /* LOCAL models (local.h): the patches. NULL for a global model, whose
     * surface is half_weights and affine (which a local model leaves zero). */
    struct tps_local *local;
    /* The device copy, made on the first GPU evaluation and shared by every
     * thread and handle that evaluates this model; freed with it. */
    pthread_mutex_t gpu_lock;
    struct tps_gpu_model *gpu;
    struct tps_gpu_local *gpu_local; /* the same, for a LOCAL model's patches */
    size_t gpu_uploads;
    int gpu_lock_ready;
    /* Linear covariates (covariates.c): n_cov of them. cov[k] holds their
     * values at the n points in the caller's units (merged as the values
     * are); the solve sees the column (c - cov_mean[k]) / cov_scale[k], and
     * cov_coef[b * n_cov + k] is band b's coefficient of that column. */
    size_t n_cov;
    double **cov;
    double *cov_mean, *cov_scale;
    double *cov_coef;
    /* Per band, for the standard error's factorisation: NULL when every
     * point entered the band's solve with weight 1, else n weights (the
     * merged points' summed weights; 0: missing in that band). */
    double **point_w;
    /* The standard error's factorisations (variance.c), one per band made
     * on first use under se_lock; bands that share a solve share one. */
    pthread_mutex_t se_lock;
    int se_lock_ready;
    struct tps_se_factor **se;
    /* ... a LOCAL model's, per band: every patch's (cpu_local_se.c). */
    struct tps_se_patches **se_patches;
    /* ... their device copies (gpu_se.c), made on first use under gpu_lock. */
    struct tps_gpu_se **gpu_se;
    /* The fit had per-point weights (a local model keeps no point's): 1,
     * 0, or -1 when unknown (a file older than version 4). */
    int weighted;
};

/* What tps_model_create and tps_model_load both make of a model whose
 * n_bands and n_cov are set (model.c): its locks (the device copy and the
 * standard error's factorisations are made on first use, under them) and
 * its per-band and per-covariate arrays, zeroed. 0 when any of it failed
 * (se_lock_ready 0: a mutex); tps_model_destroy frees what was made. */
int tps_model_alloc_parts(tps_model *md);

/* ---- errors and messages (context.c) ---- */
/* A NULL context is allowed everywhere (tps.h): then the status still
 * comes back, the message is dropped. */
static inline tps_error *tps_ctx_error(tps_context *ctx)
{
    return ctx ? &ctx->err : NULL;
}
tps_status tps_set_error(tps_context *ctx, tps_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Hands an error from a carrier to the context; returns its status. */
tps_status tps_raise(tps_context *ctx, const tps_error *err);
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
/* The fixed part's columns beyond [1 u v]: n_cov linear covariates over
 * the system's points, already centred and scaled (model.c), named for
 * messages. NULL or n_cov = 0: none. */
typedef struct tps_fixed_cols {
    size_t n_cov;
    const double *const *cov;
    const char *const *names; /* NULL, or n_cov names */
} tps_fixed_cols;

/* What tps_solve_dense_ex adds; every field may be NULL (0). Each makes
 * the solve run on the CPU. */
typedef struct tps_solve_extra {
    /* n multipliers of lambda on the diagonal: (K + lambda diag(noise)) w,
     * noise_i = 1 / weight_i for per-point weights. */
    const double *noise;
    /* Receives n values (M^-1)_ii, M the saddle matrix: the leave-one-out
     * residual of band r at point i is w[r][i] / loo_diag[i] (Rippa 1999).
     * Costs one dpotri (~2/3 N^3) after the solve. */
    double *loo_diag;
    /* Covariates: the fixed part is [1 u v cov_1 .. cov_n_cov]; cov_coef
     * receives n_cov coefficients per right-hand side (r n_cov + k). */
    size_t n_cov;
    const double *const *cov;
    const char *const *cov_names;
    double *cov_coef;
    /* Nonzero: the GPU or nothing. When the GPU cannot solve, fail with
     * TPS_ERR_DEVICE_UNAVAILABLE instead of solving on the CPU (a caller
     * with a cheaper CPU path of its own). */
    int gpu_only;
} tps_solve_extra;
tps_status tps_solve_dense_ex(tps_context *ctx, size_t n, const double *u, const double *v,
                              double lambda, size_t n_rhs, const double *const *z, double **w,
                              double (*a)[3], int num_threads, int try_gpu, size_t gpu_max_bytes,
                              int *used_gpu, const tps_solve_extra *extra, const char *what);
/* Many independent dense solves (a local model's patches), each as
 * tps_solve_dense_ex with its own points, lambda, optional noise and
 * right-hand sides: preparation and finishing on num_threads threads, the
 * factorisations batched on the GPU (try_gpu; those with noise, or that the
 * GPU cannot take, on the CPU). Every job gets a status (and its message in
 * err); the function returns the lowest-indexed failure. */
typedef struct tps_dense_job {
    size_t n;
    const double *u, *v;
    double lambda;
    const double *noise;    /* NULL, or n multipliers of lambda */
    double *loo_diag;       /* NULL, or receives n values (M^-1)_ii (tps_solve_extra) */
    size_t n_rhs;
    const double *const *z; /* n_rhs arrays of n values */
    double **w;             /* out: n_rhs arrays of n weights */
    double (*a)[3];         /* out: n_rhs affine parts */
    char what[96];
    /* out */
    tps_status status;
    tps_error err;
    int used_gpu;
    /* working storage */
    double *p, *rhs, *cols;
    double tau[3];
} tps_dense_job;
tps_status tps_solve_dense_batch(tps_context *ctx, size_t count, tps_dense_job *jobs,
                                 int num_threads, int try_gpu, size_t gpu_max_bytes);
/* The dense solve's factorisation kept for many right-hand sides (the
 * iterative solve's coarse level): the null-space Cholesky of
 * (K + lambda diag(noise)) over n points (noise NULL: all 1), on the CPU.
 * tps_dense_factor_solve replaces x (n values of data) by the spline's
 * weights w (P^T w = 0; the affine part is not formed); O(n^2) each. */
typedef struct tps_dense_factor tps_dense_factor;
tps_dense_factor *tps_dense_factor_create(tps_context *ctx, size_t n, const double *u,
                                          const double *v, double lambda, const double *noise,
                                          int num_threads, const char *what);
tps_dense_factor *tps_dense_factor_destroy(tps_dense_factor *f);
tps_status tps_dense_factor_solve(const tps_dense_factor *f, double *x, tps_error *err);
/* SOLVER for a group of bands of a global model (model_iterative.c): the
 * request, or AUTO's choice for m points and n_group right-hand sides; and
 * the group's iterative solve into the model (iterations, residuals). */
tps_solver tps_model_choose_solver(const tps_model *md, size_t m, size_t n_group, int want_loo,
                                   const tps_fit_options *options);
tps_status tps_model_solve_iterative(tps_context *ctx, tps_model *md, double *const *merged,
                                     double *const *merged_w, const size_t *group, size_t n_group,
                                     size_t m, const tps_fit_options *options, const char *what);
/* Automatic smoothing (GCV, gcv.c) for one right-hand side z over the n
 * points (u, v), scaled coordinates, and the fixed part's covariates fc
 * (NULL: none): one eigendecomposition of Q2^T K Q2, then
 * O(N) per trial lambda (docs/design.md). On the CPU. */
typedef struct tps_gcv_result {
    double lambda;       /* chosen, in scaled units */
    double score;        /* GCV(lambda) */
    double effective_df; /* tr A(lambda) */
    double loo_rmse, loo_mae;
} tps_gcv_result;
size_t tps_gcv_bytes(size_t n);
/* sqrt_w: NULL, or the square roots of per-point weights: the weighted
 * problem minimises sum w_i r_i^2 + lambda J, and its GCV score is
 * N sum w_i r_i^2 / (N - tr A)^2 (the problem scaled by W^1/2). */
tps_status tps_gcv_select(tps_context *ctx, size_t n, const double *u, const double *v,
                          const tps_fixed_cols *fc, const double *z, const double *sqrt_w,
                          int num_threads, tps_gcv_result *res, const char *what);
/* The smoother of one spline in its eigenbasis, in three steps (gcv.c;
 * docs/design.md, "GCV on local models"): with D = W^1/2 (rows, NULL: I),
 * D P = Q R, B = Q2^T D K D Q2 = V diag(e) V^T, the spline's I - A(lambda)
 * is U diag(lambda / (e + lambda)) U^T, U = Q [0; V], and c = U^T D z.
 *  - prepare: D P = Q R (p, tau: dgeqrf's form; fails on collinear
 *    points, or fewer than 4) and qz = Q^T D z (n values);
 *  - cpu: B in the trailing (n-3) x (n-3) block of mat (n x n, column-major)
 *    and its eigendecomposition in place: e ascending (n - 3 values), V in
 *    mat + 3 n + 3 with leading dimension n; q, y: n values of workspace.
 *    (Or the GPU's, tps_gpu_eigen_batch.)
 *  - finish: from V (leading dimension ldv), c = V^T (Q2^T D z) (n - 3
 *    values) and the basis U (n x (n - 3), column-major). */
tps_status tps_spline_eigen_prepare(tps_error *err, size_t n, const double *u, const double *v,
                                    const double *rows, const double *z, double *p,
                                    double tau[3], double *qz, const char *what);
tps_status tps_spline_eigen_cpu(tps_error *err, size_t n, const double *u, const double *v,
                                const double *rows, const double *p, const double tau[3],
                                double *mat, double *q, double *y, double *e, const char *what);
void tps_spline_eigen_finish(size_t n, const double *p, const double tau[3], const double *qz,
                             const double *vec, size_t ldv, double *c, double *basis);
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
/* OpenBLAS single-threaded between begin and end, for BLAS calls made
 * from tps_parallel_for's workers (OpenBLAS's own threads would compete
 * with them, and its results would depend on its thread count). The
 * setting is process-wide: the first begin saves it, the last end
 * restores it (counted, so overlapping callers restore it once). */
void tps_blas_single_begin(void);
void tps_blas_single_end(void);

/* ---- progress of a long solve (progress.c) ---- */
/* tps_model_create makes its options' progress function current on its own
 * thread for the length of the call; the long loops under it report
 * through tps_progress_stage and tps_progress without passing anything
 * down. On any other thread (the workers of a parallel loop) and with no
 * current function they do nothing, so reports come from the caller's
 * thread only, as tps.h promises, and a loop body may report whichever
 * thread runs it. */
typedef struct tps_progress_state {
    tps_progress_fn fn;
    void *user;
    char stage[256];
    int next_percent; /* the next whole percent worth reporting */
} tps_progress_state;
/* Makes state (filled from options; fn may be NULL) current on this thread
 * and returns what was current before, to give back to tps_progress_end. */
tps_progress_state *tps_progress_begin(tps_progress_state *state, const tps_fit_options *options);
void tps_progress_end(tps_progress_state *previous);
/* Starts a stage: reports its fraction 0. */
void tps_progress_stage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports `fraction` of the current stage when it reached the next whole
 * percent (1 is always reported, once). */
void tps_progress(double fraction);

/* ---- local models (local_build.c, local_io.c) ---- */
/* Builds md->local over md's (scaled) points: the quadtree, the patches and
 * their solves, after checking the estimated peak memory against
 * options->max_memory. merged[b] holds band b's values (NaN: missing),
 * merged_w[b] (merged_w NULL: unweighted) the points' weights in band b. */
tps_status tps_local_build(tps_context *ctx, tps_model *md, double *const *merged,
                           double *const *merged_w, const tps_fit_options *options);
void tps_local_destroy(struct tps_local *local);
/* Saved local models (local_io.c lays out the local section, model_io.c the
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


/* Point-pixel pairs one pixel of a LOCAL model costs (local_lookup.c). */
double tps_local_pairs_per_pixel(const struct tps_local *local);
/* ... of any model: its points (GLOBAL), a few patches' (LOCAL). */
static inline double tps_model_pairs_per_pixel(const tps_model *md)
{
    return md->local ? tps_local_pairs_per_pixel(md->local) : (double)md->n;
}

/* ---- the model's residuals at its points (evaluate.c) ---- */
/* Bands `bands` at n scattered points given in scaled coordinates, on the
 * CPU, into out[b][0 .. n); cov: the model's covariate planes at them
 * (NULL for a model without covariates). */
tps_status tps_evaluate_scaled(tps_context *ctx, const tps_model *model, size_t n_bands,
                               const size_t *bands, size_t n, const double *u, const double *v,
                               const tps_plane *cov, double **out, int num_threads);

/* ---- points ordered by their coordinates (quadtree.c) ---- */
/* A point's coordinates and index, and their order by x, then y, then
 * index (qsort's comparator): what merges duplicate points (model.c) and
 * pairs a local patch's stored points with the model's (cpu_local_se.c). */
typedef struct tps_keyed_point {
    double x, y;
    size_t index;
} tps_keyed_point;
int tps_compare_keyed_point(const void *pa, const void *pb);

/* ---- covariates (covariates.c) ---- */
/* md->cov_mean and cov_scale from md->cov over the model's points;
 * TPS_ERR_COLLINEAR naming a covariate that is constant there. */
tps_status tps_covariates_scale(tps_context *ctx, tps_model *md, const char *const *names);
/* Covariate k's scaled value at the model's point i (what the solves see). */
static inline double tps_covariate_at(const tps_model *md, size_t k, size_t i)
{
    return (md->cov[k][i] - md->cov_mean[k]) / md->cov_scale[k];
}
/* Covariate k's scaled column at the model's points index[0 .. m). */
void tps_covariates_gather(const tps_model *md, size_t k, const size_t *index, size_t m,
                           double *out);
/* The scaled covariates of `count` targets: plane k's elements (col0 + j,
 * row) of a grid window (is_grid) or col0 + j of scattered points, into
 * zs[k * stride + j]. */
void tps_covariates_load(const tps_model *md, const tps_plane *planes, int is_grid, size_t row,
                         size_t col0, size_t count, double *zs, size_t stride);
/* The covariate derivative planes (TPS_COV_D*, tps.h) that sums of
 * `needs` (TPS_NEEDS_*) read: bit d set for plane d. */
unsigned tps_covariates_deriv_planes(unsigned needs);
/* Band b's covariate term of the derivatives at window cell (row, col),
 * in the caller's units: fu, fv, lap, fuu, fuv, fvv (as `needs` asks) =
 * sum_k b_k times covariate k's derivative planes (planes[k *
 * TPS_COV_DERIVATIVES + d]), b_k as tps_model_get_covariate_coefficients
 * gives them; NaN where a plane read is not finite; f and var 0. */
struct tps_derivs;
void tps_covariates_derivs(const tps_model *md, size_t band, const tps_plane *planes,
                           unsigned needs, size_t row, size_t col, struct tps_derivs *d);
/* Band b's covariate term sum_k coef_k zs_k at target j. */
static inline double tps_covariates_term(const tps_model *md, size_t band, const double *zs,
                                         size_t stride, size_t j)
{
    double t = 0.0;
    for (size_t k = 0; k < md->n_cov; ++k)
        t += md->cov_coef[band * md->n_cov + k] * zs[k * stride + j];
    return t;
}

#ifdef __cplusplus
}
#endif

#endif

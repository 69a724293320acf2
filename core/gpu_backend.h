/* gpu_backend.h: what the engine asks of the GPU backend (gpu/).
 * Plain C across the boundary; every function reports failure in the error
 * carrier *err (core/error.h) and returns its status (TPS_OK, else mostly
 * TPS_ERR_DEVICE_UNAVAILABLE), never by exiting. Builds without CUDA link
 * core/gpu_none.c instead, which says so. */
#ifndef TPS_GPU_BACKEND_H
#define TPS_GPU_BACKEND_H

#include "error.h"
#include "grid.h"
#include "mixed.h"
#include "tps.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tps_gpu_model tps_gpu_model;

/* TPS_OK when a GPU can be used; probed once per process. */
tps_status tps_gpu_probe(tps_error *err);
/* "NVIDIA H100 80GB HBM3, 79.1 GiB" or "". */
const char *tps_gpu_name(void);

/* Upload the invariant data of a model: scaled point coordinates, each
 * band's half-weights and affine part in FP64, each band's data range (the
 * unit of MIXED's tolerance) and MIXED's layout of the points (mixed.h,
 * built by the caller). max_bytes: GPU memory this may allocate, 0 for no
 * limit. */
tps_gpu_model *tps_gpu_model_create(size_t n, const double *u, const double *v, size_t n_bands,
                                    const double *const *half_weights, const double (*affine)[3],
                                    const double *band_range, const tps_mixed_layout *mixed,
                                    size_t max_bytes, tps_error *err);
void tps_gpu_model_destroy(tps_gpu_model *model);

/* MIXED's guard (docs/design.md, "PRECISION=MIXED"): a block whose error
 * bound exceeds tolerance x the band's range (<= 0: TPS_DEFAULT_TOLERANCE),
 * or whose self-check fails, is recomputed in DOUBLE; stats (may be NULL)
 * is added to. force_every > 0, a test hook: the blocks with (bx + by) %
 * force_every == 0 (bx, by: the grid's 32 x 16 block indices) fall back. */
typedef struct tps_gpu_guard {
    double tolerance;
    size_t force_every;
    tps_eval_stats *stats;
} tps_gpu_guard;

/* Evaluate outputs[k].band for every k into the caller's strided buffers;
 * guard: MIXED's (NULL: the defaults), unused in DOUBLE. */
tps_status tps_gpu_evaluate_grid(tps_gpu_model *model, const tps_window *grid, size_t n_outputs,
                                 const tps_output *outputs, tps_precision precision,
                                 const tps_gpu_guard *guard, size_t max_bytes, tps_error *err);

/* LOCAL models (core/local.h): the patches, their points and weights in
 * one device copy, and on the host the patch lookup grid that lists, for
 * each cell of a gx x gy grid over the points' box, the patches whose
 * support meets it (cell_patch[cell_start[c] .. cell_start[c + 1])). */
typedef struct tps_gpu_local tps_gpu_local;
typedef struct tps_gpu_patch {
    double cx, cy, hx, hy; /* support: |u - cx| < hx, |v - cy| < hy */
    double pcx, pcy, ps;   /* frame: l = (u - pcx) / ps */
    size_t n;
    const double *u, *v;       /* n coordinates in the patch frame */
    const double *const *hw;   /* n_bands arrays of n half-weights */
    const double (*affine)[3]; /* n_bands */
} tps_gpu_patch;
typedef struct tps_gpu_lookup {
    double bu0, bv0, bu1, bv1; /* the points' box; weights are taken clamped into it */
    size_t gx, gy;
    double gdu, gdv;
    const size_t *cell_start, *cell_patch;
} tps_gpu_lookup;
tps_gpu_local *tps_gpu_local_create(size_t n_patches, const tps_gpu_patch *patches, size_t n_bands,
                                    const tps_gpu_lookup *lookup, size_t max_bytes, tps_error *err);
void tps_gpu_local_destroy(tps_gpu_local *local);
/* As tps_gpu_evaluate_grid, in FP64 (the blend of a few hundred points per
 * pixel; MIXED's speed matters for dense global sums). */
tps_status tps_gpu_local_evaluate_grid(tps_gpu_local *local, const tps_window *grid,
                                       size_t n_outputs, const tps_output *outputs,
                                       size_t max_bytes, tps_error *err);

/* The sums `needs` asks for (core/sums.h) of model band `band` over a grid
 * window, in FP64 and the model's scaled units, affine part left out, as
 * core/spline_sums.c computes them on the CPU: sums receives
 * tps_needs_planes(needs) planes of ncols x nrows doubles, row-major, in
 * the order of tps_derivs's fields. The engine forms the quantities
 * (gpu/global_deriv.cu). */
tps_status tps_gpu_deriv_sums(tps_gpu_model *model, const tps_window *grid, size_t band,
                              unsigned needs, double *sums, size_t max_bytes, tps_error *err);

/* As tps_gpu_deriv_sums for a LOCAL model: the blend's f and derivatives
 * (core/blend.h), affine parts included, as core/cpu_local_deriv.c
 * computes them on the CPU (gpu/local_deriv.cu). */
tps_status tps_gpu_local_deriv_sums(tps_gpu_local *local, const tps_window *grid, size_t band,
                                    unsigned needs, double *sums, size_t max_bytes, tps_error *err);

/* The dense solve's O(N^3) part (core/solve.c has the method): forms
 * K + lambda I on the device, applies the three reflectors of P's QR
 * (dgeqrf's output `reflectors`, N x 3, and `tau`), factors the trailing
 * block with cuSOLVER's dpotrf and solves: rhs (N x n_rhs, column-major,
 * holding Q^T z) gets g in its rows 3..N-1; first_columns (3 N) receives
 * the first three columns of Q^T (K + lambda I) Q. Failures:
 * TPS_ERR_SINGULAR (not positive definite: degenerate input, as on the
 * CPU), TPS_ERR_DEVICE_UNAVAILABLE (no GPU, no cuSOLVER, too little memory,
 * a CUDA or cuSOLVER error: solve it on the CPU). */
tps_status tps_gpu_solve_available(tps_error *err);
tps_status tps_gpu_factor_solve(size_t n, const double *u, const double *v, double lambda,
                                const double *reflectors, const double tau[3], size_t n_rhs,
                                double *rhs, double *first_columns, size_t max_bytes,
                                tps_error *err);

/* Many small systems at once (a local model's patches), each as
 * tps_gpu_factor_solve: in, n points, lambda, the reflectors and tau of P's
 * QR and rhs = Q^T z (n x n_rhs); out, g in rows 3.. of rhs and the first
 * three columns of Q^T (K + lambda I) Q, when status is TPS_OK.
 * status: TPS_OK; TPS_ERR_SINGULAR (degenerate: an error, as on the CPU);
 * TPS_ERR_DEVICE_UNAVAILABLE: not solved, solve it on the CPU. Systems are
 * grouped by size into chunks that fit the GPU's free memory (and
 * max_bytes), padded to the chunk's largest with the identity, and factored
 * by cuSOLVER's batched Cholesky. Returns TPS_OK when every chunk ran, else
 * the first failure (in *err). */
typedef struct tps_gpu_system {
    size_t n;
    const double *u, *v;
    double lambda;
    const double *reflectors; /* n x 3, dgeqrf's compact form */
    double tau[3];
    size_t n_rhs;
    double *rhs;           /* n x n_rhs */
    double *first_columns; /* 3 n */
    tps_status status;
} tps_gpu_system;
tps_status tps_gpu_factor_solve_batch(size_t count, tps_gpu_system *systems, size_t max_bytes,
                                      tps_error *err);

/* Products with the kernel matrix for the iterative solve (gpu/matvec.cu):
 * the n points (scaled coordinates) stay on the device; each call uploads
 * n half-weights h and gives out[k] = sum_j h_j s log s, s = |x_t - x_j|^2,
 * at the targets t = idx[k] (idx NULL: t = k, m = n), in FP64 with the
 * evaluation kernel's table log, points tiled through shared memory. */
typedef struct tps_gpu_matvec tps_gpu_matvec;
tps_gpu_matvec *tps_gpu_matvec_create(size_t n, const double *u, const double *v,
                                      size_t max_bytes, tps_error *err);
void tps_gpu_matvec_destroy(tps_gpu_matvec *mv);
tps_status tps_gpu_matvec_apply(tps_gpu_matvec *mv, const double *h, size_t m,
                                const size_t *idx, double *out, tps_error *err);
/* The standard error (core/variance.h) on the device: a band's
 * factorisation, uploaded once, then for a window k(x, x) - v^T S^-1 v at
 * every cell (gpu/se.cu). Per block of cells: the kernel matrix (n columns,
 * FP64), Q applied in its compact WY form and the fixed part's rows in one
 * DGEMM, then (L^-1 y) by DGEMMs over column blocks of L^-1 (cuBLAS, FP64:
 * tensor cores on Hopper) and the row sums of squares.
 *   v: n x m reflectors, explicit (unit diagonal, zeros above);
 *   f: 2m x n, [T V^T; 0 | M21^T] (T the WY factor of the reflectors);
 *   r: m x m, R (upper); m11: m x m, Q1^T M Q1 (full);
 *   linv: the (n-m) x (n-m) lower triangle of L^-1 at leading dimension ld.
 * zs: m - 3 planes of the window's scaled covariates (row-major, ncols
 * wide; NaN gives NaN), NULL when m = 3; out: ncols x nrows doubles. */
typedef struct tps_gpu_se tps_gpu_se;
tps_gpu_se *tps_gpu_se_create(size_t n, size_t m, const double *u, const double *v,
                              const double *vr, const double *f, const double *r,
                              const double *m11, const double *linv, size_t ld,
                              size_t max_bytes, tps_error *err);
void tps_gpu_se_destroy(tps_gpu_se *se);
tps_status tps_gpu_se_variance(tps_gpu_se *se, const tps_window *grid, const double *zs,
                               double *out, size_t max_bytes, tps_error *err);
/* The standard error in tiles of low rank on the device (core/se_tile.h's
 * tiles, docs/design.md "Tiles in low rank"; gpu/se_tiles.cu): a tile's
 * far points' kernel at its TPS_GPU_SE_NODES^2 Chebyshev nodes, all of
 * them (no compression), and its guards' kernel columns, multiplied by Q^T
 * and L^-1 on the device for a group of TPS_GPU_SE_GROUP^2 tiles at once
 * (a group aligned on the grid's absolute tile indices, always at the same
 * shape: a cell's bytes depend on its tile only); then per tile the
 * matrix W = [Z(:, near) | [Q1^T K_far; L^-1 Q2^T K_far] | [0; L^-1 M21]]
 * (Z = [Q1^T; L^-1 Q2^T], made once) times the cells' vectors [m; -h], one
 * DGEMM per TPS_GPU_SE_CHUNK cells, and the columns' sums of squares.
 * The constants are se_tile.h's (gpu_se_tiles.c asserts it). */
#define TPS_GPU_SE_TILE 64
#define TPS_GPU_SE_NODES 12
#define TPS_GPU_SE_GUARDS 6
#define TPS_GPU_SE_MAX_COLS 1024
#define TPS_GPU_SE_GROUP 4
#define TPS_GPU_SE_CHUNK 1024 /* cells per product: 16 rows of a tile */
/* One tile of a group, slot s = (its tile row in the group) *
 * TPS_GPU_SE_GROUP + its tile column. */
typedef struct tps_gpu_se_tile {
    int active;          /* 0: not computed (outside the window, too dense, refused) */
    int n_near;          /* its near points: near[near_at .. near_at + n_near) */
    int n_guards;
    int pad;
    size_t c0, r0;       /* its first absolute column and row */
    size_t near_at;
    double nu[TPS_GPU_SE_NODES * TPS_GPU_SE_NODES]; /* the nodes (scaled): a + Q b */
    double nv[TPS_GPU_SE_NODES * TPS_GPU_SE_NODES];
    double gu[TPS_GPU_SE_GUARDS], gv[TPS_GPU_SE_GUARDS]; /* the guard targets */
    double gh[TPS_GPU_SE_GUARDS * (3 + TPS_MAX_COVARIATES)]; /* their h, m each at g * (3 + ..) */
    double gl[TPS_GPU_SE_GUARDS * 2 * TPS_GPU_SE_NODES]; /* l(s) then l(t) of guard g at g * 2Q */
} tps_gpu_se_tile;
/* Z and D on the device, and the tiles' buffers (kept with se), once;
 * lag: the interpolation weights l_a(i) at lag[i Q + a] (Q x
 * TPS_GPU_SE_TILE). TPS_ERR_DEVICE_UNAVAILABLE where they do not fit in
 * max_bytes (0: no limit) and half the free memory (the caller then uses
 * the exact blocks), or on any CUDA or cuBLAS failure. */
tps_status tps_gpu_se_tiles_prepare(tps_gpu_se *se, const double *lag, size_t max_bytes,
                                    tps_error *err);
/* One group of tiles of grid w (its geometry only; the cells at absolute
 * indices): tiles, TPS_GPU_SE_GROUP^2 records; near, the active tiles'
 * near points (n_near in all); zs, m - 3 planes of the group's
 * (TPS_GPU_SE_GROUP TPS_GPU_SE_TILE)^2 cells' scaled covariates, row-major
 * (0 outside the window, NaN gives NaN). out: the group's cells'
 * k(x, x) - v^T S^-1 v, row-major (an active tile's only); guards:
 * per slot and guard, [low rank, exact, the exact formula's scale]. */
tps_status tps_gpu_se_tile_group(tps_gpu_se *se, const tps_window *w,
                                 const tps_gpu_se_tile *tiles, const int *near, size_t n_near,
                                 const double *zs, double *out, double *guards, tps_error *err);
/* For bench/ only: cuBLAS's DGEMM rate (m x k times k x n, FP64), the
 * fastest of `repeats` after a warm-up, in 10^12 flop/s. */
tps_status tps_gpu_time_dgemm(size_t m, size_t n, size_t k, int repeats, double *tflops,
                              tps_error *err);

/* A local model's GCV (core/local_cv.c): the eigendecompositions of many
 * small B = Q2^T D K D Q2 (core/solve.c, tps_spline_eigen_cpu: K of the n
 * points (u, v), D = diag(rows) or I, Q the reflectors and tau of D P's
 * QR) at once. Out, when status is TPS_OK: e (n - 3 eigenvalues,
 * ascending) and vectors ((n - 3) x (n - 3), column-major). Systems are
 * grouped by size into chunks that fit the GPU's free memory (and
 * max_bytes), padded to the chunk's largest with distinct negative
 * eigenvalues that sort first and are dropped, and decomposed by cuSOLVER's
 * syevBatched (gpu/eigen.cu). status TPS_ERR_DEVICE_UNAVAILABLE: not done,
 * do it on the CPU. Returns TPS_OK when every chunk ran, else the first
 * failure (in *err). */
typedef struct tps_gpu_eigen_system {
    size_t n;
    const double *u, *v;
    const double *rows;       /* NULL, or n values D */
    const double *reflectors; /* n x 3, dgeqrf's compact form */
    double tau[3];
    double *e;       /* n - 3 */
    double *vectors; /* (n - 3)^2 */
    tps_status status;
} tps_gpu_eigen_system;
tps_status tps_gpu_eigen_batch(size_t count, tps_gpu_eigen_system *systems, size_t max_bytes,
                               tps_error *err);

/* For bench/ only, CUDA builds only: the kernels alone over `grid` into
 * device memory (Float32 planes of bands 0..n_bands-1); *ms receives the
 * median of `repeats` timings after a warm-up; stats (may be NULL), MIXED's
 * counters of one evaluation (default tolerance). */
tps_status tps_gpu_time_kernel(tps_gpu_model *model, const tps_window *grid, size_t n_bands,
                               tps_precision precision, int repeats, double *ms,
                               tps_eval_stats *stats, tps_error *err);

#ifdef __cplusplus
}
#endif

#endif

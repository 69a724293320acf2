/* iterative.h: the global spline at scale, without an N x N matrix
 * (docs/design.md, "The iterative solve"):
 *   matvec.c     products with the kernel matrix: fast summation (fmm.c) on
 *                the CPU, tiled all-pairs sums on the GPU, or plain direct
 *                sums for small N;
 *   precond.c    the two-level preconditioner: approximate cardinal
 *                functions on overlapping patches of a quadtree plus a
 *                coarse spline;
 *   iterative.c  right-preconditioned GMRES on the null space of P^T. */
#ifndef TPS_ITERATIVE_H
#define TPS_ITERATIVE_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- products with the kernel matrix (matvec.c) ---- */
typedef struct tps_matvec tps_matvec;
/* Where products run: the GPU when try_gpu and one is usable (all-pairs
 * sums in FP64), else the CPU: fast summation to `tol` (fmm.h) from
 * TPS_FMM_MIN_POINTS points on, direct sums below. */
#define TPS_FMM_MIN_POINTS 3000
tps_matvec *tps_matvec_create(tps_error *err, size_t n, const double *u, const double *v,
                              double tol, int threads, int try_gpu, size_t gpu_max_bytes);
void tps_matvec_destroy(tps_matvec *mv);
/* y = K x, K_ij = phi(|x_i - x_j|) = r^2 log r (K_ii = 0). */
tps_status tps_matvec_apply(tps_matvec *mv, const double *x, double *y, tps_error *err);
/* (K x)_i for the m points idx[0 .. m). */
tps_status tps_matvec_at(tps_matvec *mv, const double *x, size_t m, const size_t *idx,
                         double *y, tps_error *err);
/* "GPU", "CPU fast summation (p terms)" or "CPU direct sums". */
const char *tps_matvec_name(const tps_matvec *mv);
int tps_matvec_on_gpu(const tps_matvec *mv);

/* ---- the preconditioner (precond.c) ---- */
typedef struct tps_precond tps_precond;
/* Cells of a quadtree hold up to this many points; each cell's patch is the
 * cell grown by PRECOND_OVERLAP (then more, until it has PRECOND_MIN_PATCH
 * points spanning an area); the coarse spline has n / COARSE_RATIO points,
 * at least TPS_PRECOND_COARSE (at most n / 8), at most COARSE_MAX: a fixed
 * coarse level lets the iterations grow with n (measured: 2,000 coarse
 * points, 10 iterations at 10^5 points, 13 at 3 10^5, 36 at 10^6; 4,000 at
 * 3 10^5: 10). */
#define TPS_PRECOND_CELL 64
#define TPS_PRECOND_COARSE 2000
#define TPS_PRECOND_COARSE_RATIO 75
#define TPS_PRECOND_COARSE_MAX 14000
/* Builds the preconditioner of (K + lambda diag(noise)) over the n points
 * (noise NULL: all 1), solving the patches' systems on num_threads threads
 * or batched on the GPU (gpu_parts & TPS_ITERATIVE_GPU_PATCHES), the coarse
 * level on the GPU with TPS_ITERATIVE_GPU_COARSE. q1 (n x 3, column-major) is an
 * orthonormal basis of the range of P = [1 u v]; noise and q1 are the
 * caller's and must outlive it. */
tps_precond *tps_precond_create(tps_context *ctx, size_t n, const double *u, const double *v,
                                double lambda, const double *noise, const double *q1,
                                int num_threads, unsigned gpu_parts, size_t gpu_max_bytes,
                                const char *what);
void tps_precond_destroy(tps_precond *pc);
/* y = M r: y satisfies P^T y = 0. The coarse level needs products at its
 * points (mv). */
tps_status tps_precond_apply(tps_precond *pc, tps_matvec *mv, const double *r, double *y,
                             tps_error *err);
/* Bytes it keeps (for the memory estimate before it is built). */
size_t tps_precond_bytes(size_t n);
size_t tps_precond_coarse_points(const tps_precond *pc);
int tps_precond_used_gpu(const tps_precond *pc);

/* ---- the solve (iterative.c) ---- */
/* The parts of the solve that may run on the GPU. */
enum {
    TPS_ITERATIVE_GPU_PRODUCTS = 1u, /* all-pairs products (else the CPU's fast summation) */
    TPS_ITERATIVE_GPU_PATCHES = 2u,  /* the preconditioner's patch solves, batched */
    TPS_ITERATIVE_GPU_COARSE = 4u    /* its coarse level */
};
/* Those that a GPU does faster than num_threads CPU threads for n points
 * (rates measured on the GPU host: iterative.c). */
unsigned tps_iterative_gpu_parts(size_t n, int num_threads);

typedef struct tps_iterative_options {
    double tol;       /* relative residual ||[A P; P^T 0][w; a] - [z; 0]|| / ||z|| to reach */
    int max_iter;     /* GMRES iterations per right-hand side, all restarts */
    double fmm_tol;   /* the fast summation's tolerance (fmm.h) */
    int num_threads;
    int try_gpu;      /* a GPU may run the parts it does faster (tps_iterative_gpu_parts) */
    size_t gpu_max_bytes;
} tps_iterative_options;
/* The defaults: tol 1e-10, 500 iterations, fast summation to 1e-14. */
void tps_iterative_options_init(tps_iterative_options *o);

typedef struct tps_iterative_result {
    int *iterations;   /* n_rhs: GMRES iterations */
    double *relres;    /* n_rhs: the relative residual reached, by a final product */
    double *max_fit_error; /* n_rhs: max |f(x_i) - z_i| from that product */
    int used_gpu;      /* the products or the patches ran on the GPU */
} tps_iterative_result;

/* Bytes the iterative solve of n points needs at its peak: O(n). */
size_t tps_iterative_bytes(size_t n, size_t n_rhs);

/* As tps_solve_dense_ex (noise: per-point multipliers of lambda, or NULL),
 * by preconditioned GMRES: w[r], a[r] receive the solution of z[r];
 * res (arrays of n_rhs) the iterations and residuals. Fails with
 * TPS_ERR_SINGULAR when a right-hand side does not reach 1e-6 (the
 * message says how far it got); reaching only that, not tol, is logged. */
tps_status tps_solve_iterative(tps_context *ctx, size_t n, const double *u, const double *v,
                               double lambda, const double *noise, size_t n_rhs,
                               const double *const *z, double **w, double (*a)[3],
                               const tps_iterative_options *options, tps_iterative_result *res,
                               const char *what);

#ifdef __cplusplus
}
#endif

#endif

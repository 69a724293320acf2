/* variance.h: the prediction variance of a spline (the standard error,
 * TPS_QUANTITY_STANDARD_ERROR), as R's fields::predictSE defines it
 * (docs/design.md, "The standard error").
 *
 * With S = [M T; T^T 0] the fit's saddle matrix (M = K + lambda W^-1, T
 * the fixed part [1 u v c..]) and v = [k; t] the kernel column and fixed
 * part at a target, the variance is sigma2 (k(x, x) - v^T S^-1 v). With
 * T = Q R, Q = [Q1 Q2], Q^T M Q = [M11 M12; M21 B], B = L L^T, and
 * q = Q^T k = [q1; q2], h = R^-T t, y = q2 - M21 h:
 *     v^T S^-1 v = 2 q1^T h - h^T M11 h + |L^-1 y|^2,
 * so a target costs one product with L^-1 (~N^2 flops), done for a block
 * of targets at once as BLAS 3 (the kernel matrix of the block, Q from the
 * right, dtrmm with L^-1 kept explicitly: dtrtri once). */
#ifndef TPS_VARIANCE_H
#define TPS_VARIANCE_H

#include "dense.h"
#include "eval.h"

/* One factorisation, in the scaled coordinates of the points it covers. */
typedef struct tps_se_factor {
    size_t n, m;   /* points, fixed columns */
    size_t n_pad;  /* n rounded up to whole kernel tiles */
    double *u, *v; /* the points (n_pad: the padding repeats the last) */
    double *p;     /* n x m: T's QR in LAPACK's compact form, R on top */
    double tau[TPS_MAX_FIXED];
    double *mat;   /* n x n: columns 0..m-1 of Q^T M Q (lower part), and
                    * L^-1 in the trailing (n-m) x (n-m) lower triangle */
    double *zq;    /* NULL, or n x n: column p [Q1^T e_p; L^-1 Q2^T e_p], made
                    * on first use by the CPU's tiles (se_tile.h) */
} tps_se_factor;

/* Builds the factorisation of n points (u, v) with lambda (scaled units),
 * per-point multipliers of lambda (noise, NULL: 1) and the fixed part's
 * covariates fc: O(n^3), n^2 doubles. NULL with the error in err. */
tps_se_factor *tps_se_factor_create(tps_error *err, size_t n, const double *u, const double *v,
                                    double lambda, const double *noise, const tps_fixed_cols *fc,
                                    int num_threads, const char *what);
void tps_se_factor_free(tps_se_factor *f);

/* A LOCAL model's factorisations for one band: each patch's, in its
 * frame, with the process variance rho in the frame's units (the patches'
 * maximum-likelihood estimates w^T M w / n pooled), made on first use
 * (cpu_local_se.c). */
typedef struct tps_se_patches {
    size_t n_patches;
    tps_se_factor **f;
    double *rho;
    /* With covariates (n_cov 0 and NULL without; docs/design.md): per
     * patch n_cov columns of f->n, tps_se_project of the patch's scaled
     * covariate values at its points; G^-1 (n_cov x n_cov, row-major) of
     * the blended G = C^T R C of local_cov.c, in the model's scaled units;
     * rho_model the pooled process variance in those units. */
    size_t n_cov;
    double **cproj;
    double ginv[TPS_MAX_COVARIATES * TPS_MAX_COVARIATES];
    double rho_model;
    /* f and cproj are another band's (same lambda, no missing values);
     * rho is this band's own */
    int shares;
} tps_se_patches;
/* Frees sp (what it shares: not). */
void tps_se_patches_free(tps_se_patches *sp);

/* Band b's factorisation, made on first use under md->se_lock and kept
 * with the model (bands with the same lambda and weights share one). */
tps_status tps_se_factor_of_band(tps_context *ctx, const tps_model *md, size_t band,
                                 int num_threads, const tps_se_factor **out);
/* Frees every factorisation of the model (each shared one once). */
void tps_se_factors_destroy(tps_model *md);

/* Targets per block: the BLAS 3 calls always run on blocks of this many,
 * so that a target's bytes depend only on its block (a grid's blocks are
 * aligned on absolute columns), never on the window or the threads. A
 * multiple of TPS_KERNEL_TILE. */
#define TPS_SE_BLOCK 256

/* h = R^-T t (m x ncols) for the fixed part t = [1 u v c..] of targets
 * (pu, pv), covariates zs[k * stride + i] (scaled; NULL or NaN: computed
 * as 0); column j is target min(j, count - 1) (padding repeats the last). */
void tps_se_fixed_rows(const tps_se_factor *f, size_t ncols, size_t count, const double *pu,
                       const double *pv, const double *zs, size_t stride, double *h);
/* x <- Q^T x for one column of n, Q^T = H_m .. H_1 (tps_reflect: threads
 * share the reflectors). */
void tps_se_apply_qt(const tps_se_factor *f, double *x);
/* h^T M11 h, M11 in the factorisation's lower part. */
double tps_se_hmh(const tps_se_factor *f, const double *h);

/* A data vector c at the factorisation's points (n): proj (n) <- [Q1^T c;
 * L^-1 Q2^T c], what tps_se_block_splines needs; unless rc is NULL, rc
 * (n) <- R c = Q2 (Q2^T M Q2)^-1 Q2^T c, the kernel coefficients of the
 * spline of c (this lambda, this fixed part). */
void tps_se_project(const tps_se_factor *f, const double *c, double *proj, double *rc);
/* After tps_se_block(f, .., count, .., work, ..) on the same work: at its
 * targets the values of the splines (f's points, lambda and fixed part) of
 * n_data data vectors, given by their tps_se_project (proj + j f->n), into
 * vals[j * count + k]. The best linear predictor's weights Q1 h + Q2 g
 * (g = B^-1 y) applied to c: h^T Q1^T c + (L^-1 y)^T (L^-1 Q2^T c), from
 * the block's h and L^-1 y. */
void tps_se_block_splines(const tps_se_factor *f, size_t count, const void *work, size_t n_data,
                          const double *proj, double *vals);

/* Scratch of one block: the block's kernel matrix and a few vectors. */
size_t tps_se_block_bytes(const tps_se_factor *f);

/* k(x, x) - v^T S^-1 v (k(x, x) = 0 for r^2 log r) for `count` <=
 * TPS_SE_BLOCK targets (pu, pv, scaled; same_v: all share pv[0]) whose
 * covariates are zs[k * stride + j] (scaled), into out[0 .. count); NaN
 * where a covariate is NaN. The variance is that times rho (the process
 * variance in the scaled kernel's units). kernel: the CPU value kernel,
 * which forms the kernel matrix. work: tps_se_block_bytes. */
void tps_se_block(const tps_se_factor *f, tps_kernel_fn kernel, size_t count, const double *pu,
                  const double *pv, int same_v, const double *zs, size_t stride, void *work,
                  double *out);

/* The TPS_SE_BLOCK targets of block `block` (absolute columns block *
 * TPS_SE_BLOCK ..) of window row `row`, and which of them, [k0, k1), lie
 * inside the window (cpu_se.c). */
void tps_se_block_targets(const tps_window *w, size_t row, size_t block, double *pu, double *pv);
void tps_se_block_window(const tps_window *w, size_t block, size_t *k0, size_t *k1);
/* Calls fn(user, row, block, scratch) for every block of every row of
 * window w (the blocks that hold a cell of it) on up to num_threads
 * threads, each with `scratch_bytes` of zeroed scratch of its own, the
 * BLAS single-threaded inside (the blocks are the parallelism; a cell's
 * bytes must not depend on the threads). cpu_se.c and cpu_local_se.c. */
typedef void (*tps_se_block_fn)(void *user, size_t row, size_t block, void *scratch);
tps_status tps_se_for_blocks(tps_context *ctx, const tps_window *w, int num_threads,
                             size_t scratch_bytes, tps_se_block_fn fn, void *user);

/* A band's rho for tps_se_block: sigma2 / (8 pi) (our kernel r^2 log r)
 * in the model's scaled units (times scale^2). */
double tps_se_rho(const tps_model *md, size_t band);

/* What the GPU's copy adds to a factorisation (gpu_backend.h,
 * tps_gpu_se_create): the reflectors explicit (vr, n x m), F = [T V^T; 0 |
 * M21^T] (2m x n, T the reflectors' compact WY factor), R (m x m) and M11
 * (m x m, full). gpu_se.c. */
typedef struct tps_se_arrays {
    double *vr, *f, *r, *m11;
} tps_se_arrays;
tps_status tps_se_device_arrays(const tps_se_factor *f, tps_se_arrays *out, tps_error *err);
void tps_se_arrays_free(tps_se_arrays *a);

#endif

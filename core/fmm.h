/* fmm.h: fast summation of a thin plate spline's kernel sums (fmm.c has the
 * method; docs/design.md, "Fast summation", the error bound):
 *
 *     out(z) = sum_j h_j s_j log s_j,   s_j = |z - t_j|^2,
 *
 * the half-weight form the evaluation kernel sums (eval.h), at the sources
 * themselves (a matrix-vector product with the kernel matrix, the term
 * j = i being 0) or at other targets, in O(N) work for a fixed accuracy:
 * within tol * sum_j |h_j| of the direct sum for targets in the model's
 * square [-1, 1]^2. */
#ifndef TPS_FMM_H
#define TPS_FMM_H

#include "error.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tps_fmm tps_fmm;

/* The plan for n sources (u, v) in the model's scaled coordinates: their
 * tree, the expansions' length for `tol` (1e-16 <= tol < 1) and the
 * interaction lists of the sources with themselves. Work runs on up to
 * `threads` threads. NULL with *err on failure (memory). */
tps_fmm *tps_fmm_create(tps_error *err, size_t n, const double *u, const double *v, double tol,
                        int threads);
void tps_fmm_destroy(tps_fmm *fmm);

/* out[i] = sum_{j != i} h[j] s_ij log s_ij at the sources (input order).
 * Not thread-safe for one plan (it keeps the expansions of h). */
tps_status tps_fmm_apply(tps_fmm *fmm, const double *h, double *out, tps_error *err);

/* The same sum at m other targets (pu, pv): a tree over them and its
 * interaction lists with the sources' tree are built per call. Uses the
 * expansions of the last tps_fmm_apply or tps_fmm_set_weights. */
tps_status tps_fmm_set_weights(tps_fmm *fmm, const double *h, tps_error *err);
tps_status tps_fmm_eval(const tps_fmm *fmm, size_t m, const double *pu, const double *pv,
                        double *out, tps_error *err);

/* The expansions' length and the point-pair count of the near field of the
 * self plan (for benches and the debug log). */
int tps_fmm_terms(const tps_fmm *fmm);
double tps_fmm_near_pairs(const tps_fmm *fmm);

#ifdef __cplusplus
}
#endif

#endif

/* dense.h: the pieces of the dense solve (solve.c) that the standard
 * error's factorisation (variance.c) and GCV reuse: the fixed part's QR,
 * the projected system Q^T (K + lambda W^-1) Q and the Cholesky in panels.
 * docs/design.md, "The solve" and "Covariates", has the method. */
#ifndef TPS_DENSE_H
#define TPS_DENSE_H

#include "internal.h"

#include <stddef.h>

/* Columns of the fixed part at most: [1 u v] and the covariates. */
#define TPS_MAX_FIXED (3 + TPS_MAX_COVARIATES)

/* Columns of the fixed part: 3 + fc->n_cov (3 for fc NULL). */
static inline size_t tps_fixed_count(const tps_fixed_cols *fc)
{
    return 3 + (fc ? fc->n_cov : 0);
}

/* T = [1 u v c_1 ..] (rows = D: D T) = Q R by Householder QR: p (n x m)
 * receives LAPACK's compact form, tau m factors. TPS_ERR_COLLINEAR when
 * T has not full rank: all points on one line, or a covariate that is a
 * linear combination of the columns before it (named). n >= m. */
tps_status tps_fixed_qr(tps_error *err, size_t n, const double *u, const double *v,
                        const tps_fixed_cols *fc, const double *rows, double *p, double *tau,
                        const char *what);

/* x <- H_j x, H_j = I - tau[j] w w^T the j-th reflector of tps_fixed_qr's
 * p (n rows; w: 0 above j, 1 at j, p[j n + i] below). Applying Q = H_1 ..
 * H_m or Q^T = H_m .. H_1 to a vector is a loop of these. Not LAPACK's
 * dormqr: its dorm2r writes 1 on the reflector's diagonal while it works,
 * so threads sharing one p would race. Inline: it is the inner loop of the
 * standard error's blocks. */
static inline void tps_reflect(size_t n, size_t j, const double *p, const double *tau, double *x)
{
    const double *w = p + j * n;
    double dot = x[j];
    for (size_t i = j + 1; i < n; ++i)
        dot += w[i] * x[i];
    dot *= tau[j];
    x[j] -= dot;
    for (size_t i = j + 1; i < n; ++i)
        x[i] -= dot * w[i];
}

/* Fills mat (n x n, lower triangle) with Q^T (K + lambda diag(noise)) Q
 * (noise NULL: lambda I), or with rows = D, Q^T D K D Q (lambda 0 there);
 * Q from the m reflectors of tps_fixed_qr. q, y: n doubles of scratch. */
void tps_form_projected(size_t n, size_t m, const double *u, const double *v, double lambda,
                        const double *noise, const double *rows, const double *p,
                        const double *tau, double *mat, double *q, double *y, int num_threads);

/* dpotrf of the n x n lower triangle of a, in panels that report progress;
 * returns dpotrf's info. */
int tps_cholesky_in_panels(int n, double *a, int lda);

#endif

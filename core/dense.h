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

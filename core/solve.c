/* solve.c: the dense thin plate spline solve, by null-space projection.
 *
 * The system [A P; P^T 0][w; a] = [z; 0], A = K + lambda I, is a saddle
 * point problem: indefinite, so plain Cholesky does not apply and LU (dgesv)
 * ignores its structure. With P = Q R (Householder QR of the N x 3 matrix
 * [1 u v]) and Q = [Q1 Q2], every w with P^T w = 0 is w = Q2 g, and
 *     (Q2^T A Q2) g = Q2^T z,      R a = Q1^T z - Q1^T A Q2 g.
 * Q2^T A Q2 is symmetric positive definite for distinct, non-collinear
 * points (the TPS kernel is conditionally positive definite of order 2), so
 * Cholesky (dpotrf) solves it in N^3/3 flops, half of LU's, and its failure
 * flags degenerate input. Q^T A Q is formed in O(N^2) by applying the three
 * reflectors as symmetric rank-2 updates (dsymv + dsyr2): LAPACK's dormqr
 * on the N x N matrix was the slow part in our measurements.
 * docs/design.md gives the measured residuals and timings. */
#include "gpu_backend.h"
#include "internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t tps_solve_bytes(size_t n, size_t n_rhs)
{
    /* The N x N matrix dominates; the rest is a few vectors per point. */
    return n * n * sizeof(double) + n * (8 + 2 * n_rhs) * sizeof(double);
}

typedef struct fill_job {
    size_t n;
    const double *u, *v;
    double lambda;
    double *a;
} fill_job;

/* Column j of the lower triangle: phi(r) = r^2 log r = 0.5 r^2 log r^2. */
static void fill_column(size_t j, int thread, void *user)
{
    (void)thread;
    fill_job *job = user;
    const size_t n = job->n;
    double *col = job->a + j * n;
    const double uj = job->u[j], vj = job->v[j];
    col[j] = job->lambda;
    for (size_t i = j + 1; i < n; ++i) {
        double du = job->u[i] - uj, dv = job->v[i] - vj;
        double r2 = du * du + dv * dv;
        col[i] = r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
    }
}

/* The CPU factorisation: fills mat (N x N, lower triangle) with
 * Q^T (K + lambda I) Q, factors its trailing block and replaces rows 3.. of
 * rhs (Q^T z) by g. */
static tps_status factor_solve_cpu(tps_context *ctx, size_t n, const double *u, const double *v,
                                   double lambda, const double *p, const double tau[3],
                                   size_t n_rhs, double *rhs, double *mat, double *q, double *y,
                                   int num_threads, const char *what)
{
    const lapack_int ni = (lapack_int)n;
    fill_job fj = {n, u, v, lambda, mat};
    tps_parallel_for(n, n > 512 ? num_threads : 1, fill_column, &fj);

    /* mat <- H_j mat H_j for j = 1..3, i.e. Q^T A Q with Q = H1 H2 H3. */
    for (size_t j = 0; j < 3; ++j) {
        memset(q, 0, sizeof(double) * n);
        q[j] = 1.0;
        memcpy(q + j + 1, p + j * n + j + 1, sizeof(double) * (n - j - 1));
        cblas_dsymv(CblasColMajor, CblasLower, ni, 1.0, mat, ni, q, 1, 0.0, y, 1);
        double beta = cblas_ddot(ni, q, 1, y, 1);
        /* y <- tau y - (tau^2 beta / 2) q, then mat <- mat - q y^T - y q^T. */
        cblas_dscal(ni, tau[j], y, 1);
        cblas_daxpy(ni, -0.5 * tau[j] * tau[j] * beta, q, 1, y, 1);
        cblas_dsyr2(CblasColMajor, CblasLower, ni, -1.0, q, 1, y, 1, mat, ni);
    }

    double *b22 = mat + 3 * n + 3;
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', ni - 3, b22, ni);
    if (info != 0)
        return tps_set_error(ctx, TPS_ERR_SINGULAR,
                             "%s: the spline system of %zu points is not positive definite "
                             "(Cholesky failed at pivot %d): the points are degenerate or too "
                             "close together for an exact fit; a smoothing > 0 may help",
                             what, n, (int)info);
    if (LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', ni - 3, (lapack_int)n_rhs, b22, ni, rhs + 3, ni) != 0)
        return tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: applying the factorisation failed", what);
    return TPS_OK;
}

tps_status tps_solve_dense(tps_context *ctx, size_t n, const double *u, const double *v,
                           double lambda, size_t n_rhs, const double *const *z, double **w,
                           double (*a)[3], int num_threads, int try_gpu, size_t gpu_max_bytes,
                           int *used_gpu, const char *what)
{
    *used_gpu = 0;
    if (n < 3)
        return tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                             "%s: %zu distinct usable point%s, at least 3 are needed", what, n,
                             n == 1 ? "" : "s");
    if (n > (size_t)INT32_MAX)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    const lapack_int ni = (lapack_int)n;

    double *p = malloc(sizeof(double) * n * 3);          /* [1 u v], then its QR */
    double *rhs = malloc(sizeof(double) * n * n_rhs);    /* Q^T z, then [.; g], then w */
    double *y = malloc(sizeof(double) * n);
    double *q = malloc(sizeof(double) * n);
    double *mat = NULL;                                  /* the CPU path's N x N matrix */
    double *cols = NULL;                                 /* the GPU path's first 3 columns */
    const double *b_cols;  /* column k of Q^T A Q: b_cols + k n */
    double tau[3];
    tps_status st = TPS_OK;
    if (!p || !rhs || !y || !q) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        goto done;
    }

    for (size_t i = 0; i < n; ++i) {
        p[i] = 1.0;
        p[n + i] = u[i];
        p[2 * n + i] = v[i];
    }
    if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, ni, 3, p, ni, tau) != 0) {
        st = tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: QR of the polynomial part failed", what);
        goto done;
    }
    /* Coordinates lie in [-1, 1], so the columns of P have norms ~sqrt(N):
     * a diagonal of R that small relative to the first means [1 u v]
     * has rank 2, i.e. all points on one line (R11 catches a vertical line,
     * R22 any other). */
    if (!(fabs(p[n + 1]) > 1e-10 * fabs(p[0])) || !(fabs(p[2 * n + 2]) > 1e-10 * fabs(p[0]))) {
        st = tps_set_error(ctx, TPS_ERR_COLLINEAR,
                           "%s: all %zu points lie on one line; a surface needs points that "
                           "span an area", what, n);
        goto done;
    }

    for (size_t r = 0; r < n_rhs; ++r)
        memcpy(rhs + r * n, z[r], sizeof(double) * n);
    const lapack_int nr = (lapack_int)n_rhs;
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', ni, nr, 3, p, ni, tau, rhs, ni) != 0) {
        st = tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: applying Q^T failed", what);
        goto done;
    }

    if (try_gpu) {
        char err[512] = "";
        cols = malloc(sizeof(double) * 3 * n);
        int rc = cols ? tps_gpu_factor_solve(n, u, v, lambda, p, tau, n_rhs, rhs, cols,
                                             gpu_max_bytes, err, sizeof err)
                      : TPS_GPU_SOLVE_UNAVAILABLE;
        if (rc == 0) {
            *used_gpu = 1;
        } else if (rc == TPS_GPU_SOLVE_NOT_POSITIVE_DEFINITE) {
            st = tps_set_error(ctx, TPS_ERR_SINGULAR,
                               "%s: the spline system of %zu points is not positive definite "
                               "(%s, on the GPU): the points are degenerate or too close "
                               "together for an exact fit; a smoothing > 0 may help",
                               what, n, err);
            goto done;
        } else {
            tps_log(ctx, TPS_LOG_DEBUG, "%s: solving on the CPU, not the GPU: %s", what, err);
            /* rhs still holds Q^T z: the GPU path writes g only on success. */
        }
    }
    if (*used_gpu) {
        b_cols = cols;
    } else {
        mat = malloc(sizeof(double) * n * n);
        if (!mat) {
            st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                               "%s: out of memory for the dense system of %zu points (%zu bytes)",
                               what, n, tps_solve_bytes(n, n_rhs));
            goto done;
        }
        st = factor_solve_cpu(ctx, n, u, v, lambda, p, tau, n_rhs, rhs, mat, q, y, num_threads,
                              what);
        if (st != TPS_OK)
            goto done;
        b_cols = mat;
    }

    for (size_t r = 0; r < n_rhs; ++r) {
        double *c = rhs + r * n; /* c[0..2] = Q1^T z, c[3..] = g */
        /* R a = Q1^T z - (Q1^T A Q2) g; Q1^T A Q2 sits below the diagonal
         * block as Q2^T A Q1 (columns 0..2, rows 3..) of Q^T A Q. */
        double t[3];
        for (size_t k = 0; k < 3; ++k)
            t[k] = c[k] - cblas_ddot(ni - 3, b_cols + k * n + 3, 1, c + 3, 1);
        for (int k = 2; k >= 0; --k) {
            double s = t[k];
            for (int l = k + 1; l < 3; ++l)
                s -= p[(size_t)l * n + (size_t)k] * a[r][l];
            a[r][k] = s / p[(size_t)k * n + (size_t)k];
        }
        c[0] = c[1] = c[2] = 0.0;
    }
    /* w = Q [0; g]. */
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', ni, nr, 3, p, ni, tau, rhs, ni) != 0) {
        st = tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: applying Q failed", what);
        goto done;
    }
    for (size_t r = 0; r < n_rhs; ++r)
        memcpy(w[r], rhs + r * n, sizeof(double) * n);

done:
    free(p);
    free(rhs);
    free(y);
    free(q);
    free(mat);
    free(cols);
    return st;
}

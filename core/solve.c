/* solve.c: the dense thin plate spline solve, by null-space projection.
 *
 * The system [A P; P^T 0][w; a] = [z; 0], A = K + lambda I, is a saddle
 * point problem: indefinite, so plain Cholesky does not apply and LU (dgesv)
 * ignores its structure. With P = Q R (Householder QR of the N x 3 matrix
 * [1 u v]) and Q = [Q1 Q2], every w with P^T w = 0 is w = Q2 g, and
 *     (Q2^T A Q2) g = Q2^T z,      R a = Q1^T z - Q1^T A Q2 g.
 * With linear covariates P grows to the n x m matrix T = [1 u v c_1 ..]
 * (a partial spline), and everything above holds with m columns for 3.
 * Q2^T A Q2 is symmetric positive definite for distinct, non-collinear
 * points (the TPS kernel is conditionally positive definite of order 2), so
 * Cholesky (dpotrf) solves it in N^3/3 flops, half of LU's, and its failure
 * flags degenerate input. Q^T A Q is formed in O(N^2) by applying the three
 * reflectors as symmetric rank-2 updates (dsymv + dsyr2): LAPACK's dormqr
 * on the N x N matrix was the slow part in our measurements.
 * docs/design.md gives the measured residuals and timings. */
#include "dense.h"
#include "gpu_backend.h"

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
    const double *noise; /* NULL, or lambda's per-point multipliers 1 / weight_i */
    const double *rows;  /* NULL, or D: the matrix is D K D (GCV's weighted form) */
} fill_job;

/* Column j of the lower triangle: phi(r) = r^2 log r = 0.5 r^2 log r^2. */
static void fill_column(size_t j, int thread, void *user)
{
    (void)thread;
    fill_job *job = user;
    const size_t n = job->n;
    double *col = job->a + j * n;
    const double uj = job->u[j], vj = job->v[j];
    /* Columns are taken in order and column j holds n - j entries: about
     * 1 - (1 - j/n)^2 of the work is done (reported on the caller's thread). */
    const double left = 1.0 - (double)j / (double)n;
    tps_progress(1.0 - left * left);
    col[j] = job->noise ? job->lambda * job->noise[j] : job->lambda;
    for (size_t i = j + 1; i < n; ++i) {
        double du = job->u[i] - uj, dv = job->v[i] - vj;
        double r2 = du * du + dv * dv;
        col[i] = r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
    }
    if (job->rows)
        for (size_t i = j + 1; i < n; ++i)
            col[i] *= job->rows[i] * job->rows[j];
}

/* mat <- H_j mat H_j for the symmetric mat (lower triangle), H_j the j-th
 * reflector of the QR in p, tau: a rank-2 update, O(N^2). */
static void reflect_both_sides(size_t n, size_t j, const double *p, const double *tau,
                               double *mat, double *q, double *y)
{
    const lapack_int ni = (lapack_int)n;
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

void tps_form_projected(size_t n, size_t m, const double *u, const double *v, double lambda,
                        const double *noise, const double *rows, const double *p,
                        const double *tau, double *mat, double *q, double *y, int num_threads)
{
    fill_job fj = {n, u, v, lambda, mat, noise, rows};
    tps_parallel_for(n, n > 512 ? num_threads : 1, fill_column, &fj);

    /* Q^T A Q with Q = H1 H2 .. Hm: H1 first. */
    for (size_t j = 0; j < m; ++j)
        reflect_both_sides(n, j, p, tau, mat, q, y);
}

/* Leave-one-out for any lambda, Rippa (1999): with M the saddle matrix
 * [K + lambda W^-1, P; P^T, 0] and c = w the kernel weights, the residual
 * of the fit without point i at x_i is e_i = w_i / (M^-1)_ii; M^-1's
 * leading block is Q2 B^-1 Q2^T, B = Q2^T (K + lambda W^-1) Q2. mat holds
 * B's Cholesky factor in its trailing block; it is overwritten: B^-1
 * (dpotri), then Q [0 0; 0 B^-1] Q^T, whose diagonal goes to diag. */
static tps_status loo_diagonal(tps_error *err, size_t n, size_t m, const double *p,
                               const double *tau, double *mat, double *q, double *y, double *diag,
                               const char *what)
{
    const lapack_int ni = (lapack_int)n;
    if (n > m && LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', (lapack_int)(n - m), mat + m * n + m,
                                ni) != 0)
        return tps_error_set(err, TPS_ERR_SINGULAR, "%s: inverting the spline system for "
                             "leave-one-out cross-validation failed", what);
    for (size_t k = 0; k < m; ++k)
        memset(mat + k * n + k, 0, sizeof(double) * (n - k));
    for (size_t j = m; j-- > 0;) /* Q X Q^T = H1 .. Hm X Hm .. H1: Hm first */
        reflect_both_sides(n, j, p, tau, mat, q, y);
    for (size_t i = 0; i < n; ++i)
        diag[i] = mat[i * n + i];
    return TPS_OK;
}

/* Columns per panel of the Cholesky factorisation below. */
#define CHOLESKY_PANEL 512

/* dpotrf of the n x n lower triangle of a, in panels of CHOLESKY_PANEL
 * columns (a right-looking blocked Cholesky: factor the panel's diagonal
 * block, dtrsm the rows below it, dsyrk the trailing matrix), so that
 * progress can be reported between panels; one dpotrf call is one opaque
 * stretch of minutes at large N. Same flops, the same BLAS 3 calls dpotrf
 * makes itself: measured on 5000 x 5000 no slower than one call (within
 * this VM's noise), with results equal to within 3e-14. Returns dpotrf's
 * info, in the whole matrix's numbering. */
int tps_cholesky_in_panels(int n, double *a, int lda)
{
    if (n <= 2 * CHOLESKY_PANEL) {
        lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, a, lda);
        if (info == 0)
            tps_progress(1.0);
        return info;
    }
    const double total = (double)n * n * n;
    for (lapack_int k = 0; k < n; k += CHOLESKY_PANEL) {
        const lapack_int nb = n - k < CHOLESKY_PANEL ? n - k : CHOLESKY_PANEL;
        double *diag = a + (size_t)k * (size_t)lda + (size_t)k;
        lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', nb, diag, lda);
        if (info != 0)
            return info < 0 ? info : info + k;
        const lapack_int rest = n - k - nb;
        if (rest > 0) {
            double *below = diag + nb;
            cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rest, nb,
                        1.0, diag, lda, below, lda);
            cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, rest, nb, -1.0, below, lda, 1.0,
                        below + (size_t)nb * (size_t)lda, lda);
        }
        /* The flops left are those of the trailing matrix's Cholesky. */
        tps_progress(1.0 - (double)rest * rest * rest / total);
    }
    return 0;
}

/* The CPU factorisation: fills mat (N x N, lower triangle) with
 * Q^T (K + lambda I) Q, factors its trailing block and replaces rows m.. of
 * rhs (Q^T z) by g. */
static tps_status factor_solve_cpu(tps_error *err, size_t n, size_t m, const double *u,
                                   const double *v, double lambda, const double *noise,
                                   const double *p, const double *tau, size_t n_rhs, double *rhs,
                                   double *mat, double *q, double *y, int num_threads,
                                   const char *what)
{
    const lapack_int ni = (lapack_int)n;
    tps_progress_stage("%s: building the %zu x %zu system", what, n, n);
    tps_form_projected(n, m, u, v, lambda, noise, NULL, p, tau, mat, q, y, num_threads);
    tps_progress(1.0);

    double *b22 = mat + m * n + m;
    tps_progress_stage("%s: factorising (Cholesky, %zu x %zu)", what, n - m, n - m);
    lapack_int info = tps_cholesky_in_panels((int)(n - m), b22, (int)ni);
    if (info != 0)
        return tps_error_set(err, TPS_ERR_SINGULAR,
                             "%s: the spline system of %zu points is not positive definite "
                             "(Cholesky failed at pivot %d): the points are degenerate or too "
                             "close together for an exact fit; a smoothing > 0 may help",
                             what, n, (int)info);
    if (n > m && LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', (lapack_int)(n - m), (lapack_int)n_rhs,
                                b22, ni, rhs + m, ni) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: applying the factorisation failed", what);
    return TPS_OK;
}

static double column_norm(size_t n, const double *col)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; ++i)
        ss += col[i] * col[i];
    return sqrt(ss);
}

tps_status tps_fixed_qr(tps_error *err, size_t n, const double *u, const double *v,
                        const tps_fixed_cols *fc, const double *rows, double *p, double *tau,
                        const char *what)
{
    const size_t m = tps_fixed_count(fc);
    const lapack_int ni = (lapack_int)n;
    double norm[TPS_MAX_FIXED];
    for (size_t i = 0; i < n; ++i) {
        const double d = rows ? rows[i] : 1.0;
        p[i] = d;
        p[n + i] = d * u[i];
        p[2 * n + i] = d * v[i];
        for (size_t k = 3; k < m; ++k)
            p[k * n + i] = d * fc->cov[k - 3][i];
    }
    for (size_t k = 3; k < m; ++k)
        norm[k] = column_norm(n, p + k * n);
    if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, ni, (lapack_int)m, p, ni, tau) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: QR of the polynomial part failed", what);
    /* Coordinates lie in [-1, 1], so the columns of P have norms ~sqrt(N):
     * a diagonal of R that small relative to the first means [1 u v]
     * has rank 2, i.e. all points on one line (R11 catches a vertical line,
     * R22 any other). */
    if (!(fabs(p[n + 1]) > 1e-10 * fabs(p[0])) || !(fabs(p[2 * n + 2]) > 1e-10 * fabs(p[0])))
        return tps_error_set(err, TPS_ERR_COLLINEAR,
                             "%s: all %zu points lie on one line; a surface needs points that "
                             "span an area", what, n);
    /* A covariate's R_kk is the norm of what is left of its column once the
     * columns before it are projected out: below 1e-7 of its norm (the
     * tolerance of R's qr(), which fields::Krig uses) the column is, to
     * rounding, a combination of them, and the fixed part is singular. */
    for (size_t k = 3; k < m; ++k) {
        if (!(fabs(p[k * n + k]) > 1e-7 * norm[k])) {
            const char *name = fc->names && fc->names[k - 3] ? fc->names[k - 3] : NULL;
            char label[96];
            if (name)
                snprintf(label, sizeof label, "covariate '%.60s'", name);
            else
                snprintf(label, sizeof label, "covariate %zu", k - 2);
            return tps_error_set(err, TPS_ERR_COLLINEAR,
                                 "%s: %s is constant or (nearly) a linear combination of x, y%s "
                                 "over the %zu points, so the fixed part of the spline is "
                                 "singular; leave it out", what, label,
                                 k > 3 ? ", a constant and the covariates before it"
                                       : " and a constant",
                                 n);
        }
    }
    return TPS_OK;
}

tps_status tps_solve_dense(tps_context *ctx, size_t n, const double *u, const double *v,
                           double lambda, size_t n_rhs, const double *const *z, double **w,
                           double (*a)[3], int num_threads, int try_gpu, size_t gpu_max_bytes,
                           int *used_gpu, const char *what)
{
    return tps_solve_dense_ex(ctx, n, u, v, lambda, n_rhs, z, w, a, num_threads, try_gpu,
                              gpu_max_bytes, used_gpu, NULL, what);
}

/* Before the factorisation: T = Q R and rhs = Q^T z (n x n_rhs). */
static tps_status dense_prepare(tps_error *err, size_t n, const double *u, const double *v,
                                const tps_fixed_cols *fc, size_t n_rhs, const double *const *z,
                                double *p, double *tau, double *rhs, const char *what)
{
    tps_status st = tps_fixed_qr(err, n, u, v, fc, NULL, p, tau, what);
    if (st != TPS_OK)
        return st;
    for (size_t r = 0; r < n_rhs; ++r)
        memcpy(rhs + r * n, z[r], sizeof(double) * n);
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', (lapack_int)n, (lapack_int)n_rhs,
                       (lapack_int)tps_fixed_count(fc), p, (lapack_int)n, tau, rhs,
                       (lapack_int)n) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: applying Q^T failed", what);
    return TPS_OK;
}

/* After it: rhs holds [Q1^T z; g], b_cols the first m columns of
 * Q^T A Q; gives the affine parts a, the covariates' coefficients (n_cov
 * per right-hand side into cov_coef, when there are covariates) and the
 * weights w = Q [0; g]. */
static tps_status dense_finish(tps_error *err, size_t n, size_t m, size_t n_rhs, const double *p,
                               const double *tau, const double *b_cols, double *rhs,
                               double **w, double (*a)[3], double *cov_coef, const char *what)
{
    const lapack_int ni = (lapack_int)n;
    for (size_t r = 0; r < n_rhs; ++r) {
        double *c = rhs + r * n; /* c[0..m) = Q1^T z, c[m..] = g */
        /* R a = Q1^T z - (Q1^T A Q2) g; Q1^T A Q2 sits below the diagonal
         * block as Q2^T A Q1 (columns 0..m-1, rows m..) of Q^T A Q. */
        double t[TPS_MAX_FIXED], fixed[TPS_MAX_FIXED];
        for (size_t k = 0; k < m; ++k)
            t[k] = c[k] - (n > m ? cblas_ddot((lapack_int)(n - m), b_cols + k * n + m, 1, c + m,
                                              1)
                                 : 0.0);
        for (size_t k = m; k-- > 0;) {
            double s = t[k];
            for (size_t l = k + 1; l < m; ++l)
                s -= p[l * n + k] * fixed[l];
            fixed[k] = s / p[k * n + k];
        }
        memcpy(a[r], fixed, sizeof(double[3]));
        for (size_t k = 3; k < m; ++k)
            cov_coef[r * (m - 3) + k - 3] = fixed[k];
        memset(c, 0, sizeof(double) * m);
    }
    /* w = Q [0; g]. */
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', ni, (lapack_int)n_rhs, (lapack_int)m, p, ni,
                       tau, rhs, ni) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: applying Q failed", what);
    for (size_t r = 0; r < n_rhs; ++r)
        memcpy(w[r], rhs + r * n, sizeof(double) * n);
    return TPS_OK;
}

static tps_status not_positive_definite_on_gpu(tps_error *err, size_t n, const char *detail,
                                               const char *what)
{
    return tps_error_set(err, TPS_ERR_SINGULAR,
                         "%s: the spline system of %zu points is not positive definite "
                         "(%s, on the GPU): the points are degenerate or too close together "
                         "for an exact fit; a smoothing > 0 may help",
                         what, n, detail);
}

static tps_status check_size(tps_error *err, size_t n, size_t m, const char *what)
{
    if (n < m)
        return tps_error_set(err, TPS_ERR_TOO_FEW_POINTS,
                             "%s: %zu distinct usable point%s, at least %zu are needed%s", what, n,
                             n == 1 ? "" : "s", m, m > 3 ? " (x, y, a constant and the "
                                                           "covariates)" : "");
    if (n > (size_t)INT32_MAX)
        return tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    return TPS_OK;
}

tps_status tps_solve_dense_ex(tps_context *ctx, size_t n, const double *u, const double *v,
                              double lambda, size_t n_rhs, const double *const *z, double **w,
                              double (*a)[3], int num_threads, int try_gpu, size_t gpu_max_bytes,
                              int *used_gpu, const tps_solve_extra *extra, const char *what)
{
    const double *noise = extra ? extra->noise : NULL;
    double *loo_diag = extra ? extra->loo_diag : NULL;
    const tps_fixed_cols fc = {extra ? extra->n_cov : 0, extra ? extra->cov : NULL,
                               extra ? extra->cov_names : NULL};
    const size_t m = tps_fixed_count(&fc);
    /* The GPU forms K + lambda I itself, keeps its factor and takes the
     * three columns of [1 u v]: per-point noise, the inverse's diagonal and
     * covariates are CPU-only. */
    if (noise || loo_diag || fc.n_cov)
        try_gpu = 0;
    *used_gpu = 0;
    tps_status st = check_size(tps_ctx_error(ctx), n, m, what);
    if (st != TPS_OK)
        return st;

    double *p = malloc(sizeof(double) * n * m);          /* [1 u v c..], then its QR */
    double *rhs = malloc(sizeof(double) * n * n_rhs);    /* Q^T z, then [.; g], then w */
    double *y = malloc(sizeof(double) * n);
    double *q = malloc(sizeof(double) * n);
    double *mat = NULL;                                  /* the CPU path's N x N matrix */
    double *cols = NULL;                                 /* the GPU path's first 3 columns */
    const double *b_cols;  /* column k of Q^T A Q: b_cols + k n */
    double tau[TPS_MAX_FIXED];
    if (!p || !rhs || !y || !q) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        goto done;
    }
    st = dense_prepare(tps_ctx_error(ctx), n, u, v, &fc, n_rhs, z, p, tau, rhs, what);
    if (st != TPS_OK)
        goto done;

    if (try_gpu) {
        tps_error err = {TPS_OK, ""};
        cols = malloc(sizeof(double) * 3 * n);
        tps_progress_stage("%s: building and factorising the %zu x %zu system on the GPU", what,
                           n, n);
        tps_status rc = cols ? tps_gpu_factor_solve(n, u, v, lambda, p, tau, n_rhs, rhs, cols,
                                                    gpu_max_bytes, &err)
                             : tps_error_set(&err, TPS_ERR_DEVICE_UNAVAILABLE, "out of memory");
        if (rc == TPS_OK) {
            tps_progress(1.0);
            *used_gpu = 1;
        } else if (rc == TPS_ERR_SINGULAR) {
            st = not_positive_definite_on_gpu(tps_ctx_error(ctx), n, err.message, what);
            goto done;
        } else if (extra && extra->gpu_only) {
            st = tps_raise(ctx, &err);
            goto done;
        } else {
            tps_log(ctx, TPS_LOG_DEBUG, "%s: solving on the CPU, not the GPU: %s", what,
                    err.message);
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
        st = factor_solve_cpu(tps_ctx_error(ctx), n, m, u, v, lambda, noise, p, tau, n_rhs, rhs,
                              mat, q, y, num_threads, what);
        if (st != TPS_OK)
            goto done;
        b_cols = mat;
    }
    st = dense_finish(tps_ctx_error(ctx), n, m, n_rhs, p, tau, b_cols, rhs, w, a,
                      extra ? extra->cov_coef : NULL, what);
    if (st == TPS_OK && loo_diag)
        st = loo_diagonal(tps_ctx_error(ctx), n, m, p, tau, mat, q, y, loo_diag, what);

done:
    free(p);
    free(rhs);
    free(y);
    free(q);
    free(mat);
    free(cols);
    return st;
}

/* ---- a factorisation kept for many right-hand sides -------------------- */

struct tps_dense_factor {
    size_t n;
    double *p;   /* P's QR (dgeqrf's compact form), n x 3 */
    double tau[3];
    double *mat; /* n x n: the Cholesky factor of Q2^T A Q2 in its trailing block */
};

tps_dense_factor *tps_dense_factor_destroy(tps_dense_factor *f)
{
    if (f) {
        free(f->p);
        free(f->mat);
        free(f);
    }
    return NULL;
}

tps_dense_factor *tps_dense_factor_create(tps_context *ctx, size_t n, const double *u,
                                          const double *v, double lambda, const double *noise,
                                          int num_threads, const char *what)
{
    if (check_size(tps_ctx_error(ctx), n, 3, what) != TPS_OK)
        return NULL;
    tps_dense_factor *f = calloc(1, sizeof *f);
    double *q = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    if (f) {
        f->n = n;
        f->p = malloc(sizeof(double) * n * 3);
        f->mat = malloc(sizeof(double) * n * n);
    }
    tps_status st = TPS_OK;
    if (!f || !f->p || !f->mat || !q || !y) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for a dense system of "
                           "%zu points (%zu bytes)", what, n, tps_solve_bytes(n, 1));
        goto done;
    }
    st = tps_fixed_qr(tps_ctx_error(ctx), n, u, v, NULL, NULL, f->p, f->tau, what);
    if (st != TPS_OK)
        goto done;
    tps_form_projected(n, 3, u, v, lambda, noise, NULL, f->p, f->tau, f->mat, q, y, num_threads);
    const lapack_int info = tps_cholesky_in_panels((lapack_int)n - 3, f->mat + 3 * n + 3,
                                                   (lapack_int)n);
    if (info != 0)
        st = tps_set_error(ctx, TPS_ERR_SINGULAR,
                           "%s: the spline system of %zu points is not positive definite "
                           "(Cholesky failed at pivot %d)", what, n, (int)info);
done:
    free(q);
    free(y);
    if (st != TPS_OK)
        return tps_dense_factor_destroy(f);
    return f;
}

tps_status tps_dense_factor_solve(const tps_dense_factor *f, double *x, tps_error *err)
{
    const lapack_int ni = (lapack_int)f->n;
    /* x <- Q^T x; g from the trailing block; x <- Q [0; g]. */
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', ni, 1, 3, f->p, ni, f->tau, x, ni) != 0 ||
        LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', ni - 3, 1, f->mat + 3 * f->n + 3, ni, x + 3, ni) !=
            0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "applying a kept factorisation failed");
    x[0] = x[1] = x[2] = 0.0;
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', ni, 1, 3, f->p, ni, f->tau, x, ni) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "applying a kept factorisation failed");
    return TPS_OK;
}

/* ---- many small solves: the patches of a local model ------------------- */

typedef struct batch_run {
    tps_dense_job *jobs;
    tps_gpu_system *gpu; /* NULL: no GPU */
} batch_run;

static void batch_prepare(size_t k, int thread, void *user)
{
    (void)thread;
    tps_dense_job *job = &((batch_run *)user)->jobs[k];
    job->status = check_size(&job->err, job->n, 3, job->what);
    if (job->status != TPS_OK)
        return;
    job->p = malloc(sizeof(double) * job->n * 3);
    job->rhs = malloc(sizeof(double) * job->n * job->n_rhs);
    job->cols = malloc(sizeof(double) * job->n * 3);
    if (!job->p || !job->rhs || !job->cols)
        job->status = tps_error_set(&job->err, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory",
                                    job->what);
    else
        job->status = dense_prepare(&job->err, job->n, job->u, job->v, NULL, job->n_rhs, job->z,
                                    job->p, job->tau, job->rhs, job->what);
}

/* The GPU's result, or the CPU's factorisation, then the common end. */
static void batch_finish(size_t k, int thread, void *user)
{
    (void)thread;
    batch_run *run = user;
    tps_dense_job *job = &run->jobs[k];
    const tps_gpu_system *g = run->gpu ? &run->gpu[k] : NULL;
    job->used_gpu = 0;
    if (job->status == TPS_OK) {
        const double *b_cols = job->cols;
        double *mat = NULL, *q = NULL, *y = NULL;
        if (g && g->status == TPS_OK) {
            job->used_gpu = 1;
        } else if (g && g->status == TPS_ERR_SINGULAR) {
            job->status = not_positive_definite_on_gpu(&job->err, job->n, "Cholesky failed",
                                                       job->what);
        } else {
            mat = malloc(sizeof(double) * job->n * job->n);
            q = malloc(sizeof(double) * job->n);
            y = malloc(sizeof(double) * job->n);
            if (!mat || !q || !y)
                job->status = tps_error_set(&job->err, TPS_ERR_OUT_OF_MEMORY,
                                            "%s: out of memory for the dense system of %zu "
                                            "points (%zu bytes)",
                                            job->what, job->n, tps_solve_bytes(job->n, job->n_rhs));
            else
                job->status = factor_solve_cpu(&job->err, job->n, 3, job->u, job->v,
                                               job->lambda, job->noise, job->p, job->tau,
                                               job->n_rhs, job->rhs, mat, q, y, 1, job->what);
            b_cols = mat;
        }
        if (job->status == TPS_OK)
            job->status = dense_finish(&job->err, job->n, 3, job->n_rhs, job->p, job->tau,
                                       b_cols, job->rhs, job->w, job->a, NULL, job->what);
        if (job->status == TPS_OK && job->loo_diag) /* the CPU's factor: never sent to the GPU */
            job->status = loo_diagonal(&job->err, job->n, 3, job->p, job->tau, mat, q, y,
                                       job->loo_diag, job->what);
        free(mat);
        free(q);
        free(y);
    }
    free(job->p);
    free(job->rhs);
    free(job->cols);
    job->p = job->rhs = job->cols = NULL;
}

tps_status tps_solve_dense_batch(tps_context *ctx, size_t count, tps_dense_job *jobs,
                                 int num_threads, int try_gpu, size_t gpu_max_bytes)
{
    batch_run run = {jobs, NULL};
    for (size_t k = 0; k < count; ++k) {
        tps_error_clear(&jobs[k].err);
        jobs[k].p = jobs[k].rhs = jobs[k].cols = NULL;
    }
    tps_parallel_for(count, num_threads, batch_prepare, &run);
    if (try_gpu && count > 0) {
        run.gpu = calloc(count, sizeof(tps_gpu_system));
        if (run.gpu) {
            size_t submitted = 0;
            for (size_t k = 0; k < count; ++k) {
                const tps_dense_job *job = &jobs[k];
                tps_gpu_system *g = &run.gpu[k];
                g->status = TPS_ERR_DEVICE_UNAVAILABLE;
                /* Per-point noise and the inverse's diagonal are CPU-only
                 * (as in tps_solve_dense_ex). */
                if (job->status != TPS_OK || job->noise || job->loo_diag)
                    continue;
                *g = (tps_gpu_system){job->n, job->u, job->v, job->lambda, job->p,
                                      {job->tau[0], job->tau[1], job->tau[2]}, job->n_rhs,
                                      job->rhs, job->cols, TPS_ERR_DEVICE_UNAVAILABLE};
                ++submitted;
            }
            tps_error err = {TPS_OK, ""};
            const double t0 = tps_now_seconds();
            /* Systems it did not solve keep status != TPS_OK and rhs = Q^T z. */
            const tps_status rc =
                submitted ? tps_gpu_factor_solve_batch(count, run.gpu, gpu_max_bytes, &err)
                          : TPS_OK;
            if (rc != TPS_OK)
                tps_log(ctx, TPS_LOG_DEBUG, "batched GPU solve: %s; the rest on the CPU",
                        err.message);
            else if (submitted)
                tps_log(ctx, TPS_LOG_DEBUG, "%zu systems factorised on the GPU in %.3f s",
                        submitted, tps_now_seconds() - t0);
        }
    }
    tps_parallel_for(count, num_threads, batch_finish, &run);
    free(run.gpu);
    for (size_t k = 0; k < count; ++k)
        if (jobs[k].status != TPS_OK)
            return tps_raise(ctx, &jobs[k].err);
    return TPS_OK;
}

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
static void reflect_both_sides(size_t n, size_t j, const double *p, const double tau[3],
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

/* Fills mat (N x N, lower triangle) with Q^T (K + lambda diag(noise)) Q,
 * or with rows = D, Q^T D K D Q (lambda 0 there). */
static void form_projected(size_t n, const double *u, const double *v, double lambda,
                           const double *noise, const double *rows, const double *p,
                           const double tau[3], double *mat, double *q, double *y, int num_threads)
{
    fill_job fj = {n, u, v, lambda, mat, noise, rows};
    tps_parallel_for(n, n > 512 ? num_threads : 1, fill_column, &fj);

    /* Q^T A Q with Q = H1 H2 H3: H1 first. */
    for (size_t j = 0; j < 3; ++j)
        reflect_both_sides(n, j, p, tau, mat, q, y);
}

/* Leave-one-out for any lambda, Rippa (1999): with M the saddle matrix
 * [K + lambda W^-1, P; P^T, 0] and c = w the kernel weights, the residual
 * of the fit without point i at x_i is e_i = w_i / (M^-1)_ii; M^-1's
 * leading block is Q2 B^-1 Q2^T, B = Q2^T (K + lambda W^-1) Q2. mat holds
 * B's Cholesky factor in its trailing block; it is overwritten: B^-1
 * (dpotri), then Q [0 0; 0 B^-1] Q^T, whose diagonal goes to diag. */
static tps_status loo_diagonal(tps_error *err, size_t n, const double *p, const double tau[3],
                               double *mat, double *q, double *y, double *diag, const char *what)
{
    const lapack_int ni = (lapack_int)n;
    if (LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', ni - 3, mat + 3 * n + 3, ni) != 0)
        return tps_error_set(err, TPS_ERR_SINGULAR, "%s: inverting the spline system for "
                             "leave-one-out cross-validation failed", what);
    for (size_t k = 0; k < 3; ++k)
        memset(mat + k * n + k, 0, sizeof(double) * (n - k));
    for (int j = 2; j >= 0; --j) /* Q X Q^T = H1 H2 H3 X H3 H2 H1: H3 first */
        reflect_both_sides(n, (size_t)j, p, tau, mat, q, y);
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
static lapack_int cholesky_in_panels(lapack_int n, double *a, lapack_int lda)
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
 * Q^T (K + lambda I) Q, factors its trailing block and replaces rows 3.. of
 * rhs (Q^T z) by g. */
static tps_status factor_solve_cpu(tps_error *err, size_t n, const double *u, const double *v,
                                   double lambda, const double *noise, const double *p,
                                   const double tau[3], size_t n_rhs, double *rhs, double *mat,
                                   double *q, double *y, int num_threads, const char *what)
{
    const lapack_int ni = (lapack_int)n;
    tps_progress_stage("%s: building the %zu x %zu system", what, n, n);
    form_projected(n, u, v, lambda, noise, NULL, p, tau, mat, q, y, num_threads);
    tps_progress(1.0);

    double *b22 = mat + 3 * n + 3;
    tps_progress_stage("%s: factorising (Cholesky, %zu x %zu)", what, n - 3, n - 3);
    lapack_int info = cholesky_in_panels(ni - 3, b22, ni);
    if (info != 0)
        return tps_error_set(err, TPS_ERR_SINGULAR,
                             "%s: the spline system of %zu points is not positive definite "
                             "(Cholesky failed at pivot %d): the points are degenerate or too "
                             "close together for an exact fit; a smoothing > 0 may help",
                             what, n, (int)info);
    if (LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', ni - 3, (lapack_int)n_rhs, b22, ni, rhs + 3, ni) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: applying the factorisation failed", what);
    return TPS_OK;
}

/* P = [1 u v] (rows = D: D P) = Q R by Householder QR: p receives
 * LAPACK's compact form. */
static tps_status poly_qr(tps_error *err, size_t n, const double *u, const double *v,
                          const double *rows, double *p, double tau[3], const char *what)
{
    const lapack_int ni = (lapack_int)n;
    for (size_t i = 0; i < n; ++i) {
        const double d = rows ? rows[i] : 1.0;
        p[i] = d;
        p[n + i] = d * u[i];
        p[2 * n + i] = d * v[i];
    }
    if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, ni, 3, p, ni, tau) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: QR of the polynomial part failed", what);
    /* Coordinates lie in [-1, 1], so the columns of P have norms ~sqrt(N):
     * a diagonal of R that small relative to the first means [1 u v]
     * has rank 2, i.e. all points on one line (R11 catches a vertical line,
     * R22 any other). */
    if (!(fabs(p[n + 1]) > 1e-10 * fabs(p[0])) || !(fabs(p[2 * n + 2]) > 1e-10 * fabs(p[0])))
        return tps_error_set(err, TPS_ERR_COLLINEAR,
                             "%s: all %zu points lie on one line; a surface needs points that "
                             "span an area", what, n);
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

/* Before the factorisation: P = Q R and rhs = Q^T z (n x n_rhs). */
static tps_status dense_prepare(tps_error *err, size_t n, const double *u, const double *v,
                                size_t n_rhs, const double *const *z, double *p, double tau[3],
                                double *rhs, const char *what)
{
    tps_status st = poly_qr(err, n, u, v, NULL, p, tau, what);
    if (st != TPS_OK)
        return st;
    for (size_t r = 0; r < n_rhs; ++r)
        memcpy(rhs + r * n, z[r], sizeof(double) * n);
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', (lapack_int)n, (lapack_int)n_rhs, 3, p,
                       (lapack_int)n, tau, rhs, (lapack_int)n) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: applying Q^T failed", what);
    return TPS_OK;
}

/* After it: rhs holds [Q1^T z; g], b_cols the first three columns of
 * Q^T A Q; gives the affine parts a and the weights w = Q [0; g]. */
static tps_status dense_finish(tps_error *err, size_t n, size_t n_rhs, const double *p,
                               const double tau[3], const double *b_cols, double *rhs,
                               double **w, double (*a)[3], const char *what)
{
    const lapack_int ni = (lapack_int)n;
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
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', ni, (lapack_int)n_rhs, 3, p, ni, tau, rhs,
                       ni) != 0)
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

static tps_status check_size(tps_error *err, size_t n, const char *what)
{
    if (n < 3)
        return tps_error_set(err, TPS_ERR_TOO_FEW_POINTS,
                             "%s: %zu distinct usable point%s, at least 3 are needed", what, n,
                             n == 1 ? "" : "s");
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
    /* The GPU forms K + lambda I itself and keeps its factor: per-point
     * noise and the inverse's diagonal are CPU-only. */
    if (noise || loo_diag)
        try_gpu = 0;
    *used_gpu = 0;
    tps_status st = check_size(tps_ctx_error(ctx), n, what);
    if (st != TPS_OK)
        return st;

    double *p = malloc(sizeof(double) * n * 3);          /* [1 u v], then its QR */
    double *rhs = malloc(sizeof(double) * n * n_rhs);    /* Q^T z, then [.; g], then w */
    double *y = malloc(sizeof(double) * n);
    double *q = malloc(sizeof(double) * n);
    double *mat = NULL;                                  /* the CPU path's N x N matrix */
    double *cols = NULL;                                 /* the GPU path's first 3 columns */
    const double *b_cols;  /* column k of Q^T A Q: b_cols + k n */
    double tau[3];
    if (!p || !rhs || !y || !q) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        goto done;
    }
    st = dense_prepare(tps_ctx_error(ctx), n, u, v, n_rhs, z, p, tau, rhs, what);
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
        st = factor_solve_cpu(tps_ctx_error(ctx), n, u, v, lambda, noise, p, tau, n_rhs, rhs, mat,
                              q, y, num_threads, what);
        if (st != TPS_OK)
            goto done;
        b_cols = mat;
    }
    st = dense_finish(tps_ctx_error(ctx), n, n_rhs, p, tau, b_cols, rhs, w, a, what);
    if (st == TPS_OK && loo_diag)
        st = loo_diagonal(tps_ctx_error(ctx), n, p, tau, mat, q, y, loo_diag, what);

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
    if (check_size(tps_ctx_error(ctx), n, what) != TPS_OK)
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
    st = poly_qr(tps_ctx_error(ctx), n, u, v, NULL, f->p, f->tau, what);
    if (st != TPS_OK)
        goto done;
    form_projected(n, u, v, lambda, noise, NULL, f->p, f->tau, f->mat, q, y, num_threads);
    const lapack_int info = cholesky_in_panels((lapack_int)n - 3, f->mat + 3 * n + 3,
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
    job->status = check_size(&job->err, job->n, job->what);
    if (job->status != TPS_OK)
        return;
    job->p = malloc(sizeof(double) * job->n * 3);
    job->rhs = malloc(sizeof(double) * job->n * job->n_rhs);
    job->cols = malloc(sizeof(double) * job->n * 3);
    if (!job->p || !job->rhs || !job->cols)
        job->status = tps_error_set(&job->err, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory",
                                    job->what);
    else
        job->status = dense_prepare(&job->err, job->n, job->u, job->v, job->n_rhs, job->z,
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
                job->status = factor_solve_cpu(&job->err, job->n, job->u, job->v, job->lambda,
                                               job->noise, job->p, job->tau, job->n_rhs,
                                               job->rhs, mat, q, y, 1, job->what);
            b_cols = mat;
        }
        if (job->status == TPS_OK)
            job->status = dense_finish(&job->err, job->n, job->n_rhs, job->p, job->tau, b_cols,
                                       job->rhs, job->w, job->a, job->what);
        if (job->status == TPS_OK && job->loo_diag) /* the CPU's factor: never sent to the GPU */
            job->status = loo_diagonal(&job->err, job->n, job->p, job->tau, mat, q, y,
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

/* ---- automatic smoothing: generalised cross-validation ----------------- */

size_t tps_gcv_bytes(size_t n)
{
    /* Q^T K Q (N^2) and its trailing block's copy ((N-3)^2) at once, then
     * the eigenvectors and dsyevd's workspace (~2 (N-3)^2). */
    return 3 * n * n * sizeof(double) + 16 * n * sizeof(double);
}

typedef struct gcv_data {
    size_t n, m;
    const double *e, *c; /* eigenvalues of B = Q2^T K Q2, c = V^T Q2^T z */
} gcv_data;

/* GCV(lambda) = N ||(I - A) z||^2 / tr(I - A)^2 (N - tr A = tr(I - A)). */
static double gcv_score(const gcv_data *g, double lambda, double *trace_i_minus_a)
{
    double rss = 0.0, tr = 0.0;
    for (size_t k = 0; k < g->m; ++k) {
        double s = lambda / (g->e[k] + lambda);
        double r = s * g->c[k];
        rss += r * r;
        tr += s;
    }
    if (trace_i_minus_a)
        *trace_i_minus_a = tr;
    return tr > 0.0 ? (double)g->n * rss / (tr * tr) : INFINITY;
}

/* Leave-one-out residuals in closed form: with Q2 V the null-space
 * eigenvectors in point space, (I - A) = Q2 V diag(s) V^T Q2^T, s_k =
 * lambda / (e_k + lambda), so r = (I - A) z = sum_k s_k c_k (Q2 V)_k and
 * diag(I - A)_i = sum_k s_k (Q2 V)_{ik}^2; LOO residual_i = r_i / (1 - A_ii).
 * (Q2 V)_k = Q [0; V_k] is formed one column at a time: O(N^2), O(N) memory. */
static int gcv_loo(size_t n, size_t m, const double *p, const double tau[3], const double *e,
                   const double *c, const double *eigvec, double lambda, const double *sqrt_w,
                   double *x, double *rmse, double *mae)
{
    double *d = calloc(n, sizeof(double)), *r = calloc(n, sizeof(double));
    if (!d || !r) {
        free(d);
        free(r);
        return -1;
    }
    for (size_t k = 0; k < m; ++k) {
        x[0] = x[1] = x[2] = 0.0;
        memcpy(x + 3, eigvec + k * m, sizeof(double) * m);
        for (int j = 2; j >= 0; --j) { /* Q = H1 H2 H3: H3 first */
            const double *vj = p + (size_t)j * n;
            double dot = x[j];
            for (size_t i = (size_t)j + 1; i < n; ++i)
                dot += vj[i] * x[i];
            dot *= tau[j];
            x[j] -= dot;
            for (size_t i = (size_t)j + 1; i < n; ++i)
                x[i] -= dot * vj[i];
        }
        const double s = lambda / (e[k] + lambda), t = s * c[k];
        for (size_t i = 0; i < n; ++i) {
            d[i] += s * x[i] * x[i];
            r[i] += t * x[i];
        }
    }
    double ss = 0.0, sa = 0.0;
    for (size_t i = 0; i < n; ++i) {
        /* weighted: r and A are those of the problem scaled by D = W^1/2,
         * whose residual is D_i r_i and whose diagonal equals A's */
        double loo = r[i] / (d[i] * (sqrt_w ? sqrt_w[i] : 1.0));
        ss += loo * loo;
        sa += fabs(loo);
    }
    *rmse = sqrt(ss / (double)n);
    *mae = sa / (double)n;
    free(d);
    free(r);
    return 0;
}

tps_status tps_gcv_select(tps_context *ctx, size_t n, const double *u, const double *v,
                          const double *z, const double *sqrt_w, int num_threads,
                          tps_gcv_result *res, const char *what)
{
    if (n < 4)
        return tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                             "%s: GCV needs at least 4 distinct usable points, got %zu", what, n);
    if (n > (size_t)INT32_MAX)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    const size_t m = n - 3;
    const lapack_int ni = (lapack_int)n, mi = (lapack_int)m;
    double tau[3];
    double *p = malloc(sizeof(double) * n * 3);
    double *qz = malloc(sizeof(double) * n);
    double *y = malloc(sizeof(double) * n);
    double *q = malloc(sizeof(double) * n);
    double *e = malloc(sizeof(double) * m);
    double *c = malloc(sizeof(double) * m);
    double *mat = malloc(sizeof(double) * n * n);
    double *eig = malloc(sizeof(double) * m * m);
    tps_status st = TPS_OK;
    if (!p || !qz || !y || !q || !e || !c || !mat || !eig) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for GCV (%zu bytes)",
                           what, tps_gcv_bytes(n));
        goto done;
    }
    st = poly_qr(tps_ctx_error(ctx), n, u, v, sqrt_w, p, tau, what);
    if (st != TPS_OK)
        goto done;
    for (size_t i = 0; i < n; ++i)
        qz[i] = sqrt_w ? sqrt_w[i] * z[i] : z[i];
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', ni, 1, 3, p, ni, tau, qz, ni) != 0) {
        st = tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: applying Q^T failed", what);
        goto done;
    }
    /* B = Q2^T K Q2, K unregularised (weighted: of D K D and D P, D = W^1/2,
     * so that lambda I there is lambda W^-1 here), then B = V diag(e) V^T. */
    tps_progress_stage("%s: GCV: building the %zu x %zu system", what, n, n);
    form_projected(n, u, v, 0.0, NULL, sqrt_w, p, tau, mat, q, y, num_threads);
    tps_progress(1.0);
    for (size_t j = 0; j < m; ++j)
        memcpy(eig + j * m + j, mat + (j + 3) * n + (j + 3), sizeof(double) * (m - j));
    free(mat);
    mat = NULL;
    /* One LAPACK call, no progress inside: its start and end are reported. */
    tps_progress_stage("%s: GCV: eigendecomposition (%zu x %zu)", what, m, m);
    if (LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', mi, eig, mi, e) != 0) {
        st = tps_set_error(ctx, TPS_ERR_SINGULAR, "%s: the eigendecomposition for GCV failed",
                           what);
        goto done;
    }
    tps_progress(1.0);
    cblas_dgemv(CblasColMajor, CblasTrans, mi, mi, 1.0, eig, mi, qz + 3, 1, 0.0, c, 1);

    /* Coarse grid over log lambda across the eigenvalues' range, then
     * golden-section refinement around the best grid point. */
    const double emax = e[m - 1] > 0.0 ? e[m - 1] : 1.0;
    const double emin = e[0] > 1e-14 * emax ? e[0] : 1e-14 * emax;
    const double lo = log(emin * 1e-3), hi = log(emax * 1e3);
    enum { GRID = 80 };
    gcv_data g = {n, m, e, c};
    double best = INFINITY;
    int ib = 0;
    for (int i = 0; i < GRID; ++i) {
        double s = gcv_score(&g, exp(lo + (hi - lo) * i / (GRID - 1)), NULL);
        if (s < best) {
            best = s;
            ib = i;
        }
    }
    const double step = (hi - lo) / (GRID - 1);
    double a = lo + step * (ib > 0 ? ib - 1 : 0), b = lo + step * (ib < GRID - 1 ? ib + 1 : ib);
    const double gr = 0.5 * (sqrt(5.0) - 1.0);
    double x1 = b - gr * (b - a), x2 = a + gr * (b - a);
    double f1 = gcv_score(&g, exp(x1), NULL), f2 = gcv_score(&g, exp(x2), NULL);
    for (int it = 0; it < 80 && b - a > 1e-10; ++it) {
        if (f1 <= f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - gr * (b - a);
            f1 = gcv_score(&g, exp(x1), NULL);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + gr * (b - a);
            f2 = gcv_score(&g, exp(x2), NULL);
        }
    }
    double lambda = f1 <= f2 ? exp(x1) : exp(x2);
    double score = fmin(f1, f2);
    const double lambda_grid = exp(lo + step * ib);
    if (!(score <= best)) { /* the grid point was better (flat or noisy score) */
        lambda = lambda_grid;
        score = best;
    }
    /* Every value equal: the affine part fits them at any lambda, the
     * score is 0 everywhere (c is rounding): no minimum. The smoothest of
     * the range, as lambda -> infinity (a local model does the same). */
    int constant = 1;
    for (size_t i = 1; i < n && constant; ++i)
        constant = z[i] == z[0];
    if (constant) {
        lambda = exp(hi);
        tps_log(ctx, TPS_LOG_WARNING,
                "%s: all %zu values are equal (%.17g): GCV's score is 0 at every smoothing, so "
                "it has no minimum; the largest smoothing searched is used (%.6g in scaled "
                "units), and any other would give the same surface, that constant", what, n,
                z[0], lambda);
    }
    double tr;
    score = gcv_score(&g, lambda, &tr);
    if (gcv_loo(n, m, p, tau, e, c, eig, lambda, sqrt_w, q, &res->loo_rmse, &res->loo_mae) !=
        0) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for GCV", what);
        goto done;
    }
    res->lambda = lambda;
    res->score = constant ? 0.0 : score;
    res->effective_df = (double)n - tr;
    if (constant)
        res->loo_rmse = res->loo_mae = 0.0;

done:
    free(p);
    free(qz);
    free(y);
    free(q);
    free(e);
    free(c);
    free(mat);
    free(eig);
    return st;
}

/* ---- a spline's smoother in its eigenbasis (a local model's GCV) -------
 * The global GCV above in three steps, so that a local model's patches can
 * be taken in batches and their eigendecompositions run on the GPU: with
 * D = W^1/2 (rows; NULL: I), D P = Q R, B = Q2^T D K D Q2 = V diag(e) V^T,
 * the smoother of the weighted problem is I - A = U diag(lambda / (e +
 * lambda)) U^T with U = Q [0; V] (n x m, m = n - 3, orthonormal columns),
 * and c = U^T D z. */

tps_status tps_spline_eigen_prepare(tps_error *err, size_t n, const double *u, const double *v,
                                    const double *rows, const double *z, double *p,
                                    double tau[3], double *qz, const char *what)
{
    if (n < 4)
        return tps_error_set(err, TPS_ERR_TOO_FEW_POINTS,
                             "%s: GCV needs at least 4 distinct usable points, got %zu", what, n);
    if (n > (size_t)INT32_MAX)
        return tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    tps_status st = poly_qr(err, n, u, v, rows, p, tau, what);
    if (st != TPS_OK)
        return st;
    for (size_t i = 0; i < n; ++i)
        qz[i] = rows ? rows[i] * z[i] : z[i];
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', (lapack_int)n, 1, 3, p, (lapack_int)n, tau, qz,
                       (lapack_int)n) != 0)
        return tps_error_set(err, TPS_ERR_INTERNAL, "%s: applying Q^T failed", what);
    return TPS_OK;
}

tps_status tps_spline_eigen_cpu(tps_error *err, size_t n, const double *u, const double *v,
                                const double *rows, const double *p, const double tau[3],
                                double *mat, double *q, double *y, double *e, const char *what)
{
    const lapack_int ni = (lapack_int)n;
    form_projected(n, u, v, 0.0, NULL, rows, p, tau, mat, q, y, 1);
    if (LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', ni - 3, mat + 3 * n + 3, ni, e) != 0)
        return tps_error_set(err, TPS_ERR_SINGULAR, "%s: the eigendecomposition for GCV failed",
                             what);
    return TPS_OK;
}

void tps_spline_eigen_finish(size_t n, const double *p, const double tau[3], const double *qz,
                             const double *vec, size_t ldv, double *c, double *basis)
{
    const size_t m = n - 3;
    const lapack_int ni = (lapack_int)n, mi = (lapack_int)m;
    cblas_dgemv(CblasColMajor, CblasTrans, mi, mi, 1.0, vec, (lapack_int)ldv, qz + 3, 1, 0.0, c,
                1);
    for (size_t k = 0; k < m; ++k) {
        double *col = basis + k * n;
        col[0] = col[1] = col[2] = 0.0;
        memcpy(col + 3, vec + k * ldv, sizeof(double) * m);
    }
    /* Cannot fail: the arguments are consistent and the workspace LAPACKE's. */
    LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', ni, mi, 3, p, ni, tau, basis, ni);
}

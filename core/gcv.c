/* gcv.c: automatic smoothing by generalised cross-validation (Craven and
 * Wahba): one eigendecomposition of the projected kernel Q2^T K Q2, then
 * O(N) per trial lambda, and the leave-one-out residuals in closed form
 * (docs/design.md, "Automatic smoothing: GCV"). With covariates the fixed
 * part T = [1 u v c_1 ..] has m columns and Q2 spans its complement. */
#include "dense.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t tps_gcv_bytes(size_t n)
{
    /* Q^T K Q (N^2) and its trailing block's copy ((N-m)^2) at once, then
     * the eigenvectors and dsyevd's workspace (~2 (N-3)^2). */
    return 3 * n * n * sizeof(double) + 16 * n * sizeof(double);
}

typedef struct gcv_data {
    size_t n, m;
    const double *e, *c; /* m of them: eigenvalues of B = Q2^T K Q2, c = V^T Q2^T z */
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
static int gcv_loo(size_t n, size_t nf, size_t m, const double *p, const double *tau,
                   const double *e, const double *c, const double *eigvec, double lambda,
                   const double *sqrt_w, double *x, double *rmse, double *mae)
{
    double *d = calloc(n, sizeof(double)), *r = calloc(n, sizeof(double));
    if (!d || !r) {
        free(d);
        free(r);
        return -1;
    }
    for (size_t k = 0; k < m; ++k) {
        memset(x, 0, sizeof(double) * nf);
        memcpy(x + nf, eigvec + k * m, sizeof(double) * m);
        for (size_t j = nf; j-- > 0;) /* Q = H1 .. Hnf: Hnf first */
            tps_reflect(n, j, p, tau, x);
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
                          const tps_fixed_cols *fc, const double *z, const double *sqrt_w,
                          int num_threads, tps_gcv_result *res, const char *what)
{
    const size_t nf = tps_fixed_count(fc); /* fixed columns */
    if (n < nf + 1)
        return tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                             "%s: GCV needs at least %zu distinct usable points, got %zu", what,
                             nf + 1, n);
    if (n > (size_t)INT32_MAX)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    const size_t m = n - nf;
    const lapack_int ni = (lapack_int)n, mi = (lapack_int)m;
    double tau[TPS_MAX_FIXED];
    double *p = malloc(sizeof(double) * n * nf);
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
    st = tps_fixed_qr(tps_ctx_error(ctx), n, u, v, fc, sqrt_w, p, tau, what);
    if (st != TPS_OK)
        goto done;
    for (size_t i = 0; i < n; ++i)
        qz[i] = sqrt_w ? sqrt_w[i] * z[i] : z[i];
    if (LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', ni, 1, (lapack_int)nf, p, ni, tau, qz,
                       ni) != 0) {
        st = tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: applying Q^T failed", what);
        goto done;
    }
    /* B = Q2^T K Q2, K unregularised (weighted: of D K D and D P, D = W^1/2,
     * so that lambda I there is lambda W^-1 here), then B = V diag(e) V^T. */
    tps_progress_stage("%s: GCV: building the %zu x %zu system", what, n, n);
    tps_form_projected(n, nf, u, v, 0.0, NULL, sqrt_w, p, tau, mat, q, y, num_threads);
    tps_progress(1.0);
    for (size_t j = 0; j < m; ++j)
        memcpy(eig + j * m + j, mat + (j + nf) * n + (j + nf), sizeof(double) * (m - j));
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
    cblas_dgemv(CblasColMajor, CblasTrans, mi, mi, 1.0, eig, mi, qz + nf, 1, 0.0, c, 1);

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
    /* Every value equal: the fixed part fits them at any lambda, the
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
    if (gcv_loo(n, nf, m, p, tau, e, c, eig, lambda, sqrt_w, q, &res->loo_rmse, &res->loo_mae) !=
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
 * and c = U^T D z. (A local model has no covariates: P = [1 u v].) */

tps_status tps_spline_eigen_prepare(tps_error *err, size_t n, const double *u, const double *v,
                                    const double *rows, const double *z, double *p,
                                    double tau[3], double *qz, const char *what)
{
    if (n < 4)
        return tps_error_set(err, TPS_ERR_TOO_FEW_POINTS,
                             "%s: GCV needs at least 4 distinct usable points, got %zu", what, n);
    if (n > (size_t)INT32_MAX)
        return tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    tps_status st = tps_fixed_qr(err, n, u, v, NULL, rows, p, tau, what);
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
    tps_form_projected(n, 3, u, v, 0.0, NULL, rows, p, tau, mat, q, y, 1);
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

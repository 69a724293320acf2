/* local_cov.c: linear covariates on LOCAL models (docs/design.md, "Covariates
 * on local models").
 *
 * One coefficient per covariate and band, as on a global model, so that
 * COVARIATE_COEFFICIENTS means one thing whatever the mode. For the global
 * partial spline, with R the operator that maps data to the spline's
 * kernel coefficients (fixed part [1 u v]), the covariates' coefficients
 * are b = (C^T R C)^-1 C^T R z at every lambda >= 0. Here R is the blend
 * of the patches' operators: every patch solves its group's values and,
 * as more right-hand sides of the same factorisation, each covariate's
 * scaled column; the blended kernel coefficient at point i is
 *     R(v)_i = sum_p W_p(x_i) w_{p,i}(v) / ps_p^2,
 * W_p the partition-of-unity weight and ps_p^2 taking the patch's kernel
 * coefficients to one frame (lambda_p w_{p,i} is the patch's residual at
 * i, and lambda_p = lambda / (scale ps_p)^2): lambda W^-1 R(v) is then the
 * blended surface's residual at the data. b solves C^T R(z - C b) = 0:
 * the blended residuals are orthogonal to every covariate in the weights'
 * inner product, as the global model's are. With one patch R is the
 * global operator and b the global model's. Then each patch's spline of
 * z - C b is w_p(z) - sum_k b_k w_p(c_k) (linearity), and the model
 * evaluates as a global one with covariates does: the local blend plus
 * sum_k b_k c_k(x) from the caller's planes.
 *
 * The sums are accumulated serially in patch order (the results do not
 * depend on the threads); each patch's covariate solutions are kept until
 * b is known (one more set of half-weights per covariate and band). */
#include "blend.h"
#include "dense.h"
#include "local.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tps_local_cov {
    size_t n, nb, nc, n_patches;
    const tps_model *md;
    double *S;   /* n: the blend's denominator, sum_p bump_p(x_i) */
    double *den; /* nb x n: sum_p bump_p(x_i) over the patches that solved i */
    double *rz;  /* nb x n: sum_p bump_p(x_i) w_{p,i}(z) / ps^2 */
    double *rc;  /* nb x nc x n: the same for each covariate's column */
    /* Per patch: nb x nc arrays of pt->n half-weights (0 where the band
     * has no value), then nb x nc affine parts. */
    double **kept;
    /* Leave-one-out (NULL without): per band the blended Rippa residuals
     * of each covariate (nc x n), the blended diagonal of R (n), and
     * t_k = R^T c_k = sum_p R_p (W_p c_k) / ps^2 (nc x n). */
    double *loo_c, *rdiag, *rt;
};

size_t tps_local_cov_bytes(const tps_model *md, size_t n_entries, size_t n_patches)
{
    const size_t nb = md->n_bands, nc = md->n_cov;
    if (!nc)
        return 0;
    return sizeof(double) * (md->n * nb * (2 + nc) + nb * nc * (n_entries + 3 * n_patches)) +
           sizeof(double *) * n_patches;
}

/* "covariate 'dist'" or "covariate 2" */
static void label(char *buf, size_t size, const char *const *names, size_t k)
{
    if (names && names[k])
        snprintf(buf, size, "covariate '%.60s'", names[k]);
    else
        snprintf(buf, size, "covariate %zu", k + 1);
}

tps_status tps_local_cov_check(tps_context *ctx, const tps_model *md, double *const *merged,
                               const char *const *names)
{
    const size_t nc = md->n_cov, n = md->n, m = 3 + nc;
    double *buf = malloc(sizeof(double) * (n ? n : 1) * (2 + nc + m));
    size_t *index = malloc(sizeof(size_t) * (n ? n : 1));
    tps_status st = TPS_OK;
    if (!buf || !index) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (size_t b = 0; b < md->n_bands && st == TPS_OK; ++b) {
        size_t cnt = 0;
        for (size_t i = 0; i < n; ++i)
            if (isfinite(merged[b][i]))
                index[cnt++] = i;
        double *u = buf, *v = buf + cnt, *cols = v + cnt, *p = cols + nc * cnt;
        const double *cc[TPS_MAX_COVARIATES];
        for (size_t j = 0; j < cnt; ++j) {
            u[j] = md->u[index[j]];
            v[j] = md->v[index[j]];
        }
        for (size_t k = 0; k < nc; ++k) {
            tps_covariates_gather(md, k, index, cnt, cols + k * cnt);
            cc[k] = cols + k * cnt;
        }
        char what[32];
        snprintf(what, sizeof what, "band %zu", b + 1);
        if (cnt < m) {
            st = tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                               "%s: %zu distinct usable points, at least %zu are needed (x, y, "
                               "a constant and the covariates)", what, cnt, m);
            break;
        }
        /* The global model's test of the fixed part (solve.c): a covariate
         * collinear with [1 x y] would give R(c) = 0 in every patch. */
        const tps_fixed_cols fc = {nc, cc, names};
        double tau[TPS_MAX_FIXED];
        st = tps_fixed_qr(tps_ctx_error(ctx), cnt, u, v, &fc, NULL, p, tau, what);
    }
done:
    free(buf);
    free(index);
    return st;
}

tps_local_cov *tps_local_cov_create(const tps_model *md, const struct tps_local *lc,
                                    tps_patch_points_fn points, void *user, int loo)
{
    const size_t n_patches = lc->n_patches;
    tps_local_cov *lcv = calloc(1, sizeof *lcv);
    if (!lcv)
        return NULL;
    lcv->md = md;
    lcv->n = md->n;
    lcv->nb = md->n_bands;
    lcv->nc = md->n_cov;
    lcv->n_patches = n_patches;
    const size_t n = md->n ? md->n : 1;
    lcv->den = calloc(n * lcv->nb, sizeof(double));
    lcv->rz = calloc(n * lcv->nb, sizeof(double));
    lcv->rc = calloc(n * lcv->nb * lcv->nc, sizeof(double));
    lcv->kept = calloc(n_patches ? n_patches : 1, sizeof(double *));
    lcv->S = malloc(sizeof(double) * n);
    if (loo) {
        lcv->loo_c = calloc(n * lcv->nb * lcv->nc, sizeof(double));
        lcv->rdiag = calloc(n * lcv->nb, sizeof(double));
        lcv->rt = calloc(n * lcv->nb * lcv->nc, sizeof(double));
    }
    if (!lcv->den || !lcv->rz || !lcv->rc || !lcv->kept || !lcv->S ||
        (loo && (!lcv->loo_c || !lcv->rdiag || !lcv->rt)) ||
        tps_local_point_blend(NULL, md, lc, points, user, lcv->S, NULL, 0) != TPS_OK)
        return tps_local_cov_destroy(lcv);
    return lcv;
}

tps_local_cov *tps_local_cov_destroy(tps_local_cov *lcv)
{
    if (!lcv)
        return NULL;
    for (size_t p = 0; lcv->kept && p < lcv->n_patches; ++p)
        free(lcv->kept[p]);
    free(lcv->kept);
    free(lcv->den);
    free(lcv->rz);
    free(lcv->rc);
    free(lcv->loo_c);
    free(lcv->rdiag);
    free(lcv->rt);
    free(lcv->S);
    free(lcv);
    return NULL;
}

void tps_local_cov_columns(const tps_local_cov *lcv, const patch *pt, size_t m,
                           const size_t *index, const size_t *sub, double *const *out)
{
    const tps_model *md = lcv->md;
    for (size_t c = 0; c < lcv->nc; ++c)
        for (size_t k = 0; k < m; ++k) {
            const size_t i = index[sub[k]];
            const double col = tps_covariate_at(md, c, i);
            out[c][k] = col;
            out[lcv->nc + c][k] = col * tps_patch_bump(pt, md->u[i], md->v[i]) / lcv->S[i];
        }
}

int tps_local_cov_add(tps_local_cov *lcv, const tps_model *md, const patch *pt, size_t p,
                      size_t ng, const size_t *bands, size_t m, const size_t *idx,
                      const size_t *sub, double *const *w, const double (*a)[3],
                      const double *loo_diag, double *const *loo_sum)
{
    const double *S = lcv->S;
    const size_t nb = lcv->nb, nc = lcv->nc, n = lcv->n;
    if (!lcv->kept[p]) {
        lcv->kept[p] = calloc(nb * nc * (pt->n + 3), sizeof(double));
        if (!lcv->kept[p])
            return 0;
    }
    double *kw = lcv->kept[p], *ka = kw + nb * nc * pt->n;
    const double inv2 = 1.0 / (pt->ps * pt->ps);
    for (size_t k = 0; k < m; ++k) {
        const size_t j = idx[k];
        const double bw = tps_patch_bump(pt, md->u[j], md->v[j]);
        for (size_t g = 0; g < ng; ++g) {
            const size_t b = bands[g];
            for (size_t c = 0; c < nc; ++c)
                kw[(b * nc + c) * pt->n + sub[k]] = 0.5 * w[ng + c][k];
            if (!(bw > 0.0))
                continue;
            lcv->den[b * n + j] += bw;
            lcv->rz[b * n + j] += bw * inv2 * w[g][k];
            for (size_t c = 0; c < nc; ++c)
                lcv->rc[(b * nc + c) * n + j] += bw * inv2 * w[ng + c][k];
        }
    }
    for (size_t g = 0; g < ng; ++g)
        for (size_t c = 0; c < nc; ++c)
            memcpy(ka + 3 * (bands[g] * nc + c), a[ng + c], sizeof(double[3]));
    /* Leave-one-out: the right-hand sides ng + nc .. are W_p c_k. */
    for (size_t k = 0; loo_diag && lcv->loo_c && k < m; ++k) {
        const size_t j = idx[k];
        const double W = tps_patch_bump(pt, md->u[j], md->v[j]) / S[j];
        for (size_t g = 0; g < ng; ++g) {
            const size_t b = bands[g];
            if (!loo_sum[b])
                continue;
            for (size_t c = 0; c < nc; ++c) {
                lcv->rt[(b * nc + c) * n + j] += inv2 * w[ng + nc + c][k];
                if (W > 0.0)
                    lcv->loo_c[(b * nc + c) * n + j] += W * (w[ng + c][k] / loo_diag[k]);
            }
            if (W > 0.0)
                lcv->rdiag[b * n + j] += W * inv2 * loo_diag[k];
        }
    }
    return 1;
}

/* The k x k system G of one band (row-major), as is (not symmetrised: b
 * must make the blended residuals orthogonal to the covariates, which is
 * G's own equations), equilibrated by its diagonal and factorised once
 * (LAPACK's LU with partial pivoting) for every right-hand side. */
typedef struct small_lu {
    size_t k;
    double a[TPS_MAX_COVARIATES * TPS_MAX_COVARIATES];
    double d[TPS_MAX_COVARIATES];
    lapack_int ipiv[TPS_MAX_COVARIATES];
} small_lu;

/* -1 on success, else the covariate whose pivot vanished (its column is,
 * to rounding, a combination of the others as the patches see them, or
 * R(c) has no positive part). */
static long small_factor(small_lu *lu, size_t k, const double *G)
{
    lu->k = k;
    for (size_t i = 0; i < k; ++i) {
        if (!(G[i * k + i] > 0.0) || !isfinite(G[i * k + i]))
            return (long)i;
        lu->d[i] = 1.0 / sqrt(G[i * k + i]);
    }
    for (size_t i = 0; i < k; ++i)
        for (size_t j = 0; j < k; ++j)
            lu->a[i * k + j] = G[i * k + j] * lu->d[i] * lu->d[j];
    if (LAPACKE_dgetrf(LAPACK_ROW_MAJOR, (lapack_int)k, (lapack_int)k, lu->a, (lapack_int)k,
                       lu->ipiv) < 0)
        return 0;
    /* The equilibrated diagonal is 1: a pivot below 1e-10 is a condition
     * number beyond ~1e10 for this column (rows move, columns do not). */
    for (size_t c = 0; c < k; ++c)
        if (!(fabs(lu->a[c * k + c]) > 1e-10))
            return (long)c;
    return -1;
}

/* X (k x nrhs, row-major) <- G^-1 X. */
static void small_solve(const small_lu *lu, size_t nrhs, double *x)
{
    const size_t k = lu->k;
    for (size_t i = 0; i < k; ++i)
        for (size_t j = 0; j < nrhs; ++j)
            x[i * nrhs + j] *= lu->d[i];
    LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', (lapack_int)k, (lapack_int)nrhs, lu->a, (lapack_int)k,
                   lu->ipiv, x, (lapack_int)nrhs);
    for (size_t i = 0; i < k; ++i)
        for (size_t j = 0; j < nrhs; ++j)
            x[i * nrhs + j] *= lu->d[i];
}

typedef struct correct_job {
    const tps_local_cov *lcv;
    struct tps_local *lc;
    const double *coef; /* nb x nc */
} correct_job;

/* Patch p's splines of z - C b: w_p(z) - sum_k b_k w_p(c_k). */
static void correct_patch(size_t p, int thread, void *user)
{
    (void)thread;
    const correct_job *cj = user;
    const tps_local_cov *lcv = cj->lcv;
    patch *pt = &cj->lc->patches[p];
    const size_t nb = lcv->nb, nc = lcv->nc;
    const double *kw = lcv->kept[p], *ka = kw + nb * nc * pt->n;
    for (size_t b = 0; b < nb; ++b)
        for (size_t c = 0; c < nc; ++c) {
            const double bk = cj->coef[b * nc + c];
            const double *src = kw + (b * nc + c) * pt->n;
            for (size_t i = 0; i < pt->n; ++i)
                pt->hw[b][i] -= bk * src[i];
            for (size_t e = 0; e < 3; ++e)
                pt->affine[b][e] -= bk * ka[3 * (b * nc + c) + e];
        }
}

/* Band b's blended leave-one-out residuals with covariates, in place of
 * the covariate-free ones add_loo summed (docs/design.md): per point the
 * blended Rippa residual of z - C b, times R_ii / (R_ii - d_i), d_i =
 * [R C G^-1 C^T R]_ii the covariates' share of the point's leverage. With
 * one patch that is the global model's exact r_i / (1 - A_ii). */
static void covariate_loo(const tps_local_cov *lcv, const tps_model *md, size_t b,
                          const small_lu *lu, double *loo)
{
    const size_t nc = lcv->nc, n = lcv->n;
    const double *den = lcv->den + b * n;
    double Ginv[TPS_MAX_COVARIATES * TPS_MAX_COVARIATES] = {0};
    for (size_t l = 0; l < nc; ++l)
        Ginv[l * nc + l] = 1.0;
    small_solve(lu, nc, Ginv);
    for (size_t i = 0; i < n; ++i) {
        if (!(den[i] > 0.0))
            continue;
        double d = 0.0, r = loo[i];
        for (size_t k = 0; k < nc; ++k) {
            const double rck = lcv->rc[(b * nc + k) * n + i] / den[i];
            r -= md->cov_coef[b * nc + k] * lcv->loo_c[(b * nc + k) * n + i];
            for (size_t l = 0; l < nc; ++l)
                d += rck * Ginv[k * nc + l] * lcv->rt[(b * nc + l) * n + i];
        }
        const double rii = lcv->rdiag[b * n + i];
        loo[i] = r * rii / (rii - d);
    }
}

tps_status tps_local_cov_finish(tps_context *ctx, tps_local_cov *lcv, tps_model *md,
                                struct tps_local *lc, const char *const *names, int threads,
                                double *const *loo_sum)
{
    const size_t nb = lcv->nb, nc = lcv->nc, n = lcv->n;
    for (size_t p = 0; p < lc->n_patches; ++p)
        if (!lcv->kept[p])
            return tps_set_error(ctx, TPS_ERR_INTERNAL, "patch %zu has no covariate solves",
                                 p + 1);
    for (size_t b = 0; b < nb; ++b) {
        double G[TPS_MAX_COVARIATES * TPS_MAX_COVARIATES] = {0}, r[TPS_MAX_COVARIATES] = {0};
        const double *den = lcv->den + b * n, *rz = lcv->rz + b * n;
        for (size_t i = 0; i < n; ++i) {
            if (!(den[i] > 0.0)) /* no value in this band */
                continue;
            double c[TPS_MAX_COVARIATES];
            for (size_t k = 0; k < nc; ++k)
                c[k] = tps_covariate_at(md, k, i);
            const double inv = 1.0 / den[i];
            for (size_t k = 0; k < nc; ++k) {
                r[k] += c[k] * rz[i] * inv;
                for (size_t l = 0; l < nc; ++l)
                    G[k * nc + l] += c[k] * lcv->rc[(b * nc + l) * n + i] * inv;
            }
        }
        small_lu lu;
        const long bad = small_factor(&lu, nc, G);
        if (bad >= 0) {
            char lb[96];
            label(lb, sizeof lb, names, (size_t)bad);
            return tps_set_error(ctx, TPS_ERR_COLLINEAR,
                                 "band %zu: the local model cannot estimate the coefficient of "
                                 "%s: within the patches it is (nearly) a linear combination of "
                                 "x, y, a constant and the other covariates; leave it out or "
                                 "use MODE=GLOBAL", b + 1, lb);
        }
        small_solve(&lu, 1, r);
        for (size_t k = 0; k < nc; ++k) {
            if (!isfinite(r[k]))
                return tps_set_error(ctx, TPS_ERR_SINGULAR,
                                     "band %zu: non-finite covariate coefficients", b + 1);
            md->cov_coef[b * nc + k] = r[k];
        }
        if (loo_sum && loo_sum[b] && lcv->loo_c)
            covariate_loo(lcv, md, b, &lu, loo_sum[b]);
    }
    correct_job cj = {lcv, lc, md->cov_coef};
    tps_parallel_for(lc->n_patches, threads, correct_patch, &cj);
    return TPS_OK;
}

/* ---- GCV with covariates (the pass is local_cv.c's) ----
 *
 * With E the covariate-free blended residual operator (E v = the blend of
 * the patches' residuals, v - A_0 v) and G = C^T W E C, h = C^T W E z,
 * the model with b(lambda) = G^-1 h has the residual
 *     r = E z - E C b,
 * so I - A = E - E C G^-1 C^T W E and
 *     tr(I - A) = tr E - tr(G^-1 T),  T_kl = (E c_k)^T W t_l,
 * where E^T W c = W t, t = sum_p E_p(W_p c) (each patch's operator is
 * W-symmetric: W E_p = lambda R_p). Every term is a reduction over points
 * of vectors the patches give in their eigenbases: D r(z), D r(c_k) (the
 * blended residuals, weighted), D t_k, D c_k, folded into the totals as
 * each point's last patch is done. (lambda W^-1 R = E: these are the R
 * forms of the fixed-lambda estimator.) */

int tps_local_cov_gcv_patch(size_t n, size_t m, size_t L, size_t nc, const double *basis,
                            const double *smat, const double *dc, size_t ldc,
                            const double *blend, size_t width, double *contrib)
{
    const size_t q = 2 * nc;
    double *y = malloc(sizeof(double) * (m ? m : 1) * q);
    double *Y = malloc(sizeof(double) * (m ? m : 1) * L * q);
    double *P = calloc(n * L * q + 1, sizeof(double));
    double *v = malloc(sizeof(double) * (n ? n : 1));
    if (!y || !Y || !P || !v) {
        free(y);
        free(Y);
        free(P);
        free(v);
        return 0;
    }
    const int ni = (int)n, mi = (int)m;
    if (m) {
        for (size_t c = 0; c < nc; ++c) {
            /* U^T D c_k, and U^T D (W_p o c_k) */
            cblas_dgemv(CblasColMajor, CblasTrans, ni, mi, 1.0, basis, ni, dc + c * ldc, 1, 0.0,
                        y + c * m, 1);
            for (size_t j = 0; j < n; ++j)
                v[j] = blend[j] * dc[c * ldc + j];
            cblas_dgemv(CblasColMajor, CblasTrans, ni, mi, 1.0, basis, ni, v, 1, 0.0,
                        y + (nc + c) * m, 1);
        }
        for (size_t k = 0; k < q; ++k)
            for (size_t l = 0; l < L; ++l)
                for (size_t j = 0; j < m; ++j)
                    Y[(k * L + l) * m + j] = smat[l * m + j] * y[k * m + j];
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ni, (int)(L * q), mi, 1.0, basis,
                    ni, Y, mi, 0.0, P, ni);
    }
    for (size_t j = 0; j < n; ++j) {
        double *out = contrib + j * width + 2 * L;
        for (size_t c = 0; c < nc; ++c)
            for (size_t l = 0; l < L; ++l) {
                out[c * L + l] = blend[j] * P[(c * L + l) * n + j];
                out[(nc + c) * L + l] = P[((nc + c) * L + l) * n + j];
            }
    }
    free(y);
    free(Y);
    free(P);
    free(v);
    return 1;
}

/* Per lambda: h (nc), C^T W-free cross terms zc (nc), G, M, T (nc x nc). */
size_t tps_local_cov_gcv_width(size_t nc)
{
    return 2 * nc + 3 * nc * nc;
}

void tps_local_cov_gcv_fold(size_t nc, size_t L, const double *rz, const double *rc,
                            const double *t, const double *dc, double *sums)
{
    const size_t w = tps_local_cov_gcv_width(nc);
    for (size_t l = 0; l < L; ++l) {
        double *h = sums + l * w, *zc = h + nc, *G = zc + nc, *M = G + nc * nc, *T = M + nc * nc;
        for (size_t k = 0; k < nc; ++k) {
            const double rck = rc[k * L + l];
            h[k] += dc[k] * rz[l];
            zc[k] += rz[l] * rck;
            for (size_t j = 0; j < nc; ++j) {
                G[k * nc + j] += dc[k] * rc[j * L + l];
                M[k * nc + j] += rck * rc[j * L + l];
                T[k * nc + j] += rck * t[j * L + l];
            }
        }
    }
}

int tps_local_cov_gcv_score(size_t nc, const double *sums, double *rss, double *trace)
{
    const double *h = sums, *zc = h + nc, *G = zc + nc, *M = G + nc * nc, *T = M + nc * nc;
    small_lu lu;
    if (small_factor(&lu, nc, G) >= 0)
        return 0;
    double b[TPS_MAX_COVARIATES];
    memcpy(b, h, sizeof(double) * nc);
    small_solve(&lu, 1, b);
    /* ||D (r_z - R_c b)||^2 */
    double s = *rss;
    for (size_t k = 0; k < nc; ++k) {
        s -= 2.0 * b[k] * zc[k];
        for (size_t j = 0; j < nc; ++j)
            s += b[k] * M[k * nc + j] * b[j];
    }
    /* tr(G^-1 T^T) = sum_l (G^-1 T^T)_ll: T^T's columns solved at once. */
    double x[TPS_MAX_COVARIATES * TPS_MAX_COVARIATES];
    for (size_t k = 0; k < nc; ++k)
        for (size_t l = 0; l < nc; ++l)
            x[k * nc + l] = T[l * nc + k];
    small_solve(&lu, nc, x);
    double tr = 0.0;
    for (size_t l = 0; l < nc; ++l)
        tr += x[l * nc + l];
    *rss = fmax(s, 0.0);
    *trace -= tr;
    return 1;
}

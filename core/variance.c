/* variance.c: the standard error's factorisation of a band's solve and the
 * per-block arithmetic (variance.h has the formula). */
#include "variance.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void tps_se_factor_free(tps_se_factor *f)
{
    if (!f)
        return;
    free(f->u);
    free(f->v);
    free(f->p);
    free(f->mat);
    free(f->zq);
    free(f);
}

tps_se_factor *tps_se_factor_create(tps_error *err, size_t n, const double *u, const double *v,
                                    double lambda, const double *noise, const tps_fixed_cols *fc,
                                    int num_threads, const char *what)
{
    const size_t m = tps_fixed_count(fc);
    if (n < m || n > (size_t)INT32_MAX) {
        tps_error_set(err, TPS_ERR_TOO_FEW_POINTS, "%s: %zu points for a fixed part of %zu",
                      what, n, m);
        return NULL;
    }
    tps_se_factor *f = calloc(1, sizeof *f);
    double *q = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    if (f) {
        f->n = n;
        f->m = m;
        /* padded to whole kernel tiles: the kernel matrix is filled with
         * the points as the value kernel's targets */
        f->n_pad = (n + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
        f->u = malloc(sizeof(double) * f->n_pad);
        f->v = malloc(sizeof(double) * f->n_pad);
        f->p = malloc(sizeof(double) * n * m);
        f->mat = malloc(sizeof(double) * n * n);
    }
    if (!f || !q || !y || !f->u || !f->v || !f->p || !f->mat) {
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY,
                      "%s: out of memory for the standard error's factorisation of %zu points "
                      "(%zu bytes)", what, n, n * n * sizeof(double));
        goto fail;
    }
    memcpy(f->u, u, sizeof(double) * n);
    memcpy(f->v, v, sizeof(double) * n);
    for (size_t i = n; i < f->n_pad; ++i) {
        f->u[i] = u[n - 1];
        f->v[i] = v[n - 1];
    }
    if (tps_fixed_qr(err, n, u, v, fc, NULL, f->p, f->tau, what) != TPS_OK)
        goto fail;
    /* The same system as the fit's (solve.c), so the same arithmetic. */
    tps_form_projected(n, m, u, v, lambda, noise, NULL, f->p, f->tau, f->mat, q, y, num_threads);
    double *b22 = f->mat + m * n + m;
    const int nm = (int)(n - m);
    if (nm > 0) {
        const int info = tps_cholesky_in_panels(nm, b22, (int)n);
        if (info != 0) {
            tps_error_set(err, TPS_ERR_SINGULAR,
                          "%s: the spline system of %zu points is not positive definite "
                          "(Cholesky failed at pivot %d)", what, n, info);
            goto fail;
        }
        if (LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'L', 'N', nm, b22, (lapack_int)n) != 0) {
            tps_error_set(err, TPS_ERR_SINGULAR, "%s: inverting the Cholesky factor failed",
                          what);
            goto fail;
        }
    }
    free(q);
    free(y);
    return f;

fail:
    free(q);
    free(y);
    tps_se_factor_free(f);
    return NULL;
}

/* ---- a model's factorisations ---- */

static int same_weights(const tps_model *md, size_t a, size_t b)
{
    if (md->band_info[a].smoothing != md->band_info[b].smoothing)
        return 0;
    const double *wa = md->point_w[a], *wb = md->point_w[b];
    if (!wa || !wb)
        return wa == wb;
    return memcmp(wa, wb, sizeof(double) * md->n) == 0;
}

static tps_se_factor *build_for_band(tps_error *err, const tps_model *md, size_t band,
                                     int num_threads)
{
    const double *pw = md->point_w[band];
    size_t n = 0;
    for (size_t i = 0; i < md->n; ++i)
        n += !pw || pw[i] > 0.0;
    const size_t nc = md->n_cov;
    size_t *index = malloc(sizeof(size_t) * (n ? n : 1));
    double *buf = malloc(sizeof(double) * (n ? n : 1) * (3 + nc));
    tps_se_factor *f = NULL;
    if (!index || !buf) {
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "band %zu: out of memory", band + 1);
        goto done;
    }
    double *u = buf, *v = buf + n, *noise = pw ? buf + 2 * n : NULL;
    n = 0;
    for (size_t i = 0; i < md->n; ++i) {
        if (pw && !(pw[i] > 0.0))
            continue;
        index[n] = i;
        u[n] = md->u[i];
        v[n] = md->v[i];
        if (noise)
            noise[n] = 1.0 / pw[i];
        ++n;
    }
    const double *cols[TPS_MAX_COVARIATES];
    for (size_t k = 0; k < nc; ++k) {
        double *col = buf + (3 + k) * n;
        tps_covariates_gather(md, k, index, n, col);
        cols[k] = col;
    }
    const tps_fixed_cols fc = {nc, cols, NULL};
    char what[64];
    snprintf(what, sizeof what, "band %zu: standard error", band + 1);
    const double lambda = md->band_info[band].smoothing / (md->scale * md->scale);
    f = tps_se_factor_create(err, n, u, v, lambda, noise, &fc, num_threads, what);
done:
    free(index);
    free(buf);
    return f;
}

tps_status tps_se_factor_of_band(tps_context *ctx, const tps_model *md, size_t band,
                                 int num_threads, const tps_se_factor **out)
{
    tps_model *m = (tps_model *)md;
    tps_error err = {TPS_OK, ""};
    pthread_mutex_lock(&m->se_lock);
    if (!m->se[band]) {
        for (size_t c = 0; c < m->n_bands && !m->se[band]; ++c)
            if (c != band && m->se[c] && same_weights(m, band, c))
                m->se[band] = m->se[c];
        if (!m->se[band]) {
            const double t0 = tps_now_seconds();
            m->se[band] = build_for_band(&err, m, band, num_threads);
            if (m->se[band])
                tps_log(ctx, TPS_LOG_DEBUG,
                        "band %zu: the standard error's factorisation (%zu points) took %.3f s",
                        band + 1, m->se[band]->n, tps_now_seconds() - t0);
        }
    }
    *out = m->se[band];
    pthread_mutex_unlock(&m->se_lock);
    return *out ? TPS_OK : tps_raise(ctx, &err);
}

void tps_se_patches_free(tps_se_patches *sp)
{
    if (!sp)
        return;
    if (!sp->shares) {
        for (size_t p = 0; sp->f && p < sp->n_patches; ++p)
            tps_se_factor_free(sp->f[p]);
        free(sp->f);
        for (size_t p = 0; sp->cproj && p < sp->n_patches; ++p)
            free(sp->cproj[p]);
        free(sp->cproj);
    }
    free(sp->rho);
    free(sp);
}

void tps_se_factors_destroy(tps_model *md)
{
    if (md->se_patches) {
        /* each band has its own (sharing another's factorisations) */
        for (size_t b = 0; b < md->n_bands; ++b)
            tps_se_patches_free(md->se_patches[b]);
        free(md->se_patches);
        md->se_patches = NULL;
    }
    if (!md->se)
        return;
    for (size_t b = 0; b < md->n_bands; ++b) {
        int shared = 0;
        for (size_t c = 0; c < b && !shared; ++c)
            shared = md->se[c] == md->se[b];
        if (!shared)
            tps_se_factor_free(md->se[b]);
    }
    free(md->se);
    md->se = NULL;
}

double tps_se_rho(const tps_model *md, size_t band)
{
    return md->band_info[band].sigma2 / (8.0 * M_PI) * md->scale * md->scale;
}

/* ---- a block of targets ---- */

void tps_se_block_targets(const tps_window *w, size_t row, size_t block, double *pu,
                          double *pv)
{
    const double j = (double)(w->first_row + row);
    for (size_t k = 0; k < TPS_SE_BLOCK; ++k)
        tps_cell_centre(w, (double)(block * TPS_SE_BLOCK + k), j, &pu[k], &pv[k]);
}

void tps_se_block_window(const tps_window *w, size_t block, size_t *k0, size_t *k1)
{
    const size_t c0 = block * TPS_SE_BLOCK, c1 = c0 + TPS_SE_BLOCK;
    const size_t w0 = w->first_col, w1 = w->first_col + w->ncols;
    *k0 = w0 > c0 ? w0 - c0 : 0;
    *k1 = (w1 < c1 ? w1 : c1) - c0;
}

typedef struct block_loop {
    size_t block0, blocks_per_row;
    tps_scratch scratch;
    tps_se_block_fn fn;
    void *user;
} block_loop;

static void block_item(size_t item, int thread, void *user)
{
    const block_loop *bl = user;
    bl->fn(bl->user, item / bl->blocks_per_row, bl->block0 + item % bl->blocks_per_row,
           tps_scratch_at(&bl->scratch, thread));
}

tps_status tps_se_for_blocks(tps_context *ctx, const tps_window *w, int num_threads,
                             size_t scratch_bytes, tps_se_block_fn fn, void *user)
{
    block_loop bl = {w->first_col / TPS_SE_BLOCK, 0, {NULL, 0}, fn, user};
    bl.blocks_per_row = (w->first_col + w->ncols - 1) / TPS_SE_BLOCK + 1 - bl.block0;
    const size_t n_items = bl.blocks_per_row * w->nrows;
    const int threads = tps_threads_for(num_threads, n_items, 1);
    tps_status st = tps_scratch_alloc(ctx, &bl.scratch, threads, scratch_bytes);
    if (st == TPS_OK) {
        tps_blas_single_begin();
        tps_parallel_for(n_items, threads, block_item, &bl);
        tps_blas_single_end();
    }
    tps_scratch_free(&bl.scratch);
    return st;
}

void tps_se_apply_qt(const tps_se_factor *f, double *x)
{
    for (size_t r = 0; r < f->m; ++r)
        tps_reflect(f->n, r, f->p, f->tau, x);
}

void tps_se_fixed_rows(const tps_se_factor *f, size_t ncols, size_t count, const double *pu,
                       const double *pv, const double *zs, size_t stride, double *h)
{
    const size_t m = f->m;
    for (size_t j = 0; j < ncols; ++j) {
        const size_t at = j < count ? j : count - 1;
        double *hj = h + j * m;
        hj[0] = 1.0;
        hj[1] = pu[at];
        hj[2] = pv[at];
        for (size_t c = 3; c < m; ++c) {
            const double z = zs ? zs[(c - 3) * stride + at] : 0.0;
            hj[c] = isnan(z) ? 0.0 : z;
        }
    }
    cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, (int)m,
                (int)ncols, 1.0, f->p, (int)f->n, h, (int)m);
}

double tps_se_hmh(const tps_se_factor *f, const double *h)
{
    const size_t m = f->m, n = f->n;
    double s = 0.0;
    for (size_t r = 0; r < m; ++r)
        for (size_t c = 0; c < m; ++c) {
            const size_t hi = r > c ? r : c, lo = r > c ? c : r;
            s += h[r] * f->mat[lo * n + hi] * h[c];
        }
    return s;
}

void tps_se_project(const tps_se_factor *f, const double *c, double *proj, double *rc)
{
    const size_t n = f->n, m = f->m, nm = n - m;
    memcpy(proj, c, sizeof(double) * n);
    tps_se_apply_qt(f, proj);
    if (nm > 0)
        cblas_dtrmv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)nm,
                    f->mat + m * n + m, (int)n, proj + m, 1);
    if (!rc)
        return;
    /* R c = Q [0; L^-T L^-1 Q2^T c], Q = H_1 .. H_m applied last first */
    memset(rc, 0, sizeof(double) * m);
    memcpy(rc + m, proj + m, sizeof(double) * nm);
    if (nm > 0)
        cblas_dtrmv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, (int)nm,
                    f->mat + m * n + m, (int)n, rc + m, 1);
    for (size_t r = m; r-- > 0;)
        tps_reflect(n, r, f->p, f->tau, rc);
}

void tps_se_block_splines(const tps_se_factor *f, size_t count, const void *work, size_t n_data,
                          const double *proj, double *vals)
{
    const size_t n = f->n, m = f->m, ld = f->n_pad;
    const double *k = work, *h = k + ld * TPS_SE_BLOCK; /* tps_se_block's layout */
    for (size_t j = 0; j < n_data; ++j) {
        const double *c = proj + j * n;
        for (size_t t = 0; t < count; ++t) {
            const double *col = k + t * ld, *ht = h + t * m;
            double s = 0.0;
            for (size_t r = 0; r < m; ++r)
                s += ht[r] * c[r];
            for (size_t r = m; r < n; ++r)
                s += col[r] * c[r];
            vals[j * count + t] = s;
        }
    }
}

size_t tps_se_block_bytes(const tps_se_factor *f)
{
    /* The kernel matrix (n_pad x B), the fixed part's rows H (m x B). */
    return sizeof(double) * (f->n_pad * TPS_SE_BLOCK + TPS_MAX_FIXED * TPS_SE_BLOCK);
}

void tps_se_block(const tps_se_factor *f, tps_kernel_fn kernel, size_t count, const double *pu,
                  const double *pv, int same_v, const double *zs, size_t stride, void *work,
                  double *out)
{
    (void)same_v; /* the points are the kernel's targets here */
    enum { B = TPS_SE_BLOCK };
    const size_t n = f->n, m = f->m, nm = n - m, ld = f->n_pad;
    double *k = work; /* n x B (leading dimension n_pad): column j, phi(point, target j) */
    double *h = k + ld * B; /* m x B */
    /* k: phi(r) = r^2 log r = 0.5 r^2 log r^2, the value kernel's r^2 log r^2
     * with weight 0.5, the points as its targets and the cell as its one
     * source. Padding targets repeat the last one. */
    const double half = 0.5;
    const double *hw = &half;
    for (size_t j = 0; j < B; ++j) {
        const size_t at = j < count ? j : count - 1;
        tps_kernel_job kj = {1, pu + at, pv + at, 1, &hw, ld, f->u, f->v, 0, k + j * ld};
        kernel(&kj);
    }
    /* [q1; q2] = Q^T k for every target at once. */
    for (size_t j = 0; j < B; ++j)
        tps_se_apply_qt(f, k + j * ld);
    /* h = R^-T t, t = [1 u v c..]; a NaN covariate is computed as 0 (a
     * column's arithmetic does not depend on the other columns) and its
     * target set to NaN at the end. */
    tps_se_fixed_rows(f, B, count, pu, pv, zs, stride, h);
    if (nm > 0) {
        /* y = q2 - M21 h, then L^-1 y. */
        double *y = k + m;
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)nm, B, (int)m, -1.0,
                    f->mat + m, (int)n, h, (int)m, 1.0, y, (int)ld);
        cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)nm, B,
                    1.0, f->mat + m * n + m, (int)n, y, (int)ld);
    }
    for (size_t j = 0; j < count; ++j) {
        const double *col = k + j * ld, *hj = h + j * m;
        double sq = 0.0;
        for (size_t r = m; r < n; ++r)
            sq += col[r] * col[r];
        double q1h = 0.0;
        for (size_t r = 0; r < m; ++r)
            q1h += col[r] * hj[r];
        /* k(x, x) - v^T S^-1 v, k(x, x) = 0 */
        out[j] = tps_se_hmh(f, hj) - 2.0 * q1h - sq;
        for (size_t c = 3; c < m; ++c)
            if (isnan(zs[(c - 3) * stride + j]))
                out[j] = NAN;
    }
}

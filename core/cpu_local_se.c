/* cpu_local_se.c: the standard error of a LOCAL model on the CPU: the
 * blend of its patches' standard errors with the partition-of-unity
 * weights of its values,
 *     SE(x) = sum_p W_p(x) SE_p(x),   W_p = w_p / sum_q w_q,
 * SE_p the standard error of patch p's own spline (variance.h, in the
 * patch's frame, with the patch's maximum-likelihood rho). The patches'
 * errors are strongly correlated where they overlap (they share their
 * points), so their standard errors are blended like their values;
 * docs/design.md ("The standard error") measures it against the global
 * spline's. The patches' maximum-likelihood process variances are pooled
 * into one. With covariates each patch's variance gains the variance of
 * the model's one coefficient vector b, as in a partial spline whose b is
 * known to the precision of all the patches: rho d^T G^-1 d, d the cell's
 * covariates less the patch's spline of them at the cell, G = C^T R C
 * the blended system local_cov.c solved for b. Work items are blocks of
 * TPS_SE_BLOCK cells, aligned on the grid's columns as in cpu_se.c; a
 * patch's cells of a block are those with w_p > 0 there, which depend on
 * the block only, so a cell's bytes do not depend on the window or the
 * threads. */
#include "blend.h"
#include "local.h"
#include "variance.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- covariates: which model points a patch holds ----
 *
 * A patch keeps its points' frame coordinates, not their model indices
 * (nor their covariates). Its points are the model's inside its support,
 * the build's own test (local_patches.c), and their frame coordinates the
 * build's own arithmetic, so a patch's model indices are found again
 * exactly: the points in the lookup cells around its support, tested,
 * then paired with the stored ones by sorting both by coordinates. A file
 * whose patches do not pair up is refused. */

typedef struct point_bins {
    size_t *start; /* gx * gy + 1 */
    size_t *pts;   /* the model's points, cell by cell */
} point_bins;

static size_t point_cell(const struct tps_local *lc, double u, double v)
{
    return grid_cell(v, lc->bv0, lc->gdv, lc->gy) * lc->gx +
           grid_cell(u, lc->bu0, lc->gdu, lc->gx);
}

static int bins_make(const tps_model *md, point_bins *pb)
{
    const struct tps_local *lc = md->local;
    const size_t cells = lc->gx * lc->gy;
    pb->start = calloc(cells + 1, sizeof(size_t));
    pb->pts = malloc(sizeof(size_t) * (md->n ? md->n : 1));
    if (!pb->start || !pb->pts)
        return 0;
    for (size_t i = 0; i < md->n; ++i)
        pb->start[point_cell(lc, md->u[i], md->v[i]) + 1]++;
    for (size_t c = 0; c < cells; ++c)
        pb->start[c + 1] += pb->start[c];
    for (size_t i = 0; i < md->n; ++i)
        pb->pts[pb->start[point_cell(lc, md->u[i], md->v[i])]++] = i;
    for (size_t c = cells; c > 0; --c)
        pb->start[c] = pb->start[c - 1];
    pb->start[0] = 0;
    return 1;
}

/* index[k]: the model index of patch p's stored point k. 0: out of memory
 * (*bad 0) or the points do not pair up (*bad 1). */
static int patch_indices(const tps_model *md, const point_bins *bins, size_t p, size_t *index,
                         int *bad)
{
    const struct tps_local *lc = md->local;
    const patch *pt = &lc->patches[p];
    const size_t n = pt->n;
    tps_keyed_point *a = malloc(sizeof *a * (n ? n : 1)), *b = malloc(sizeof *b * (n ? n : 1));
    int ok = a && b;
    *bad = 0;
    size_t i0, i1, j0, j1, cnt = 0;
    patch_cells(lc, pt, &i0, &i1, &j0, &j1);
    /* one cell more each way: the cells' edges are rounded apart from the test */
    i0 -= i0 > 0;
    j0 -= j0 > 0;
    i1 += i1 + 1 < lc->gx;
    j1 += j1 + 1 < lc->gy;
    for (size_t j = j0; ok && j <= j1; ++j)
        for (size_t i = i0; ok && i <= i1; ++i) {
            const size_t c = j * lc->gx + i;
            for (size_t e = bins->start[c]; e < bins->start[c + 1]; ++e) {
                const size_t q = bins->pts[e];
                if (!(fabs(md->u[q] - pt->cx) <= pt->hx && fabs(md->v[q] - pt->cy) <= pt->hy))
                    continue;
                if (cnt == n) {
                    ok = 0;
                    *bad = 1;
                    break;
                }
                a[cnt].x = (md->u[q] - pt->pcx) / pt->ps;
                a[cnt].y = (md->v[q] - pt->pcy) / pt->ps;
                a[cnt++].index = q;
            }
        }
    if (ok && cnt != n)
        ok = 0, *bad = 1;
    if (ok) {
        for (size_t k = 0; k < n; ++k) {
            b[k].x = pt->u[k];
            b[k].y = pt->v[k];
            b[k].index = k;
        }
        qsort(a, n, sizeof *a, tps_compare_keyed_point);
        qsort(b, n, sizeof *b, tps_compare_keyed_point);
        for (size_t k = 0; ok && k < n; ++k) {
            if (a[k].x != b[k].x || a[k].y != b[k].y)
                ok = 0, *bad = 1;
            index[b[k].index] = a[k].index;
        }
    }
    free(a);
    free(b);
    return ok;
}

/* ---- the patches' factorisations ---- */

typedef struct patch_build {
    const tps_model *md;
    size_t band;
    int with_mask; /* the band has missing values: a patch's points are those of
                    * nonzero weight */
    tps_se_patches *sp;
    int build; /* 0: sp->f and sp->cproj are another band's, only rho is made */
    /* with covariates: the model's points binned, and per patch the model
     * indices of the factorisation's points and R c_k there (n_cov x n) */
    const point_bins *bins;
    size_t **index;
    double **rc;
    pthread_mutex_t lock;
    tps_error err;
} patch_build;

/* Patch p's covariates: its factorisation's projections of each scaled
 * covariate column (sp->cproj[p]) and R c_k (pb->rc[p]). */
static void patch_covariates(patch_build *pb, size_t p, const tps_se_factor *f,
                             const double *hw, tps_error *err)
{
    const tps_model *md = pb->md;
    const size_t nc = md->n_cov, n = f->n, n_all = md->local->patches[p].n;
    size_t *all = malloc(sizeof(size_t) * (n_all ? n_all : 1));
    double *col = malloc(sizeof(double) * (n ? n : 1));
    pb->index[p] = malloc(sizeof(size_t) * (n ? n : 1));
    pb->rc[p] = malloc(sizeof(double) * (n ? n : 1) * nc);
    pb->sp->cproj[p] = malloc(sizeof(double) * (n ? n : 1) * nc);
    int bad = 0;
    if (!all || !col || !pb->index[p] || !pb->rc[p] || !pb->sp->cproj[p] ||
        !patch_indices(md, pb->bins, p, all, &bad)) {
        if (bad)
            tps_error_set(err, TPS_ERR_BAD_MODEL_DATA,
                          "patch %zu: its points are not the model's points inside its "
                          "support (a damaged model file?)", p + 1);
        else
            tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "patch %zu: out of memory", p + 1);
    } else {
        size_t k = 0;
        for (size_t i = 0; i < n_all; ++i)
            if (!pb->with_mask || hw[i] != 0.0)
                pb->index[p][k++] = all[i];
        for (size_t c = 0; c < nc; ++c) {
            tps_covariates_gather(md, c, pb->index[p], n, col);
            tps_se_project(f, col, pb->sp->cproj[p] + c * n, pb->rc[p] + c * n);
        }
    }
    free(all);
    free(col);
}

/* Patch p's maximum-likelihood rho in band `band` at its factorisation's
 * points (its frame's units): rho = sum_i w_i z_i / n, and z = M w + T a
 * with T^T w = 0, so w^T z = w^T (K + lambda I) w, from the weights alone
 * (the data are not kept). K w at the points is the spline's own sum. */
static int patch_rho(const patch_build *pb, size_t p, const tps_se_factor *f, double lambda,
                     double *rho)
{
    const patch *pt = &pb->md->local->patches[p];
    const double *hw = pt->hw[pb->band];
    const size_t n = f->n;
    double *h = malloc(sizeof(double) * (n ? n : 1));
    tps_derivs *kw = malloc(sizeof(tps_derivs) * (n ? n : 1));
    if (h && kw) {
        size_t k = 0;
        for (size_t i = 0; i < pt->n && k < n; ++i)
            if (!pb->with_mask || hw[i] != 0.0)
                h[k++] = hw[i];
        tps_spline_sums(n, f->u, f->v, h, TPS_NEEDS_VALUE, n, f->u, f->v, kw);
        double wmw = 0.0;
        for (size_t i = 0; i < n; ++i)
            wmw += 2.0 * h[i] * (kw[i].f + lambda * 2.0 * h[i]);
        *rho = n ? fmax(wmw / (double)n, 0.0) : 0.0;
    }
    free(h);
    free(kw);
    return h && kw;
}

static void build_patch(size_t p, int thread, void *user)
{
    (void)thread;
    patch_build *pb = user;
    const tps_model *md = pb->md;
    const patch *pt = &md->local->patches[p];
    const double *hw = pt->hw[pb->band];
    /* The patch solved with lambda / (scale ps)^2 in its frame (local_build.c). */
    const double unit = md->scale * pt->ps;
    const double lambda = md->band_info[pb->band].smoothing / (unit * unit);
    tps_error err = {TPS_OK, ""};
    if (pb->build) {
        size_t n = 0;
        for (size_t i = 0; i < pt->n; ++i)
            n += !pb->with_mask || hw[i] != 0.0;
        double *buf = malloc(sizeof(double) * 2 * (n ? n : 1));
        if (!buf) {
            tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY, "patch %zu: out of memory", p + 1);
        } else {
            double *u = buf, *v = buf + n;
            n = 0;
            for (size_t i = 0; i < pt->n; ++i) {
                if (pb->with_mask && hw[i] == 0.0)
                    continue;
                u[n] = pt->u[i];
                v[n++] = pt->v[i];
            }
            char what[64];
            snprintf(what, sizeof what, "patch %zu, band %zu: standard error", p + 1,
                     pb->band + 1);
            pb->sp->f[p] = tps_se_factor_create(&err, n, u, v, lambda, NULL, NULL, 1, what);
            if (pb->sp->f[p] && md->n_cov)
                patch_covariates(pb, p, pb->sp->f[p], hw, &err);
        }
        free(buf);
    }
    if (pb->sp->f[p] && !patch_rho(pb, p, pb->sp->f[p], lambda, &pb->sp->rho[p]))
        tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY, "patch %zu: out of memory", p + 1);
    if (err.code != TPS_OK) {
        pthread_mutex_lock(&pb->lock);
        if (pb->err.code == TPS_OK)
            pb->err = err;
        pthread_mutex_unlock(&pb->lock);
    }
}

/* The blended G = C^T R C of local_cov.c from the patches' R c_k (its
 * operator R(v)_i = sum_p W_p(x_i) (R_p v)_i / ps_p^2, W_p over the
 * patches that hold i in this band), summed in patch order, and its
 * inverse into sp->ginv. G is as the fit had it, to rounding: the fit
 * solved it, so a failure here is a corner that rounding tipped over. */
static void covariate_system(patch_build *pb)
{
    const tps_model *md = pb->md;
    const struct tps_local *lc = md->local;
    tps_se_patches *sp = pb->sp;
    const size_t nc = md->n_cov;
    double *den = calloc(md->n ? md->n : 1, sizeof(double));
    if (!den) {
        tps_error_set(&pb->err, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        return;
    }
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        for (size_t k = 0; k < sp->f[p]->n; ++k) {
            const size_t i = pb->index[p][k];
            den[i] += tps_patch_bump(pt, md->u[i], md->v[i]);
        }
    }
    double G[TPS_MAX_COVARIATES * TPS_MAX_COVARIATES] = {0};
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        const size_t n = sp->f[p]->n;
        const double inv2 = 1.0 / (pt->ps * pt->ps);
        for (size_t k = 0; k < n; ++k) {
            const size_t i = pb->index[p][k];
            const double w = tps_patch_bump(pt, md->u[i], md->v[i]);
            if (!(w > 0.0))
                continue;
            const double f = w * inv2 / den[i];
            for (size_t a = 0; a < nc; ++a) {
                const double ca = tps_covariate_at(md, a, i);
                for (size_t b = 0; b < nc; ++b)
                    G[a * nc + b] += ca * f * pb->rc[p][b * n + k];
            }
        }
    }
    free(den);
    /* G^-1 by LU after equilibration by the diagonal (as local_cov.c) */
    double d[TPS_MAX_COVARIATES], *gi = sp->ginv;
    lapack_int ipiv[TPS_MAX_COVARIATES];
    int ok = 1;
    for (size_t a = 0; a < nc && ok; ++a) {
        ok = G[a * nc + a] > 0.0 && isfinite(G[a * nc + a]);
        d[a] = ok ? 1.0 / sqrt(G[a * nc + a]) : 0.0;
    }
    for (size_t a = 0; a < nc; ++a)
        for (size_t b = 0; b < nc; ++b) {
            G[a * nc + b] *= d[a] * d[b];
            gi[a * nc + b] = a == b;
        }
    ok = ok && LAPACKE_dgesv(LAPACK_ROW_MAJOR, (lapack_int)nc, (lapack_int)nc, G,
                             (lapack_int)nc, ipiv, gi, (lapack_int)nc) == 0;
    for (size_t a = 0; a < nc && ok; ++a)
        ok = fabs(G[a * nc + a]) > 1e-12;
    for (size_t a = 0; a < nc; ++a)
        for (size_t b = 0; b < nc; ++b) {
            gi[a * nc + b] *= d[a] * d[b];
            ok = ok && isfinite(gi[a * nc + b]);
        }
    if (!ok)
        tps_error_set(&pb->err, TPS_ERR_COLLINEAR,
                      "band %zu: standard error: the covariates' system of the patches is "
                      "singular (a covariate is, within the patches, nearly a combination of "
                      "x, y, a constant and the others); use MODE=GLOBAL", pb->band + 1);
}

/* Band `band`'s patches: their factorisations (shared with a band of the
 * same lambda where neither has missing values: they depend on the points
 * and lambda only) and the band's own pooled rho. */
static tps_status patches_of_band(tps_context *ctx, const tps_model *md, size_t band,
                                  int num_threads, const tps_se_patches **out)
{
    tps_model *m = (tps_model *)md;
    const struct tps_local *lc = md->local;
    const size_t nc = md->n_cov;
    tps_status st = TPS_OK;
    pthread_mutex_lock(&m->se_lock);
    if (m->se_patches[band]) {
        *out = m->se_patches[band];
        pthread_mutex_unlock(&m->se_lock);
        return TPS_OK;
    }
    const int no_missing = md->band_info[band].n_missing == 0;
    const tps_se_patches *from = NULL;
    for (size_t c = 0; c < md->n_bands && !from; ++c)
        if (c != band && m->se_patches[c] && !m->se_patches[c]->shares && no_missing &&
            md->band_info[c].n_missing == 0 &&
            md->band_info[c].smoothing == md->band_info[band].smoothing)
            from = m->se_patches[c];
    tps_se_patches *sp = calloc(1, sizeof *sp);
    point_bins bins = {NULL, NULL};
    patch_build pb = {md,   band, !no_missing, sp,  !from, &bins, NULL, NULL,
                      PTHREAD_MUTEX_INITIALIZER, {TPS_OK, ""}};
    int ok = sp != NULL;
    if (sp) {
        sp->n_patches = lc->n_patches;
        sp->n_cov = nc;
        sp->rho = calloc(lc->n_patches, sizeof(double));
        ok = sp->rho != NULL;
        if (from) {
            sp->shares = 1;
            sp->f = from->f;
            sp->cproj = from->cproj;
            memcpy(sp->ginv, from->ginv, sizeof sp->ginv);
        } else {
            sp->f = calloc(lc->n_patches, sizeof(tps_se_factor *));
            ok = ok && sp->f;
            if (nc) {
                sp->cproj = calloc(lc->n_patches, sizeof(double *));
                pb.index = calloc(lc->n_patches, sizeof(size_t *));
                pb.rc = calloc(lc->n_patches, sizeof(double *));
                ok = ok && sp->cproj && pb.index && pb.rc && bins_make(md, &bins);
            }
        }
    }
    if (!ok) {
        tps_error_set(&pb.err, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
        const double t0 = tps_now_seconds();
        tps_blas_single_begin();
        tps_parallel_for(lc->n_patches, num_threads, build_patch, &pb);
        tps_blas_single_end();
        tps_log(ctx, TPS_LOG_DEBUG,
                "band %zu: the standard error's %s of %zu patches took %.3f s", band + 1,
                from ? "process variances" : "factorisations", lc->n_patches,
                tps_now_seconds() - t0);
    }
    /* One process variance for the model, as the global spline has: the
     * patches' estimates pooled (in the user's units, weighted by their
     * points), each patch's frame getting its share of it. Per patch
     * estimates made the blend 6% RMS (15% at worst) off the global
     * standard error in the test of docs/design.md; pooled, 1% (4%). */
    if (pb.err.code == TPS_OK) {
        double num = 0, den = 0;
        for (size_t p = 0; p < lc->n_patches; ++p) {
            const double unit = md->scale * lc->patches[p].ps;
            num += sp->rho[p] / (unit * unit) * (double)sp->f[p]->n;
            den += (double)sp->f[p]->n;
        }
        for (size_t p = 0; p < lc->n_patches; ++p) {
            const double unit = md->scale * lc->patches[p].ps;
            sp->rho[p] = num / den * unit * unit;
        }
        sp->rho_model = num / den * md->scale * md->scale;
        if (nc && !from)
            covariate_system(&pb);
    }
    free(bins.start);
    free(bins.pts);
    for (size_t p = 0; pb.index && p < lc->n_patches; ++p)
        free(pb.index[p]);
    for (size_t p = 0; pb.rc && p < lc->n_patches; ++p)
        free(pb.rc[p]);
    free(pb.index);
    free(pb.rc);
    if (pb.err.code == TPS_OK) {
        m->se_patches[band] = sp;
    } else {
        st = tps_raise(ctx, &pb.err);
        tps_se_patches_free(sp);
    }
    *out = m->se_patches[band];
    pthread_mutex_unlock(&m->se_lock);
    return st;
}

/* ---- the blend, block by block ---- */

typedef struct se_request {
    const tps_eval_job *job;
    const tps_output *outs;
    size_t n_out;
    size_t *first;
    const tps_se_patches **sp;
    size_t work_bytes;
} se_request;

/* d^T G^-1 d at cell k of the block (covariates zs[c B + k]), d the
 * cell's covariates less the patch's splines of them there (sv[c sel +
 * s]): the variance, over rho, that b adds to the patch's prediction. NaN
 * where a covariate is. */
static double b_variance(const tps_se_patches *sp, const double *zs, size_t k, const double *sv,
                         size_t sel, size_t s)
{
    const size_t nc = sp->n_cov;
    double d[TPS_MAX_COVARIATES], q = 0.0;
    for (size_t c = 0; c < nc; ++c)
        d[c] = zs[c * TPS_SE_BLOCK + k] - sv[c * sel + s];
    for (size_t c = 0; c < nc; ++c)
        for (size_t e = 0; e < nc; ++e)
            q += d[c] * sp->ginv[c * nc + e] * d[e];
    return q;
}

static void se_block(void *user, size_t row, size_t block, void *scratch)
{
    enum { B = TPS_SE_BLOCK };
    const se_request *rq = user;
    const tps_eval_job *job = rq->job;
    const tps_model *md = job->model;
    const struct tps_local *lc = md->local;
    const tps_window *w = &job->t.w;
    double *pu = scratch;
    double *pv = pu + B, *qu = pv + B, *qv = qu + B, *lu = qv + B, *lv = lu + B;
    double *wk = lv + B, *wsum = wk + B, *a = wsum + B, *acc = a + B; /* acc: n_out blocks */
    const size_t nc = md->n_cov;
    double *zs = acc + B * rq->n_out, *sv = zs + B * nc; /* covariates, their splines */
    void *work = sv + B * nc;
    tps_local_chunk lk = tps_local_chunk_at(lc, (char *)work + rq->work_bytes);
    tps_se_block_targets(w, row, block, pu, pv);
    size_t k0, k1;
    tps_se_block_window(w, block, &k0, &k1);
    /* Covariates exist inside the window only; the cells outside get 0 and
     * are dropped (a cell's arithmetic does not depend on the others). */
    memset(zs, 0, sizeof(double) * B * nc);
    if (nc)
        tps_covariates_load(md, job->cov, 1, row, block * B + k0 - w->first_col, k1 - k0, zs + k0,
                            B);
    const size_t n_cand = tps_local_candidates(lc, B, pu, pv, qu, qv, &lk);
    memset(wsum, 0, sizeof(double) * B);
    memset(acc, 0, sizeof(double) * B * rq->n_out);
    for (size_t e = 0; e < n_cand; ++e) {
        const size_t p = lk.cand[e];
        const patch *pt = &lc->patches[p];
        size_t sel = 0;
        for (size_t k = 0; k < B; ++k) {
            const double wp = tps_patch_bump(pt, qu[k], qv[k]);
            if (wp > 0.0) {
                lk.idx[sel] = k;
                wk[sel] = wp;
                lu[sel] = (pu[k] - pt->pcx) / pt->ps;
                lv[sel] = (pv[k] - pt->pcy) / pt->ps;
                ++sel;
            }
        }
        if (!sel)
            continue;
        for (size_t b = 0; b < rq->n_out; ++b) {
            if (rq->first[b] != b)
                continue;
            const tps_se_factor *f = rq->sp[b]->f[p];
            const double rho = rq->sp[b]->rho[p];
            tps_se_block(f, job->kernel, sel, lu, lv, w->cv == 0.0, NULL, 0, work, a);
            if (nc)
                tps_se_block_splines(f, sel, work, nc, rq->sp[b]->cproj[p], sv);
            double *ab = acc + b * B;
            for (size_t s = 0; s < sel; ++s) {
                double var = rho * a[s];
                if (nc)
                    var += rq->sp[b]->rho_model * b_variance(rq->sp[b], zs, lk.idx[s], sv, sel, s);
                ab[lk.idx[s]] += wk[s] * (var > 0.0 ? sqrt(var) : isnan(var) ? NAN : 0.0);
            }
        }
        for (size_t s = 0; s < sel; ++s)
            wsum[lk.idx[s]] += wk[s];
    }
    for (size_t b = 0; b < rq->n_out; ++b) {
        const tps_output *o = &rq->outs[b];
        const double *ab = acc + rq->first[b] * B;
        for (size_t k = k0; k < k1; ++k) {
            /* wsum > 0 inside the box by construction; NaN only for NaN targets */
            const double se = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
            tps_derivs d;
            tps_derivs_zero(&d);
            d.var = se * se;
            tps_output_store(o, row, block * B + k - w->first_col,
                             tps_quantity_eval(o->quantity, &d, md->scale, NULL));
        }
    }
}

tps_status tps_cpu_local_standard_errors(tps_context *ctx, const tps_eval_job *job)
{
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    if (md->weighted)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             md->weighted < 0
                                 ? "the standard error of this local model needs it solved "
                                   "again (it was saved by an older version)"
                                 : "the standard error of a local model with per-point weights "
                                   "is not available (its patches keep no weights); use "
                                   "MODE=GLOBAL");
    const size_t n_out = tps_outputs_select(job->quantities, job->n_quantities, 1, NULL);
    se_request rq = {job, NULL, n_out, NULL, NULL, 0};
    tps_output *outs = malloc(sizeof(tps_output) * n_out);
    rq.first = malloc(sizeof(size_t) * n_out);
    rq.sp = malloc(sizeof(tps_se_patches *) * n_out);
    rq.outs = outs;
    tps_status st = TPS_OK;
    if (!outs || !rq.first || !rq.sp) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for standard errors");
        goto done;
    }
    tps_outputs_select(job->quantities, job->n_quantities, 1, outs);
    tps_outputs_group(outs, n_out, rq.first, NULL);
    for (size_t b = 0; b < n_out && st == TPS_OK; ++b) {
        st = patches_of_band(ctx, md, outs[b].band, job->num_threads, &rq.sp[b]);
        for (size_t p = 0; st == TPS_OK && p < rq.sp[b]->n_patches; ++p) {
            const size_t bytes = tps_se_block_bytes(rq.sp[b]->f[p]);
            rq.work_bytes = bytes > rq.work_bytes ? bytes : rq.work_bytes;
        }
    }
    if (st != TPS_OK)
        goto done;
    rq.work_bytes = (rq.work_bytes + 63) / 64 * 64;
    st = tps_se_for_blocks(ctx, w, job->num_threads,
                           sizeof(double) * TPS_SE_BLOCK * (9 + n_out + 2 * md->n_cov) +
                               rq.work_bytes +
                               tps_local_chunk_bytes(md->local),
                           se_block, &rq);
done:
    free(outs);
    free(rq.first);
    free(rq.sp);
    return st;
}

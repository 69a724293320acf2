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
 * into one. Work items are blocks of TPS_SE_BLOCK cells, aligned on the
 * grid's columns as in cpu_se.c; a patch's cells of a block are those
 * with w_p > 0 there, which depend on the block only, so a cell's bytes
 * do not depend on the window or the threads. */
#include "blend.h"
#include "local.h"
#include "variance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the patches' factorisations ---- */

typedef struct patch_build {
    const tps_model *md;
    size_t band;
    int with_mask; /* the band has missing values: a patch's points are those of
                    * nonzero weight */
    tps_se_patches *sp;
    pthread_mutex_t lock;
    tps_error err;
} patch_build;

static void build_patch(size_t p, int thread, void *user)
{
    (void)thread;
    patch_build *pb = user;
    const tps_model *md = pb->md;
    const patch *pt = &md->local->patches[p];
    const double *hw = pt->hw[pb->band];
    size_t n = 0;
    for (size_t i = 0; i < pt->n; ++i)
        n += !pb->with_mask || hw[i] != 0.0;
    double *buf = malloc(sizeof(double) * 3 * (n ? n : 1));
    tps_derivs *kw = malloc(sizeof(tps_derivs) * (n ? n : 1));
    tps_error err = {TPS_OK, ""};
    if (!buf || !kw) {
        tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY, "patch %zu: out of memory", p + 1);
    } else {
        double *u = buf, *v = buf + n, *h = buf + 2 * n;
        n = 0;
        for (size_t i = 0; i < pt->n; ++i) {
            if (pb->with_mask && hw[i] == 0.0)
                continue;
            u[n] = pt->u[i];
            v[n] = pt->v[i];
            h[n++] = hw[i];
        }
        /* The patch solved with lambda / (scale ps)^2 in its frame (local_build.c). */
        const double unit = md->scale * pt->ps;
        const double lambda = md->band_info[pb->band].smoothing / (unit * unit);
        char what[64];
        snprintf(what, sizeof what, "patch %zu, band %zu: standard error", p + 1, pb->band + 1);
        pb->sp->f[p] = tps_se_factor_create(&err, n, u, v, lambda, NULL, NULL, 1, what);
        /* rho = sum_i w_i z_i / n, and z = M w + T a with T^T w = 0, so
         * w^T z = w^T (K + lambda I) w: from the weights alone (the data
         * are not kept). K w at the points is the spline's own sum. */
        tps_spline_sums(n, u, v, h, TPS_NEEDS_VALUE, n, u, v, kw);
        double wmw = 0.0;
        for (size_t i = 0; i < n; ++i)
            wmw += 2.0 * h[i] * (kw[i].f + lambda * 2.0 * h[i]);
        pb->sp->rho[p] = n ? fmax(wmw / (double)n, 0.0) : 0.0;
    }
    free(buf);
    free(kw);
    if (err.code != TPS_OK) {
        pthread_mutex_lock(&pb->lock);
        if (pb->err.code == TPS_OK)
            pb->err = err;
        pthread_mutex_unlock(&pb->lock);
    }
}

static tps_status patches_of_band(tps_context *ctx, const tps_model *md, size_t band,
                                  int num_threads, const tps_se_patches **out)
{
    tps_model *m = (tps_model *)md;
    const struct tps_local *lc = md->local;
    tps_status st = TPS_OK;
    pthread_mutex_lock(&m->se_lock);
    const int no_missing = md->band_info[band].n_missing == 0;
    for (size_t c = 0; c < md->n_bands && !m->se_patches[band]; ++c)
        if (c != band && m->se_patches[c] && no_missing && md->band_info[c].n_missing == 0 &&
            md->band_info[c].smoothing == md->band_info[band].smoothing)
            m->se_patches[band] = m->se_patches[c];
    if (!m->se_patches[band]) {
        tps_se_patches *sp = calloc(1, sizeof *sp);
        if (sp) {
            sp->n_patches = lc->n_patches;
            sp->f = calloc(lc->n_patches, sizeof(tps_se_factor *));
            sp->rho = calloc(lc->n_patches, sizeof(double));
        }
        patch_build pb = {md, band, !no_missing, sp, PTHREAD_MUTEX_INITIALIZER, {TPS_OK, ""}};
        if (!sp || !sp->f || !sp->rho) {
            tps_error_set(&pb.err, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        } else {
            const double t0 = tps_now_seconds();
            tps_blas_single_begin();
            tps_parallel_for(lc->n_patches, num_threads, build_patch, &pb);
            tps_blas_single_end();
            tps_log(ctx, TPS_LOG_DEBUG,
                    "band %zu: the standard error's factorisations of %zu patches took %.3f s",
                    band + 1, lc->n_patches, tps_now_seconds() - t0);
        }
        /* One process variance for the model, as the global spline has:
         * the patches' estimates pooled (in the user's units, weighted by
         * their points), each patch's frame getting its share of it. Per
         * patch estimates made the blend 6% RMS (15% at worst) off the
         * global standard error in the test of docs/design.md; pooled, 1%
         * (4%). */
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
        }
        if (pb.err.code == TPS_OK) {
            m->se_patches[band] = sp;
        } else {
            st = tps_raise(ctx, &pb.err);
            for (size_t p = 0; sp && sp->f && p < sp->n_patches; ++p)
                tps_se_factor_free(sp->f[p]);
            if (sp) {
                free(sp->f);
                free(sp->rho);
            }
            free(sp);
        }
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
    void *work = acc + B * rq->n_out;
    tps_local_chunk lk = tps_local_chunk_at(lc, (char *)work + rq->work_bytes);
    tps_se_block_targets(w, row, block, pu, pv);
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
            double *ab = acc + b * B;
            for (size_t s = 0; s < sel; ++s) {
                const double var = rho * a[s];
                ab[lk.idx[s]] += wk[s] * (var > 0.0 ? sqrt(var) : 0.0);
            }
        }
        for (size_t s = 0; s < sel; ++s)
            wsum[lk.idx[s]] += wk[s];
    }
    size_t k0, k1;
    tps_se_block_window(w, block, &k0, &k1);
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
    if (md->n_cov)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             "the standard error of a local model with covariates is not "
                             "available (the covariates' coefficients are estimated from all "
                             "the patches, so no patch's own factorisation gives their "
                             "variance); use MODE=GLOBAL");
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
                           sizeof(double) * TPS_SE_BLOCK * (9 + n_out) + rq.work_bytes +
                               tps_local_chunk_bytes(md->local),
                           se_block, &rq);
done:
    free(outs);
    free(rq.first);
    free(rq.sp);
    return st;
}

/* cpu_local.c: the CPU backend of a LOCAL model: its values here, its other
 * quantities in cpu_local_deriv.c. A chunk of pixels visits only the
 * patches whose support meets it (local_lookup.c) and runs the SIMD kernel
 * of eval_kernel.c over each patch's points for the pixels inside its
 * support, blending the patch splines with their bump weights (blend.h). A
 * pixel's value depends only on its own coordinates: its patches are
 * summed in patch order whatever chunk it falls in. */
#include "blend.h"
#include "eval.h"
#include "local.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct value_request {
    const tps_eval_job *job;
    const struct tps_local *lc;
    tps_scratch scratch;
} value_request;

static void value_chunk(size_t item, int thread, void *user)
{
    const value_request *rq = user;
    const tps_eval_job *job = rq->job;
    const struct tps_local *lc = rq->lc;
    const tps_targets *t = &job->t;
    const size_t nb = job->n_values;
    char *base = tps_scratch_at(&rq->scratch, thread);
    double *pu = (double *)base, *pv = pu + TPS_CHUNK, *qu = pv + TPS_CHUNK, *qv = qu + TPS_CHUNK;
    double *wsum = qv + TPS_CHUNK, *lu = wsum + TPS_CHUNK, *lv = lu + TPS_CHUNK;
    double *wk = lv + TPS_CHUNK, *acc = wk + TPS_CHUNK, *pacc = acc + nb * TPS_CHUNK;
    double *zs = pacc + nb * TPS_CHUNK; /* the scaled covariates, TPS_CHUNK each */
    const double **wts = (const double **)(zs + job->model->n_cov * TPS_CHUNK);
    tps_local_chunk lk = tps_local_chunk_at(lc, wts + nb);

    size_t row, col0;
    const size_t count = tps_targets_chunk(t, item, pu, pv, &row, &col0);
    const size_t n_cand = tps_local_candidates(lc, count, pu, pv, qu, qv, &lk);
    memset(wsum, 0, sizeof(double) * TPS_CHUNK);
    memset(acc, 0, sizeof(double) * nb * TPS_CHUNK);
    const int same_v = t->is_grid && t->w.cv == 0.0;
    for (size_t e = 0; e < n_cand; ++e) {
        const patch *pt = &lc->patches[lk.cand[e]];
        size_t sel = 0;
        for (size_t k = 0; k < count; ++k) {
            double w = tps_patch_bump(pt, qu[k], qv[k]);
            if (w > 0.0) {
                lk.idx[sel] = k;
                wk[sel] = w;
                lu[sel] = (pu[k] - pt->pcx) / pt->ps;
                lv[sel] = (pv[k] - pt->pcy) / pt->ps;
                ++sel;
            }
        }
        if (!sel)
            continue;
        const size_t m = (sel + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
        for (size_t k = sel; k < m; ++k) {
            lu[k] = lu[sel - 1];
            lv[k] = lv[sel - 1];
        }
        for (size_t b = 0; b < nb; ++b)
            wts[b] = pt->hw[job->bands[b]];
        tps_kernel_job kj = {pt->n, pt->u, pt->v, nb, wts, m, lu, lv, same_v, pacc};
        job->kernel(&kj);
        for (size_t b = 0; b < nb; ++b) {
            const double *a = pt->affine[job->bands[b]];
            const double *sum = pacc + b * m;
            double *ab = acc + b * TPS_CHUNK;
            for (size_t s = 0; s < sel; ++s)
                ab[lk.idx[s]] += wk[s] * (sum[s] + a[0] + a[1] * lu[s] + a[2] * lv[s]);
        }
        for (size_t s = 0; s < sel; ++s)
            wsum[lk.idx[s]] += wk[s];
    }
    /* A model with covariates: the blend plus sum_k b_k c_k, as a global
     * model adds it (local_cov.c says why that is the model). */
    const tps_model *md = job->model;
    if (md->n_cov) {
        tps_covariates_load(md, job->cov, t->is_grid, row, col0, count, zs, TPS_CHUNK);
        for (size_t b = 0; b < nb; ++b)
            for (size_t k = 0; k < count; ++k)
                if (wsum[k] > 0.0)
                    acc[b * TPS_CHUNK + k] = acc[b * TPS_CHUNK + k] / wsum[k] +
                                             tps_covariates_term(md, job->bands[b], zs,
                                                                 TPS_CHUNK, k);
        for (size_t k = 0; k < count; ++k)
            wsum[k] = wsum[k] > 0.0 ? 1.0 : 0.0;
    }
    for (size_t b = 0; b < nb; ++b) {
        const double *ab = acc + b * TPS_CHUNK;
        if (t->is_grid) {
            const tps_output *o = &job->values[b];
            char *dst = (char *)o->data + (ptrdiff_t)row * o->line_stride +
                        (ptrdiff_t)col0 * o->pixel_stride;
            for (size_t k = 0; k < count; ++k) {
                /* wsum > 0 inside the box by construction; NaN only for NaN targets. */
                double value = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
                if (o->type == TPS_FLOAT32) {
                    float f = (float)value;
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &f, sizeof f);
                } else {
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &value, sizeof value);
                }
            }
        } else {
            double *dst = job->values_out[b] + col0;
            for (size_t k = 0; k < count; ++k)
                dst[k] = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
        }
    }
}

static tps_status values(tps_context *ctx, const tps_eval_job *job)
{
    const size_t n_items = tps_targets_items(&job->t);
    if (job->n_values == 0 || n_items == 0)
        return TPS_OK;
    const struct tps_local *lc = job->model->local;
    const int worth = tps_targets_count(&job->t) >= LOCAL_MIN_TARGETS_FOR_THREADS;
    const int threads = tps_threads_for(job->num_threads, n_items, worth);
    value_request rq = {job, lc, {NULL, 0}};
    /* pu, pv, qu, qv, wsum, lu, lv, wk; acc and pacc per band; the
     * covariates; the bands' weight pointers; the candidates' lists. */
    const size_t bytes = sizeof(double) * TPS_CHUNK *
                             (8 + 2 * job->n_values + job->model->n_cov) +
                         sizeof(double *) * job->n_values + tps_local_chunk_bytes(lc);
    tps_status st = tps_scratch_alloc(ctx, &rq.scratch, threads, bytes);
    if (st == TPS_OK)
        tps_parallel_for(n_items, threads, value_chunk, &rq);
    tps_scratch_free(&rq.scratch);
    return st;
}

const tps_backend tps_backend_cpu_local = {"CPU (local model)", values, tps_cpu_local_quantities};

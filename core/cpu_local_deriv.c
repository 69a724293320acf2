/* cpu_local_deriv.c: the quantities other than the value of a LOCAL model
 * on the CPU: from the exact derivatives of the blend (blend.h), formed
 * from the same candidate patches as the values and a scalar pass over each
 * patch's points (spline_sums.c), then the quantity table's formula
 * (docs/design.md, "Derivative bands"). */
#include "blend.h"
#include "eval.h"
#include "local.h"

#include <stdlib.h>
#include <string.h>

/* Per thread: pu, pv, qu, qv, lu, lv (TPS_CHUNK doubles each), per selected
 * target its patch weight and the patch spline's sums, per output (only
 * the first of each band used) the blend's sums, then the candidates. */
static size_t scratch_bytes(const struct tps_local *lc, size_t n_outputs)
{
    return sizeof(double) * 6 * TPS_CHUNK + sizeof(tps_derivs) * 2 * TPS_CHUNK +
           sizeof(tps_blend) * TPS_CHUNK * n_outputs + tps_local_chunk_bytes(lc);
}

static void quantity_chunk(size_t item, int thread, void *user)
{
    const tps_quantity_pass *rq = user; /* the blend of output first[b] serves output b */
    const tps_eval_job *job = rq->job;
    const struct tps_local *lc = job->model->local;
    const tps_targets *t = &job->t;
    double *pu = tps_scratch_at(&rq->scratch, thread);
    double *pv = pu + TPS_CHUNK, *qu = pv + TPS_CHUNK, *qv = qu + TPS_CHUNK;
    double *lu = qv + TPS_CHUNK, *lv = lu + TPS_CHUNK;
    tps_derivs *w = (tps_derivs *)(lv + TPS_CHUNK), *spline = w + TPS_CHUNK;
    tps_blend *blend = (tps_blend *)(spline + TPS_CHUNK); /* output b's at blend + TPS_CHUNK b */
    tps_local_chunk lk = tps_local_chunk_at(lc, blend + TPS_CHUNK * job->n_quantities);

    size_t row, col0;
    const size_t count = tps_targets_chunk(t, item, pu, pv, &row, &col0);
    const size_t n_cand = tps_local_candidates(lc, count, pu, pv, qu, qv, &lk);
    unsigned all_needs = 0;
    for (size_t b = 0; b < job->n_quantities; ++b) {
        all_needs |= rq->needs[b];
        if (rq->first[b] == b)
            for (size_t k = 0; k < count; ++k)
                tps_blend_zero(&blend[TPS_CHUNK * b + k]);
    }
    for (size_t e = 0; e < n_cand; ++e) {
        const patch *pt = &lc->patches[lk.cand[e]];
        size_t sel = 0;
        for (size_t k = 0; k < count; ++k) {
            /* Inside the box (edges included) along an axis, or clamped. */
            const int free_u = pu[k] >= lc->bu0 && pu[k] <= lc->bu1;
            const int free_v = pv[k] >= lc->bv0 && pv[k] <= lc->bv1;
            tps_patch_weight(&w[sel], all_needs, pt->cx, pt->cy, pt->hx, pt->hy, qu[k], qv[k],
                             free_u, free_v);
            if (!(w[sel].f > 0.0))
                continue;
            lk.idx[sel] = k;
            lu[sel] = (pu[k] - pt->pcx) / pt->ps;
            lv[sel] = (pv[k] - pt->pcy) / pt->ps;
            ++sel;
        }
        for (size_t b = 0; sel && b < job->n_quantities; ++b) {
            if (rq->first[b] != b)
                continue;
            const size_t band = job->quantities[b].band;
            const unsigned needs = tps_blend_spline_needs(rq->needs[b]);
            tps_spline_sums(pt->n, pt->u, pt->v, pt->hw[band], needs, sel, lu, lv, spline);
            const double inv = 1.0 / pt->ps;
            for (size_t s = 0; s < sel; ++s) {
                tps_derivs_add_affine(&spline[s], pt->affine[band], lu[s], lv[s]);
                tps_derivs_from_frame(&spline[s], inv);
                tps_blend_add(&blend[TPS_CHUNK * b + lk.idx[s]], rq->needs[b], &w[s], &spline[s]);
            }
        }
    }
    for (size_t b = 0; b < job->n_quantities; ++b) {
        const tps_output *o = &job->quantities[b];
        const size_t f = rq->first[b];
        for (size_t k = 0; k < count; ++k) {
            tps_derivs d;
            tps_derivs_zero(&d);
            tps_blend_finish(&blend[TPS_CHUNK * f + k], rq->needs[f], &d);
            /* A model with covariates: their term of the derivatives, from
             * the caller's planes, as for a global model. */
            const tps_model *md = job->model;
            tps_derivs cov;
            if (md->n_cov)
                tps_covariates_derivs(md, o->band, job->cov_deriv, rq->needs[f], row, col0 + k,
                                      &cov);
            tps_output_store(o, row, col0 + k,
                             tps_quantity_eval(o->quantity, &d, md->scale,
                                               md->n_cov ? &cov : NULL));
        }
    }
}

static tps_status sums_quantities(tps_context *ctx, const tps_eval_job *job)
{
    const size_t n_items = tps_targets_items(&job->t);
    if (job->n_quantities == 0 || n_items == 0)
        return TPS_OK;
    const struct tps_local *lc = job->model->local;
    const int worth = tps_targets_count(&job->t) >= LOCAL_MIN_TARGETS_FOR_THREADS;
    const int threads = tps_threads_for(job->num_threads, n_items, worth);
    return tps_quantity_pass_run(ctx, job, n_items, threads,
                                 scratch_bytes(lc, job->n_quantities), quantity_chunk);
}

/* The quantities formed from sums here, the standard errors in
 * cpu_local_se.c. */
tps_status tps_cpu_local_quantities(tps_context *ctx, const tps_eval_job *job)
{
    return tps_quantities_split(ctx, job, sums_quantities, tps_cpu_standard_errors);
}

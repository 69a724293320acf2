/* cpu_se.c: the standard-error outputs of a request (TPS_NEEDS_VARIANCE)
 * on the CPU, for a GLOBAL model here and a LOCAL one in cpu_local_se.c.
 * Work items are blocks of TPS_SE_BLOCK cells of a grid row, aligned on
 * the grid's absolute columns and always computed whole (cells past the
 * window's edge are computed and dropped), so that a cell's bytes come
 * from the same BLAS calls on the same block whatever the window, chunk
 * or thread; the BLAS runs single-threaded inside the items for the same
 * reason (and because the items are the parallelism): tps_se_for_blocks. */
#include "variance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct se_request {
    const tps_eval_job *job;
    const tps_output *outs; /* the request's outputs that need the variance */
    size_t n_out;
    size_t *first;          /* outputs of one band share its variance */
    const tps_se_factor **factor;
    double *rho;
    size_t work_bytes;
} se_request;

static void se_block(void *user, size_t row, size_t block, void *scratch)
{
    const se_request *rq = user;
    const tps_eval_job *job = rq->job;
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    double *pu = scratch;
    double *pv = pu + TPS_SE_BLOCK, *zs = pv + TPS_SE_BLOCK;
    double *a = zs + TPS_SE_BLOCK * md->n_cov; /* n_out blocks */
    void *work = a + TPS_SE_BLOCK * rq->n_out;
    tps_se_block_targets(w, row, block, pu, pv);
    size_t k0, k1;
    tps_se_block_window(w, block, &k0, &k1);
    /* Covariates exist inside the window only; the cells outside get 0
     * (a row's BLAS arithmetic does not depend on the other rows). */
    memset(zs, 0, sizeof(double) * TPS_SE_BLOCK * md->n_cov);
    if (md->n_cov)
        tps_covariates_load(md, job->cov, 1, row, block * TPS_SE_BLOCK + k0 - w->first_col,
                            k1 - k0, zs + k0, TPS_SE_BLOCK);
    for (size_t b = 0; b < rq->n_out; ++b) {
        const tps_output *o = &rq->outs[b];
        if (rq->first[b] == b)
            tps_se_block(rq->factor[b], job->kernel, TPS_SE_BLOCK, pu, pv, w->cv == 0.0, zs,
                         TPS_SE_BLOCK, work, a + b * TPS_SE_BLOCK);
        const double *own = a + rq->first[b] * TPS_SE_BLOCK;
        for (size_t k = k0; k < k1; ++k) {
            tps_derivs d;
            tps_derivs_zero(&d);
            d.var = rq->rho[b] * own[k];
            tps_output_store(o, row, block * TPS_SE_BLOCK + k - w->first_col,
                             tps_quantity_eval(o->quantity, &d, md->scale, NULL));
        }
    }
}

tps_status tps_cpu_standard_errors(tps_context *ctx, const tps_eval_job *job)
{
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    const size_t n_out = tps_outputs_select(job->quantities, job->n_quantities, 1, NULL);
    if (n_out == 0 || !job->t.is_grid || w->ncols == 0 || w->nrows == 0)
        return TPS_OK;
    if (md->local)
        return tps_cpu_local_standard_errors(ctx, job);
    se_request rq = {job, NULL, n_out, NULL, NULL, NULL, 0};
    tps_output *outs = malloc(sizeof(tps_output) * n_out);
    rq.first = malloc(sizeof(size_t) * n_out);
    rq.factor = malloc(sizeof(tps_se_factor *) * n_out);
    rq.rho = malloc(sizeof(double) * n_out);
    rq.outs = outs;
    tps_status st = TPS_OK;
    if (!outs || !rq.first || !rq.factor || !rq.rho) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for standard errors");
        goto done;
    }
    tps_outputs_select(job->quantities, job->n_quantities, 1, outs);
    tps_outputs_group(outs, n_out, rq.first, NULL);
    for (size_t b = 0; b < n_out && st == TPS_OK; ++b) {
        st = tps_se_factor_of_band(ctx, md, outs[b].band, job->num_threads, &rq.factor[b]);
        rq.rho[b] = tps_se_rho(md, outs[b].band);
        if (st == TPS_OK && tps_se_block_bytes(rq.factor[b]) > rq.work_bytes)
            rq.work_bytes = tps_se_block_bytes(rq.factor[b]);
    }
    if (st != TPS_OK)
        goto done;
    st = tps_se_for_blocks(ctx, w, job->num_threads,
                           sizeof(double) * TPS_SE_BLOCK * (2 + md->n_cov + n_out) +
                               rq.work_bytes,
                           se_block, &rq);
done:
    free(outs);
    free(rq.first);
    free(rq.factor);
    free(rq.rho);
    return st;
}

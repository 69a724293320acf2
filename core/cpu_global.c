/* cpu_global.c: the CPU backend of a GLOBAL model. A request is cut into
 * chunks of pixels (or points) that worker threads take in turn; per chunk,
 * values come from the SIMD kernel (eval_kernel.c: the distances and logs
 * shared by all bands), other quantities from the sums they need
 * (spline_sums.c) and the quantity table's formula; both go straight into
 * the caller's strided buffers. */
#include "eval.h"

#include <stdlib.h>
#include <string.h>

/* Below this many point-pixel pairs a request runs on the calling thread:
 * starting threads would cost more than it saves. */
#define MIN_PAIRS_FOR_THREADS 200000.0

/* ---- values ---- */

typedef struct value_request {
    const tps_eval_job *job;
    const double **weights; /* the half-weights of each value's band */
    tps_scratch scratch;    /* per thread: u, v, acc (TPS_CHUNK each, acc n_values times),
                             * the scaled covariates (TPS_CHUNK each) */
} value_request;

static void value_chunk(size_t item, int thread, void *user)
{
    const value_request *rq = user;
    const tps_eval_job *job = rq->job;
    const tps_model *md = job->model;
    double *pu = tps_scratch_at(&rq->scratch, thread);
    double *pv = pu + TPS_CHUNK;
    double *acc = pv + TPS_CHUNK;
    double *zs = acc + TPS_CHUNK * job->n_values;

    size_t row, col0;
    const size_t count = tps_targets_chunk(&job->t, item, pu, pv, &row, &col0);
    if (md->n_cov)
        tps_covariates_load(md, job->cov, job->t.is_grid, row, col0, count, zs, TPS_CHUNK);
    /* Pad to whole tiles with copies of the last target; their sums are
     * computed and dropped. */
    size_t m = (count + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
    for (size_t k = count; k < m; ++k) {
        pu[k] = pu[count - 1];
        pv[k] = pv[count - 1];
    }

    int same_v = job->t.is_grid && job->t.w.cv == 0.0;
    tps_kernel_job kj = {md->n, md->u, md->v, job->n_values, rq->weights, m, pu, pv, same_v, acc};
    job->kernel(&kj);

    for (size_t b = 0; b < job->n_values; ++b) {
        const double *a = md->affine[job->bands[b]];
        double *sum = acc + b * m;
        /* The covariates' term joins the spline's sum, before the affine
         * part (the order every path uses). */
        for (size_t k = 0; md->n_cov && k < count; ++k)
            sum[k] += tps_covariates_term(md, job->bands[b], zs, TPS_CHUNK, k);
        if (job->t.is_grid) {
            const tps_output *o = &job->values[b];
            char *dst = (char *)o->data + (ptrdiff_t)row * o->line_stride +
                        (ptrdiff_t)col0 * o->pixel_stride;
            if (o->type == TPS_FLOAT32) {
                for (size_t k = 0; k < count; ++k) {
                    float value = (float)(sum[k] + a[0] + a[1] * pu[k] + a[2] * pv[k]);
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &value, sizeof value);
                }
            } else {
                for (size_t k = 0; k < count; ++k) {
                    double value = sum[k] + a[0] + a[1] * pu[k] + a[2] * pv[k];
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &value, sizeof value);
                }
            }
        } else {
            double *dst = job->values_out[b] + col0;
            for (size_t k = 0; k < count; ++k)
                dst[k] = sum[k] + a[0] + a[1] * pu[k] + a[2] * pv[k];
        }
    }
}

static tps_status values(tps_context *ctx, const tps_eval_job *job)
{
    const size_t n_items = tps_targets_items(&job->t);
    if (job->n_values == 0 || n_items == 0)
        return TPS_OK;
    const double pairs = (double)job->model->n * tps_targets_count(&job->t);
    const int threads =
        tps_threads_for(job->num_threads, n_items, pairs >= MIN_PAIRS_FOR_THREADS);
    value_request rq = {job, NULL, {NULL, 0}};
    rq.weights = malloc(sizeof(double *) * job->n_values);
    if (!rq.weights)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for evaluation buffers");
    for (size_t b = 0; b < job->n_values; ++b)
        rq.weights[b] = job->model->half_weights[job->bands[b]];
    tps_status st =
        tps_scratch_alloc(ctx, &rq.scratch, threads,
                          sizeof(double) * TPS_CHUNK * (2 + job->n_values + job->model->n_cov));
    if (st == TPS_OK)
        tps_parallel_for(n_items, threads, value_chunk, &rq);
    tps_scratch_free(&rq.scratch);
    free(rq.weights);
    return st;
}

/* ---- other quantities ---- */

/* Scratch per thread: u, v, then TPS_CHUNK sums per output. */
static void quantity_chunk(size_t item, int thread, void *user)
{
    const tps_quantity_pass *rq = user;
    const tps_eval_job *job = rq->job;
    const tps_model *md = job->model;
    double *pu = tps_scratch_at(&rq->scratch, thread);
    double *pv = pu + TPS_CHUNK;
    tps_derivs *sums = (tps_derivs *)(pv + TPS_CHUNK);
    size_t row, col0;
    const size_t count = tps_targets_chunk(&job->t, item, pu, pv, &row, &col0);
    for (size_t b = 0; b < job->n_quantities; ++b) {
        const tps_output *o = &job->quantities[b];
        tps_derivs *own = sums + TPS_CHUNK * rq->first[b];
        const double *a = md->affine[o->band];
        if (rq->first[b] == b) {
            tps_spline_sums(md->n, md->u, md->v, md->half_weights[o->band], rq->needs[b], count,
                            pu, pv, own);
            for (size_t k = 0; k < count; ++k)
                tps_derivs_add_affine(&own[k], a, pu[k], pv[k]);
        }
        for (size_t k = 0; k < count; ++k) {
            /* A model with covariates: their term of the derivatives, from
             * the caller's planes (the dispatcher checked they are there). */
            tps_derivs cov;
            if (md->n_cov)
                tps_covariates_derivs(md, o->band, job->cov_deriv, rq->needs[rq->first[b]], row,
                                      col0 + k, &cov);
            tps_output_store(o, row, col0 + k,
                             tps_quantity_eval(o->quantity, &own[k], md->scale,
                                               md->n_cov ? &cov : NULL));
        }
    }
}

static tps_status sums_quantities(tps_context *ctx, const tps_eval_job *job)
{
    const size_t n_items = tps_targets_items(&job->t);
    if (job->n_quantities == 0 || n_items == 0)
        return TPS_OK;
    const double pairs = (double)job->model->n * tps_targets_count(&job->t);
    const int threads =
        tps_threads_for(job->num_threads, n_items, pairs >= MIN_PAIRS_FOR_THREADS);
    return tps_quantity_pass_run(ctx, job, n_items, threads,
                                 sizeof(double) * 2 * TPS_CHUNK +
                                     sizeof(tps_derivs) * TPS_CHUNK * job->n_quantities,
                                 quantity_chunk);
}

/* The quantities formed from sums here, the standard errors in cpu_se.c. */
static tps_status quantities(tps_context *ctx, const tps_eval_job *job)
{
    return tps_quantities_split(ctx, job, sums_quantities, tps_cpu_standard_errors);
}

const tps_backend tps_backend_cpu_global = {"CPU (global model)", values, quantities};

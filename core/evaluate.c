/* evaluate.c: the CPU backend. Splits a request into chunks of pixels (or
 * points), runs the SIMD kernel on each chunk on the worker threads, adds the
 * affine part and writes straight into the caller's strided buffers. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pixels per work item: long enough to amortise a chunk's set-up, short
 * enough to balance threads on narrow windows. A multiple of the tile. */
#define CHUNK_PIXELS 1024

/* Below this many point-pixel pairs a request runs on the calling thread:
 * starting threads would cost more than it saves. */
#define MIN_PAIRS_FOR_THREADS 200000.0

static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && has_avx2();
}

tps_cpu_kernel tps_cpu_kernel_best(void)
{
    if (has_avx512())
        return TPS_CPU_KERNEL_AVX512;
    if (has_avx2())
        return TPS_CPU_KERNEL_AVX2;
    return TPS_CPU_KERNEL_GENERIC;
}

const char *tps_cpu_kernel_name(tps_cpu_kernel kernel)
{
    switch (kernel == TPS_CPU_KERNEL_AUTO ? tps_cpu_kernel_best() : kernel) {
    case TPS_CPU_KERNEL_AVX512: return "avx512";
    case TPS_CPU_KERNEL_AVX2: return "avx2";
    default: return "generic";
    }
}

/* NULL when this processor cannot run the requested kernel. */
tps_kernel_fn tps_kernel_for(tps_cpu_kernel kernel)
{
    switch (kernel) {
    case TPS_CPU_KERNEL_AUTO: return tps_kernel_for(tps_cpu_kernel_best());
    case TPS_CPU_KERNEL_AVX512: return has_avx512() ? tps_kernel_avx512 : NULL;
    case TPS_CPU_KERNEL_AVX2: return has_avx2() ? tps_kernel_avx2 : NULL;
    case TPS_CPU_KERNEL_GENERIC: return tps_kernel_generic;
    }
    return NULL;
}

void tps_eval_options_init(tps_eval_options *options)
{
    if (!options)
        return;
    options->num_threads = 1;
    options->device = TPS_DEVICE_AUTO;
    options->cpu_kernel = TPS_CPU_KERNEL_AUTO;
    options->precision = TPS_PRECISION_DOUBLE;
    options->gpu_max_memory = 0;
}

void tps_grid_from_geotransform(tps_grid *grid, const double gt[6], size_t x_off, size_t y_off,
                                size_t ncols, size_t nrows)
{
    grid->x0 = gt[0] + 0.5 * gt[1] + 0.5 * gt[2];
    grid->y0 = gt[3] + 0.5 * gt[4] + 0.5 * gt[5];
    grid->col_dx = gt[1];
    grid->col_dy = gt[4];
    grid->row_dx = gt[2];
    grid->row_dy = gt[5];
    grid->first_col = x_off;
    grid->first_row = y_off;
    grid->ncols = ncols;
    grid->nrows = nrows;
}

/* ---- one request, shared by its worker threads ---- */

typedef struct request {
    const tps_model *model;
    tps_kernel_fn kernel;
    size_t n_bands;
    const size_t *bands;       /* model band of each output */
    const double **weights;    /* n_bands weight arrays */
    tps_targets t;             /* where the targets come from and go to */
    /* Per-thread scratch: u, v, acc (CHUNK_PIXELS each, acc n_bands times). */
    double **scratch;
} request;

size_t tps_targets_chunk(const tps_targets *t, size_t item, size_t chunk, double *pu, double *pv,
                         size_t *row, size_t *col0)
{
    size_t count;
    if (t->is_grid) {
        const size_t chunks_per_row = (t->ncols + chunk - 1) / chunk;
        *row = item / chunks_per_row;
        *col0 = (item % chunks_per_row) * chunk;
        count = t->ncols - *col0 < chunk ? t->ncols - *col0 : chunk;
        const double j = (double)(t->first_row + *row);
        const double row_u = t->u0 + j * t->ru, row_v = t->v0 + j * t->rv;
        for (size_t k = 0; k < count; ++k) {
            const double i = (double)(t->first_col + *col0 + k);
            pu[k] = row_u + i * t->cu;
            pv[k] = row_v + i * t->cv;
        }
    } else {
        *row = 0;
        *col0 = item * chunk;
        count = t->n_pts - *col0 < chunk ? t->n_pts - *col0 : chunk;
        memcpy(pu, t->pts_u + *col0, count * sizeof(double));
        memcpy(pv, t->pts_v + *col0, count * sizeof(double));
    }
    return count;
}

static void run_chunk(size_t item, int thread, void *user)
{
    request *rq = user;
    const tps_model *md = rq->model;
    double *pu = rq->scratch[thread];
    double *pv = pu + CHUNK_PIXELS;
    double *acc = pv + CHUNK_PIXELS;

    size_t row, col0;
    const size_t count = tps_targets_chunk(&rq->t, item, CHUNK_PIXELS, pu, pv, &row, &col0);
    /* Pad to whole tiles with copies of the last target; their sums are
     * computed and dropped. */
    size_t m = (count + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
    for (size_t k = count; k < m; ++k) {
        pu[k] = pu[count - 1];
        pv[k] = pv[count - 1];
    }

    int same_v = rq->t.is_grid && rq->t.cv == 0.0;
    tps_kernel_job job = {md->n, md->u, md->v, rq->n_bands, rq->weights, m, pu, pv, same_v, acc};
    rq->kernel(&job);

    for (size_t b = 0; b < rq->n_bands; ++b) {
        const double *a = md->affine[rq->bands[b]];
        const double *sum = acc + b * m;
        if (rq->t.is_grid) {
            const tps_output *o = &rq->t.outputs[b];
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
            double *dst = rq->t.pts_out[b] + col0;
            for (size_t k = 0; k < count; ++k)
                dst[k] = sum[k] + a[0] + a[1] * pu[k] + a[2] * pv[k];
        }
    }
}

static tps_status run_request(tps_context *ctx, request *rq, size_t n_items, double pairs,
                              int num_threads)
{
    int threads = num_threads < 1 ? 1 : num_threads;
    if (pairs < MIN_PAIRS_FOR_THREADS)
        threads = 1;
    if ((size_t)threads > n_items)
        threads = (int)n_items;
    if (threads < 1)
        threads = 1;

    size_t per_thread = (size_t)CHUNK_PIXELS * (2 + rq->n_bands);
    double *pool = malloc(sizeof(double) * per_thread * (size_t)threads);
    double **scratch = malloc(sizeof(double *) * (size_t)threads);
    const double **weights = malloc(sizeof(double *) * rq->n_bands);
    if (!pool || !scratch || !weights) {
        free(pool);
        free(scratch);
        free(weights);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for evaluation buffers");
    }
    for (int t = 0; t < threads; ++t)
        scratch[t] = pool + per_thread * (size_t)t;
    for (size_t b = 0; b < rq->n_bands; ++b)
        weights[b] = rq->model->half_weights[rq->bands[b]];
    rq->scratch = scratch;
    rq->weights = weights;

    tps_parallel_for(n_items, threads, run_chunk, rq);

    free(pool);
    free(scratch);
    free(weights);
    return TPS_OK;
}

static tps_status check_common(tps_context *ctx, const tps_model *model,
                               const tps_eval_options *options, tps_kernel_fn *kernel)
{
    if (!model)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no model");
    tps_cpu_kernel which = options ? options->cpu_kernel : TPS_CPU_KERNEL_AUTO;
    *kernel = tps_kernel_for(which);
    if (!*kernel)
        return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                             "this processor cannot run the %s evaluation kernel",
                             tps_cpu_kernel_name(which));
    return TPS_OK;
}

/* Value outputs of a grid on the CPU: a global model's through the vector
 * kernel in one pass (distances shared by their bands), a local model's
 * through local.c (the same kernel per patch). */
static tps_status evaluate_values_cpu(tps_context *ctx, request *rq, double pairs,
                                      int num_threads)
{
    if (rq->model->local)
        return tps_local_evaluate(ctx, rq->model, rq->kernel, rq->n_bands, rq->bands, &rq->t,
                                  num_threads);
    const size_t chunks_per_row = (rq->t.ncols + CHUNK_PIXELS - 1) / CHUNK_PIXELS;
    return run_request(ctx, rq, chunks_per_row * rq->t.nrows, pairs, num_threads);
}

/* The CPU evaluation of a grid: value outputs as above, outputs of a
 * derivative quantity through eval_deriv.c (global) or local.c (local). */
static tps_status evaluate_grid_cpu(tps_context *ctx, request *rq, size_t n_outputs,
                                    const tps_output *outputs, const size_t *bands, double pairs,
                                    int num_threads)
{
    size_t n_deriv = 0;
    for (size_t b = 0; b < n_outputs; ++b)
        n_deriv += outputs[b].quantity != TPS_QUANTITY_VALUE;
    if (n_deriv == 0) {
        rq->t.outputs = outputs;
        return evaluate_values_cpu(ctx, rq, pairs, num_threads);
    }
    /* Mixed requests: split the outputs by path, keeping their order. */
    tps_output *split = malloc(sizeof(tps_output) * n_outputs);
    size_t *value_bands = malloc(sizeof(size_t) * n_outputs);
    if (!split || !value_bands) {
        free(split);
        free(value_bands);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    size_t n_value = 0, d = n_outputs - n_deriv;
    for (size_t b = 0; b < n_outputs; ++b) {
        if (outputs[b].quantity == TPS_QUANTITY_VALUE) {
            value_bands[n_value] = bands[b];
            split[n_value++] = outputs[b];
        } else {
            split[d++] = outputs[b];
        }
    }
    tps_status st = TPS_OK;
    if (n_value > 0) {
        rq->t.outputs = split;
        rq->n_bands = n_value;
        rq->bands = value_bands;
        st = evaluate_values_cpu(ctx, rq, pairs, num_threads);
    }
    if (st == TPS_OK) {
        tps_targets t = rq->t;
        t.outputs = split + n_value;
        st = rq->model->local
                 ? tps_local_evaluate_deriv(ctx, rq->model, &t, n_deriv, num_threads)
                 : tps_evaluate_grid_deriv(ctx, rq->model, &t, n_deriv, num_threads);
    }
    free(split);
    free(value_bands);
    return st;
}

tps_status tps_evaluate_grid(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                             size_t n_outputs, const tps_output *outputs,
                             const tps_eval_options *options)
{
    tps_clear_error(ctx);
    tps_kernel_fn kernel;
    tps_status st = check_common(ctx, model, options, &kernel);
    if (st != TPS_OK)
        return st;
    if (!grid || (n_outputs > 0 && !outputs))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no grid or no outputs");
    if (n_outputs == 0 || grid->ncols == 0 || grid->nrows == 0)
        return TPS_OK;

    size_t *bands = malloc(sizeof(size_t) * n_outputs);
    if (!bands)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    size_t n_deriv = 0;
    for (size_t b = 0; b < n_outputs; ++b) {
        const tps_output *o = &outputs[b];
        if (o->band >= model->n_bands || !o->data ||
            (o->type != TPS_FLOAT32 && o->type != TPS_FLOAT64) ||
            (unsigned)o->quantity > (unsigned)TPS_QUANTITY_LAPLACIAN) {
            free(bands);
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "output %zu: band %zu of %zu, or its buffer, type or quantity, "
                                 "is invalid",
                                 b, o->band, model->n_bands);
        }
        if (o->quantity != TPS_QUANTITY_VALUE)
            ++n_deriv;
        bands[b] = o->band;
    }
    const double s = model->scale;
    request rq = {0};
    rq.model = model;
    rq.kernel = kernel;
    rq.n_bands = n_outputs;
    rq.bands = bands;
    rq.t = (tps_targets){1,
                         (grid->x0 - model->cx) / s,
                         (grid->y0 - model->cy) / s,
                         grid->col_dx / s,
                         grid->col_dy / s,
                         grid->row_dx / s,
                         grid->row_dy / s,
                         grid->first_col,
                         grid->first_row,
                         grid->ncols,
                         grid->nrows,
                         outputs,
                         NULL,
                         NULL,
                         0,
                         NULL};
    const double pixels = (double)grid->ncols * (double)grid->nrows;
    const double pairs =
        model->local ? tps_local_pairs(model->local, pixels) : (double)model->n * pixels;
    const tps_device requested = options ? options->device : TPS_DEVICE_AUTO;
    const int threads = options ? options->num_threads : 1;
    if (requested == TPS_DEVICE_GPU || tps_device_choose(requested, pairs) == TPS_DEVICE_GPU) {
        if (model->local && options && options->precision == TPS_PRECISION_MIXED)
            tps_log(ctx, TPS_LOG_DEBUG, "a local model evaluates in DOUBLE on the GPU");
        st = tps_evaluate_grid_gpu(ctx, model, grid, n_outputs, outputs,
                                   options ? options->precision : TPS_PRECISION_DOUBLE,
                                   options ? options->gpu_max_memory : 0);
        if (st == TPS_OK || requested == TPS_DEVICE_GPU) {
            free(bands);
            return st;
        }
        /* AUTO: a GPU that fails (out of memory, gone) costs speed, not the read. */
        tps_log(ctx, TPS_LOG_DEBUG, "GPU evaluation failed, evaluating on the CPU: %s",
                tps_context_errmsg(ctx));
        tps_clear_error(ctx);
    }
    st = evaluate_grid_cpu(ctx, &rq, n_outputs, outputs, bands, pairs, threads);
    free(bands);
    return st;
}

tps_status tps_evaluate_scaled(tps_context *ctx, const tps_model *model, size_t n_bands,
                               const size_t *bands, size_t n, const double *u, const double *v,
                               double **out, int num_threads, tps_cpu_kernel which)
{
    tps_kernel_fn kernel = tps_kernel_for(which);
    if (!kernel)
        return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                             "this processor cannot run the %s evaluation kernel",
                             tps_cpu_kernel_name(which));
    if (n == 0 || n_bands == 0)
        return TPS_OK;
    request rq = {0};
    rq.model = model;
    rq.kernel = kernel;
    rq.n_bands = n_bands;
    rq.bands = bands;
    rq.t.pts_u = u;
    rq.t.pts_v = v;
    rq.t.n_pts = n;
    rq.t.pts_out = out;
    if (model->local)
        return tps_local_evaluate(ctx, model, kernel, n_bands, bands, &rq.t, num_threads);
    return run_request(ctx, &rq, (n + CHUNK_PIXELS - 1) / CHUNK_PIXELS, (double)model->n * (double)n,
                       num_threads);
}

tps_status tps_evaluate_points(tps_context *ctx, const tps_model *model, size_t band, size_t n,
                               const double *x, const double *y, double *out,
                               const tps_eval_options *options)
{
    tps_clear_error(ctx);
    tps_kernel_fn kernel;
    tps_status st = check_common(ctx, model, options, &kernel);
    if (st != TPS_OK)
        return st;
    if (band >= model->n_bands || (n > 0 && (!x || !y || !out)))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "invalid band or buffers");
    double *uv = malloc(sizeof(double) * 2 * (n ? n : 1));
    if (!uv)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < n; ++i) {
        uv[i] = (x[i] - model->cx) / model->scale;
        uv[n + i] = (y[i] - model->cy) / model->scale;
    }
    st = tps_evaluate_scaled(ctx, model, 1, &band, n, uv, uv + n, &out,
                             options ? options->num_threads : 1,
                             options ? options->cpu_kernel : TPS_CPU_KERNEL_AUTO);
    free(uv);
    return st;
}

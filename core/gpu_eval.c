/* gpu_eval.c: the GPU backend, the engine's side of it: the model's device
 * copy (made once, under the model's lock, for a global model's points and
 * weights or a local model's patches), value requests handed to the kernels
 * of gpu/ (through gpu_backend.h; gpu_none.c without CUDA), and the other
 * quantities: the device forms their sums (sums.h), the host applies the
 * quantity table's formulas, so both devices share one definition. */
#include "eval.h"
#include "gpu_backend.h"
#include "local.h"
#include "mixed.h"

#include <stdlib.h>

/* tps_testing.h's hook: MIXED's blocks with (bx + by) % every == 0 fall
 * back to DOUBLE as if their bound had failed (0: none). */
static size_t mixed_force_every = 0;

void tps_testing_mixed_force_fallback(size_t every)
{
    mixed_force_every = every;
}

/* The device copy of a GLOBAL model: its points and weights in FP64, and in
 * MIXED's layout (mixed.h), built here. */
static struct tps_gpu_model *upload_global(const tps_model *md, size_t max_bytes, tps_error *err)
{
    tps_mixed_layout layout;
    double *range = malloc(sizeof(double) * (md->n_bands ? md->n_bands : 1));
    if (!range || tps_mixed_layout_build(&layout, md->n, md->u, md->v, md->n_bands,
                                         (const double *const *)md->half_weights) != TPS_OK) {
        free(range);
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    for (size_t b = 0; b < md->n_bands; ++b)
        range[b] = md->band_info[b].value_max - md->band_info[b].value_min;
    struct tps_gpu_model *gpu =
        tps_gpu_model_create(md->n, md->u, md->v, md->n_bands,
                             (const double *const *)md->half_weights,
                             (const double(*)[3])md->affine, range, &layout, max_bytes, err);
    tps_mixed_layout_free(&layout);
    free(range);
    return gpu;
}

/* The device copy of a LOCAL model's patches. */
static struct tps_gpu_local *upload_local(const struct tps_local *lc, size_t max_bytes,
                                          tps_error *err)
{
    tps_gpu_patch *gp = calloc(lc->n_patches ? lc->n_patches : 1, sizeof *gp);
    if (!gp) {
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        gp[p] = (tps_gpu_patch){pt->cx, pt->cy, pt->hx, pt->hy, pt->pcx, pt->pcy, pt->ps, pt->n,
                                pt->u, pt->v, (const double *const *)pt->hw,
                                (const double(*)[3])pt->affine};
    }
    const tps_gpu_lookup lookup = {lc->bu0, lc->bv0, lc->bu1, lc->bv1, lc->gx, lc->gy,
                                   lc->gdu, lc->gdv, lc->cell_start, lc->cell_patch};
    struct tps_gpu_local *gpu =
        tps_gpu_local_create(lc->n_patches, gp, lc->n_bands, &lookup, max_bytes, err);
    free(gp);
    return gpu;
}

/* The model's device copy, uploaded on first use under the model's lock;
 * TPS_OK when it is there. The copy is a cache of the immutable model:
 * filling it does not change what the model computes. */
static tps_status device_copy(tps_context *ctx, const tps_model *model, size_t max_bytes)
{
    tps_model *md = (tps_model *)model;
    tps_error err = {TPS_OK, ""};
    pthread_mutex_lock(&md->gpu_lock);
    const int had = md->local ? md->gpu_local != NULL : md->gpu != NULL;
    if (!had && md->local)
        md->gpu_local = upload_local(md->local, max_bytes, &err);
    else if (!had)
        md->gpu = upload_global(md, max_bytes, &err);
    const int has = md->local ? md->gpu_local != NULL : md->gpu != NULL;
    if (!had && has)
        md->gpu_uploads++;
    pthread_mutex_unlock(&md->gpu_lock);
    /* Whatever failed, the GPU cannot evaluate: AUTO falls back to the CPU. */
    return has ? TPS_OK
               : tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "%s", err.message);
}

/* A local model with covariates evaluates on the CPU: its GPU path has not
 * been checked on a GPU (evaluate.c does not ask the GPU for it unless
 * DEVICE=GPU is explicit, which then fails with this). */
static tps_status local_covariates_on_cpu(tps_context *ctx)
{
    return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                         "a local model with covariates is evaluated on the CPU only");
}

/* Pixels per request of a model with covariates: its values come back in
 * FP64 to the host, which adds the covariates' term (the caller's planes
 * live there) and stores them in the caller's type. */
#define COVARIATE_CHUNK_PIXELS ((size_t)1 << 20)

static tps_status values_with_covariates(tps_context *ctx, const tps_eval_job *job)
{
    const tps_model *md = job->model;
    const tps_window *g = &job->t.w;
    const size_t nb = job->n_values, nc = md->n_cov;
    size_t rows = COVARIATE_CHUNK_PIXELS / (g->ncols ? g->ncols : 1);
    rows = rows < 1 ? 1 : (rows > g->nrows ? g->nrows : rows);
    double *buf = malloc(sizeof(double) * rows * g->ncols * nb);
    double *zs = malloc(sizeof(double) * g->ncols * nc);
    tps_output *outs = malloc(sizeof(tps_output) * nb);
    tps_status st = TPS_OK;
    if (!buf || !zs || !outs) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for GPU values");
        goto done;
    }
    for (size_t b = 0; b < nb; ++b)
        outs[b] = (tps_output){job->values[b].band, buf + b * rows * g->ncols, TPS_FLOAT64,
                               sizeof(double), (ptrdiff_t)(sizeof(double) * g->ncols),
                               TPS_QUANTITY_VALUE};
    for (size_t row0 = 0; row0 < g->nrows && st == TPS_OK; row0 += rows) {
        tps_window chunk = *g;
        chunk.first_row = g->first_row + row0;
        chunk.nrows = g->nrows - row0 < rows ? g->nrows - row0 : rows;
        tps_error err;
        const tps_gpu_guard guard = {job->tolerance, mixed_force_every, job->stats};
        if (tps_gpu_evaluate_grid(md->gpu, &chunk, nb, outs, job->precision, &guard,
                                  job->gpu_max_bytes, &err) != TPS_OK) {
            st = tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU evaluation: %s",
                               err.message);
            break;
        }
        for (size_t r = 0; r < chunk.nrows; ++r) {
            tps_covariates_load(md, job->cov, 1, row0 + r, 0, g->ncols, zs, g->ncols);
            for (size_t b = 0; b < nb; ++b) {
                const double *src = buf + b * rows * g->ncols + r * g->ncols;
                for (size_t c = 0; c < g->ncols; ++c)
                    tps_output_store(&job->values[b], row0 + r, c,
                                     src[c] + tps_covariates_term(md, job->values[b].band, zs,
                                                                  g->ncols, c));
            }
        }
    }
done:
    free(buf);
    free(zs);
    free(outs);
    return st;
}

static tps_status values(tps_context *ctx, const tps_eval_job *job)
{
    if (job->n_values == 0)
        return TPS_OK;
    if (!job->t.is_grid)
        return tps_set_error(ctx, TPS_ERR_INTERNAL, "the GPU evaluates grids only");
    const tps_model *md = job->model;
    if (md->local && md->n_cov)
        return local_covariates_on_cpu(ctx);
    const tps_status st = device_copy(ctx, md, job->gpu_max_bytes);
    if (st != TPS_OK)
        return st;
    if (md->local && job->precision == TPS_PRECISION_MIXED)
        tps_log(ctx, TPS_LOG_DEBUG, "a local model evaluates in DOUBLE on the GPU");
    if (md->n_cov)
        return values_with_covariates(ctx, job);
    tps_error err;
    const tps_gpu_guard guard = {job->tolerance, mixed_force_every, job->stats};
    const tps_status rc =
        md->gpu ? tps_gpu_evaluate_grid(md->gpu, &job->t.w, job->n_values, job->values,
                                        job->precision, &guard, job->gpu_max_bytes, &err)
                : tps_gpu_local_evaluate_grid(md->gpu_local, &job->t.w, job->n_values,
                                              job->values, job->gpu_max_bytes, &err);
    return rc == TPS_OK ? TPS_OK
                        : tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU evaluation: %s",
                                        err.message);
}

/* Pixels per derivative request to the GPU: bounds the host and device
 * buffers of sums (up to 7 doubles a pixel: 56 MiB) whatever the window. */
#define SUMS_CHUNK_PIXELS ((size_t)1 << 20)

/* One chunk of sums from the device, turned into the outputs of one model
 * band: the affine part added (global models), then each output's formula
 * from the quantity table. Rows are independent: the host's threads share
 * them (one thread here cost a quarter of a 4096^2 slope + laplacian
 * request on the H200). */
typedef struct formula_pass {
    const tps_eval_job *job;
    const tps_window *chunk;
    size_t row0;           /* the chunk's first row within the request */
    size_t b;              /* the first output of this band */
    const size_t *first;   /* tps_outputs_group */
    unsigned needs;
    const double *sums;
} formula_pass;

static void formula_row(size_t r, int thread, void *user)
{
    (void)thread;
    const formula_pass *fp = user;
    const tps_eval_job *job = fp->job;
    const tps_model *md = job->model;
    const tps_window *chunk = fp->chunk;
    const size_t pixels = chunk->nrows * chunk->ncols, n = job->n_quantities;
    const size_t band = job->quantities[fp->b].band;
    const double j = (double)(chunk->first_row + r);
    for (size_t c = 0; c < chunk->ncols; ++c) {
        tps_derivs d;
        tps_derivs_zero(&d);
        tps_derivs_get(&d, fp->needs, fp->sums, pixels, r * chunk->ncols + c);
        if (md->gpu) {
            double u, v;
            tps_cell_centre(chunk, (double)(chunk->first_col + c), j, &u, &v);
            tps_derivs_add_affine(&d, md->affine[band], u, v);
        }
        /* A model with covariates: their term, from the caller's planes on
         * the host, as the CPU backend adds it. */
        tps_derivs cov;
        if (md->n_cov)
            tps_covariates_derivs(md, band, job->cov_deriv, fp->needs, fp->row0 + r, c, &cov);
        for (size_t k = fp->b; k < n; ++k)
            if (fp->first[k] == fp->b)
                tps_output_store(&job->quantities[k], fp->row0 + r, c,
                                 tps_quantity_eval(job->quantities[k].quantity, &d, md->scale,
                                                   md->n_cov ? &cov : NULL));
    }
}

/* The device sums each model band's needs once (a global model: the
 * spline's sums, its affine part added here; a local model: the blend's
 * derivatives, affine parts included) for every output of that band. */
static tps_status sums_quantities(tps_context *ctx, const tps_eval_job *job)
{
    const size_t n = job->n_quantities;
    const tps_window *g = &job->t.w;
    if (n == 0 || g->ncols == 0 || g->nrows == 0)
        return TPS_OK;
    const tps_model *md = job->model;
    if (md->local && md->n_cov)
        return local_covariates_on_cpu(ctx);
    tps_status st = device_copy(ctx, md, job->gpu_max_bytes);
    if (st != TPS_OK)
        return st;
    size_t rows = SUMS_CHUNK_PIXELS / g->ncols;
    if (rows < 1)
        rows = 1;
    if (rows > g->nrows)
        rows = g->nrows;
    double *sums = malloc(sizeof(double) * 7 * rows * g->ncols);
    size_t *first = malloc(sizeof(size_t) * n);
    unsigned *needs = malloc(sizeof(unsigned) * n);
    if (!sums || !first || !needs) {
        free(sums);
        free(first);
        free(needs);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for derivative sums");
    }
    tps_outputs_group(job->quantities, n, first, needs);
    tps_error err;
    for (size_t row0 = 0; row0 < g->nrows && st == TPS_OK; row0 += rows) {
        tps_window chunk = *g;
        chunk.first_row = g->first_row + row0;
        chunk.nrows = g->nrows - row0 < rows ? g->nrows - row0 : rows;
        for (size_t b = 0; b < n && st == TPS_OK; ++b) {
            if (first[b] != b)
                continue;
            const size_t band = job->quantities[b].band;
            const tps_status rc =
                md->gpu ? tps_gpu_deriv_sums(md->gpu, &chunk, band, needs[b], sums,
                                             job->gpu_max_bytes, &err)
                        : tps_gpu_local_deriv_sums(md->gpu_local, &chunk, band, needs[b], sums,
                                                   job->gpu_max_bytes, &err);
            if (rc != TPS_OK) {
                st = tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU derivatives: %s",
                                   err.message);
                break;
            }
            formula_pass fp = {job, &chunk, row0, b, first, needs[b], sums};
            tps_parallel_for(chunk.nrows, tps_threads_for(job->num_threads, chunk.nrows, 1),
                             formula_row, &fp);
        }
    }
    free(sums);
    free(first);
    free(needs);
    return st;
}

/* The quantities formed from sums on the device, then the standard errors. */
static tps_status quantities(tps_context *ctx, const tps_eval_job *job)
{
    return tps_quantities_split(ctx, job, sums_quantities, tps_gpu_standard_errors);
}

const tps_backend tps_backend_gpu = {"GPU", values, quantities};

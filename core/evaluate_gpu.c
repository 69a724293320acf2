/* evaluate_gpu.c: the engine's side of the GPU path: the model's device
 * copy (made once, under the model's lock) and the request in scaled
 * coordinates. The backend itself is gpu/tps_gpu.cu (or gpu_none.c). */
#include "gpu_backend.h"
#include "internal.h"
#include "local.h"

#include <stdio.h>
#include <stdlib.h>

/* The model's device copy (its points and weights, or a local model's
 * patches), uploaded on first use under the model's lock; TPS_OK when it
 * is there. */
static tps_status device_copy(tps_context *ctx, tps_model *md, size_t max_bytes)
{
    char err[512] = "";
    pthread_mutex_lock(&md->gpu_lock);
    const int had = md->local ? md->gpu_local != NULL : md->gpu != NULL;
    if (!had && md->local)
        md->gpu_local = tps_local_upload(md->local, max_bytes, err, sizeof err);
    else if (!had)
        md->gpu = tps_gpu_model_create(md->n, md->u, md->v, md->n_bands,
                                       (const double *const *)md->half_weights,
                                       (const double(*)[3])md->affine, max_bytes, err,
                                       sizeof err);
    const int has = md->local ? md->gpu_local != NULL : md->gpu != NULL;
    if (!had && has)
        md->gpu_uploads++;
    pthread_mutex_unlock(&md->gpu_lock);
    return has ? TPS_OK : tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "%s", err);
}

/* Pixels per derivative request to the GPU: bounds the host and device
 * buffers of sums (3 doubles a pixel: 24 MiB) whatever the window. */
#define DERIV_GPU_CHUNK_PIXELS ((size_t)1 << 20)

/* Derivative outputs on the GPU: the device sums them per model band (a
 * global model: the spline's gradient and laplacian sums, its affine part
 * added here; a local model: the blend's derivatives, affine parts
 * included), the host forms each quantity with the CPU's code
 * (eval_deriv.c). Exactly one of gpu and gpu_local is set. */
static tps_status evaluate_deriv_gpu(tps_context *ctx, const tps_model *model,
                                     struct tps_gpu_model *gpu, struct tps_gpu_local *gpu_local,
                                     const tps_gpu_grid *g, size_t n_outputs,
                                     const tps_output *outputs, size_t max_bytes)
{
    static const double no_affine[3] = {0.0, 0.0, 0.0};
    size_t rows = DERIV_GPU_CHUNK_PIXELS / g->ncols;
    if (rows < 1)
        rows = 1;
    if (rows > g->nrows)
        rows = g->nrows;
    double *sums = malloc(sizeof(double) * 3 * rows * g->ncols);
    if (!sums)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for derivative sums");
    tps_status st = TPS_OK;
    char err[512] = "";
    for (size_t row0 = 0; row0 < g->nrows && st == TPS_OK; row0 += rows) {
        tps_gpu_grid chunk = *g;
        chunk.first_row = g->first_row + row0;
        chunk.nrows = g->nrows - row0 < rows ? g->nrows - row0 : rows;
        const size_t pixels = chunk.nrows * chunk.ncols;
        for (size_t b = 0; b < n_outputs && st == TPS_OK; ++b) {
            size_t j = 0; /* the first output of this band: its sums serve them all */
            while (outputs[j].band != outputs[b].band)
                ++j;
            if (j != b)
                continue;
            const int rc = gpu ? tps_gpu_deriv_sums(gpu, &chunk, outputs[b].band, sums, max_bytes,
                                                    err, sizeof err)
                               : tps_gpu_local_deriv_sums(gpu_local, &chunk, outputs[b].band,
                                                          sums, max_bytes, err, sizeof err);
            if (rc != 0) {
                st = tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU derivatives: %s", err);
                break;
            }
            const double *a = gpu ? model->affine[outputs[b].band] : no_affine;
            for (size_t k = b; k < n_outputs; ++k) {
                if (outputs[k].band != outputs[b].band)
                    continue;
                for (size_t r = 0; r < chunk.nrows; ++r)
                    for (size_t c = 0; c < chunk.ncols; ++c) {
                        const size_t p = r * chunk.ncols + c;
                        tps_output_store(&outputs[k], row0 + r, c,
                                         tps_deriv_quantity(outputs[k].quantity, sums[p],
                                                            sums[pixels + p],
                                                            sums[2 * pixels + p], a,
                                                            model->scale));
                    }
            }
        }
    }
    free(sums);
    return st;
}

tps_status tps_evaluate_grid_gpu(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                                 size_t n_outputs, const tps_output *outputs,
                                 tps_precision precision, size_t max_bytes)
{
    const double s = model->scale;
    tps_gpu_grid g = {(grid->x0 - model->cx) / s, (grid->y0 - model->cy) / s, grid->col_dx / s,
                      grid->col_dy / s, grid->row_dx / s, grid->row_dy / s, grid->first_col,
                      grid->first_row, grid->ncols, grid->nrows};
    char err[512] = "";
    /* The device copy is a cache of the immutable model: filling it does
     * not change what the model computes. */
    if (device_copy(ctx, (tps_model *)model, max_bytes) != TPS_OK)
        return tps_context_errno(ctx);
    struct tps_gpu_model *gpu = model->gpu;
    struct tps_gpu_local *gpu_local = model->gpu_local;
    /* Value outputs go to the value kernels, derivative ones to theirs,
     * each list in the caller's order. */
    tps_output *split = malloc(sizeof(tps_output) * (n_outputs ? n_outputs : 1));
    if (!split)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    size_t n_value = 0, n_deriv = 0;
    for (size_t k = 0; k < n_outputs; ++k)
        if (outputs[k].quantity == TPS_QUANTITY_VALUE)
            split[n_value++] = outputs[k];
    for (size_t k = 0; k < n_outputs; ++k)
        if (outputs[k].quantity != TPS_QUANTITY_VALUE)
            split[n_value + n_deriv++] = outputs[k];
    tps_status st = TPS_OK;
    const int rc = n_value == 0 ? 0
                   : gpu ? tps_gpu_evaluate_grid(gpu, &g, n_value, split, precision, max_bytes,
                                                 err, sizeof err)
                         : tps_gpu_local_evaluate_grid(gpu_local, &g, n_value, split, max_bytes,
                                                       err, sizeof err);
    if (rc != 0)
        st = tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU evaluation: %s", err);
    if (st == TPS_OK && n_deriv > 0)
        st = evaluate_deriv_gpu(ctx, model, gpu, gpu_local, &g, n_deriv, split + n_value,
                                max_bytes);
    free(split);
    return st;
}

/* The device copy of a LOCAL model's patches. */
struct tps_gpu_local *tps_local_upload(const struct tps_local *lc, size_t max_bytes, char *err,
                                       size_t errlen)
{
    tps_gpu_patch *gp = calloc(lc->n_patches ? lc->n_patches : 1, sizeof *gp);
    if (!gp) {
        snprintf(err, errlen, "out of host memory");
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
        tps_gpu_local_create(lc->n_patches, gp, lc->n_bands, &lookup, max_bytes, err, errlen);
    free(gp);
    return gpu;
}

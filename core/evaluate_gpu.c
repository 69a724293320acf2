/* evaluate_gpu.c: the engine's side of the GPU path: the model's device
 * copy (made once, under the model's lock) and the request in scaled
 * coordinates. The backend itself is gpu/tps_gpu.cu (or gpu_none.c). */
#include "gpu_backend.h"
#include "internal.h"

/* The device copy of the model, uploading it on first use. */
static struct tps_gpu_model *device_model(tps_context *ctx, tps_model *md, size_t max_bytes)
{
    char err[512] = "";
    pthread_mutex_lock(&md->gpu_lock);
    if (!md->gpu) {
        md->gpu = tps_gpu_model_create(md->n, md->u, md->v, md->n_bands,
                                       (const double *const *)md->half_weights,
                                       (const double(*)[3])md->affine, max_bytes, err,
                                       sizeof err);
        if (md->gpu)
            md->gpu_uploads++;
    }
    struct tps_gpu_model *gpu = md->gpu;
    pthread_mutex_unlock(&md->gpu_lock);
    if (!gpu)
        tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "%s", err);
    return gpu;
}

/* The same for a LOCAL model's patches. */
static struct tps_gpu_local *device_local(tps_context *ctx, tps_model *md, size_t max_bytes)
{
    char err[512] = "";
    pthread_mutex_lock(&md->gpu_lock);
    if (!md->gpu_local) {
        md->gpu_local = tps_local_upload(md->local, max_bytes, err, sizeof err);
        if (md->gpu_local)
            md->gpu_uploads++;
    }
    struct tps_gpu_local *gpu = md->gpu_local;
    pthread_mutex_unlock(&md->gpu_lock);
    if (!gpu)
        tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "%s", err);
    return gpu;
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
    if (model->local) {
        struct tps_gpu_local *gpu = device_local(ctx, (tps_model *)model, max_bytes);
        if (!gpu)
            return tps_context_errno(ctx);
        if (tps_gpu_local_evaluate_grid(gpu, &g, n_outputs, outputs, max_bytes, err,
                                        sizeof err) != 0)
            return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU evaluation: %s", err);
        return TPS_OK;
    }
    struct tps_gpu_model *gpu = device_model(ctx, (tps_model *)model, max_bytes);
    if (!gpu)
        return tps_context_errno(ctx);
    if (tps_gpu_evaluate_grid(gpu, &g, n_outputs, outputs, precision, max_bytes, err,
                              sizeof err) != 0)
        return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU evaluation: %s", err);
    return TPS_OK;
}

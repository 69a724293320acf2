/* gpu_none.c: the GPU backend of a build without CUDA. */
#include "gpu_backend.h"

static tps_status no_gpu(tps_error *err)
{
    return tps_error_set(err, TPS_ERR_DEVICE_UNAVAILABLE,
                         "this build of gdal-tps has no GPU support (built without CUDA)");
}

tps_status tps_gpu_probe(tps_error *err)
{
    return no_gpu(err);
}

const char *tps_gpu_name(void)
{
    return "";
}

tps_gpu_model *tps_gpu_model_create(size_t n, const double *u, const double *v, size_t n_bands,
                                    const double *const *half_weights, const double (*affine)[3],
                                    const double *band_range, const tps_mixed_layout *mixed,
                                    size_t max_bytes, tps_error *err)
{
    (void)n, (void)u, (void)v, (void)n_bands, (void)half_weights, (void)affine, (void)max_bytes;
    (void)band_range, (void)mixed;
    no_gpu(err);
    return NULL;
}

void tps_gpu_model_destroy(tps_gpu_model *model)
{
    (void)model;
}

tps_status tps_gpu_evaluate_grid(tps_gpu_model *model, const tps_window *grid, size_t n_outputs,
                                 const tps_output *outputs, tps_precision precision,
                                 const tps_gpu_guard *guard, size_t max_bytes, tps_error *err)
{
    (void)model, (void)grid, (void)n_outputs, (void)outputs, (void)precision, (void)max_bytes;
    (void)guard;
    return no_gpu(err);
}

tps_status tps_gpu_deriv_sums(tps_gpu_model *model, const tps_window *grid, size_t band,
                              unsigned needs, double *sums, size_t max_bytes, tps_error *err)
{
    (void)model, (void)grid, (void)band, (void)needs, (void)sums, (void)max_bytes;
    return no_gpu(err);
}

tps_status tps_gpu_solve_available(tps_error *err)
{
    return no_gpu(err);
}

tps_status tps_gpu_factor_solve(size_t n, const double *u, const double *v, double lambda,
                                const double *reflectors, const double tau[3], size_t n_rhs,
                                double *rhs, double *first_columns, size_t max_bytes,
                                tps_error *err)
{
    (void)n, (void)u, (void)v, (void)lambda, (void)reflectors, (void)tau, (void)n_rhs;
    (void)rhs, (void)first_columns, (void)max_bytes;
    return no_gpu(err);
}

tps_gpu_local *tps_gpu_local_create(size_t n_patches, const tps_gpu_patch *patches,
                                    size_t n_bands, const tps_gpu_lookup *lookup,
                                    size_t max_bytes, tps_error *err)
{
    (void)n_patches, (void)patches, (void)n_bands, (void)lookup, (void)max_bytes;
    no_gpu(err);
    return NULL;
}

void tps_gpu_local_destroy(tps_gpu_local *local)
{
    (void)local;
}

tps_status tps_gpu_local_evaluate_grid(tps_gpu_local *local, const tps_window *grid,
                                       size_t n_outputs, const tps_output *outputs,
                                       size_t max_bytes, tps_error *err)
{
    (void)local, (void)grid, (void)n_outputs, (void)outputs, (void)max_bytes;
    return no_gpu(err);
}

tps_status tps_gpu_factor_solve_batch(size_t count, tps_gpu_system *systems, size_t max_bytes,
                                      tps_error *err)
{
    for (size_t k = 0; k < count; ++k)
        systems[k].status = TPS_ERR_DEVICE_UNAVAILABLE;
    (void)max_bytes;
    return no_gpu(err);
}

tps_status tps_gpu_local_deriv_sums(tps_gpu_local *local, const tps_window *grid, size_t band,
                                    unsigned needs, double *sums, size_t max_bytes,
                                    tps_error *err)
{
    (void)local, (void)grid, (void)band, (void)needs, (void)sums, (void)max_bytes;
    return no_gpu(err);
}

tps_gpu_matvec *tps_gpu_matvec_create(size_t n, const double *u, const double *v,
                                      size_t max_bytes, tps_error *err)
{
    (void)n, (void)u, (void)v, (void)max_bytes;
    no_gpu(err);
    return NULL;
}

tps_gpu_se *tps_gpu_se_create(size_t n, size_t m, const double *u, const double *v,
                              const double *vr, const double *f, const double *r,
                              const double *m11, const double *linv, size_t ld,
                              size_t max_bytes, tps_error *err)
{
    (void)n, (void)m, (void)u, (void)v, (void)vr, (void)f, (void)r, (void)m11, (void)linv;
    (void)ld, (void)max_bytes;
    no_gpu(err);
    return NULL;
}

void tps_gpu_matvec_destroy(tps_gpu_matvec *mv)
{
    (void)mv;
}

tps_status tps_gpu_matvec_apply(tps_gpu_matvec *mv, const double *h, size_t m,
                                const size_t *idx, double *out, tps_error *err)
{
    (void)mv, (void)h, (void)m, (void)idx, (void)out;
    return no_gpu(err);
}

void tps_gpu_se_destroy(tps_gpu_se *se)
{
    (void)se;
}

tps_status tps_gpu_se_variance(tps_gpu_se *se, const tps_window *grid, const double *zs,
                               double *out, size_t max_bytes, tps_error *err)
{
    (void)se, (void)grid, (void)zs, (void)out, (void)max_bytes;
    return no_gpu(err);
}

tps_status tps_gpu_se_tiles_prepare(tps_gpu_se *se, const double *lag, size_t max_bytes,
                                    tps_error *err)
{
    (void)se, (void)lag, (void)max_bytes;
    return no_gpu(err);
}

tps_status tps_gpu_se_tile_group(tps_gpu_se *se, const tps_window *w,
                                 const tps_gpu_se_tile *tiles, const int *near, size_t n_near,
                                 const double *zs, double *out, double *guards, tps_error *err)
{
    (void)se, (void)w, (void)tiles, (void)near, (void)n_near, (void)zs, (void)out, (void)guards;
    return no_gpu(err);
}

tps_status tps_gpu_time_dgemm(size_t m, size_t n, size_t k, int repeats, double *tflops,
                              tps_error *err)
{
    (void)m, (void)n, (void)k, (void)repeats, (void)tflops;
    return no_gpu(err);
}

tps_status tps_gpu_eigen_batch(size_t count, tps_gpu_eigen_system *systems, size_t max_bytes,
                               tps_error *err)
{
    for (size_t k = 0; k < count; ++k)
        systems[k].status = TPS_ERR_DEVICE_UNAVAILABLE;
    (void)max_bytes;
    return no_gpu(err);
}

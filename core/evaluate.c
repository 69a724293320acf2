/* evaluate.c: the dispatcher, where every evaluation enters (tps.h): it
 * checks the request, splits its outputs into values (the SIMD kernel's
 * path) and other quantities (the quantity table's), estimates its cost,
 * picks a backend (eval.h) and, under DEVICE=AUTO, falls back from a GPU
 * that fails to the CPU. It calls the backends and nothing calls back. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tps_eval_options_init(tps_eval_options *options)
{
    if (!options)
        return;
    options->num_threads = 1;
    options->device = TPS_DEVICE_AUTO;
    options->precision = TPS_PRECISION_DOUBLE;
    options->gpu_max_memory = 0;
    options->covariates = NULL;
    options->covariate_derivatives = NULL;
    options->tolerance = TPS_DEFAULT_TOLERANCE;
    options->stats = NULL;
}

static const tps_backend *cpu_backend(const tps_model *model)
{
    return model->local ? &tps_backend_cpu_local : &tps_backend_cpu_global;
}

static tps_status run(tps_context *ctx, const tps_backend *backend, const tps_eval_job *job)
{
    tps_status st = backend->values(ctx, job);
    if (st == TPS_OK)
        st = backend->quantities(ctx, job);
    return st;
}

static int plane_ok(const tps_plane *p)
{
    return p->data && (p->type == TPS_FLOAT32 || p->type == TPS_FLOAT64);
}

/* A model with covariates needs their planes, and its derivative
 * quantities the planes of their derivatives that the quantity reads. */
static tps_status check_covariates(tps_context *ctx, const tps_model *model,
                                   const tps_eval_options *options, size_t n_outputs,
                                   const tps_output *outputs)
{
    if (model->n_cov == 0)
        return TPS_OK;
    const tps_plane *planes = options ? options->covariates : NULL;
    for (size_t k = 0; k < model->n_cov; ++k)
        if (!planes || !plane_ok(&planes[k]))
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "the model has %zu covariate%s: their values at every target "
                                 "are needed (tps_eval_options.covariates), plane %zu is "
                                 "missing or of an unknown type",
                                 model->n_cov, model->n_cov == 1 ? "" : "s", k + 1);
    static const char *const deriv_names[TPS_COV_DERIVATIVES] = {"dc/dx", "dc/dy", "d2c/dx2",
                                                                 "d2c/dxdy", "d2c/dy2"};
    const tps_plane *derivs = options ? options->covariate_derivatives : NULL;
    for (size_t b = 0; b < n_outputs; ++b) {
        const unsigned read = tps_covariates_deriv_planes(tps_quantity_needs(outputs[b].quantity));
        if (read && !derivs)
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "output %zu: the %s of a model with covariates needs the "
                                 "covariates' derivatives at every target "
                                 "(tps_eval_options.covariate_derivatives)",
                                 b, tps_quantity_info(outputs[b].quantity)->name);
        for (size_t k = 0; read && k < model->n_cov; ++k)
            for (int d = 0; d < TPS_COV_DERIVATIVES; ++d)
                if ((read & (1u << d)) && !plane_ok(&derivs[k * TPS_COV_DERIVATIVES + d]))
                    return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                         "output %zu: the %s needs covariate %zu's %s "
                                         "(tps_eval_options.covariate_derivatives[%zu]), "
                                         "missing or of an unknown type",
                                         b, tps_quantity_info(outputs[b].quantity)->name, k + 1,
                                         deriv_names[d], k * TPS_COV_DERIVATIVES + (size_t)d);
    }
    return TPS_OK;
}

static tps_status kernel_for(tps_context *ctx, tps_cpu_kernel which, tps_kernel_fn *kernel)
{
    *kernel = tps_kernel_for(which);
    if (!*kernel)
        return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                             "this processor cannot run the %s evaluation kernel",
                             tps_cpu_kernel_name(which));
    return TPS_OK;
}

/* What both public calls check first: a model, and the kernel `which`. */
static tps_status begin(tps_context *ctx, const tps_model *model, tps_cpu_kernel which,
                        tps_kernel_fn *kernel)
{
    tps_clear_error(ctx);
    if (!model)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no model");
    return kernel_for(ctx, which, kernel);
}

tps_status tps_evaluate_grid_kernel(tps_context *ctx, const tps_model *model,
                                    const tps_grid *grid, size_t n_outputs,
                                    const tps_output *outputs, const tps_eval_options *options,
                                    tps_cpu_kernel which)
{
    tps_kernel_fn kernel;
    tps_status st = begin(ctx, model, which, &kernel);
    if (st != TPS_OK)
        return st;
    if (!grid || (n_outputs > 0 && !outputs))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no grid or no outputs");
    tps_precision precision = options ? options->precision : TPS_PRECISION_DOUBLE;
    const double tolerance =
        options && options->tolerance > 0.0 ? options->tolerance : TPS_DEFAULT_TOLERANCE;
    if ((precision != TPS_PRECISION_DOUBLE && precision != TPS_PRECISION_MIXED &&
         precision != TPS_PRECISION_AUTO) ||
        (options && isnan(options->tolerance)))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "invalid precision or tolerance");
    /* AUTO: MIXED meets the tolerance (its guard recomputes what it cannot
     * bound) unless the tolerance is below what its bound can show. */
    if (precision == TPS_PRECISION_AUTO)
        precision = tolerance >= TPS_MIXED_MIN_TOLERANCE ? TPS_PRECISION_MIXED
                                                         : TPS_PRECISION_DOUBLE;
    tps_eval_stats *stats = options ? options->stats : NULL;
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (n_outputs == 0 || grid->ncols == 0 || grid->nrows == 0)
        return TPS_OK;
    for (size_t b = 0; b < n_outputs; ++b) {
        const tps_output *o = &outputs[b];
        if (o->band >= model->n_bands || !o->data ||
            (o->type != TPS_FLOAT32 && o->type != TPS_FLOAT64) ||
            !tps_quantity_info(o->quantity))
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "output %zu: band %zu of %zu, or its buffer, type or quantity, "
                                 "is invalid",
                                 b, o->band, model->n_bands);
    }
    st = check_covariates(ctx, model, options, n_outputs, outputs);
    if (st != TPS_OK)
        return st;
    for (size_t b = 0; b < n_outputs; ++b)
        if ((tps_quantity_needs(outputs[b].quantity) & TPS_NEEDS_VARIANCE) && !model->local &&
            model->band_info[outputs[b].band].solver == TPS_SOLVER_ITERATIVE)
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "output %zu: band %zu was solved by SOLVER=ITERATIVE: a "
                                 "standard error needs the dense factorisation of the spline's "
                                 "system (O(N^2) memory), which the iterative solver does not "
                                 "form; solve it with SOLVER=DIRECT",
                                 b, outputs[b].band + 1);
    for (size_t b = 0; b < n_outputs; ++b)
        if ((tps_quantity_needs(outputs[b].quantity) & TPS_NEEDS_VARIANCE) && !model->local &&
            isnan(model->band_info[outputs[b].band].sigma2))
            return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                                 "output %zu: band %zu has no variance estimates for a standard "
                                 "error (a model saved by an older version): solve it again",
                                 b, outputs[b].band + 1);

    /* Values first, then the other quantities, each in the caller's order. */
    tps_output *split = malloc(sizeof(tps_output) * n_outputs);
    size_t *bands = malloc(sizeof(size_t) * n_outputs);
    if (!split || !bands) {
        free(split);
        free(bands);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    }
    size_t n_values = 0;
    for (size_t b = 0; b < n_outputs; ++b)
        if (tps_quantity_needs(outputs[b].quantity) == TPS_NEEDS_VALUE) {
            bands[n_values] = outputs[b].band;
            split[n_values++] = outputs[b];
        }
    for (size_t b = 0, q = n_values; b < n_outputs; ++b)
        if (tps_quantity_needs(outputs[b].quantity) != TPS_NEEDS_VALUE)
            split[q++] = outputs[b];

    tps_eval_job job = {0};
    job.model = model;
    job.t.is_grid = 1;
    job.t.w = tps_window_of(model, grid);
    job.n_values = n_values;
    job.bands = bands;
    job.values = split;
    job.n_quantities = n_outputs - n_values;
    job.quantities = split + n_values;
    job.cov = model->n_cov ? options->covariates : NULL;
    job.cov_deriv = model->n_cov ? options->covariate_derivatives : NULL;
    job.num_threads = options ? options->num_threads : 1;
    job.kernel = kernel;
    job.precision = precision;
    job.tolerance = tolerance;
    job.stats = stats;
    job.gpu_max_bytes = options ? options->gpu_max_memory : 0;

    const double pairs =
        (double)grid->ncols * (double)grid->nrows * tps_model_pairs_per_pixel(model);
    const tps_device requested = options ? options->device : TPS_DEVICE_AUTO;
    int done = 0;
    /* A local model with covariates: the CPU's (gpu_eval.c says why). */
    const int cpu_only = model->local && model->n_cov;
    if (requested == TPS_DEVICE_GPU ||
        (!cpu_only && tps_device_choose(requested, pairs) == TPS_DEVICE_GPU)) {
        st = run(ctx, &tps_backend_gpu, &job);
        done = st == TPS_OK || requested == TPS_DEVICE_GPU;
        if (!done) {
            /* AUTO: a GPU that fails (out of memory, gone) costs speed, not the read. */
            tps_log(ctx, TPS_LOG_DEBUG, "GPU evaluation failed, evaluating on the CPU: %s",
                    tps_context_errmsg(ctx));
            tps_clear_error(ctx);
            if (stats) /* the CPU evaluates in double: nothing of MIXED's stands */
                memset(stats, 0, sizeof *stats);
        }
    }
    if (!done)
        st = run(ctx, cpu_backend(model), &job);
    free(split);
    free(bands);
    return st;
}

tps_status tps_evaluate_grid(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                             size_t n_outputs, const tps_output *outputs,
                             const tps_eval_options *options)
{
    return tps_evaluate_grid_kernel(ctx, model, grid, n_outputs, outputs, options,
                                    TPS_CPU_KERNEL_AUTO);
}

/* Scattered points, in scaled coordinates: values on the CPU. */
static tps_status evaluate_scaled(tps_context *ctx, const tps_model *model, size_t n_bands,
                                  const size_t *bands, size_t n, const double *u,
                                  const double *v, const tps_plane *cov, double **out,
                                  int num_threads, tps_kernel_fn kernel)
{
    if (n == 0 || n_bands == 0)
        return TPS_OK;
    tps_eval_job job = {0};
    job.model = model;
    job.t.pts_u = u;
    job.t.pts_v = v;
    job.t.n_pts = n;
    job.n_values = n_bands;
    job.bands = bands;
    job.values_out = out;
    job.cov = cov;
    job.num_threads = num_threads;
    job.kernel = kernel;
    return cpu_backend(model)->values(ctx, &job);
}

tps_status tps_evaluate_scaled(tps_context *ctx, const tps_model *model, size_t n_bands,
                               const size_t *bands, size_t n, const double *u, const double *v,
                               const tps_plane *cov, double **out, int num_threads)
{
    tps_kernel_fn kernel;
    tps_status st = kernel_for(ctx, TPS_CPU_KERNEL_AUTO, &kernel);
    if (st != TPS_OK)
        return st;
    return evaluate_scaled(ctx, model, n_bands, bands, n, u, v, cov, out, num_threads, kernel);
}

tps_status tps_evaluate_points_kernel(tps_context *ctx, const tps_model *model, size_t band,
                                      size_t n, const double *x, const double *y, double *out,
                                      const tps_eval_options *options, tps_cpu_kernel which)
{
    tps_kernel_fn kernel;
    tps_status st = begin(ctx, model, which, &kernel);
    if (st != TPS_OK)
        return st;
    if (band >= model->n_bands || (n > 0 && (!x || !y || !out)))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "invalid band or buffers");
    st = check_covariates(ctx, model, options, 0, NULL);
    if (st != TPS_OK)
        return st;
    double *uv = malloc(sizeof(double) * 2 * (n ? n : 1));
    if (!uv)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < n; ++i) {
        uv[i] = (x[i] - model->cx) / model->scale;
        uv[n + i] = (y[i] - model->cy) / model->scale;
    }
    st = evaluate_scaled(ctx, model, 1, &band, n, uv, uv + n,
                         model->n_cov ? options->covariates : NULL, &out,
                         options ? options->num_threads : 1, kernel);
    free(uv);
    return st;
}

tps_status tps_evaluate_points(tps_context *ctx, const tps_model *model, size_t band, size_t n,
                               const double *x, const double *y, double *out,
                               const tps_eval_options *options)
{
    return tps_evaluate_points_kernel(ctx, model, band, n, x, y, out, options,
                                      TPS_CPU_KERNEL_AUTO);
}

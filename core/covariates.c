/* covariates.c: a model's linear covariates (tps_fit_options.covariates),
 * the columns c_1 .. c_p of the fixed part [1 u v c_1 .. c_p]. The solve
 * sees each column centred on its mean over the points and scaled by its
 * largest deviation from it, so that every column of the fixed part lies
 * in [-1, 1] like u and v (the QR's collinearity test and the conditioning
 * of R depend on that); coefficients are kept for the scaled column and
 * converted to the caller's units on request. Evaluation reads the
 * covariates at every target from the caller's planes (tps_plane), and
 * for derivative quantities their derivatives from the caller's planes. */
#include "internal.h"
#include "sums.h"

#include <math.h>
#include <string.h>

tps_status tps_covariates_scale(tps_context *ctx, tps_model *md, const char *const *names)
{
    for (size_t k = 0; k < md->n_cov; ++k) {
        const double *c = md->cov[k];
        double sum = 0.0;
        for (size_t i = 0; i < md->n; ++i)
            sum += c[i];
        const double mean = md->n ? sum / (double)md->n : 0.0;
        double dev = 0.0;
        for (size_t i = 0; i < md->n; ++i)
            dev = fmax(dev, fabs(c[i] - mean));
        /* A constant column is the fixed part's constant again: singular.
         * (Nearly constant ones are the QR's to judge, solve.c.) */
        if (!(dev > 0.0)) {
            if (names && names[k])
                return tps_set_error(ctx, TPS_ERR_COLLINEAR,
                                     "covariate '%.60s' is constant over the %zu points, so the "
                                     "fixed part of the spline is singular; leave it out",
                                     names[k], md->n);
            return tps_set_error(ctx, TPS_ERR_COLLINEAR,
                                 "covariate %zu is constant over the %zu points, so the fixed "
                                 "part of the spline is singular; leave it out",
                                 k + 1, md->n);
        }
        md->cov_mean[k] = mean;
        md->cov_scale[k] = dev;
    }
    return TPS_OK;
}

void tps_covariates_gather(const tps_model *md, size_t k, const size_t *index, size_t m,
                           double *out)
{
    for (size_t j = 0; j < m; ++j)
        out[j] = tps_covariate_at(md, k, index ? index[j] : j);
}

static double plane_value(const tps_plane *p, size_t row, size_t col)
{
    const char *at = (const char *)p->data + (ptrdiff_t)row * p->line_stride +
                     (ptrdiff_t)col * p->pixel_stride;
    if (p->type == TPS_FLOAT32) {
        float f;
        memcpy(&f, at, sizeof f);
        return f;
    }
    double d;
    memcpy(&d, at, sizeof d);
    return d;
}

void tps_covariates_load(const tps_model *md, const tps_plane *planes, int is_grid, size_t row,
                         size_t col0, size_t count, double *zs, size_t stride)
{
    for (size_t k = 0; k < md->n_cov; ++k) {
        const double mean = md->cov_mean[k], scale = md->cov_scale[k];
        double *dst = zs + k * stride;
        for (size_t j = 0; j < count; ++j) {
            const double c = plane_value(&planes[k], is_grid ? row : 0, col0 + j);
            /* NaN propagates to the outputs; an infinite value would give
             * +-inf or NaN by the sign of the coefficient: NaN always. */
            dst[j] = isfinite(c) ? (c - mean) / scale : NAN;
        }
    }
}

unsigned tps_covariates_deriv_planes(unsigned needs)
{
    unsigned planes = 0;
    if (needs & TPS_NEEDS_GRADIENT)
        planes |= 1u << TPS_COV_DX | 1u << TPS_COV_DY;
    if (needs & TPS_NEEDS_LAPLACIAN)
        planes |= 1u << TPS_COV_DXX | 1u << TPS_COV_DYY;
    if (needs & TPS_NEEDS_HESSIAN)
        planes |= 1u << TPS_COV_DXX | 1u << TPS_COV_DXY | 1u << TPS_COV_DYY;
    return planes;
}

/* Plane d of covariate k at (row, col); NaN when not finite. */
static double deriv_at(const tps_plane *planes, size_t k, int d, size_t row, size_t col)
{
    const double g = plane_value(&planes[k * TPS_COV_DERIVATIVES + (size_t)d], row, col);
    return isfinite(g) ? g : NAN;
}

void tps_covariates_derivs(const tps_model *md, size_t band, const tps_plane *planes,
                           unsigned needs, size_t row, size_t col, tps_derivs *d)
{
    tps_derivs_zero(d);
    for (size_t k = 0; k < md->n_cov; ++k) {
        /* The caller's unit of b (tps_model_get_covariate_coefficients):
         * the derivatives come in the caller's units too. */
        const double b = md->cov_coef[band * md->n_cov + k] / md->cov_scale[k];
        if (needs & TPS_NEEDS_GRADIENT) {
            d->fu += b * deriv_at(planes, k, TPS_COV_DX, row, col);
            d->fv += b * deriv_at(planes, k, TPS_COV_DY, row, col);
        }
        if (needs & TPS_NEEDS_LAPLACIAN)
            d->lap += b * (deriv_at(planes, k, TPS_COV_DXX, row, col) +
                           deriv_at(planes, k, TPS_COV_DYY, row, col));
        if (needs & TPS_NEEDS_HESSIAN) {
            d->fuu += b * deriv_at(planes, k, TPS_COV_DXX, row, col);
            d->fuv += b * deriv_at(planes, k, TPS_COV_DXY, row, col);
            d->fvv += b * deriv_at(planes, k, TPS_COV_DYY, row, col);
        }
    }
}

tps_status tps_model_get_covariate_coefficients(tps_context *ctx, const tps_model *model,
                                                size_t band, double *b)
{
    tps_clear_error(ctx);
    if (!model || band >= model->n_bands || (model->n_cov && !b))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no model, no band %zu or no output",
                             band + 1);
    /* f gains coef (c - mean) / scale: per unit of c, coef / scale. */
    for (size_t k = 0; k < model->n_cov; ++k)
        b[k] = model->cov_coef[band * model->n_cov + k] / model->cov_scale[k];
    return TPS_OK;
}

/* quantity.c: the quantity table. A quantity is one row: its name, unit
 * and description, the sums it needs (sums.h) and its formula from them.
 * Every path reads this table: the dispatcher (which outputs need which
 * sums), the CPU backends and the GPU backend's post-processing (the
 * formula), the driver (names, units, descriptions: tps_quantity_info).
 * Adding a quantity is adding a row (docs/design.md, "Adding a quantity"). */
#include "eval.h"

#include <math.h>
#include <strings.h>

static const double DEGREES_PER_RADIAN = 57.295779513082320876798154814105;

/* f and its derivatives at a pixel in the caller's units: x, y are the
 * coordinates of the grid's CRS (y north on a north-up raster, against
 * the rows), as gdaldem has them. */
typedef struct surface {
    double f, fx, fy, lap, fxx, fxy, fyy;
    double var; /* the prediction variance (variance.h) */
} surface;

static double value(const surface *s) { return s->f; }
static double dzdx(const surface *s) { return s->fx; }
static double dzdy(const surface *s) { return s->fy; }
static double laplacian(const surface *s) { return s->lap; }

/* gdaldem slope: atan(sqrt(dzdx^2 + dzdy^2)), in degrees. */
static double slope(const surface *s)
{
    return atan(sqrt(s->fx * s->fx + s->fy * s->fy)) * DEGREES_PER_RADIAN;
}

/* gdaldem aspect: the azimuth the slope faces, i.e. of the downhill vector
 * (-dzdx, -dzdy), clockwise from north; undefined where flat (gdaldem
 * writes its nodata there, -9999 by default). */
static double aspect(const surface *s)
{
    if (s->fx == 0.0 && s->fy == 0.0)
        return NAN;
    double a = atan2(-s->fx, -s->fy) * DEGREES_PER_RADIAN;
    if (a < 0.0)
        a += 360.0;
    return a >= 360.0 ? 0.0 : a;
}

/* Curvatures as GRASS v.surf.rst (Mitasova and Hofierka 1993) gives them. */
static double profile_curvature(const surface *s)
{
    const double p = s->fx * s->fx + s->fy * s->fy, q = 1.0 + p;
    if (p == 0.0)
        return 0.0;
    return (s->fxx * s->fx * s->fx + 2.0 * s->fxy * s->fx * s->fy + s->fyy * s->fy * s->fy) /
           (p * q * sqrt(q));
}

static double tangential_curvature(const surface *s)
{
    const double p = s->fx * s->fx + s->fy * s->fy, q = 1.0 + p;
    if (p == 0.0)
        return 0.0;
    return (s->fxx * s->fy * s->fy - 2.0 * s->fxy * s->fx * s->fy + s->fyy * s->fx * s->fx) /
           (p * sqrt(q));
}

static double mean_curvature(const surface *s)
{
    const double q = 1.0 + s->fx * s->fx + s->fy * s->fy;
    return ((1.0 + s->fy * s->fy) * s->fxx - 2.0 * s->fxy * s->fx * s->fy +
            (1.0 + s->fx * s->fx) * s->fyy) /
           (2.0 * q * sqrt(q));
}

/* The square root of the prediction variance; rounding can leave a tiny
 * negative variance where it is 0 (at a data point when lambda = 0). */
static double standard_error(const surface *s)
{
    if (isnan(s->var))
        return NAN;
    return s->var > 0.0 ? sqrt(s->var) : 0.0;
}

typedef struct row {
    tps_quantity_desc desc;
    double (*formula)(const surface *s);
} row;

/* In tps_quantity's order (checked by tps_quantity_info). */
static const row table[] = {
    {{TPS_QUANTITY_VALUE, "value", "", "the interpolated surface f", TPS_NEEDS_VALUE}, value},
    {{TPS_QUANTITY_DZDX, "dzdx", "", "df/dx: f's unit per unit of x", TPS_NEEDS_GRADIENT}, dzdx},
    {{TPS_QUANTITY_DZDY, "dzdy", "", "df/dy (y north): f's unit per unit of y",
      TPS_NEEDS_GRADIENT},
     dzdy},
    {{TPS_QUANTITY_SLOPE, "slope", "degrees",
      "atan(|grad f|) as gdaldem slope, f a height in the coordinates' unit", TPS_NEEDS_GRADIENT},
     slope},
    {{TPS_QUANTITY_ASPECT, "aspect", "degrees",
      "azimuth of -grad f clockwise from north as gdaldem aspect; NaN where flat",
      TPS_NEEDS_GRADIENT},
     aspect},
    {{TPS_QUANTITY_LAPLACIAN, "laplacian", "",
      "d2f/dx2 + d2f/dy2: f's unit per squared unit of x; NaN on a data point",
      TPS_NEEDS_LAPLACIAN},
     laplacian},
    {{TPS_QUANTITY_PROFILE_CURVATURE, "profile_curvature", "",
      "curvature along the slope line, as GRASS v.surf.rst, f a height in the coordinates' "
      "unit: 1 / that unit; 0 where flat, NaN on a data point",
      TPS_NEEDS_GRADIENT | TPS_NEEDS_HESSIAN},
     profile_curvature},
    {{TPS_QUANTITY_TANGENTIAL_CURVATURE, "tangential_curvature", "",
      "curvature across the slope line (normal to it, in the tangent plane), as GRASS "
      "v.surf.rst: 1 / the coordinates' unit; 0 where flat, NaN on a data point",
      TPS_NEEDS_GRADIENT | TPS_NEEDS_HESSIAN},
     tangential_curvature},
    {{TPS_QUANTITY_MEAN_CURVATURE, "mean_curvature",
      "", "mean curvature of the surface z = f(x, y), as GRASS v.surf.rst: 1 / the "
      "coordinates' unit; NaN on a data point",
      TPS_NEEDS_GRADIENT | TPS_NEEDS_HESSIAN},
     mean_curvature},
    {{TPS_QUANTITY_STANDARD_ERROR, "standard_error", "",
      "prediction standard error of f as R's fields::predictSE (maximum-likelihood sigma2 and "
      "tau2): the band's unit",
      TPS_NEEDS_VARIANCE},
     standard_error},
};

#define N_ROWS (sizeof table / sizeof table[0])

size_t tps_quantity_count(void)
{
    return N_ROWS;
}

const tps_quantity_desc *tps_quantity_info(tps_quantity q)
{
    if ((unsigned)q >= N_ROWS || table[q].desc.quantity != q)
        return NULL;
    return &table[q].desc;
}

tps_status tps_quantity_from_name(const char *name, tps_quantity *q)
{
    for (size_t k = 0; name && k < N_ROWS; ++k)
        if (strcasecmp(name, table[k].desc.name) == 0) {
            if (q)
                *q = table[k].desc.quantity;
            return TPS_OK;
        }
    return TPS_ERR_INVALID_ARGUMENT;
}

unsigned tps_quantity_needs(tps_quantity q)
{
    const tps_quantity_desc *d = tps_quantity_info(q);
    return d ? d->needs : 0u;
}

double tps_quantity_eval(tps_quantity q, const tps_derivs *d, double scale,
                         const tps_derivs *cov)
{
    /* The chain rule back to the caller's units: u = (x - cx) / scale, so
     * one 1/scale per derivative. */
    const double s2 = scale * scale;
    surface s = {d->f,        d->fu / scale, d->fv / scale, d->lap / s2,
                 d->fuu / s2, d->fuv / s2,   d->fvv / s2,  d->var};
    /* The covariates' term, already in the caller's units: every
     * derivative quantity is that of spline + affine + sum_k b_k c_k. */
    if (cov) {
        s.fx += cov->fu;
        s.fy += cov->fv;
        s.lap += cov->lap;
        s.fxx += cov->fuu;
        s.fxy += cov->fuv;
        s.fyy += cov->fvv;
    }
    return table[q].formula(&s);
}

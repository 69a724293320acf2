/* sums.h: the sums a pixel's quantities are formed from (the "needs" of a
 * quantity, tps.h): the spline f and its first and second derivatives, each
 * a sum over the spline's points, in the model's scaled units (u, v).
 * C11 and CUDA: the CPU (core/spline_sums.c, core/cpu_local_deriv.c) and the
 * GPU (gpu/global_deriv.cu, gpu/local_deriv.cu) add the same terms.
 *
 * One point i of half-weight h contributes h s log s, s = du^2 + dv^2,
 * (du, dv) = the target minus the point:
 *   d/du   = 2 h du (log s + 1)
 *   lap    = 4 h log s                      (+ 8 h; sum_i h_i = 0, dropped)
 *   d2/du2 = 2 h log s + 4 h du^2 / s       (+ 2 h, dropped likewise)
 *   d2/dudv = 4 h du dv / s
 * The dropped constants are zero in exact arithmetic (a side condition of
 * the solve) and would only add rounding. At s = 0 (the target on a point
 * of nonzero weight) the second derivatives are infinite (the spline is
 * C1 there): they are NaN. */
#ifndef TPS_SUMS_H
#define TPS_SUMS_H

#include "hd.h"
#include "tps.h"

/* f and its derivatives at a target, in the model's scaled units. */
typedef struct tps_derivs {
    double f;              /* TPS_NEEDS_VALUE */
    double fu, fv;         /* TPS_NEEDS_GRADIENT */
    double lap;            /* TPS_NEEDS_LAPLACIAN */
    double fuu, fuv, fvv;  /* TPS_NEEDS_HESSIAN */
    double var;            /* TPS_NEEDS_VARIANCE: the prediction variance, in the
                            * band's unit squared (variance.h; not a sum over points) */
} tps_derivs;

/* Planes a set of needs fills, in the order of tps_derivs's fields. */
TPS_HD int tps_needs_planes(unsigned needs)
{
    return ((needs & TPS_NEEDS_VALUE) ? 1 : 0) + ((needs & TPS_NEEDS_GRADIENT) ? 2 : 0) +
           ((needs & TPS_NEEDS_LAPLACIAN) ? 1 : 0) + ((needs & TPS_NEEDS_HESSIAN) ? 3 : 0);
}

TPS_HD void tps_derivs_zero(tps_derivs *d)
{
    d->f = d->fu = d->fv = d->lap = d->fuu = d->fuv = d->fvv = d->var = 0.0;
}

/* Adds point i's term (see above); log_s = log(s), s > 0. */
TPS_HD void tps_term_add(tps_derivs *d, unsigned needs, double h, double du, double dv, double s,
                         double log_s)
{
    if (needs & TPS_NEEDS_VALUE)
        d->f += h * s * log_s;
    if (needs & TPS_NEEDS_GRADIENT) {
        const double g = 2.0 * h * (log_s + 1.0);
        d->fu += g * du;
        d->fv += g * dv;
    }
    if (needs & TPS_NEEDS_LAPLACIAN)
        d->lap += 4.0 * h * log_s;
    if (needs & TPS_NEEDS_HESSIAN) {
        const double t = 2.0 * h * log_s, r = 4.0 * h / s;
        d->fuu += t + r * du * du;
        d->fuv += r * du * dv;
        d->fvv += t + r * dv * dv;
    }
}

/* The target lies on a point of nonzero weight: the second derivatives
 * are infinite there, NaN from now on (later terms keep them NaN). */
TPS_HD void tps_term_on_point(tps_derivs *d)
{
    d->lap = d->fuu = d->fuv = d->fvv = TPS_NAN;
}

/* Writes the planes of `needs` (tps_needs_planes of them, plane q at
 * base + q stride) at index k. */
TPS_HD void tps_derivs_put(const tps_derivs *d, unsigned needs, double *base, size_t stride,
                           size_t k)
{
    double *at = base + k;
    if (needs & TPS_NEEDS_VALUE) {
        *at = d->f;
        at += stride;
    }
    if (needs & TPS_NEEDS_GRADIENT) {
        at[0] = d->fu;
        at[stride] = d->fv;
        at += 2 * stride;
    }
    if (needs & TPS_NEEDS_LAPLACIAN) {
        *at = d->lap;
        at += stride;
    }
    if (needs & TPS_NEEDS_HESSIAN) {
        at[0] = d->fuu;
        at[stride] = d->fuv;
        at[2 * stride] = d->fvv;
    }
}

/* Reads them back (the fields of other needs are left as they are). */
TPS_HD void tps_derivs_get(tps_derivs *d, unsigned needs, const double *base, size_t stride,
                           size_t k)
{
    const double *at = base + k;
    if (needs & TPS_NEEDS_VALUE) {
        d->f = *at;
        at += stride;
    }
    if (needs & TPS_NEEDS_GRADIENT) {
        d->fu = at[0];
        d->fv = at[stride];
        at += 2 * stride;
    }
    if (needs & TPS_NEEDS_LAPLACIAN) {
        d->lap = *at;
        at += stride;
    }
    if (needs & TPS_NEEDS_HESSIAN) {
        d->fuu = at[0];
        d->fuv = at[stride];
        d->fvv = at[2 * stride];
    }
}

/* Adds a spline's affine part a0 + a1 u + a2 v at (u, v) to its sums. */
TPS_HD void tps_derivs_add_affine(tps_derivs *d, const double a[3], double u, double v)
{
    d->f = d->f + a[0] + a[1] * u + a[2] * v;
    d->fu += a[1];
    d->fv += a[2];
}

/* A patch spline's derivatives from its frame l = (u - pc) / ps to the
 * model's: one 1/ps per derivative (inv = 1 / ps). */
TPS_HD void tps_derivs_from_frame(tps_derivs *d, double inv)
{
    d->fu *= inv;
    d->fv *= inv;
    d->lap = d->lap * inv * inv;
    d->fuu = d->fuu * inv * inv;
    d->fuv = d->fuv * inv * inv;
    d->fvv = d->fvv * inv * inv;
}

#endif

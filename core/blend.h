/* blend.h: a LOCAL model's blend of patch splines and its derivatives
 * (docs/design.md, "Local mode" and "Derivative bands"). C11 and CUDA: the
 * CPU (core/cpu_local.c, core/cpu_local_deriv.c) and the GPU (gpu/local.cu,
 * gpu/local_deriv.cu) use these very functions.
 *
 * f = N / S with S = sum_p w_p, N = sum_p w_p f_p, w_p(u, v) = b(t_u) b(t_v),
 * t_u = (u - cx) / hx, b(t) = (1 - t^2)^3 on |t| < 1. Outside the points'
 * box the weights are taken at the target clamped into the box: along an
 * axis on which the target lies outside, every w_p is constant, its
 * derivatives along that axis 0. From N = f S (product and quotient rules):
 *   grad f = (grad N - f grad S) / S
 *   lap f  = (lap N - 2 grad f . grad S - f lap S) / S
 *   f_uu   = (N_uu - 2 f_u S_u - f S_uu) / S
 *   f_uv   = (N_uv - f_u S_v - f_v S_u - f S_uv) / S
 * with grad N = sum_p (grad w_p f_p + w_p grad f_p), lap N = sum_p (lap w_p
 * f_p + 2 grad w_p . grad f_p + w_p lap f_p), N_uv = sum_p (w_uv f_p +
 * w_u f_p,v + w_v f_p,u + w_p f_p,uv), and so on. */
#ifndef TPS_BLEND_H
#define TPS_BLEND_H

#include "sums.h"

#include <math.h>
#include <stddef.h>

/* The C2 bump (1 - t^2)^3 on |t| < 1, 0 elsewhere. */
TPS_HD double tps_bump(double t)
{
    const double s = 1.0 - t * t;
    return s > 0.0 ? s * s * s : 0.0;
}

/* b(t), b'(t) = -6t (1 - t^2)^2 and b''(t) = 6 (1 - t^2)(5t^2 - 1); all 0
 * for |t| >= 1 (b is C2). b[0] is tps_bump(t) bit for bit. */
TPS_HD void tps_bump3(double t, double b[3])
{
    const double s = 1.0 - t * t;
    if (s > 0.0) {
        b[0] = s * s * s;
        b[1] = -6.0 * t * s * s;
        b[2] = 6.0 * s * (5.0 * t * t - 1.0);
    } else {
        b[0] = b[1] = b[2] = 0.0;
    }
}

/* The cell of coordinate x on a lookup grid of n cells of side d from x0,
 * clamped into the grid (NaN: 0). */
TPS_HD size_t tps_lookup_cell(double x, double x0, double d, size_t n)
{
    const double c = floor((x - x0) / d);
    if (!(c > 0.0))
        return 0;
    return c >= (double)n ? n - 1 : (size_t)c;
}

/* The clamped target: where a pixel's weights are taken. */
TPS_HD double tps_clamp(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* A patch's weight w and its derivatives (in tps_derivs's fields: f is w)
 * at a target whose clamped coordinates are (qu, qv); free_u: the target
 * lies in the box (edges included) along u, so that the weight varies with
 * u there. The support is |u - cx| < hx, |v - cy| < hy. */
TPS_HD void tps_patch_weight(tps_derivs *w, unsigned needs, double cx, double cy, double hx,
                             double hy, double qu, double qv, int free_u, int free_v)
{
    double bu[3], bv[3];
    tps_bump3((qu - cx) / hx, bu);
    tps_bump3((qv - cy) / hy, bv);
    w->f = bu[0] * bv[0];
    w->fu = free_u ? bu[1] / hx * bv[0] : 0.0;
    w->fv = free_v ? bu[0] * bv[1] / hy : 0.0;
    const double wuu = free_u ? bu[2] / (hx * hx) * bv[0] : 0.0;
    const double wvv = free_v ? bu[0] * bv[2] / (hy * hy) : 0.0;
    w->lap = wuu + wvv;
    if (needs & TPS_NEEDS_HESSIAN) {
        w->fuu = wuu;
        w->fvv = wvv;
        w->fuv = free_u && free_v ? bu[1] / hx * (bv[1] / hy) : 0.0;
    }
}

/* The sums each patch spline gives for the blend's `needs`: its value
 * always (the blend's derivatives weight it by the weights'), and its
 * gradient for any second derivative (the product rule pairs it with the
 * weights' gradient). */
TPS_HD unsigned tps_blend_spline_needs(unsigned needs)
{
    unsigned n = needs | TPS_NEEDS_VALUE;
    if (needs & (TPS_NEEDS_LAPLACIAN | TPS_NEEDS_HESSIAN))
        n |= TPS_NEEDS_GRADIENT;
    return n;
}

/* The blend's sums at a target: S (the weights) and N (weighted splines). */
typedef struct tps_blend {
    tps_derivs S, N;
} tps_blend;

TPS_HD void tps_blend_zero(tps_blend *b)
{
    tps_derivs_zero(&b->S);
    tps_derivs_zero(&b->N);
}

/* Adds one patch: its weight's derivatives w and its spline's f (with the
 * derivatives `needs` asks for), both in the model's scaled units. */
TPS_HD void tps_blend_add(tps_blend *b, unsigned needs, const tps_derivs *w, const tps_derivs *f)
{
    tps_derivs *S = &b->S, *N = &b->N;
    S->f += w->f;
    N->f += w->f * f->f;
    if (needs & (TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN | TPS_NEEDS_HESSIAN)) {
        S->fu += w->fu;
        S->fv += w->fv;
        N->fu += w->fu * f->f + w->f * f->fu;
        N->fv += w->fv * f->f + w->f * f->fv;
    }
    if (needs & TPS_NEEDS_LAPLACIAN) {
        S->lap += w->lap;
        N->lap += w->lap * f->f + 2.0 * (w->fu * f->fu + w->fv * f->fv) + w->f * f->lap;
    }
    if (needs & TPS_NEEDS_HESSIAN) {
        S->fuu += w->fuu;
        S->fuv += w->fuv;
        S->fvv += w->fvv;
        N->fuu += w->fuu * f->f + 2.0 * w->fu * f->fu + w->f * f->fuu;
        N->fuv += w->fuv * f->f + w->fu * f->fv + w->fv * f->fu + w->f * f->fuv;
        N->fvv += w->fvv * f->f + 2.0 * w->fv * f->fv + w->f * f->fvv;
    }
}

/* The blend's f and derivatives from its sums; all NaN where S = 0 (only
 * for NaN targets: S > 0 inside the box by construction). */
TPS_HD void tps_blend_finish(const tps_blend *b, unsigned needs, tps_derivs *d)
{
    const tps_derivs *S = &b->S, *N = &b->N;
    if (!(S->f > 0.0)) {
        d->f = d->fu = d->fv = d->lap = d->fuu = d->fuv = d->fvv = TPS_NAN;
        return;
    }
    const double f = N->f / S->f;
    d->f = f;
    if (needs & (TPS_NEEDS_GRADIENT | TPS_NEEDS_LAPLACIAN | TPS_NEEDS_HESSIAN)) {
        d->fu = (N->fu - f * S->fu) / S->f;
        d->fv = (N->fv - f * S->fv) / S->f;
    }
    if (needs & TPS_NEEDS_LAPLACIAN)
        d->lap = (N->lap - 2.0 * (d->fu * S->fu + d->fv * S->fv) - f * S->lap) / S->f;
    if (needs & TPS_NEEDS_HESSIAN) {
        d->fuu = (N->fuu - 2.0 * d->fu * S->fu - f * S->fuu) / S->f;
        d->fuv = (N->fuv - d->fu * S->fv - d->fv * S->fu - f * S->fuv) / S->f;
        d->fvv = (N->fvv - 2.0 * d->fv * S->fv - f * S->fvv) / S->f;
    }
}

#endif

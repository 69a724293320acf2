/* mixed.h: PRECISION=MIXED's arithmetic (docs/design.md, "PRECISION=MIXED"),
 * one definition for the GPU kernel (gpu/mixed.cu) and its CPU emulation
 * (core/mixed_emulate.c), and the layout of the points it reads (built by
 * core/mixed_layout.c).
 *
 * The points are cut by a k-d split into tiles of 256 and each tile into 8
 * groups of 32 (a "cluster" is either). A block of 32 x 16 pixels sees each
 * cluster either
 *   far:  its sum as a multipole expansion about the cluster's centre, in
 *         FP64 (no logarithm per point; truncated at the smallest order
 *         whose error bound fits the model's budget for truncation,
 *         tps_mixed_trunc_budget: between 2^-36 and 2^-16 of the
 *         cluster's sum |h| R^2);
 *   near: (groups only) point by point in FP32: offsets from the group's
 *         centre, the log by the special-function unit, scaled so that the
 *         terms are centred (a = 2^j, beta), compensated sums, then FP64.
 * Every block gets a rigorous bound of its pixels' error: the near terms'
 * from the FP32 roundings and the documented accuracy of lg2.approx, the far
 * ones' truncation and FP64 roundings (tps_mixed_group_bound).
 *
 * Units: the sums are sum_i h_i r^2 ln r^2 (h the model's half-weights), the
 * CPU path's kernel sum; the near field uses w = h ln 2 and log2. */
#ifndef TPS_MIXED_H
#define TPS_MIXED_H

#include "hd.h"
#include "tps.h"

#include <math.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TPS_MIXED_GROUP = 32,       /* points per group */
    TPS_MIXED_TILE_GROUPS = 8,  /* groups per tile */
    TPS_MIXED_TILE = 256,       /* points per tile */
    TPS_MIXED_PMAX = 30,        /* highest multipole order */
    /* doubles per (cluster, band): sum |h|, sum |h| t (u, v), sum |h| |t|^2
     * (t: a point's offset from the centre), M0, M1 (re, im), Q0, then per
     * order k = 1..PMAX: a_k (re, im), b_k (re, im) */
    TPS_MIXED_COEF = 8 + 4 * TPS_MIXED_PMAX,
    TPS_MIXED_BLOCK_COLS = 32,  /* a GPU block's pixels: 32 columns x 16 rows, */
    TPS_MIXED_BLOCK_ROWS = 16,  /* 128 threads of 4 adjacent pixels of a row */
    TPS_MIXED_PIX = 4,
    TPS_MIXED_THREADS = 128
};

/* The strictest truncation target of a far cluster, relative to its sum
 * |h| R^2 (the loosest is TPS_MIXED_TAU_MAX); between them the block's
 * budget decides (tps_mixed_cluster_tau). */
#define TPS_MIXED_TAU 1.4551915228366852e-11 /* 2^-36 */
#define TPS_MIXED_TAU_MAX 1.52587890625e-05  /* 2^-16 */
/* The far field's truncation may use 1 / TPS_MIXED_TRUNC_SHARE of the
 * tolerance: fewer terms where the tolerance allows (docs/design.md,
 * "PRECISION=MIXED", has what it costs the bound and buys in speed). */
#define TPS_MIXED_TRUNC_SHARE 32.0
/* beta = 1 / (e ln 2): s log2 s + beta has its minimum, 0, at s = 1/e. */
#define TPS_MIXED_BETA 0.53073784516850163f
#define TPS_MIXED_U 5.9604644775390625e-08 /* 2^-24, FP32's unit roundoff */
#define TPS_MIXED_LOG2E 1.4426950408889634

/* The points in the kernel's order, with what the kernel reads of them. */
typedef struct tps_mixed_layout {
    size_t n, n_pad, n_tiles, n_groups, n_bands;
    size_t *perm;      /* n_pad: the model's point index, or (size_t)-1 for padding */
    float *q;          /* 2 n_pad: (u, v) offset of each point from its group's centre */
    float *w, *wlo;    /* n_bands rows of n_pad: h ln 2 split as w + wlo */
    double *tile;      /* n_tiles x 4: centre u, v, radius, points */
    double *group;     /* n_groups x 4 */
    double *tile_coef; /* (n_tiles x n_bands) x TPS_MIXED_COEF: [t * n_bands + b] */
    double *group_coef;
    double *group_near; /* (n_groups x n_bands) x 4: sum w, w qu, w qv, w |q|^2 of the split
                           FP32 weights and offsets (exact products) */
    double *abs_h;      /* n_bands: the band's sum |h| (its tiles' sums, in tile order) */
} tps_mixed_layout;

/* Builds the layout of n points (u, v) and n_bands arrays of half-weights
 * h (host memory; TPS_ERR_OUT_OF_MEMORY), and frees it. */
tps_status tps_mixed_layout_build(tps_mixed_layout *layout, size_t n, const double *u,
                                  const double *v, size_t n_bands, const double *const *h);
void tps_mixed_layout_free(tps_mixed_layout *layout);

/* ---- the far field -------------------------------------------------- */

/* Truncation bound of the expansion of order p at gamma = rho / R < 1,
 * relative to sum |h| R^2: the tails of z* A and B, |M_k+1| <= W rho^k+1,
 * |P_k| <= W rho^k+2, summed as geometric series. */
TPS_HD double tps_mixed_trunc(double gamma, int p)
{
    double g = gamma * gamma;
    for (int k = 0; k < p; ++k)
        g *= gamma;
    return 2.0 * (1.0 + gamma) * g / ((1.0 - gamma) * (double)(p + 1) * (double)(p + 2));
}

/* The smallest order whose truncation bound is below tau (relative to the
 * cluster's sum |h| R^2), or 0 when none up to TPS_MIXED_PMAX is (the
 * cluster is near). */
TPS_HD int tps_mixed_order(double gamma, double tau)
{
    if (!(gamma < 0.5))
        return 0;
    double f = 2.0 * (1.0 + gamma) * gamma * gamma / (1.0 - gamma);
    for (int p = 1; p <= TPS_MIXED_PMAX; ++p) {
        f *= gamma;
        if (f <= tau * (double)(p + 1) * (double)(p + 2))
            return p;
    }
    return 0;
}

/* The model's budget for truncation, K: over its n_bands bands of value
 * range range[b] and sum |h| abs_h[b], the least tolerance x range / abs_h,
 * over TPS_MIXED_TRUNC_SHARE (0: the strictest target). One number for
 * every block and band, so that a pixel's plan does not depend on the
 * bands read with it. A cluster at distance rmin from the block is
 * truncated at tau = K / rmin^2 (tps_mixed_cluster_tau): its bound, sum_c
 * |h| tau rmin^2 (tps_mixed_far_bound), is then sum_c |h| K, so that all
 * the far clusters together take at most tol / TPS_MIXED_TRUNC_SHARE of
 * the block's bound, whatever their number (or, where K / rmin^2 is below
 * 2^-36, what the strictest target gives, as before the budget). The
 * block's bound counts the truncation actually made, so the budget
 * decides the speed, never the promise. */
TPS_HD double tps_mixed_trunc_budget(double tolerance, const double *range, const double *abs_h,
                                     size_t n_bands)
{
    double k = -1.0;
    for (size_t b = 0; b < n_bands; ++b)
        if (abs_h[b] > 0.0) { /* a band without weights has no far field */
            const double tol = tolerance * range[b];
            const double kb = tol > 0.0 ? tol / abs_h[b] : 0.0;
            k = k < 0.0 ? kb : fmin(k, kb);
        }
    return k > 0.0 ? k / TPS_MIXED_TRUNC_SHARE : 0.0;
}

/* The truncation target of a cluster at distance rmin from a block, for the
 * model's budget K (tps_mixed_trunc_budget), within [TPS_MIXED_TAU,
 * TPS_MIXED_TAU_MAX]. */
TPS_HD double tps_mixed_cluster_tau(double budget, double rmin)
{
    const double t = budget / (rmin * rmin);
    return t > TPS_MIXED_TAU_MAX ? TPS_MIXED_TAU_MAX : t > TPS_MIXED_TAU ? t : TPS_MIXED_TAU;
}

/* The scale of a block's near sum of a group: a = 2^j with a^2 m in
 * [1/2e, 2/e), m the mean squared distance from the block to the group's points (so the
 * terms s log2 s + beta, s = a^2 r^2, are centred on their minimum at
 * s = 1/e). A power of two: the scaling itself is exact. */
TPS_HD int tps_mixed_scale_exponent(double m)
{
    int e2 = 0;
    (void)frexp(2.718281828459045 * m, &e2);
    int j = (1 - e2) >> 1; /* floor((1 - e2) / 2) */
    return j < -60 ? -60 : j > 60 ? 60 : j;
}

/* A block's pixels lie in the box [u0, u1] x [v0, v1]. The distances from
 * (cu, cv) to the nearest and farthest point of the box. */
TPS_HD void tps_mixed_box_distance(const double box[4], double cu, double cv, double *dmin,
                                   double *dmax)
{
    const double du = cu < box[0] ? box[0] - cu : cu > box[1] ? cu - box[1] : 0.0;
    const double dv = cv < box[2] ? box[2] - cv : cv > box[3] ? cv - box[3] : 0.0;
    *dmin = sqrt(du * du + dv * dv);
    const double fu = fmax(fabs(cu - box[0]), fabs(cu - box[1]));
    const double fv = fmax(fabs(cv - box[2]), fabs(cv - box[3]));
    *dmax = sqrt(fu * fu + fv * fv);
}

/* How a block sees a cluster (geo: centre u, v, radius, points), for the
 * model's budget for truncation (tps_mixed_trunc_budget): *p > 0,
 * far, the multipole order; 0, near, then *j is the scale exponent of its
 * near sum (tps_mixed_scale_exponent of the mean squared distance from the
 * box's centre); -1, empty. rmin, rmax: the box's distances to the centre. */
TPS_HD void tps_mixed_plan(const double box[4], const double *geo, double budget, int *p, int *j,
                           double *rmin, double *rmax)
{
    *j = 0;
    tps_mixed_box_distance(box, geo[0], geo[1], rmin, rmax);
    if (!(geo[3] > 0.0)) {
        *p = -1;
        return;
    }
    *p = *rmin > 0.0 ? tps_mixed_order(geo[2] / *rmin, tps_mixed_cluster_tau(budget, *rmin)) : 0;
    if (*p == 0) {
        const double du = 0.5 * (box[0] + box[1]) - geo[0], dv = 0.5 * (box[2] + box[3]) - geo[1];
        *j = tps_mixed_scale_exponent(fma(du, du, fma(dv, dv, 0.5 * geo[2] * geo[2])));
    }
}

/* Order j's coefficients a_j (x, y: re, im) and b_j (z, w) of a cluster's
 * band c (two 16-byte loads through the read-only cache on the GPU). */
typedef struct tps_mixed_c4 {
    double x, y, z, w;
} tps_mixed_c4;
TPS_HD tps_mixed_c4 tps_mixed_order_coef(const double *c, int j)
{
    const double *cj = c + 8 + 4 * (j - 1);
    tps_mixed_c4 r;
#ifdef __CUDA_ARCH__
    const double2 a = __ldg((const double2 *)cj), b = __ldg((const double2 *)cj + 1);
    r.x = a.x;
    r.y = a.y;
    r.z = b.x;
    r.w = b.y;
#else
    r.x = cj[0];
    r.y = cj[1];
    r.z = cj[2];
    r.w = cj[3];
#endif
    return r;
}

/* The far sums of one cluster at n <= TPS_MIXED_PIX pixels, added to
 * out[k]: z = pixel - centre (|z|^2 = r2, lnr2 = ln r2, zeta = 1 / z =
 * er + i ei), to order p, from the cluster's coefficients c for a band:
 *   Phi = ln|z|^2 (|z|^2 M0 - 2 Re(z* M1) + Q0) - 2 Re(z* M1) + 2 Q0
 *         + 2 Re(z* A - B),   A = sum a_k zeta^k, B = sum b_k zeta^k,
 * a_k = M_k+1 / (k (k+1)), b_k = P_k / (k (k+1)), M_k = sum h t^k,
 * P_k = sum h |t|^2 t^k (docs/design.md derives it). Horner's scheme, one
 * complex fma (4 real ones) per order and series; the pixels share each
 * order's coefficients (two 16-byte loads on the GPU). */
TPS_HD void tps_mixed_m2p(const double *c, int p, int n, const double *zr, const double *zi,
                          const double *r2, const double *lnr2, const double *er,
                          const double *ei, double *out)
{
    double ar[TPS_MIXED_PIX], ai[TPS_MIXED_PIX], br[TPS_MIXED_PIX], bi[TPS_MIXED_PIX];
    tps_mixed_c4 cj = tps_mixed_order_coef(c, p);
    for (int k = 0; k < n; ++k) {
        ar[k] = cj.x;
        ai[k] = cj.y;
        br[k] = cj.z;
        bi[k] = cj.w;
    }
    for (int j = p - 1; j >= 1; --j) {
        cj = tps_mixed_order_coef(c, j);
        for (int k = 0; k < n; ++k) { /* x zeta + c_j, for A and B */
            const double xr = ar[k], xi = ai[k], yr = br[k], yi = bi[k];
            ar[k] = fma(xr, er[k], fma(-xi, ei[k], cj.x));
            ai[k] = fma(xr, ei[k], fma(xi, er[k], cj.y));
            br[k] = fma(yr, er[k], fma(-yi, ei[k], cj.z));
            bi[k] = fma(yr, ei[k], fma(yi, er[k], cj.w));
        }
    }
    for (int k = 0; k < n; ++k) { /* x zeta: the series start at zeta^1 */
        const double xr = ar[k], xi = ai[k], yr = br[k], yi = bi[k];
        ar[k] = fma(xr, er[k], -xi * ei[k]);
        ai[k] = fma(xr, ei[k], xi * er[k]);
        br[k] = fma(yr, er[k], -yi * ei[k]);
        bi[k] = fma(yr, ei[k], yi * er[k]);
    }
    for (int k = 0; k < n; ++k) {
        const double zm1 = fma(zr[k], c[5], zi[k] * c[6]); /* Re(z* M1) */
        const double s = fma(r2[k], c[4], fma(-2.0, zm1, c[7]));
        const double series = fma(zr[k], ar[k], fma(zi[k], ai[k], -br[k]));
        out[k] += fma(lnr2[k], s, 2.0 * ((c[7] - zm1) + series));
    }
}

/* The far field's error bound for one cluster over a block: truncation at
 * the nearest pixel (T(gamma, p) R^2 falls with R) and a generous
 * allowance for FP64 roundings of the evaluation and of the coefficients.
 * abs_h: the cluster's sum |h|. */
TPS_HD double tps_mixed_far_bound(double abs_h, double rho, int p, double rmin, double rmax)
{
    const double gamma = rho / rmin;
    const double lmax = fmax(fabs(log(rmin * rmin)), fabs(log(rmax * rmax)));
    return abs_h * (tps_mixed_trunc(gamma, p) * rmin * rmin +
                    0x1p-44 * (rmax + rho) * (rmax + rho) * (lmax + 4.0));
}

/* ---- the near field ------------------------------------------------- */

/* max over [s0, s1] of |s (log2 s + c)| (0 <= s0 <= s1): at an end, or at
 * s* = 2^-(c + 1/ln 2) where the derivative vanishes. */
TPS_HD double tps_mixed_max_slog(double s0, double s1, double c)
{
    const double f0 = s0 > 0.0 ? fabs(s0 * (log2(s0) + c)) : 0.0;
    const double f1 = s1 > 0.0 ? fabs(s1 * (log2(s1) + c)) : 0.0;
    double m = fmax(f0, f1);
    const double star = exp2(-(c + TPS_MIXED_LOG2E));
    if (s0 < star && star < s1)
        m = fmax(m, fabs(star * (log2(star) + c)));
    return m;
}

/* An upper bound of sum |h_i| |x - t_i|^2 over the pixels x of a box, t_i
 * the points' offsets from the cluster's centre geo: a convex quadratic in
 * x, so largest at a corner; am: sum |h|, sum |h| t (u, v), sum |h| |t|^2. */
TPS_HD double tps_mixed_abs_r2(const double box[4], const double *geo, const double *am)
{
    double m = 0.0, mag = 0.0;
    for (int k = 0; k < 4; ++k) {
        const double x = box[k & 1] - geo[0], y = box[2 + (k >> 1)] - geo[1];
        const double q = fma(am[0], fma(x, x, y * y), fma(-2.0 * x, am[1], fma(-2.0 * y, am[2], am[3])));
        m = fmax(m, q);
        mag = fmax(mag, am[0] * fma(x, x, y * y) + 2.0 * (fabs(x * am[1]) + fabs(y * am[2])) + am[3]);
    }
    return m + 0x1p-48 * mag; /* + this FP64 evaluation's rounding */
}

/* The near field's error bound for a block whose pixels lie at distances
 * [dmin, dmax] from the centre of a group of radius rho, at scale a = 2^j:
 *     bound <= cs S + cw W,
 * W = the group's sum |h|, S >= sum |h| r^2 over the block's pixels
 * (tps_mixed_abs_r2). Covers the offsets' rounding to FP32 (pixel and
 * points), the roundings of dx, dy, s (|ds| <= 4u s) and phi, lg2.approx's
 * documented error (2^-22 absolute on [0.5, 2], else 2 ulp: <= 2^-22 s
 * max(1, |log2 s|) in the term), the compensated sum (3u |w phi|), the
 * weights' split and the FP64 step that adds the group's sum. A term's
 * bound f(s) with s = a^2 r^2 in [s0, s1] is bounded by a line K s + C
 * (K the factor's value at s1, C the most f reaches where the factor
 * exceeds K; a convex f by its chord), so that sum |w| f(s_i) <= K a^2 S +
 * C W. x 1.01 for this bound's own roundings. */
TPS_HD void tps_mixed_near_bound(double dmin, double dmax, double rho, int j, double *cs,
                                 double *cw)
{
    const double u = TPS_MIXED_U;
    const double er = 1.01 * u * (dmax + rho) + 1e-300;
    const double r0 = fmax(0.0, dmin - rho - er), r1 = dmax + rho + er;
    const double a2 = ldexp(1.0, 2 * j);
    const double s0 = a2 * r0 * r0 * (1.0 - 5.0 * u), s1 = a2 * r1 * r1 * (1.0 + 5.0 * u) + 1.01e-30;
    const double beta = (double)TPS_MIXED_BETA;
    double ks = 0.0, kw = 0.0; /* per unit |w|: ks x (a^2 r^2), kw */
    /* ds x d(s log2 s)/ds: 4u s |log2 s + 1/ln 2| (+ 1e-30's share) */
    {
        const double k = fmax(fabs(log2(s1) + TPS_MIXED_LOG2E), 1e-3);
        const double sk = exp2(-k - TPS_MIXED_LOG2E);
        const double c = s0 < sk ? tps_mixed_max_slog(s0, fmin(sk, s1), TPS_MIXED_LOG2E) : 0.0;
        ks += 4.0001 * u * k;
        kw += 4.0001 * u * c +
              1.01e-30 * (fmax(fabs(log2(fmax(s0, 1e-30))), fabs(log2(s1))) + TPS_MIXED_LOG2E);
    }
    /* lg2.approx: 2^-22 s max(1, |log2 s|); its share of |phi| too (4.1u) */
    double k2, c2;
    {
        k2 = fmax(1.0, fabs(log2(s1)));
        const double sk = exp2(-k2);
        c2 = s0 < sk ? fmax(fmin(sk, s1), tps_mixed_max_slog(s0, fmin(sk, s1), 0.0)) : 0.0;
        ks += 0x1p-22 * k2 * (1.0 + 4.1 * u);
        kw += 0x1p-22 * c2 * (1.0 + 4.1 * u);
    }
    /* phi's rounding and the compensated sum: 4.1u |s log2 s + beta|, a
     * convex function, under its chord on [s0, s1] */
    {
        const double f0 = s0 > 0.0 ? fabs(s0 * log2(s0) + beta) : beta;
        const double f1 = fabs(s1 * log2(s1) + beta);
        const double slope = s1 > s0 ? (f1 - f0) / (s1 - s0) : 0.0;
        if (slope > 0.0) {
            ks += 4.1 * u * slope;
            kw += 4.1 * u * (f0 - slope * s0);
        } else {
            kw += 4.1 * u * fmax(f0, f1);
        }
    }
    /* S bounds the true r^2; the represented ones are up to er further */
    const double cs_ = ks;
    double cw_ = kw / a2 + ks * (2.0 * er * r1 + er * er);
    /* the offsets' rounding: |d(r^2 log2 r^2)/dr| er = |2r (log2 r^2 + 1/ln 2)| er,
     * largest at an end or at r* = 2^-(1/ln 2 + 2/ln 2)/2 */
    {
        const double rs[3] = {r0, r1, 0.22334183003549434};
        double dr = 0.0;
        for (int k = 0; k < 3; ++k) {
            const double r = rs[k];
            if (r > 0.0 && (k < 2 || (r0 < r && r < r1)))
                dr = fmax(dr, fabs(2.0 * r * (log2(r * r) + TPS_MIXED_LOG2E)));
        }
        cw_ += dr * er;
    }
    /* the split weights (w + wlo = h ln 2 within 2u^2) and the FP64 step */
    {
        const double g3 = fmax(s0 > 0.0 ? fabs(s0 * log2(s0) + beta) : beta,
                               fabs(s1 * log2(s1) + beta)) +
                          0x1p-22 * (k2 * s1 + c2);
        cw_ += 2.0 * u * u * tps_mixed_max_slog(r0 * r0, r1 * r1, 0.0) +
               0x1p-44 * (r1 * r1 * (fabs(log2(a2)) + 2.0) + (beta + 1.0 + g3) / a2);
    }
    /* per unit of |h|: w = h ln 2 */
    const double f = 1.01 * 0.69314718055994531 * (1.0 + 2.0 * u);
    *cs = f * cs_;
    *cw = f * cw_;
}

/* Adds group gi's share (0 <= gi < 8) of a tile's share of a block's error
 * bound, for nb bands from band0 (nb <= 4): when the block sees the tile
 * far, the tile's far bound (counted by group 0 alone), else the group's,
 * far or near. Summed over a tile's groups: the tile's share; the GPU
 * spreads the groups over its threads. tile_coef and group_coef point at
 * the tile's and its first group's n_bands x TPS_MIXED_COEF coefficients,
 * group_geo at its first group's geometry. The plans it makes (tps_mixed_plan)
 * come back: the tile's order in *tile_p, the group's order and scale in
 * *group_p, *group_j (unset when the tile is not near). */
TPS_HD void tps_mixed_group_bound(const double box[4], const double *tile_geo,
                                  const double *tile_coef, int gi, const double *group_geo,
                                  const double *group_coef, size_t n_bands, int band0, int nb,
                                  double budget, double *bound, int *tile_p, int *group_p,
                                  int *group_j)
{
    int p, j;
    double rmin, rmax;
    tps_mixed_plan(box, tile_geo, budget, &p, &j, &rmin, &rmax);
    *tile_p = p;
    if (p > 0 && gi == 0)
        for (int b = 0; b < nb; ++b)
            bound[b] += tps_mixed_far_bound(tile_coef[(size_t)(band0 + b) * TPS_MIXED_COEF],
                                            tile_geo[2], p, rmin, rmax);
    if (p != 0)
        return;
    const double *geo = group_geo + 4 * gi;
    const double *coef = group_coef + (size_t)gi * n_bands * TPS_MIXED_COEF;
    tps_mixed_plan(box, geo, budget, &p, &j, &rmin, &rmax);
    *group_p = p;
    *group_j = j;
    if (p < 0)
        return;
    double cs = 0.0, cw = 0.0;
    if (p == 0)
        tps_mixed_near_bound(rmin, rmax, geo[2], j, &cs, &cw);
    for (int b = 0; b < nb; ++b) {
        const double *cb = coef + (size_t)(band0 + b) * TPS_MIXED_COEF;
        bound[b] += p > 0 ? tps_mixed_far_bound(cb[0], geo[2], p, rmin, rmax)
                          : cs * tps_mixed_abs_r2(box, geo, cb) + cw * cb[0];
    }
}

/* What a block's self-check may differ from its MIXED value by beyond the
 * bound: the FP64 recomputation's own error at (pu, pv), generously
 * (points lie within sqrt 2 of the origin; abs_h: the band's sum |h|). */
TPS_HD double tps_mixed_check_slack(double abs_h, double pu, double pv)
{
    const double d = sqrt(pu * pu + pv * pv) + 1.4142135623730951;
    return 0x1p-36 * abs_h * d * d * (fabs(log(d * d)) + 4.0);
}

/* The pixel of block (bx, by) (the grid's block indices) that its
 * self-check recomputes in FP64: row *sr, column *sc within the block. */
TPS_HD void tps_mixed_sample(unsigned long long bx, unsigned long long by, int *sr, int *sc)
{
    unsigned x = (unsigned)(bx * 0x9E3779B1ULL) ^ (unsigned)(by * 0x85EBCA77ULL);
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    *sr = (int)(x % TPS_MIXED_BLOCK_ROWS);
    *sc = (int)((x / TPS_MIXED_BLOCK_ROWS) % TPS_MIXED_BLOCK_COLS);
}

/* One point of a near group against one pixel: the term's phi in FP32.
 * lg2 is the special-function unit's log2 on the GPU (lg2.approx.ftz.f32),
 * its model on the CPU (tps_mixed_lg2, core/mixed_emulate.c). */
#ifdef __CUDA_ARCH__
#define TPS_MIXED_LG2(s) __log2f(s)
#else
float tps_mixed_lg2(float s);
#define TPS_MIXED_LG2(s) tps_mixed_lg2(s)
#endif

TPS_HD float tps_mixed_phi(float a, float qu, float x, float dy2)
{
    const float dx = fmaf(-a, qu, x);
    const float s = fmaf(dx, dx, dy2);
    return fmaf(s, TPS_MIXED_LG2(s), TPS_MIXED_BETA);
}

/* dy^2 (+ 1e-30: a pixel on a point gives s log2 s ~ 0, not 0 x -inf). */
TPS_HD float tps_mixed_dy2(float a, float qv, float y)
{
    const float dy = fmaf(-a, qv, y);
    return fmaf(dy, dy, 1e-30f);
}

/* Compensated (Kahan) accumulation of (w + wlo) phi. */
TPS_HD void tps_mixed_kahan(float w, float wlo, float phi, float *part, float *comp)
{
    const float y = fmaf(w, phi, fmaf(wlo, phi, -*comp));
    const float t = *part + y;
    *comp = (t - *part) - y;
    *part = t;
}

/* A group's near sum at one pixel in FP64, from the thread's FP32 sum
 * (part - comp) of (w + wlo)(s log2 s + beta), s = a^2 |X/a - q|^2:
 *   sum w r^2 log2 r^2 = sum / a^2 - L sum w r^2 - beta / a^2 sum w,
 * L = log2 a^2 = 2j, sum w r^2 a quadratic in X/a from the group's
 * moments mo (sum w, w qu, w qv, w |q|^2). */
TPS_HD double tps_mixed_near_finish(float part, float comp, int j, float x, float y,
                                    const double *mo)
{
    const double inv_a2 = ldexp(1.0, -2 * j), inv_a = ldexp(1.0, -j);
    const double qu = (double)x * inv_a, qv = (double)y * inv_a;
    const double q2 = fma(qu, qu, qv * qv);
    const double swr2 = fma(mo[0], q2, fma(-2.0 * qu, mo[1], fma(-2.0 * qv, mo[2], mo[3])));
    const double sum = ((double)part - (double)comp) * inv_a2;
    return fma(-(double)(2 * j), swr2, fma(-(double)TPS_MIXED_BETA * inv_a2, mo[0], sum));
}

#ifdef __cplusplus
}
#endif

#endif

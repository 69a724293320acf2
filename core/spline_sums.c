/* spline_sums.c: the sums of sums.h over a spline's points at a run of
 * targets, on the CPU, in scalar C with libm's log (derivative outputs are
 * an analysis product: docs/design.md, "Derivative bands"). The global
 * backend calls it with the model's points, the local one with a patch's.
 * Points are visited in order for every target, so a target's sums do not
 * depend on the run it is in. */
#include "eval.h"

#include <math.h>

/* The loop, inlined with each constant set of needs: the branches on needs
 * in tps_term_add then vanish from the inner loop. */
static inline __attribute__((always_inline)) void sums_loop(size_t n, const double *u,
                                                            const double *v, const double *h,
                                                            const unsigned needs, size_t m,
                                                            const double *pu, const double *pv,
                                                            tps_derivs *out)
{
    for (size_t k = 0; k < m; ++k)
        tps_derivs_zero(&out[k]);
    for (size_t i = 0; i < n; ++i) {
        const double hi = h[i];
        if (hi == 0.0) /* a point missing in this band: it adds exactly nothing */
            continue;
        const double ui = u[i], vi = v[i];
        for (size_t k = 0; k < m; ++k) {
            const double du = pu[k] - ui, dv = pv[k] - vi;
            const double s = du * du + dv * dv;
            if (s > 0.0)
                tps_term_add(&out[k], needs, hi, du, dv, s, log(s));
            else
                tps_term_on_point(&out[k]);
        }
    }
}

#define CASE(needs)                                                                            \
    case needs:                                                                                \
        sums_loop(n, u, v, h, needs, m, pu, pv, out);                                          \
        break;

void tps_spline_sums(size_t n, const double *u, const double *v, const double *h, unsigned needs,
                     size_t m, const double *pu, const double *pv, tps_derivs *out)
{
    switch (needs & 15u) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
        CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15)
    default:
        for (size_t k = 0; k < m; ++k)
            tps_derivs_zero(&out[k]);
    }
}

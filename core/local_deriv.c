/* local_deriv.c: derivative quantities of a LOCAL model on the CPU: the
 * exact derivatives of the blend, from the same candidate patches as the
 * values and a scalar pass per patch (docs/design.md, "Derivative bands"). */
#include "internal.h"
#include "local.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The bump b(t) = (1 - t^2)^3 and its t-derivatives b'(t) = -6t (1 - t^2)^2,
 * b''(t) = 6 (1 - t^2)(5t^2 - 1); all 0 for |t| >= 1, where b vanishes
 * with both (it is C2). b[0] is bump(t) bit for bit. */
static void bump_derivatives(double t, double b[3])
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

typedef struct local_deriv_request {
    const tps_model *md;
    const struct tps_local *lc;
    const tps_targets *t;
    size_t n_outputs;
    const size_t *first; /* tps_outputs_first_of_band */
    char *scratch;
    size_t scratch_bytes;
} local_deriv_request;

/* Planes of CHUNK doubles a derivative chunk uses besides 4 per output:
 * pu, pv, qu, qv; per selected target lu, lv, w, wu, wv, wl; the sums
 * S, Su, Sv, Sl; a patch spline's val, gu, gv, lap. */
#define DERIV_PLANES 18

/* With S = sum_p w_p and N = sum_p w_p f_p (f_p the patch spline, w_p its
 * bump weight at the clamped target), f = N / S and
 *   grad f = (grad N - f grad S) / S,
 *   lap f  = (lap N - 2 grad f . grad S - f lap S) / S,
 *   grad N = sum_p (grad w_p f_p + w_p grad f_p),
 *   lap N  = sum_p (lap w_p f_p + 2 grad w_p . grad f_p + w_p lap f_p),
 * in the model's scaled units (u, v). A patch spline's derivatives come
 * from its own frame (l = (u - pc) / ps: one 1/ps per derivative); a
 * weight's from b', b'' and 1/h per derivative, and are 0 along an axis
 * on which the target lies outside the points' box (the weights are taken
 * at the clamped target there: constant along that axis). */
static void run_local_deriv_chunk(size_t item, int thread, void *user)
{
    local_deriv_request *rq = user;
    const struct tps_local *lc = rq->lc;
    const tps_targets *t = rq->t;
    double *pu = (double *)(rq->scratch + rq->scratch_bytes * (size_t)thread);
    double *pv = pu + CHUNK, *qu = pv + CHUNK, *qv = qu + CHUNK;
    double *lu = qv + CHUNK, *lv = lu + CHUNK, *w = lv + CHUNK, *wu = w + CHUNK,
           *wv = wu + CHUNK, *wl = wv + CHUNK;
    double *S = wl + CHUNK, *Su = S + CHUNK, *Sv = Su + CHUNK, *Sl = Sv + CHUNK;
    double *val = Sl + CHUNK, *gu = val + CHUNK, *gv = gu + CHUNK, *lap = gv + CHUNK;
    double *acc = lap + CHUNK; /* output b: N, Nu, Nv, Nl at acc + 4 CHUNK b */
    size_t *idx = (size_t *)(acc + 4 * CHUNK * rq->n_outputs);
    size_t *cand = idx + CHUNK;
    unsigned char *mark = (unsigned char *)(cand + lc->n_patches);

    size_t row, col0;
    const size_t count = tps_targets_chunk(t, item, CHUNK, pu, pv, &row, &col0);
    const size_t n_cand = chunk_candidates(lc, count, pu, pv, qu, qv, cand, mark);
    memset(S, 0, sizeof(double) * 4 * CHUNK);
    memset(acc, 0, sizeof(double) * 4 * CHUNK * rq->n_outputs);
    for (size_t e = 0; e < n_cand; ++e) {
        const patch *pt = &lc->patches[cand[e]];
        size_t sel = 0;
        for (size_t k = 0; k < count; ++k) {
            double bu[3], bv[3];
            bump_derivatives((qu[k] - pt->cx) / pt->hx, bu);
            bump_derivatives((qv[k] - pt->cy) / pt->hy, bv);
            const double wk = bu[0] * bv[0];
            if (!(wk > 0.0))
                continue;
            /* Inside the box (edges included) along an axis, or clamped. */
            const int free_u = pu[k] >= lc->bu0 && pu[k] <= lc->bu1;
            const int free_v = pv[k] >= lc->bv0 && pv[k] <= lc->bv1;
            idx[sel] = k;
            w[sel] = wk;
            wu[sel] = free_u ? bu[1] / pt->hx * bv[0] : 0.0;
            wv[sel] = free_v ? bu[0] * bv[1] / pt->hy : 0.0;
            wl[sel] = (free_u ? bu[2] / (pt->hx * pt->hx) * bv[0] : 0.0) +
                      (free_v ? bu[0] * bv[2] / (pt->hy * pt->hy) : 0.0);
            lu[sel] = (pu[k] - pt->pcx) / pt->ps;
            lv[sel] = (pv[k] - pt->pcy) / pt->ps;
            ++sel;
        }
        for (size_t s = 0; s < sel; ++s) {
            const size_t k = idx[s];
            S[k] += w[s];
            Su[k] += wu[s];
            Sv[k] += wv[s];
            Sl[k] += wl[s];
        }
        for (size_t b = 0; sel && b < rq->n_outputs; ++b) {
            if (rq->first[b] != b)
                continue;
            const size_t band = t->outputs[b].band;
            tps_spline_sums(pt->n, pt->u, pt->v, pt->hw[band], sel, lu, lv, val, gu, gv, lap);
            const double *a = pt->affine[band];
            const double inv = 1.0 / pt->ps;
            double *N = acc + 4 * CHUNK * b, *Nu = N + CHUNK, *Nv = Nu + CHUNK,
                   *Nl = Nv + CHUNK;
            for (size_t s = 0; s < sel; ++s) {
                const size_t k = idx[s];
                const double f = val[s] + a[0] + a[1] * lu[s] + a[2] * lv[s];
                const double fu = (gu[s] + a[1]) * inv, fv = (gv[s] + a[2]) * inv;
                const double fl = lap[s] * inv * inv;
                N[k] += w[s] * f;
                Nu[k] += wu[s] * f + w[s] * fu;
                Nv[k] += wv[s] * f + w[s] * fv;
                Nl[k] += wl[s] * f + 2.0 * (wu[s] * fu + wv[s] * fv) + w[s] * fl;
            }
        }
    }
    static const double no_affine[3] = {0.0, 0.0, 0.0};
    for (size_t b = 0; b < rq->n_outputs; ++b) {
        const tps_output *o = &t->outputs[b];
        const double *N = acc + 4 * CHUNK * rq->first[b], *Nu = N + CHUNK, *Nv = Nu + CHUNK,
                     *Nl = Nv + CHUNK;
        for (size_t k = 0; k < count; ++k) {
            double q = NAN; /* S > 0 inside the box by construction; 0 for NaN targets */
            if (S[k] > 0.0) {
                const double f = N[k] / S[k];
                const double fu = (Nu[k] - f * Su[k]) / S[k], fv = (Nv[k] - f * Sv[k]) / S[k];
                const double fl = (Nl[k] - 2.0 * (fu * Su[k] + fv * Sv[k]) - f * Sl[k]) / S[k];
                q = tps_deriv_quantity(o->quantity, fu, fv, fl, no_affine, rq->md->scale);
            }
            tps_output_store(o, row, col0 + k, q);
        }
    }
}

tps_status tps_local_evaluate_deriv(tps_context *ctx, const tps_model *md, const tps_targets *t,
                                    size_t n_outputs, int num_threads)
{
    const struct tps_local *lc = md->local;
    int threads;
    const size_t n_items = local_items(t, num_threads, &threads);
    if (n_items == 0 || n_outputs == 0)
        return TPS_OK;
    local_deriv_request rq = {md, lc, t, n_outputs, NULL, NULL, 0};
    rq.scratch_bytes = local_scratch_bytes(lc, CHUNK * (DERIV_PLANES + 4 * n_outputs), 0);
    rq.scratch = calloc((size_t)threads, rq.scratch_bytes);
    size_t *first = malloc(sizeof(size_t) * n_outputs);
    if (!rq.scratch || !first) {
        free(rq.scratch);
        free(first);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                             "out of memory for derivative evaluation buffers");
    }
    tps_outputs_first_of_band(t->outputs, n_outputs, first);
    rq.first = first;
    tps_parallel_for(n_items, threads, run_local_deriv_chunk, &rq);
    free(rq.scratch);
    free(first);
    return TPS_OK;
}

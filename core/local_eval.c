/* local_eval.c: the values of a LOCAL model on the CPU. A chunk of pixels
 * visits only the patches whose support meets it (chunk_candidates) and runs
 * the SIMD kernel of eval_kernel.c over each patch's points for the pixels
 * inside its support. A pixel's value depends only on its own coordinates:
 * its patches are summed in patch order whatever chunk it falls in. */
#include "internal.h"
#include "local.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct local_request {
    const tps_model *md;
    const struct tps_local *lc;
    tps_kernel_fn kernel;
    size_t n_bands;
    const size_t *bands;
    const tps_targets *t;
    char *scratch; /* per thread: scratch_bytes each */
    size_t scratch_bytes;
} local_request;

/* The C2 bump (1 - t^2)^3 on |t| < 1. */
static double bump(double t)
{
    double s = 1.0 - t * t;
    return s > 0.0 ? s * s * s : 0.0;
}

static void run_local_chunk(size_t item, int thread, void *user)
{
    local_request *rq = user;
    const struct tps_local *lc = rq->lc;
    const tps_targets *t = rq->t;
    const size_t nb = rq->n_bands;
    char *base = rq->scratch + rq->scratch_bytes * (size_t)thread;
    double *pu = (double *)base, *pv = pu + CHUNK, *qu = pv + CHUNK, *qv = qu + CHUNK;
    double *wsum = qv + CHUNK, *lu = wsum + CHUNK, *lv = lu + CHUNK, *wk = lv + CHUNK;
    double *acc = wk + CHUNK, *pacc = acc + nb * CHUNK;
    const double **wts = (const double **)(pacc + nb * CHUNK);
    size_t *idx = (size_t *)(wts + nb);
    size_t *cand = idx + CHUNK;
    unsigned char *mark = (unsigned char *)(cand + lc->n_patches);

    size_t row, col0;
    const size_t count = tps_targets_chunk(t, item, CHUNK, pu, pv, &row, &col0);
    const size_t n_cand = chunk_candidates(lc, count, pu, pv, qu, qv, cand, mark);
    memset(wsum, 0, sizeof(double) * CHUNK);
    memset(acc, 0, sizeof(double) * nb * CHUNK);
    const int same_v = t->is_grid && t->cv == 0.0;
    for (size_t e = 0; e < n_cand; ++e) {
        const patch *pt = &lc->patches[cand[e]];
        size_t sel = 0;
        for (size_t k = 0; k < count; ++k) {
            double w = bump((qu[k] - pt->cx) / pt->hx) * bump((qv[k] - pt->cy) / pt->hy);
            if (w > 0.0) {
                idx[sel] = k;
                wk[sel] = w;
                lu[sel] = (pu[k] - pt->pcx) / pt->ps;
                lv[sel] = (pv[k] - pt->pcy) / pt->ps;
                ++sel;
            }
        }
        if (!sel)
            continue;
        const size_t m = (sel + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
        for (size_t k = sel; k < m; ++k) {
            lu[k] = lu[sel - 1];
            lv[k] = lv[sel - 1];
        }
        for (size_t b = 0; b < nb; ++b)
            wts[b] = pt->hw[rq->bands[b]];
        tps_kernel_job job = {pt->n, pt->u, pt->v, nb, wts, m, lu, lv, same_v, pacc};
        rq->kernel(&job);
        for (size_t b = 0; b < nb; ++b) {
            const double *a = pt->affine[rq->bands[b]];
            const double *sum = pacc + b * m;
            double *ab = acc + b * CHUNK;
            for (size_t s = 0; s < sel; ++s)
                ab[idx[s]] += wk[s] * (sum[s] + a[0] + a[1] * lu[s] + a[2] * lv[s]);
        }
        for (size_t s = 0; s < sel; ++s)
            wsum[idx[s]] += wk[s];
    }
    for (size_t b = 0; b < nb; ++b) {
        const double *ab = acc + b * CHUNK;
        if (t->is_grid) {
            const tps_output *o = &t->outputs[b];
            char *dst = (char *)o->data + (ptrdiff_t)row * o->line_stride +
                        (ptrdiff_t)col0 * o->pixel_stride;
            for (size_t k = 0; k < count; ++k) {
                /* wsum > 0 inside the box by construction; NaN only for NaN targets. */
                double value = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
                if (o->type == TPS_FLOAT32) {
                    float f = (float)value;
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &f, sizeof f);
                } else {
                    memcpy(dst + (ptrdiff_t)k * o->pixel_stride, &value, sizeof value);
                }
            }
        } else {
            double *dst = t->pts_out[b] + col0;
            for (size_t k = 0; k < count; ++k)
                dst[k] = wsum[k] > 0.0 ? ab[k] / wsum[k] : NAN;
        }
    }
}

/* Work items of a local request over t (chunks of CHUNK targets) and the
 * threads worth starting for them. */
size_t local_items(const tps_targets *t, int num_threads, int *threads)
{
    size_t n_items;
    double targets;
    if (t->is_grid) {
        n_items = (t->ncols + CHUNK - 1) / CHUNK * t->nrows;
        targets = (double)t->ncols * (double)t->nrows;
    } else {
        n_items = (t->n_pts + CHUNK - 1) / CHUNK;
        targets = (double)t->n_pts;
    }
    *threads = num_threads < 1 ? 1 : num_threads;
    /* A target costs a few patches of a few hundred points: threads pay
     * from a few hundred targets on. */
    if (targets < 256.0)
        *threads = 1;
    if ((size_t)*threads > n_items)
        *threads = (int)n_items;
    return n_items;
}

/* Per-thread scratch of `doubles` doubles and `pointers` pointers, then
 * the chunk's target indices (CHUNK) and the candidate list and marks
 * (n_patches each), rounded to cache lines. */
size_t local_scratch_bytes(const struct tps_local *lc, size_t doubles, size_t pointers)
{
    const size_t bytes = sizeof(double) * doubles + sizeof(double *) * pointers +
                         sizeof(size_t) * (CHUNK + lc->n_patches) + lc->n_patches + 64;
    return (bytes + 63) / 64 * 64;
}

tps_status tps_local_evaluate(tps_context *ctx, const tps_model *md, tps_kernel_fn kernel,
                              size_t n_bands, const size_t *bands, const tps_targets *t,
                              int num_threads)
{
    const struct tps_local *lc = md->local;
    local_request rq = {md, lc, kernel, n_bands, bands, t, NULL, 0};
    int threads;
    const size_t n_items = local_items(t, num_threads, &threads);
    if (n_items == 0)
        return TPS_OK;
    rq.scratch_bytes = local_scratch_bytes(lc, CHUNK * (8 + 2 * n_bands), n_bands);
    rq.scratch = calloc((size_t)threads, rq.scratch_bytes);
    if (!rq.scratch)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for evaluation buffers");
    tps_parallel_for(n_items, threads, run_local_chunk, &rq);
    free(rq.scratch);
    return TPS_OK;
}

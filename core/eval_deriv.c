/* eval_deriv.c: derivative quantities of a global model (dz/dx, dz/dy,
 * slope, aspect, laplacian) on the CPU, and the arithmetic that turns the
 * kernel's sums into a quantity, which the GPU path and a local model's
 * patches (local.c, through tps_spline_sums) share.
 *
 * A band is f(u, v) = sum_i h_i s_i log s_i + a0 + a1 u + a2 v, with
 * s_i = (u - u_i)^2 + (v - v_i)^2, half-weights h_i (internal.h) and the
 * model's centred, scaled coordinates u = (x - cx) / scale. Since
 * d/ds (s log s) = log s + 1 and, in two dimensions,
 * lap (s log s) = 4 log s + 8:
 *   df/du = sum_i 2 h_i (u - u_i)(log s_i + 1) + a1   (the term is 0 at s_i = 0)
 *   lap f = sum_i h_i (4 log s_i + 8) = 4 sum_i h_i log s_i
 * (sum_i h_i = 0 is one of the spline's side conditions, so the 8 drops
 * out exactly in exact arithmetic; leaving it out avoids adding rounding).
 * The chain rule gives the caller's units: df/dx = (df/du) / scale,
 * lap_xy f = lap_uv f / scale^2. At s_i = 0 with h_i != 0 the laplacian is
 * infinite (a log singularity at every data point of nonzero weight): it
 * is reported as NaN there.
 *
 * The loop is plain scalar C with libm's log: value bands keep the vector
 * kernel of eval_kernel.c untouched, and a derivative band costs a few
 * times a value band per point-pixel pair. As in evaluate.c, a cell's
 * coordinates come from its absolute index and its sum runs over the
 * points in a fixed order, so any window, chunk or thread split gives the
 * same bytes. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Targets per work item, as in evaluate.c. */
#define DERIV_CHUNK 1024
/* Below this many point-pixel pairs a request runs on the calling thread. */
#define DERIV_MIN_PAIRS_FOR_THREADS 200000.0

static const double DEGREES_PER_RADIAN = 57.295779513082320876798154814105;

const char *tps_quantity_name(tps_quantity q)
{
    switch (q) {
    case TPS_QUANTITY_VALUE: return "value";
    case TPS_QUANTITY_DZDX: return "dzdx";
    case TPS_QUANTITY_DZDY: return "dzdy";
    case TPS_QUANTITY_SLOPE: return "slope";
    case TPS_QUANTITY_ASPECT: return "aspect";
    case TPS_QUANTITY_LAPLACIAN: return "laplacian";
    }
    return "unknown";
}

void tps_spline_sums(size_t n, const double *u, const double *v, const double *h, size_t m,
                     const double *pu, const double *pv, double *val, double *gu, double *gv,
                     double *lap)
{
    for (size_t k = 0; k < m; ++k)
        gu[k] = gv[k] = lap[k] = 0.0;
    if (val)
        for (size_t k = 0; k < m; ++k)
            val[k] = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double hi = h[i];
        if (hi == 0.0) /* a point missing in this band: it adds exactly nothing */
            continue;
        const double ui = u[i], vi = v[i];
        for (size_t k = 0; k < m; ++k) {
            const double du = pu[k] - ui, dv = pv[k] - vi;
            const double s = du * du + dv * dv;
            if (s > 0.0) {
                const double log_s = log(s);
                const double g = 2.0 * hi * (log_s + 1.0);
                gu[k] += g * du;
                gv[k] += g * dv;
                lap[k] += 4.0 * hi * log_s;
                if (val)
                    val[k] += hi * s * log_s;
            } else {
                lap[k] = NAN;
            }
        }
    }
}

void tps_deriv_sums(const tps_model *md, size_t band, size_t m, const double *pu,
                    const double *pv, double *gu, double *gv, double *lap)
{
    tps_spline_sums(md->n, md->u, md->v, md->half_weights[band], m, pu, pv, NULL, gu, gv, lap);
}

double tps_deriv_quantity(tps_quantity q, double gu, double gv, double lap,
                          const double affine[3], double scale)
{
    const double dzdx = (gu + affine[1]) / scale;
    const double dzdy = (gv + affine[2]) / scale;
    switch (q) {
    case TPS_QUANTITY_DZDX:
        return dzdx;
    case TPS_QUANTITY_DZDY:
        return dzdy;
    case TPS_QUANTITY_SLOPE:
        /* gdaldem slope: atan(sqrt(dzdx^2 + dzdy^2)), in degrees. */
        return atan(sqrt(dzdx * dzdx + dzdy * dzdy)) * DEGREES_PER_RADIAN;
    case TPS_QUANTITY_ASPECT: {
        /* gdaldem aspect: the azimuth the slope faces, i.e. of the downhill
         * vector (-dzdx, -dzdy), clockwise from north; undefined where flat
         * (gdaldem writes its nodata there, -9999 by default). */
        if (dzdx == 0.0 && dzdy == 0.0)
            return NAN;
        double a = atan2(-dzdx, -dzdy) * DEGREES_PER_RADIAN;
        if (a < 0.0)
            a += 360.0;
        return a >= 360.0 ? 0.0 : a;
    }
    case TPS_QUANTITY_LAPLACIAN:
        return lap / (scale * scale);
    case TPS_QUANTITY_VALUE:
        break;
    }
    return NAN;
}

void tps_output_store(const tps_output *o, size_t row, size_t col, double value)
{
    char *dst = (char *)o->data + (ptrdiff_t)row * o->line_stride + (ptrdiff_t)col * o->pixel_stride;
    if (o->type == TPS_FLOAT32) {
        const float f = (float)value;
        memcpy(dst, &f, sizeof f);
    } else {
        memcpy(dst, &value, sizeof value);
    }
}

void tps_outputs_first_of_band(const tps_output *outputs, size_t n_outputs, size_t *first)
{
    for (size_t b = 0; b < n_outputs; ++b) {
        first[b] = b;
        for (size_t j = 0; j < b; ++j)
            if (outputs[j].band == outputs[b].band) {
                first[b] = j;
                break;
            }
    }
}

typedef struct deriv_request {
    const tps_model *model;
    const tps_targets *t;
    size_t n_outputs;
    /* first[b]: the first output of the same band as output b; its sums
     * serve every quantity of that band. */
    size_t *first;
    /* Per thread: u, v, then 3 planes (gu, gv, lap) per output. */
    double **scratch;
} deriv_request;

static void run_deriv_chunk(size_t item, int thread, void *user)
{
    deriv_request *rq = user;
    const tps_model *md = rq->model;
    double *pu = rq->scratch[thread];
    double *pv = pu + DERIV_CHUNK;
    double *sums = pv + DERIV_CHUNK;
    size_t row, col0;
    const size_t count = tps_targets_chunk(rq->t, item, DERIV_CHUNK, pu, pv, &row, &col0);
    for (size_t b = 0; b < rq->n_outputs; ++b) {
        const tps_output *o = &rq->t->outputs[b];
        double *own = sums + 3 * DERIV_CHUNK * rq->first[b];
        if (rq->first[b] == b)
            tps_deriv_sums(md, o->band, count, pu, pv, own, own + DERIV_CHUNK,
                           own + 2 * DERIV_CHUNK);
        const double *a = md->affine[o->band];
        for (size_t k = 0; k < count; ++k)
            tps_output_store(o, row, col0 + k,
                             tps_deriv_quantity(o->quantity, own[k], own[DERIV_CHUNK + k],
                                                own[2 * DERIV_CHUNK + k], a, md->scale));
    }
}

tps_status tps_evaluate_grid_deriv(tps_context *ctx, const tps_model *md, const tps_targets *t,
                                   size_t n_outputs, int num_threads)
{
    if (n_outputs == 0 || t->ncols == 0 || t->nrows == 0)
        return TPS_OK;
    const size_t chunks_per_row = (t->ncols + DERIV_CHUNK - 1) / DERIV_CHUNK;
    const size_t n_items = chunks_per_row * t->nrows;
    const double pairs = (double)md->n * (double)t->ncols * (double)t->nrows;
    int threads = num_threads < 1 ? 1 : num_threads;
    if (pairs < DERIV_MIN_PAIRS_FOR_THREADS)
        threads = 1;
    if ((size_t)threads > n_items)
        threads = (int)n_items;

    const size_t per_thread = (size_t)DERIV_CHUNK * (2 + 3 * n_outputs);
    double *pool = malloc(sizeof(double) * per_thread * (size_t)threads);
    double **scratch = malloc(sizeof(double *) * (size_t)threads);
    size_t *first = malloc(sizeof(size_t) * n_outputs);
    if (!pool || !scratch || !first) {
        free(pool);
        free(scratch);
        free(first);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                             "out of memory for derivative evaluation buffers");
    }
    for (int k = 0; k < threads; ++k)
        scratch[k] = pool + per_thread * (size_t)k;
    tps_outputs_first_of_band(t->outputs, n_outputs, first);
    deriv_request rq = {md, t, n_outputs, first, scratch};
    tps_parallel_for(n_items, threads, run_deriv_chunk, &rq);
    free(pool);
    free(scratch);
    free(first);
    return TPS_OK;
}

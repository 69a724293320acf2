/* gpu_se.c: the standard-error outputs of a GPU request. A global model's
 * band factorisation (variance.c, made on the CPU once) gets a device copy,
 * kept with the model like its values' copy; the device forms
 * k(x, x) - v^T S^-1 v for every cell (gpu/se.cu) and the host applies the
 * quantity table's formula; where tiles in low rank pay, as on the CPU,
 * the cells go by tiles (gpu_se_tiles.c, gpu/se_tiles.cu). A local model's
 * standard errors (many small factorisations) are computed on the CPU
 * (cpu_local_se.c). */
#include "gpu_backend.h"
#include "se_tile.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

tps_status tps_se_device_arrays(const tps_se_factor *f, tps_se_arrays *out, tps_error *err)
{
    const size_t n = f->n, m = f->m;
    memset(out, 0, sizeof *out);
    double *pcopy = malloc(sizeof(double) * n * m), *t = calloc(m * m, sizeof(double));
    out->vr = calloc(n * m, sizeof(double));
    out->f = calloc(2 * m * n, sizeof(double));
    out->r = calloc(m * m, sizeof(double));
    out->m11 = malloc(sizeof(double) * m * m);
    tps_status st = TPS_OK;
    if (!pcopy || !t || !out->vr || !out->f || !out->r || !out->m11) {
        st = tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of host memory");
        goto done;
    }
    /* dlarft on a copy: LAPACK may write the reflectors' diagonal while it
     * works, and other threads read f->p. */
    memcpy(pcopy, f->p, sizeof(double) * n * m);
    if (LAPACKE_dlarft(LAPACK_COL_MAJOR, 'F', 'C', (lapack_int)n, (lapack_int)m, pcopy,
                       (lapack_int)n, f->tau, t, (lapack_int)m) != 0) {
        st = tps_error_set(err, TPS_ERR_INTERNAL, "dlarft failed");
        goto done;
    }
    for (size_t k = 0; k < m; ++k) {
        out->vr[k * n + k] = 1.0;
        for (size_t i = k + 1; i < n; ++i)
            out->vr[k * n + i] = f->p[k * n + i];
        for (size_t i = 0; i <= k; ++i)
            out->r[k * m + i] = f->p[k * n + i];
        for (size_t i = 0; i < m; ++i) /* M11 from the lower triangle */
            out->m11[k * m + i] = i >= k ? f->mat[k * n + i] : f->mat[i * n + k];
    }
    /* F = [T V^T; 0 | M21^T], 2m x n: rows 0..m-1 T V^T (T upper), rows
     * m..2m-1 the fixed part's M21^T in columns m.. */
    for (size_t i = 0; i < n; ++i) {
        double *col = out->f + i * 2 * m;
        for (size_t a = 0; a < m; ++a) {
            double s = 0.0;
            for (size_t k = a; k < m; ++k)
                s += t[k * m + a] * out->vr[k * n + i];
            col[a] = s;
        }
        for (size_t k = 0; k < m && i >= m; ++k)
            col[m + k] = f->mat[k * n + i];
    }
done:
    free(pcopy);
    free(t);
    if (st != TPS_OK)
        tps_se_arrays_free(out);
    return st;
}

void tps_se_arrays_free(tps_se_arrays *a)
{
    free(a->vr);
    free(a->f);
    free(a->r);
    free(a->m11);
    memset(a, 0, sizeof *a);
}

static tps_gpu_se *upload(const tps_se_factor *f, size_t max_bytes, tps_error *err)
{
    tps_se_arrays a;
    if (tps_se_device_arrays(f, &a, err) != TPS_OK)
        return NULL;
    tps_gpu_se *g = tps_gpu_se_create(f->n, f->m, f->u, f->v, a.vr, a.f, a.r, a.m11,
                                      f->mat + f->m * f->n + f->m, f->n, max_bytes, err);
    tps_se_arrays_free(&a);
    return g;
}

static tps_status device_copy(tps_context *ctx, const tps_model *model, size_t band,
                              const tps_se_factor *f, size_t max_bytes, tps_gpu_se **out)
{
    tps_model *md = (tps_model *)model;
    tps_error err = {TPS_OK, ""};
    pthread_mutex_lock(&md->gpu_lock);
    for (size_t c = 0; c < md->n_bands && !md->gpu_se[band]; ++c)
        if (c != band && md->gpu_se[c] && md->se[c] == f)
            md->gpu_se[band] = md->gpu_se[c];
    if (!md->gpu_se[band])
        md->gpu_se[band] = upload(f, max_bytes, &err);
    *out = md->gpu_se[band];
    pthread_mutex_unlock(&md->gpu_lock);
    return *out ? TPS_OK : tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "%s", err.message);
}

/* Cells per device request: bounds the host's covariates and results. */
#define SE_CHUNK_PIXELS ((size_t)1 << 22)

tps_status tps_gpu_standard_errors(tps_context *ctx, const tps_eval_job *job)
{
    const tps_model *md = job->model;
    const tps_window *g = &job->t.w;
    const size_t n_out = tps_outputs_select(job->quantities, job->n_quantities, 1, NULL);
    if (n_out == 0 || g->ncols == 0 || g->nrows == 0)
        return TPS_OK;
    if (md->local) {
        tps_log(ctx, TPS_LOG_DEBUG, "a local model's standard errors are computed on the CPU");
        return tps_cpu_standard_errors(ctx, job);
    }
    size_t rows = SE_CHUNK_PIXELS / g->ncols;
    rows = rows < 1 ? 1 : (rows > g->nrows ? g->nrows : rows);
    const size_t nc = md->n_cov;
    double *a = malloc(sizeof(double) * rows * g->ncols);
    double *zs = nc ? malloc(sizeof(double) * rows * g->ncols * nc) : NULL;
    tps_status st = TPS_OK;
    if (!a || (nc && !zs)) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for standard errors");
        goto done;
    }
    for (size_t b = 0; b < job->n_quantities && st == TPS_OK; ++b) {
        const tps_output *o = &job->quantities[b];
        if (!(tps_quantity_needs(o->quantity) & TPS_NEEDS_VARIANCE))
            continue;
        const tps_se_factor *f = NULL;
        tps_gpu_se *dev = NULL;
        st = tps_se_factor_of_band(ctx, md, o->band, job->num_threads, &f);
        if (st == TPS_OK)
            st = device_copy(ctx, md, o->band, f, job->gpu_max_bytes, &dev);
        const double rho = tps_se_rho(md, o->band);
        int tiled = 0;
        if (st == TPS_OK)
            st = tps_gpu_se_tiles_output(ctx, job, o, f, dev, rho, &tiled);
        for (size_t row0 = 0; row0 < g->nrows && st == TPS_OK && !tiled; row0 += rows) {
            tps_window chunk = *g;
            chunk.first_row = g->first_row + row0;
            chunk.nrows = g->nrows - row0 < rows ? g->nrows - row0 : rows;
            const size_t pixels = chunk.nrows * chunk.ncols;
            for (size_t r = 0; r < chunk.nrows && nc; ++r)
                tps_covariates_load(md, job->cov, 1, row0 + r, 0, g->ncols, zs + r * g->ncols,
                                    pixels);
            tps_error err = {TPS_OK, ""};
            if (tps_gpu_se_variance(dev, &chunk, zs, a, job->gpu_max_bytes, &err) != TPS_OK) {
                st = tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE, "GPU standard error: %s",
                                   err.message);
                break;
            }
            for (size_t r = 0; r < chunk.nrows; ++r)
                for (size_t c = 0; c < chunk.ncols; ++c) {
                    tps_derivs d;
                    tps_derivs_zero(&d);
                    d.var = rho * a[r * chunk.ncols + c];
                    tps_output_store(o, row0 + r, c,
                                     tps_quantity_eval(o->quantity, &d, md->scale, NULL));
                }
        }
    }
done:
    free(a);
    free(zs);
    return st;
}

/* model.c: from raw points to a solved model. Drops unusable points, merges
 * coincident ones, centres and scales the coordinates, groups bands that can
 * share a factorisation, solves each group and measures the residuals. */
#include "gpu_backend.h"
#include "internal.h"
#include "iterative.h"
#include "variance.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tps_fit_options_init(tps_fit_options *options)
{
    /* Every default is 0 (tps.h): init and a zero-initialised struct agree. */
    if (options)
        memset(options, 0, sizeof *options);
}

tps_model *tps_model_destroy(tps_model *model)
{
    if (!model)
        return NULL;
    tps_gpu_model_destroy(model->gpu);
    tps_gpu_local_destroy(model->gpu_local);
    tps_local_destroy(model->local);
    if (model->gpu_lock_ready)
        pthread_mutex_destroy(&model->gpu_lock);
    if (model->gpu_se)
        for (size_t b = 0; b < model->n_bands; ++b) {
            int shared = 0;
            for (size_t c = 0; c < b && !shared; ++c)
                shared = model->gpu_se[c] == model->gpu_se[b];
            if (!shared)
                tps_gpu_se_destroy(model->gpu_se[b]);
        }
    free(model->gpu_se);
    tps_se_factors_destroy(model);
    if (model->se_lock_ready)
        pthread_mutex_destroy(&model->se_lock);
    if (model->half_weights)
        for (size_t b = 0; b < model->n_bands; ++b)
            free(model->half_weights[b]);
    free(model->half_weights);
    if (model->cov)
        for (size_t k = 0; k < model->n_cov; ++k)
            free(model->cov[k]);
    free(model->cov);
    free(model->cov_mean);
    free(model->cov_scale);
    free(model->cov_coef);
    if (model->point_w)
        for (size_t b = 0; b < model->n_bands; ++b)
            free(model->point_w[b]);
    free(model->point_w);
    free(model->affine);
    free(model->band_info);
    free(model->u);
    free(model->v);
    free(model);
    return NULL;
}

/* Distinct points, with each band's values averaged over the points merged
 * into them (NaN where none of them had a value). With weights, the average
 * is weighted and merged_w[b] receives the sum of the weights of the points
 * averaged in band b (the weight of their mean); else merged_w is NULL.
 * Points with a non-finite covariate are dropped; md->cov receives the
 * covariates averaged like the values; n_obs[b] the observations of band b
 * that were kept (before merging). */
int tps_model_alloc_parts(tps_model *md)
{
    const size_t nb = md->n_bands, nc = md->n_cov;
    md->gpu_lock_ready = pthread_mutex_init(&md->gpu_lock, NULL) == 0;
    md->se_lock_ready = md->gpu_lock_ready && pthread_mutex_init(&md->se_lock, NULL) == 0;
    md->half_weights = calloc(nb, sizeof(double *));
    md->affine = calloc(nb, sizeof(double[3]));
    md->band_info = calloc(nb, sizeof(tps_band_info));
    md->point_w = calloc(nb, sizeof(double *));
    md->se = calloc(nb, sizeof(struct tps_se_factor *));
    md->se_patches = calloc(nb, sizeof(struct tps_se_patches *));
    md->gpu_se = calloc(nb, sizeof(struct tps_gpu_se *));
    if (nc) {
        md->cov = calloc(nc, sizeof(double *));
        md->cov_mean = calloc(nc, sizeof(double));
        md->cov_scale = calloc(nc, sizeof(double));
        md->cov_coef = calloc(nc * nb, sizeof(double));
    }
    return md->se_lock_ready && md->half_weights && md->affine && md->band_info &&
           md->point_w && md->se && md->se_patches && md->gpu_se &&
           (!nc || (md->cov && md->cov_mean && md->cov_scale && md->cov_coef));
}

static tps_status merge_points(tps_context *ctx, tps_model *md, size_t n_points, const double *x,
                               const double *y, const double *const *values,
                               const tps_fit_options *options, double **merged,
                               double **merged_w, size_t *n_obs)
{
    const double *weights = options->weights;
    const double *const *cov = options->covariates;
    tps_keyed_point *pts = malloc(sizeof *pts * (n_points ? n_points : 1));
    size_t *counts = calloc(md->n_bands, sizeof *counts);
    if (!pts || !counts) {
        free(pts);
        free(counts);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for %zu points", n_points);
    }
    size_t kept = 0, no_cov = 0;
    for (size_t i = 0; i < n_points; ++i) {
        if (isfinite(x[i]) && isfinite(y[i])) {
            int usable = 1;
            for (size_t k = 0; k < md->n_cov; ++k)
                usable = usable && isfinite(cov[k][i]);
            if (usable)
                pts[kept++] = (tps_keyed_point){x[i], y[i], i};
            else
                ++no_cov;
        }
    }
    md->info.n_dropped = n_points - kept - no_cov;
    md->info.n_dropped_covariate = no_cov;
    qsort(pts, kept, sizeof *pts, tps_compare_keyed_point);

    size_t n = 0;
    md->u = malloc(sizeof(double) * (kept ? kept : 1));
    md->v = malloc(sizeof(double) * (kept ? kept : 1));
    for (size_t b = 0; b < md->n_bands; ++b) {
        merged[b] = malloc(sizeof(double) * (kept ? kept : 1));
        if (merged_w)
            merged_w[b] = malloc(sizeof(double) * (kept ? kept : 1));
    }
    int ok = md->u && md->v;
    for (size_t b = 0; b < md->n_bands; ++b)
        ok = ok && merged[b] && (!merged_w || merged_w[b]);
    for (size_t k = 0; k < md->n_cov; ++k)
        ok = ok && (md->cov[k] = malloc(sizeof(double) * (kept ? kept : 1))) != NULL;
    if (!ok) {
        free(pts);
        free(counts);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for %zu points", n_points);
    }
    for (size_t i = 0; i < kept;) {
        size_t j = i;
        memset(counts, 0, sizeof *counts * md->n_bands);
        for (size_t b = 0; b < md->n_bands; ++b) {
            merged[b][n] = 0.0;
            if (merged_w)
                merged_w[b][n] = 0.0;
        }
        double cov_sum[TPS_MAX_COVARIATES] = {0}, cov_w = 0.0;
        for (; j < kept && pts[j].x == pts[i].x && pts[j].y == pts[i].y; ++j) {
            const double wj = weights ? weights[pts[j].index] : 1.0;
            for (size_t b = 0; b < md->n_bands; ++b) {
                double value = values[b][pts[j].index];
                if (isfinite(value)) {
                    merged[b][n] += wj * value;
                    if (merged_w)
                        merged_w[b][n] += wj;
                    ++counts[b];
                }
            }
            for (size_t k = 0; k < md->n_cov; ++k)
                cov_sum[k] += wj * cov[k][pts[j].index];
            cov_w += wj;
        }
        for (size_t k = 0; k < md->n_cov; ++k)
            md->cov[k][n] = cov_sum[k] / cov_w;
        for (size_t b = 0; b < md->n_bands; ++b)
            n_obs[b] += counts[b];
        for (size_t b = 0; b < md->n_bands; ++b) {
            const double total = merged_w ? merged_w[b][n] : (double)counts[b];
            merged[b][n] = counts[b] ? merged[b][n] / total : NAN;
        }
        md->u[n] = pts[i].x; /* scaled later, once the bounding box is known */
        md->v[n] = pts[i].y;
        ++n;
        i = j;
    }
    md->n = n;
    md->info.n_points = n;
    md->info.n_merged = kept - n;
    free(pts);
    free(counts);

    if (md->info.n_dropped)
        tps_log(ctx, TPS_LOG_DEBUG, "%zu of %zu points dropped: non-finite x or y",
                md->info.n_dropped, n_points);
    if (no_cov)
        tps_log(ctx, TPS_LOG_WARNING,
                "%zu of %zu points have no value of %s (missing or not finite) and were left "
                "out", no_cov, n_points, md->n_cov == 1 ? "the covariate" : "every covariate");
    if (md->info.n_merged)
        tps_log(ctx, TPS_LOG_WARNING,
                "%zu point%s at the same location as another point were merged into %s "
                "(values averaged)", md->info.n_merged, md->info.n_merged == 1 ? "" : "s",
                md->info.n_merged == 1 ? "it" : "them");
    return TPS_OK;
}

/* Centre on the bounding box and scale its longer side to [-1, 1]. */
static void scale_points(tps_model *md)
{
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < md->n; ++i) {
        x0 = fmin(x0, md->u[i]);
        x1 = fmax(x1, md->u[i]);
        y0 = fmin(y0, md->v[i]);
        y1 = fmax(y1, md->v[i]);
    }
    md->info.min_x = x0;
    md->info.min_y = y0;
    md->info.max_x = x1;
    md->info.max_y = y1;
    md->cx = 0.5 * (x0 + x1);
    md->cy = 0.5 * (y0 + y1);
    double half = 0.5 * fmax(x1 - x0, y1 - y0);
    md->scale = half > 0.0 ? half : 1.0;
    for (size_t i = 0; i < md->n; ++i) {
        md->u[i] = (md->u[i] - md->cx) / md->scale;
        md->v[i] = (md->v[i] - md->cy) / md->scale;
    }
}

/* Band names for messages, 1-based as GDAL numbers bands: "band 2", "bands 1, 3". */
static void describe_bands(char *out, size_t size, const size_t *bands, size_t n)
{
    int len = snprintf(out, size, "band%s ", n == 1 ? "" : "s");
    for (size_t k = 0; k < n && len > 0 && (size_t)len < size; ++k)
        len += snprintf(out + len, size - (size_t)len, "%s%zu", k ? ", " : "", bands[k] + 1);
}

static int same_mask(double *const *merged, size_t n, size_t b, size_t c)
{
    for (size_t i = 0; i < n; ++i)
        if (isfinite(merged[b][i]) != isfinite(merged[c][i]))
            return 0;
    return 1;
}

/* The variances of the standard error, as fields' best.model has them
 * (tps.h): sigma2 = 8 pi rho with rho = sum w_i z_i / N in the user's
 * units, w the weights of the kernel r^2 log r. The solve's weights are
 * those of the scaled coordinates, w_user = w_scaled / scale^2. */
static void band_variances(tps_band_info *bi, double scale, size_t m, const double *w,
                           const double *z, size_t n_obs)
{
    double wz = 0.0;
    for (size_t k = 0; k < m; ++k)
        wz += w[k] * z[k];
    const double rho = wz / (scale * scale) / (double)n_obs;
    bi->sigma2 = rho > 0.0 ? 8.0 * M_PI * rho : 0.0;
    bi->tau2 = rho > 0.0 ? rho * bi->smoothing : 0.0;
}

/* Solve the bands that share lambda and missing values: one factorisation. */
static tps_status solve_group(tps_context *ctx, tps_model *md, double *const *merged,
                              double *const *merged_w, const size_t *group, size_t n_group,
                              const size_t *n_obs, const tps_fit_options *options)
{
    char what[256];
    describe_bands(what, sizeof what, group, n_group);
    const size_t first = group[0];
    size_t m = 0;
    for (size_t i = 0; i < md->n; ++i)
        m += isfinite(merged[first][i]) ? 1 : 0;

    /* The bands of a group share their missing values, hence merged weights. */
    int want_loo = 0;
    for (size_t g = 0; g < n_group; ++g)
        want_loo |= options->cross_validation && !md->band_info[group[g]].smoothing_gcv;
    const tps_solver solver = tps_model_choose_solver(md, m, n_group, want_loo, options);
    size_t need = solver == TPS_SOLVER_ITERATIVE ? tps_iterative_bytes(m, n_group)
                                                 : tps_solve_bytes(m, n_group);
    if (options->max_memory && need > options->max_memory)
        return tps_set_error(ctx, TPS_ERR_MEMORY_LIMIT,
                             "%s: the %s solve of %zu points needs %zu bytes (%.2f GiB), more "
                             "than the %zu bytes allowed", what,
                             solver == TPS_SOLVER_ITERATIVE ? "iterative" : "dense", m, need,
                             (double)need / 1073741824.0, options->max_memory);
    if (solver == TPS_SOLVER_ITERATIVE)
        return tps_model_solve_iterative(ctx, md, merged, merged_w, group, n_group, m, options,
                                         what);

    size_t *index = malloc(sizeof(size_t) * (m ? m : 1));
    double *su = malloc(sizeof(double) * (m ? m : 1));
    double *sv = malloc(sizeof(double) * (m ? m : 1));
    double *zw = malloc(sizeof(double) * (m ? m : 1) * 2 * n_group);
    const double **z = malloc(sizeof(double *) * n_group);
    double **w = malloc(sizeof(double *) * n_group);
    double (*a)[3] = malloc(sizeof(double[3]) * n_group);
    double *noise = merged_w ? malloc(sizeof(double) * (m ? m : 1)) : NULL;
    double *loo_diag = want_loo ? malloc(sizeof(double) * (m ? m : 1)) : NULL;
    /* The covariates' scaled columns at the group's points, and their
     * coefficients per band. */
    const size_t nc = md->n_cov;
    double *cov_buf = nc ? malloc(sizeof(double) * (m ? m : 1) * nc) : NULL;
    double *coef = nc ? malloc(sizeof(double) * nc * n_group) : NULL;
    const double *cov_cols[TPS_MAX_COVARIATES];
    tps_status st = TPS_OK;
    if (!index || !su || !sv || !zw || !z || !w || !a || (merged_w && !noise) ||
        (want_loo && !loo_diag) || (nc && (!cov_buf || !coef))) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        goto done;
    }
    m = 0;
    for (size_t i = 0; i < md->n; ++i) {
        if (isfinite(merged[first][i])) {
            index[m] = i;
            su[m] = md->u[i];
            sv[m] = md->v[i];
            if (noise)
                noise[m] = 1.0 / merged_w[first][i];
            ++m;
        }
    }
    for (size_t g = 0; g < n_group; ++g) {
        double *zg = zw + 2 * g * m;
        for (size_t k = 0; k < m; ++k)
            zg[k] = merged[group[g]][index[k]];
        z[g] = zg;
        w[g] = zg + m;
    }
    for (size_t k = 0; k < nc; ++k) {
        tps_covariates_gather(md, k, index, m, cov_buf + k * m);
        cov_cols[k] = cov_buf + k * m;
    }
    /* phi(r) = s^2 phi(r/s) + s^2 log(s) (r/s)^2, and the second term is
     * absorbed by the affine part under the side conditions, so scaling
     * coordinates by 1/s only rescales lambda by 1/s^2. */
    const double lambda = md->band_info[first].smoothing / (md->scale * md->scale);
    const int try_gpu = options->device == TPS_DEVICE_GPU ||
                        (options->device == TPS_DEVICE_AUTO && m >= TPS_GPU_SOLVE_MIN_POINTS &&
                         tps_gpu_solve_available(NULL) == TPS_OK);
    int used_gpu = 0;
    const tps_solve_extra extra = {.noise = noise,
                                   .loo_diag = loo_diag,
                                   .n_cov = nc,
                                   .cov = cov_cols,
                                   .cov_names = options->covariate_names,
                                   .cov_coef = coef};
    st = tps_solve_dense_ex(ctx, m, su, sv, lambda, n_group, z, w, a, options->num_threads,
                            try_gpu, options->gpu_max_memory, &used_gpu, &extra, what);
    if (st != TPS_OK)
        goto done;
    for (size_t g = 0; want_loo && g < n_group; ++g) {
        tps_band_info *bi = &md->band_info[group[g]];
        if (bi->smoothing_gcv)
            continue;
        double ss = 0.0, sa = 0.0;
        for (size_t k = 0; k < m; ++k) {
            const double loo = w[g][k] / loo_diag[k];
            ss += loo * loo;
            sa += fabs(loo);
        }
        bi->loo_rmse = sqrt(ss / (double)m);
        bi->loo_mae = sa / (double)m;
    }
    if (used_gpu)
        md->info.solve_device = TPS_DEVICE_GPU;
    for (size_t g = 0; g < n_group; ++g) {
        size_t b = group[g];
        for (size_t k = 0; k < m; ++k)
            md->half_weights[b][index[k]] = 0.5 * w[g][k];
        memcpy(md->affine[b], a[g], sizeof a[g]);
        if (nc)
            memcpy(md->cov_coef + b * nc, coef + g * nc, sizeof(double) * nc);
        band_variances(&md->band_info[b], md->scale, m, w[g], z[g], n_obs[b]);
    }
    md->info.n_factorisations++;

done:
    free(cov_buf);
    free(coef);
    free(noise);
    free(loo_diag);
    free(index);
    free(su);
    free(sv);
    free(zw);
    free(z);
    free(w);
    free(a);
    return st;
}

/* Band b's lambda by GCV (solve.c), stored in its band_info in the user's
 * units: lambda_user = lambda_scaled * scale^2. */
static tps_status select_gcv(tps_context *ctx, tps_model *md, double *const *merged,
                             double *const *merged_w, size_t b, const tps_fit_options *options)
{
    char what[64];
    describe_bands(what, sizeof what, &b, 1);
    size_t m = 0;
    for (size_t i = 0; i < md->n; ++i)
        m += isfinite(merged[b][i]) ? 1 : 0;
    size_t need = tps_gcv_bytes(m);
    if (options->max_memory && need > options->max_memory)
        return tps_set_error(ctx, TPS_ERR_MEMORY_LIMIT,
                             "%s: GCV over %zu points needs %zu bytes (%.2f GiB), more than the "
                             "%zu bytes allowed", what, m, need, (double)need / 1073741824.0,
                             options->max_memory);
    const size_t nc = md->n_cov;
    double *buf = malloc(sizeof(double) * (4 + nc) * (m ? m : 1));
    size_t *index = malloc(sizeof(size_t) * (m ? m : 1));
    if (!buf || !index) {
        free(buf);
        free(index);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    }
    double *su = buf, *sv = buf + m, *z = buf + 2 * m, *sqrt_w = merged_w ? buf + 3 * m : NULL;
    const size_t total = m;
    m = 0;
    for (size_t i = 0; i < md->n; ++i) {
        if (isfinite(merged[b][i])) {
            index[m] = i;
            su[m] = md->u[i];
            sv[m] = md->v[i];
            z[m] = merged[b][i];
            if (sqrt_w)
                sqrt_w[m] = sqrt(merged_w[b][i]);
            ++m;
        }
    }
    const double *cov_cols[TPS_MAX_COVARIATES];
    for (size_t k = 0; k < nc; ++k) {
        double *col = buf + (4 + k) * total;
        tps_covariates_gather(md, k, index, m, col);
        cov_cols[k] = col;
    }
    const tps_fixed_cols fc = {nc, cov_cols, options->covariate_names};
    tps_gcv_result res;
    const double t0 = tps_now_seconds();
    tps_status st =
        tps_gcv_select(ctx, m, su, sv, &fc, z, sqrt_w, options->num_threads, &res, what);
    free(buf);
    free(index);
    if (st != TPS_OK)
        return st;
    tps_band_info *bi = &md->band_info[b];
    bi->smoothing = res.lambda * md->scale * md->scale;
    bi->gcv_score = res.score;
    bi->effective_df = res.effective_df;
    bi->loo_rmse = res.loo_rmse;
    bi->loo_mae = res.loo_mae;
    tps_log(ctx, TPS_LOG_DEBUG, "%s: GCV chose smoothing %.6g (%.3g effective degrees of "
            "freedom of %zu) in %.3f s", what, bi->smoothing, bi->effective_df, m,
            tps_now_seconds() - t0);
    return TPS_OK;
}

/* max |f(x_i) - z_i| over each band's points, by the same kernel that fills
 * rasters: what a user would see at the data points. */
static tps_status measure_residuals(tps_context *ctx, tps_model *md, double *const *merged,
                                    int num_threads)
{
    size_t *bands = malloc(sizeof(size_t) * md->n_bands);
    double **out = calloc(md->n_bands, sizeof(double *));
    tps_status st = TPS_OK;
    if (!bands || !out) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    /* Bands solved iteratively have theirs from the solve's last product:
     * evaluating them here would cost O(N^2). */
    size_t n_eval = 0;
    for (size_t b = 0; b < md->n_bands; ++b) {
        if (md->band_info[b].solver == TPS_SOLVER_ITERATIVE)
            continue;
        bands[n_eval] = b;
        out[n_eval] = malloc(sizeof(double) * md->n);
        if (!out[n_eval++]) {
            st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
    }
    tps_plane planes[TPS_MAX_COVARIATES];
    for (size_t k = 0; k < md->n_cov; ++k)
        planes[k] = (tps_plane){md->cov[k], TPS_FLOAT64, sizeof(double), 0};
    st = tps_evaluate_scaled(ctx, md, n_eval, bands, md->n, md->u, md->v,
                             md->n_cov ? planes : NULL, out, num_threads);
    if (st != TPS_OK)
        goto done;
    for (size_t k = 0; k < n_eval; ++k) {
        const size_t b = bands[k];
        double worst = 0.0;
        for (size_t i = 0; i < md->n; ++i)
            if (isfinite(merged[b][i]))
                worst = fmax(worst, fabs(out[k][i] - merged[b][i]));
        md->band_info[b].max_abs_residual = worst;
    }
done:
    if (out)
        for (size_t b = 0; b < md->n_bands; ++b)
            free(out[b]);
    free(out);
    free(bands);
    return st;
}

tps_model *tps_model_create(tps_context *ctx, size_t n_points, const double *x, const double *y,
                            size_t n_bands, const double *const *values, const double *smoothing,
                            const tps_fit_options *options)
{
    tps_clear_error(ctx);
    const double t0 = tps_now_seconds();
    tps_fit_options resolved;
    /* Neither PatchPoints nor Overlap given: a local GCV sizes the patches
     * from its lambda (local_size.c). */
    const int size_patches = !options || (options->patch_points == 0 && options->overlap == 0.0);
    if (options)
        resolved = *options;
    else
        tps_fit_options_init(&resolved);
    if (resolved.patch_points == 0)
        resolved.patch_points = TPS_DEFAULT_PATCH_POINTS;
    if (resolved.overlap == 0.0)
        resolved.overlap = TPS_DEFAULT_OVERLAP;
    options = &resolved;
    if (n_bands == 0 || !values || !smoothing || (n_points > 0 && (!x || !y))) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no bands, values or coordinates given");
        return NULL;
    }
    if (options->mode != TPS_MODE_AUTO && options->mode != TPS_MODE_GLOBAL &&
        options->mode != TPS_MODE_LOCAL) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "unknown mode %d", (int)options->mode);
        return NULL;
    }
    if (options->mode != TPS_MODE_GLOBAL &&
        (options->patch_points < TPS_MIN_PATCH_POINTS ||
         !(options->overlap > 1.0 && options->overlap <= TPS_MAX_OVERLAP))) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                      "patch points must be >= %d (got %zu) and the overlap in (1, %g] (got %g)",
                      TPS_MIN_PATCH_POINTS, options->patch_points, TPS_MAX_OVERLAP,
                      options->overlap);
        return NULL;
    }
    for (size_t b = 0; b < n_bands; ++b) {
        const int gcv = options->smoothing_gcv && options->smoothing_gcv[b];
        if ((!gcv && (!(smoothing[b] >= 0.0) || !isfinite(smoothing[b]))) ||
            (n_points > 0 && !values[b])) {
            tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                          "band %zu: smoothing must be a finite number >= 0, got %g", b + 1,
                          smoothing[b]);
            return NULL;
        }
    }

    if (options->n_covariates > TPS_MAX_COVARIATES ||
        (options->n_covariates && n_points > 0 && !options->covariates)) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                      "%zu covariates: at most %d, each with its values at the points",
                      options->n_covariates, TPS_MAX_COVARIATES);
        return NULL;
    }
    for (size_t k = 0; k < options->n_covariates && n_points > 0; ++k) {
        if (!options->covariates[k]) {
            tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "covariate %zu has no values", k + 1);
            return NULL;
        }
    }

    for (size_t i = 0; options->weights && i < n_points; ++i) {
        const double wi = options->weights[i];
        if (isfinite(x[i]) && isfinite(y[i]) && !(isfinite(wi) && wi > 0.0)) {
            tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                          "point %zu: its weight must be a finite number > 0, got %g", i + 1, wi);
            return NULL;
        }
    }

    int any_gcv = 0;
    for (size_t b = 0; b < n_bands; ++b)
        any_gcv |= options->smoothing_gcv && options->smoothing_gcv[b];
    if (options->solver != TPS_SOLVER_AUTO && options->solver != TPS_SOLVER_DIRECT &&
        options->solver != TPS_SOLVER_ITERATIVE) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "unknown solver %d", (int)options->solver);
        return NULL;
    }
    if (options->solver_tolerance != 0.0 &&
        !(options->solver_tolerance >= 1e-14 && options->solver_tolerance <= 1e-6)) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                      "the solver tolerance must be in [1e-14, 1e-6] (or 0: the default), got %g",
                      options->solver_tolerance);
        return NULL;
    }
    if (options->solver == TPS_SOLVER_ITERATIVE && options->mode == TPS_MODE_LOCAL) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                      "SOLVER=ITERATIVE needs MODE=GLOBAL (or AUTO): it solves the global "
                      "spline; a local model's patches are solved directly");
        return NULL;
    }
    if (options->solver == TPS_SOLVER_ITERATIVE && options->n_covariates) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                      "covariates need SOLVER=DIRECT (or AUTO): the iterative solver's "
                      "preconditioner and products know only the affine part [1 x y]");
        return NULL;
    }
    if (options->solver == TPS_SOLVER_ITERATIVE && (any_gcv || options->cross_validation)) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                      "%s needs SOLVER=DIRECT (or AUTO), or MODE=LOCAL: it is computed from "
                      "the dense factorisation of the spline's system, which the iterative "
                      "solver does not form", any_gcv ? "GCV" : "cross-validation");
        return NULL;
    }

    tps_progress_state progress;
    tps_progress_state *const outer_progress = tps_progress_begin(&progress, options);
    tps_model *md = calloc(1, sizeof *md);
    double **merged = calloc(n_bands, sizeof(double *));
    double **merged_w = options->weights ? calloc(n_bands, sizeof(double *)) : NULL;
    size_t *group = malloc(sizeof(size_t) * n_bands);
    char *assigned = calloc(n_bands, 1);
    size_t *n_obs = NULL;
    int ok = 0; /* 1 once the model is whole; until then `done` destroys it */
    if (!md || !merged || !group || !assigned || (options->weights && !merged_w)) {
        tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    md->n_bands = n_bands;
    md->size_patches = size_patches && any_gcv;
    md->n_cov = options->n_covariates;
    const int parts = tps_model_alloc_parts(md);
    if (!md->se_lock_ready) {
        tps_set_error(ctx, TPS_ERR_INTERNAL, "cannot create a mutex");
        goto done;
    }
    md->info.n_input = n_points;
    md->info.n_bands = n_bands;
    md->info.solve_device = TPS_DEVICE_CPU;
    md->weighted = options->weights != NULL;
    n_obs = calloc(n_bands, sizeof(size_t));
    md->info.n_covariates = md->n_cov;
    if (!parts || !n_obs) {
        tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if (merge_points(ctx, md, n_points, x, y, values, options, merged, merged_w, n_obs) !=
        TPS_OK)
        goto done;
    scale_points(md);
    if (tps_covariates_scale(ctx, md, options->covariate_names) != TPS_OK)
        goto done;

    for (size_t b = 0; b < n_bands; ++b) {
        tps_band_info *bi = &md->band_info[b];
        bi->smoothing_gcv = options->smoothing_gcv && options->smoothing_gcv[b] ? 1 : 0;
        bi->smoothing = bi->smoothing_gcv ? 0.0 : smoothing[b];
        bi->gcv_score = bi->effective_df = bi->loo_rmse = bi->loo_mae = NAN;
        bi->solver = TPS_SOLVER_DIRECT;
        bi->iterations = 0;
        bi->relative_residual = NAN;
        bi->sigma2 = bi->tau2 = NAN; /* set by the global solve */
        bi->value_min = INFINITY;
        bi->value_max = -INFINITY;
        for (size_t i = 0; i < md->n; ++i) {
            if (isfinite(merged[b][i])) {
                bi->n_points++;
                bi->value_min = fmin(bi->value_min, merged[b][i]);
                bi->value_max = fmax(bi->value_max, merged[b][i]);
            }
        }
        bi->n_missing = md->n - bi->n_points;
        if (bi->n_missing)
            tps_log(ctx, TPS_LOG_DEBUG, "band %zu: %zu of %zu points have no usable value "
                    "(NaN, infinite or missing) and were left out", b + 1, bi->n_missing, md->n);
        md->half_weights[b] = calloc(md->n ? md->n : 1, sizeof(double));
        if (!md->half_weights[b]) {
            tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
    }

    /* GLOBAL or LOCAL. AUTO keeps the exact global spline while its dense
     * system is small (a second or two, a few hundred MB) and fits the
     * memory limit; past that the local model's O(N) cost wins. */
    tps_mode mode = options->mode;
    size_t global_need = 0;
    for (size_t b = 0; b < n_bands; ++b) {
        size_t need = tps_solve_bytes(md->band_info[b].n_points, n_bands);
        global_need = need > global_need ? need : global_need;
    }
    /* With a usable GPU the global spline stays the better choice much
     * longer: cuSOLVER solves 20,000 points in ~0.2 s and the GPU evaluates
     * the exact global sum at ~8e11 pairs/s, where local models evaluate on
     * the CPU (measured on an H100: 16384^2 from N = 10,000 took 19 s as a
     * local model on 16 cores, 5 s as a global one on the GPU). */
    size_t global_max = options->device != TPS_DEVICE_CPU &&
                                tps_gpu_solve_available(NULL) == TPS_OK
                            ? TPS_AUTO_GLOBAL_MAX_POINTS_GPU
                            : TPS_AUTO_GLOBAL_MAX_POINTS;
    /* GCV's eigendecomposition and cross-validation's inverse run on the
     * CPU, and GCV holds 3 N^2 doubles: past a few thousand points the
     * local model's patches choose (and solve) much faster. */
    if (options->cross_validation)
        global_max = TPS_AUTO_GLOBAL_MAX_POINTS;
    for (size_t b = 0; b < n_bands; ++b) {
        if (!options->smoothing_gcv || !options->smoothing_gcv[b])
            continue;
        global_max = TPS_AUTO_GLOBAL_MAX_POINTS_GCV;
        const size_t need = tps_gcv_bytes(md->band_info[b].n_points);
        global_need = need > global_need ? need : global_need;
    }
    if (mode == TPS_MODE_AUTO && options->solver == TPS_SOLVER_ITERATIVE) {
        mode = TPS_MODE_GLOBAL;
        tps_log(ctx, TPS_LOG_DEBUG, "AUTO chose the global model: SOLVER=ITERATIVE asks for it");
    }
    if (mode == TPS_MODE_AUTO)
        mode = md->n <= global_max && (!options->max_memory || global_need <= options->max_memory)
                   ? TPS_MODE_GLOBAL
                   : TPS_MODE_LOCAL;
    md->info.mode = mode;
    if (mode == TPS_MODE_LOCAL) {
        if (tps_local_build(ctx, md, merged, merged_w, options) != TPS_OK) {
            if (options->mode == TPS_MODE_AUTO &&
                tps_context_errno(ctx) == TPS_ERR_MEMORY_LIMIT) {
                char msg[sizeof ctx->err.message];
                snprintf(msg, sizeof msg, "%s; the global dense solve would need %zu bytes",
                         tps_context_errmsg(ctx), global_need);
                tps_set_error(ctx, TPS_ERR_MEMORY_LIMIT, "%s", msg);
            }
            goto done;
        }
        tps_log(ctx, TPS_LOG_DEBUG, "%s model of %zu points: %zu patches",
                options->mode == TPS_MODE_AUTO ? "AUTO chose a local" : "local", md->n,
                md->info.n_patches);
    }

    for (size_t b = 0; b < n_bands && mode == TPS_MODE_GLOBAL; ++b)
        if (md->band_info[b].smoothing_gcv &&
            select_gcv(ctx, md, merged, merged_w, b, options) != TPS_OK)
            goto done;
    for (size_t b = 0; b < n_bands && mode == TPS_MODE_GLOBAL; ++b) {
        if (assigned[b])
            continue;
        size_t n_group = 0;
        for (size_t c = b; c < n_bands; ++c) {
            if (!assigned[c] && md->band_info[c].smoothing == md->band_info[b].smoothing &&
                same_mask(merged, md->n, b, c)) {
                group[n_group++] = c;
                assigned[c] = 1;
            }
        }
        if (solve_group(ctx, md, merged, merged_w, group, n_group, n_obs, options) != TPS_OK)
            goto done;
    }
    /* What the standard error's factorisation needs of each band's solve:
     * which points took part, with which weights. */
    for (size_t b = 0; b < n_bands && mode == TPS_MODE_GLOBAL; ++b) {
        if (!merged_w && md->band_info[b].n_missing == 0)
            continue;
        if (merged_w) {
            md->point_w[b] = merged_w[b]; /* 0 where missing */
            merged_w[b] = NULL;
            continue;
        }
        md->point_w[b] = malloc(sizeof(double) * (md->n ? md->n : 1));
        if (!md->point_w[b]) {
            tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < md->n; ++i)
            md->point_w[b][i] = isfinite(merged[b][i]) ? 1.0 : 0.0;
    }
    if (measure_residuals(ctx, md, merged, options->num_threads) != TPS_OK)
        goto done;
    md->info.solve_seconds = tps_now_seconds() - t0;
    ok = 1;

done:
    for (size_t b = 0; b < n_bands; ++b) {
        if (merged)
            free(merged[b]);
        if (merged_w)
            free(merged_w[b]);
    }
    free(merged);
    free(merged_w);
    free(group);
    free(assigned);
    free(n_obs);
    if (!ok)
        md = tps_model_destroy(md);
    tps_progress_end(outer_progress);
    return md;
}

size_t tps_model_device_uploads(const tps_model *model)
{
    if (!model)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&model->gpu_lock);
    size_t uploads = model->gpu_uploads;
    pthread_mutex_unlock((pthread_mutex_t *)&model->gpu_lock);
    return uploads;
}

tps_status tps_model_get_info(tps_context *ctx, const tps_model *model, tps_model_info *info)
{
    tps_clear_error(ctx);
    if (!model || !info)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no model or no info");
    *info = model->info;
    info->pairs_per_pixel = tps_model_pairs_per_pixel(model);
    info->device_uploads = tps_model_device_uploads(model);
    return TPS_OK;
}

tps_status tps_model_get_band_info(tps_context *ctx, const tps_model *model, size_t band,
                                   tps_band_info *info)
{
    tps_clear_error(ctx);
    if (!model || !info || band >= model->n_bands)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no model, no info or no band %zu",
                             band + 1);
    *info = model->band_info[band];
    return TPS_OK;
}

tps_status tps_model_get_points(tps_context *ctx, const tps_model *model, double *x, double *y)
{
    tps_clear_error(ctx);
    if (!model || !x || !y)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no model or no output arrays");
    for (size_t i = 0; i < model->n; ++i) {
        x[i] = model->cx + model->scale * model->u[i];
        y[i] = model->cy + model->scale * model->v[i];
    }
    return TPS_OK;
}

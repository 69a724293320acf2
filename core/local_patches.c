/* local_patches.c: a LOCAL model's patches solved (local_build.c makes the
 * partition and drives the build; local_build.h has what they share):
 * the patches' points found in the quadtree, their solves in waves. */
#include "blend.h"
#include "gpu_backend.h"
#include "local_build.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Phase 2, by waves of patches: gather each patch's points and set up one
 * dense solve per group of bands (same lambda, same missing values), solve
 * the wave's systems together (tps_solve_dense_batch: on the CPU threads,
 * or factorised in batches on the GPU), store the weights. */
typedef struct group_solve {
    size_t ng, m;
    size_t *bands; /* ng model bands */
    size_t *sub;   /* m indices into the patch's points */
    double *su, *sv, *noise, *zw; /* m each; zw: ng values then ng weights */
    size_t *idx;   /* leave-one-out: the m model indices, and (M^-1)_ii */
    double *loo;
    const double **z;
    double **w;
    double (*a)[3];
    tps_dense_job job;
} group_solve;

typedef struct patch_work {
    size_t n_groups;
    group_solve *groups; /* up to n_bands */
} patch_work;

void tps_local_record_error(build *bd, size_t p, const tps_error *err)
{
    pthread_mutex_lock(&bd->lock);
    if (bd->err.code == TPS_OK || p < bd->err_patch) {
        bd->err = *err;
        bd->err_patch = p;
    }
    pthread_mutex_unlock(&bd->lock);
}

/* Calls visit(i) for each point i with |u - cx| <= hx and |v - cy| <= hy,
 * in tree order (deterministic). */
void tps_local_query(const build *bd, double cx, double cy, double hx, double hy, visit_fn visit,
                  void *user)
{
    const tps_model *md = bd->md;
    const double qu0 = cx - hx, qu1 = cx + hx, qv0 = cy - hy, qv1 = cy + hy;
    size_t stack[4 * TPS_LOCAL_MAX_DEPTH + 8];
    size_t top = 0;
    stack[top++] = 0;
    while (top) {
        const node *nd = &bd->nodes[stack[--top]];
        if (nd->u1 < qu0 || nd->u0 > qu1 || nd->v1 < qv0 || nd->v0 > qv1 || nd->end == nd->begin)
            continue;
        if (nd->child) {
            /* Pushed in reverse so that children are visited in order. */
            for (int q = 3; q >= 0; --q)
                stack[top++] = nd->child + (size_t)q;
            continue;
        }
        for (size_t k = nd->begin; k < nd->end; ++k) {
            size_t i = bd->perm[k];
            if (fabs(md->u[i] - cx) <= hx && fabs(md->v[i] - cy) <= hy)
                visit(i, user);
        }
    }
}

typedef struct collect_visit {
    size_t *index;
    size_t n;
} collect_visit;

static void collect_point(size_t i, void *user)
{
    collect_visit *cv = user;
    cv->index[cv->n++] = i;
}

/* Patch p's pt->n points, in tree order (tps_patch_points_fn). */
void tps_local_gather_patch_points(void *user, size_t p, size_t *index)
{
    const build *bd = user;
    const patch *pt = &bd->lc->patches[p];
    collect_visit cv = {index, 0};
    tps_local_query(bd, pt->cx, pt->cy, pt->hx, pt->hy, collect_point, &cv);
}

struct patch_work *tps_local_work_create(void)
{
    return calloc(WAVE_PATCHES, sizeof(patch_work));
}

static void free_group(group_solve *gs)
{
    free(gs->bands);
    free(gs->sub);
    free(gs->su);
    free(gs->sv);
    free(gs->noise);
    free(gs->idx);
    free(gs->loo);
    free(gs->zw);
    free(gs->z);
    free(gs->w);
    free(gs->a);
    memset(gs, 0, sizeof *gs);
}

static void prepare_patch(size_t p, int thread, void *user)
{
    (void)thread;
    build *bd = user;
    struct tps_local *lc = bd->lc;
    const tps_model *md = bd->md;
    patch *pt = &lc->patches[p];
    patch_work *pw = &bd->work[p - bd->wave0];
    const size_t nb = bd->n_bands, n = pt->n, nc = md->n_cov;
    /* With covariates: each covariate's c_k and W_p c_k (local_cov.c). */
    const size_t nr = 2 * nc;
    tps_error err = {TPS_OK, ""};

    pt->index = malloc(sizeof(size_t) * (n ? n : 1));
    pt->u = malloc(sizeof(double) * (n ? n : 1));
    pt->v = malloc(sizeof(double) * (n ? n : 1));
    pt->hw = calloc(nb, sizeof(double *));
    pt->affine = calloc(nb, sizeof(double[3]));
    pw->groups = calloc(nb, sizeof(group_solve));
    pw->n_groups = 0;
    char *assigned = calloc(nb, 1);
    int ok = pt->index && pt->u && pt->v && pt->hw && pt->affine && pw->groups && assigned;
    for (size_t b = 0; ok && b < nb; ++b)
        ok = (pt->hw[b] = calloc(n ? n : 1, sizeof(double))) != NULL;
    if (!ok) {
        tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY, "out of memory for patch %zu (%zu points)",
                      p + 1, n);
        goto done;
    }
    tps_local_gather_patch_points(bd, p, pt->index);
    for (size_t k = 0; k < n; ++k) {
        pt->u[k] = (md->u[pt->index[k]] - pt->pcx) / pt->ps;
        pt->v[k] = (md->v[pt->index[k]] - pt->pcy) / pt->ps;
    }
    for (size_t b = 0; b < nb; ++b) {
        if (assigned[b])
            continue;
        group_solve *gs = &pw->groups[pw->n_groups++];
        gs->bands = malloc(sizeof(size_t) * nb);
        gs->sub = malloc(sizeof(size_t) * (n ? n : 1));
        gs->su = malloc(sizeof(double) * (n ? n : 1));
        gs->sv = malloc(sizeof(double) * (n ? n : 1));
        gs->noise = bd->merged_w ? malloc(sizeof(double) * (n ? n : 1)) : NULL;
        /* The group's bands, then each covariate's column: more
         * right-hand sides of the same factorisation. */
        gs->zw = malloc(sizeof(double) * (n ? n : 1) * 2 * (nb + nr));
        gs->z = malloc(sizeof(double *) * (nb + nr));
        gs->w = malloc(sizeof(double *) * (nb + nr));
        gs->a = malloc(sizeof(double[3]) * (nb + nr));
        if (!gs->bands || !gs->sub || !gs->su || !gs->sv || (bd->merged_w && !gs->noise) ||
            !gs->zw || !gs->z || !gs->w || !gs->a) {
            tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY,
                          "out of memory for patch %zu (%zu points)", p + 1, n);
            goto done;
        }
        for (size_t c = b; c < nb; ++c) {
            int same = !assigned[c] && bd->smoothing[c] == bd->smoothing[b];
            for (size_t k = 0; same && k < n; ++k)
                same = isfinite(bd->merged[b][pt->index[k]]) ==
                       isfinite(bd->merged[c][pt->index[k]]);
            if (same) {
                gs->bands[gs->ng++] = c;
                assigned[c] = 1;
            }
        }
        int want_loo = 0;
        for (size_t g = 0; g < gs->ng; ++g)
            want_loo |= bd->loo_sum && bd->loo_sum[gs->bands[g]] != NULL;
        if (want_loo || nc) {
            gs->idx = malloc(sizeof(size_t) * (n ? n : 1));
            gs->loo = want_loo ? malloc(sizeof(double) * (n ? n : 1)) : NULL;
            if (!gs->idx || (want_loo && !gs->loo)) {
                tps_error_set(&err, TPS_ERR_OUT_OF_MEMORY,
                              "out of memory for patch %zu (%zu points)", p + 1, n);
                goto done;
            }
        }
        for (size_t k = 0; k < n; ++k) {
            if (isfinite(bd->merged[b][pt->index[k]])) {
                if (gs->idx)
                    gs->idx[gs->m] = pt->index[k];
                gs->sub[gs->m] = k;
                gs->su[gs->m] = pt->u[k];
                gs->sv[gs->m] = pt->v[k];
                if (gs->noise) /* the group shares its missing values, so its weights */
                    gs->noise[gs->m] = 1.0 / bd->merged_w[b][pt->index[k]];
                ++gs->m;
            }
        }
        for (size_t g = 0; g < gs->ng; ++g) {
            double *zg = gs->zw + 2 * g * gs->m;
            for (size_t k = 0; k < gs->m; ++k)
                zg[k] = bd->merged[gs->bands[g]][pt->index[gs->sub[k]]];
            gs->z[g] = zg;
            gs->w[g] = zg + gs->m;
        }
        for (size_t c = 0; c < nr; ++c) {
            gs->z[gs->ng + c] = gs->zw + 2 * (gs->ng + c) * gs->m;
            gs->w[gs->ng + c] = gs->zw + (2 * (gs->ng + c) + 1) * gs->m;
        }
        if (nc)
            tps_local_cov_columns(bd->cov, pt, gs->m, pt->index, gs->sub,
                                  (double *const *)(gs->z + gs->ng));
        /* lambda is in user units squared (tps.h); the patch frame's unit is
         * scale * ps user units, so the patch solves the very penalised
         * least squares problem of the global spline, on its own points. */
        const double unit = bd->scale * pt->ps;
        tps_dense_job *job = &gs->job;
        job->status = TPS_ERR_INTERNAL; /* until solved */
        job->n = gs->m;
        job->u = gs->su;
        job->v = gs->sv;
        job->lambda = bd->smoothing[b] / (unit * unit);
        job->noise = gs->noise;
        job->loo_diag = gs->loo;
        job->n_rhs = gs->ng + nr;
        job->z = gs->z;
        job->w = gs->w;
        job->a = gs->a;
        snprintf(job->what, sizeof job->what, "patch %zu of %zu, band %zu", p + 1,
                 lc->n_patches, b + 1);
    }
done:
    if (err.code != TPS_OK)
        tps_local_record_error(bd, p, &err);
    free(pt->index);
    pt->index = NULL;
    free(assigned);
}

static void store_patch(size_t p, int thread, void *user)
{
    (void)thread;
    build *bd = user;
    patch *pt = &bd->lc->patches[p];
    patch_work *pw = &bd->work[p - bd->wave0];
    for (size_t i = 0; i < pw->n_groups; ++i) {
        group_solve *gs = &pw->groups[i];
        /* A job the wave did not run (an earlier failure) stays
         * TPS_ERR_INTERNAL with no message: that failure is reported. */
        if (gs->job.status == TPS_OK) {
            for (size_t g = 0; g < gs->ng; ++g) {
                for (size_t k = 0; k < gs->m; ++k)
                    pt->hw[gs->bands[g]][gs->sub[k]] = 0.5 * gs->w[g][k];
                memcpy(pt->affine[gs->bands[g]], gs->a[g], sizeof gs->a[g]);
            }
        } else if (gs->job.err.code != TPS_OK) {
            tps_local_record_error(bd, p, &gs->job.err);
        }
        free_group(gs);
    }
    free(pw->groups);
    pw->groups = NULL;
    pw->n_groups = 0;
}

/* A wave's leave-one-out residuals, w_i / (M^-1)_ii per patch (Rippa),
 * blended: serially, in patch order, so the sums do not depend on the
 * threads. */
static void add_loo(build *bd, size_t count)
{
    const tps_model *md = bd->md;
    for (size_t i = 0; i < count; ++i) {
        const patch *pt = &bd->lc->patches[bd->wave0 + i];
        const patch_work *pw = &bd->work[i];
        for (size_t q = 0; q < pw->n_groups; ++q) {
            const group_solve *gs = &pw->groups[q];
            if (!gs->loo || gs->job.status != TPS_OK)
                continue;
            for (size_t g = 0; g < gs->ng; ++g) {
                double *sum = bd->loo_sum[gs->bands[g]];
                for (size_t k = 0; sum && k < gs->m; ++k) {
                    const size_t j = gs->idx[k];
                    const double w = tps_patch_bump(pt, md->u[j], md->v[j]);
                    if (w > 0.0)
                        sum[j] += w / bd->S[j] * (gs->w[g][k] / gs->loo[k]);
                }
            }
        }
    }
}

/* A wave's covariate sums (local_cov.c), serially in patch order. */
static void add_cov(build *bd, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        const size_t p = bd->wave0 + i;
        const patch_work *pw = &bd->work[i];
        for (size_t q = 0; q < pw->n_groups; ++q) {
            const group_solve *gs = &pw->groups[q];
            if (gs->job.status != TPS_OK)
                continue;
            if (!tps_local_cov_add(bd->cov, bd->md, &bd->lc->patches[p], p, gs->ng, gs->bands,
                                   gs->m, gs->idx, gs->sub, gs->w,
                                   (const double(*)[3])gs->a, gs->loo, bd->loo_sum)) {
                tps_error oom;
                tps_error_set(&oom, TPS_ERR_OUT_OF_MEMORY,
                              "out of memory for patch %zu's covariates", p + 1);
                tps_local_record_error(bd, p, &oom);
                return;
            }
        }
    }
}

static void prepare_patch_in_wave(size_t i, int thread, void *user)
{
    prepare_patch(((build *)user)->wave0 + i, thread, user);
}

static void store_patch_in_wave(size_t i, int thread, void *user)
{
    store_patch(((build *)user)->wave0 + i, thread, user);
}

void tps_local_solve_patches(build *bd, int threads, int try_gpu, size_t gpu_max_bytes)
{
    struct tps_local *lc = bd->lc;
    tps_dense_job *jobs = NULL;
    size_t wave = lc->n_patches / 32;
    wave = wave < WAVE_PATCHES_MIN ? WAVE_PATCHES_MIN : wave > WAVE_PATCHES ? WAVE_PATCHES : wave;
    for (size_t w0 = 0; w0 < lc->n_patches && bd->err.code == TPS_OK; w0 += wave) {
        const size_t count = lc->n_patches - w0 < wave ? lc->n_patches - w0 : wave;
        bd->wave0 = w0;
        memset(bd->work, 0, sizeof(patch_work) * count);
        /* The patches' own solves report no progress: the wave does. */
        tps_progress_state quiet;
        tps_progress_state *const outer_progress = tps_progress_begin(&quiet, NULL);
        tps_parallel_for(count, threads, prepare_patch_in_wave, bd);
        size_t n_jobs = 0;
        for (size_t i = 0; i < count; ++i)
            n_jobs += bd->work[i].n_groups;
        jobs = realloc(jobs, sizeof(tps_dense_job) * (n_jobs ? n_jobs : 1));
        if (!jobs) {
            tps_error oom;
            tps_error_set(&oom, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch solves");
            tps_local_record_error(bd, w0, &oom);
        } else if (bd->err.code == TPS_OK) {
            size_t j = 0;
            for (size_t i = 0; i < count; ++i)
                for (size_t g = 0; g < bd->work[i].n_groups; ++g)
                    jobs[j++] = bd->work[i].groups[g].job;
            /* Each job carries its own error; the first is recorded below. */
            tps_solve_dense_batch(NULL, n_jobs, jobs, threads, try_gpu, gpu_max_bytes);
            j = 0;
            for (size_t i = 0; i < count; ++i)
                for (size_t g = 0; g < bd->work[i].n_groups; ++g) {
                    bd->work[i].groups[g].job = jobs[j];
                    bd->n_solves += jobs[j].status == TPS_OK;
                    bd->n_gpu_solves += jobs[j].status == TPS_OK && jobs[j].used_gpu;
                    ++j;
                }
            if (bd->loo_sum)
                add_loo(bd, count);
            if (bd->cov)
                add_cov(bd, count);
        }
        tps_parallel_for(count, threads, store_patch_in_wave, bd);
        tps_progress_end(outer_progress);
        tps_progress((double)(w0 + count) / (double)lc->n_patches);
    }
    free(jobs);
}

/* matvec.c: products with the spline's kernel matrix for the iterative
 * solve, y = K x with K_ij = r_ij^2 log r_ij, never forming K: on the GPU
 * (all-pairs sums in FP64, gpu/matvec.cu), else by fast summation (fmm.c),
 * else (few points) by the evaluation's SIMD kernel over all pairs. The
 * kernel sums half-weights times s log s (s = r^2), so x/2 goes in. */
#include "iterative.h"

#include "eval.h"
#include "fmm.h"
#include "gpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tps_matvec {
    size_t n;
    const double *u, *v;
    int threads;
    double tol;
    tps_fmm *fmm;            /* the CPU's fast summation, or NULL */
    tps_gpu_matvec *gpu;     /* or the GPU's copy of the points, or NULL */
    tps_kernel_fn kernel;    /* direct sums */
    double *half;            /* n: x / 2 */
    char name[64];
};

void tps_matvec_destroy(tps_matvec *mv)
{
    if (!mv)
        return;
    tps_fmm_destroy(mv->fmm);
    tps_gpu_matvec_destroy(mv->gpu);
    free(mv->half);
    free(mv);
}

/* The CPU's products: fast summation from TPS_FMM_MIN_POINTS, else direct. */
static tps_status cpu_path(tps_matvec *mv, tps_error *err)
{
    if (mv->n >= TPS_FMM_MIN_POINTS) {
        mv->fmm = tps_fmm_create(err, mv->n, mv->u, mv->v, mv->tol, mv->threads);
        if (!mv->fmm)
            return err ? err->code : TPS_ERR_OUT_OF_MEMORY;
        snprintf(mv->name, sizeof mv->name, "CPU fast summation (%d terms)",
                 tps_fmm_terms(mv->fmm));
    } else {
        snprintf(mv->name, sizeof mv->name, "CPU direct sums");
    }
    return TPS_OK;
}

tps_matvec *tps_matvec_create(tps_error *err, size_t n, const double *u, const double *v,
                              double tol, int threads, int try_gpu, size_t gpu_max_bytes)
{
    tps_matvec *mv = calloc(1, sizeof *mv);
    if (!mv || !(mv->half = malloc(sizeof(double) * (n ? n : 1)))) {
        free(mv);
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    mv->n = n;
    mv->u = u;
    mv->v = v;
    mv->threads = threads < 1 ? 1 : threads;
    mv->tol = tol;
    mv->kernel = tps_kernel_for(TPS_CPU_KERNEL_AUTO);
    if (try_gpu) {
        tps_error gerr = {TPS_OK, ""};
        mv->gpu = tps_gpu_matvec_create(n, u, v, gpu_max_bytes, &gerr);
        if (mv->gpu)
            snprintf(mv->name, sizeof mv->name, "GPU all-pairs sums (FP64)");
    }
    if (!mv->gpu && cpu_path(mv, err) != TPS_OK) {
        tps_matvec_destroy(mv);
        return NULL;
    }
    return mv;
}

/* A GPU product that failed mid-solve (the device lost, out of memory):
 * the rest of the solve runs on the CPU, which gives the same products to
 * the fast summation's tolerance. */
static tps_status gpu_failed(tps_matvec *mv, tps_error *err)
{
    tps_gpu_matvec_destroy(mv->gpu);
    mv->gpu = NULL;
    tps_error_clear(err);
    return cpu_path(mv, err);
}

const char *tps_matvec_name(const tps_matvec *mv)
{
    return mv ? mv->name : "";
}

int tps_matvec_on_gpu(const tps_matvec *mv)
{
    return mv && mv->gpu;
}

/* ---- direct sums on the CPU: chunks of targets on the worker threads ---- */

typedef struct direct_job {
    const tps_matvec *mv;
    size_t m;
    const size_t *idx; /* NULL: every point */
    double *y;
    tps_scratch scratch;
} direct_job;

static void direct_chunk(size_t item, int thread, void *user)
{
    const direct_job *dj = user;
    const tps_matvec *mv = dj->mv;
    double *pu = tps_scratch_at(&dj->scratch, thread), *pv = pu + TPS_CHUNK, *acc = pv + TPS_CHUNK;
    const size_t k0 = item * TPS_CHUNK;
    const size_t count = dj->m - k0 < TPS_CHUNK ? dj->m - k0 : TPS_CHUNK;
    for (size_t k = 0; k < count; ++k) {
        const size_t i = dj->idx ? dj->idx[k0 + k] : k0 + k;
        pu[k] = mv->u[i];
        pv[k] = mv->v[i];
    }
    const size_t m = (count + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
    for (size_t k = count; k < m; ++k) {
        pu[k] = pu[count - 1];
        pv[k] = pv[count - 1];
    }
    const double *w = mv->half;
    tps_kernel_job kj = {mv->n, mv->u, mv->v, 1, &w, m, pu, pv, 0, acc};
    mv->kernel(&kj);
    memcpy(dj->y + k0, acc, sizeof(double) * count);
}

static tps_status direct(tps_matvec *mv, size_t m, const size_t *idx, double *y, tps_error *err)
{
    direct_job dj = {mv, m, idx, y, {NULL, 0}};
    const size_t items = (m + TPS_CHUNK - 1) / TPS_CHUNK;
    const int threads = tps_threads_for(mv->threads, items, (double)m * (double)mv->n > 2e5);
    if (tps_scratch_alloc(NULL, &dj.scratch, threads, sizeof(double) * 3 * TPS_CHUNK) != TPS_OK)
        return tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory for a product");
    tps_parallel_for(items, threads, direct_chunk, &dj);
    tps_scratch_free(&dj.scratch);
    return TPS_OK;
}

tps_status tps_matvec_apply(tps_matvec *mv, const double *x, double *y, tps_error *err)
{
    for (size_t i = 0; i < mv->n; ++i)
        mv->half[i] = 0.5 * x[i];
    if (mv->gpu && tps_gpu_matvec_apply(mv->gpu, mv->half, mv->n, NULL, y, err) == TPS_OK)
        return TPS_OK;
    if (mv->gpu && gpu_failed(mv, err) != TPS_OK)
        return err ? err->code : TPS_ERR_OUT_OF_MEMORY;
    if (mv->fmm)
        return tps_fmm_apply(mv->fmm, mv->half, y, err);
    return direct(mv, mv->n, NULL, y, err);
}

tps_status tps_matvec_at(tps_matvec *mv, const double *x, size_t m, const size_t *idx,
                         double *y, tps_error *err)
{
    for (size_t i = 0; i < mv->n; ++i)
        mv->half[i] = 0.5 * x[i];
    if (mv->gpu && tps_gpu_matvec_apply(mv->gpu, mv->half, m, idx, y, err) == TPS_OK)
        return TPS_OK;
    if (mv->gpu && gpu_failed(mv, err) != TPS_OK)
        return err ? err->code : TPS_ERR_OUT_OF_MEMORY;
    if (mv->fmm && m > 256) {
        /* The fast summation at these targets: their own tree. */
        double *tu = malloc(sizeof(double) * 2 * m);
        if (!tu)
            return tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory for a product");
        double *tv = tu + m;
        for (size_t k = 0; k < m; ++k) {
            tu[k] = mv->u[idx[k]];
            tv[k] = mv->v[idx[k]];
        }
        tps_status st = tps_fmm_set_weights(mv->fmm, mv->half, err);
        if (st == TPS_OK)
            st = tps_fmm_eval(mv->fmm, m, tu, tv, y, err);
        free(tu);
        return st;
    }
    return direct(mv, m, idx, y, err);
}

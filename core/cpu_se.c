/* cpu_se.c: the standard-error outputs of a request (TPS_NEEDS_VARIANCE)
 * on the CPU, for a GLOBAL model here and a LOCAL one in cpu_local_se.c.
 * Where tiles in low rank pay (se_tile.h, by flop count), work items are
 * tiles of TPS_SE_TILE^2 cells aligned on the grid's absolute rows and
 * columns: the tile's plan, then its rows in the window, or, where the
 * plan does not hold, the tile exactly in blocks of TPS_SE_BLOCK cells
 * (whole rows of the tile). Else work items are blocks of TPS_SE_BLOCK
 * cells of a grid row, aligned on the grid's absolute columns and always
 * computed whole (cells past the window's edge are computed and dropped).
 * Either way a cell's bytes come from the same arithmetic on the same tile
 * or block whatever the window, chunk or thread; the BLAS runs
 * single-threaded inside the items for the same reason (and because the
 * items are the parallelism). */
#include "se_tile.h"
#include "tps_testing.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct se_request {
    const tps_eval_job *job;
    const tps_output *outs; /* the request's outputs that need the variance */
    size_t n_out;
    size_t *first;          /* outputs of one band share its variance */
    const tps_se_factor **factor;
    double *rho;
    size_t work_bytes;
    /* tiles: the window's first tile, tiles per row of them, and what each
     * tile became per output */
    size_t tc0, tr0, tiles_per_row;
    tps_scratch scratch;
    struct tile_kind *kind;
} se_request;

typedef struct tile_kind {
    unsigned char kind; /* tps_se_tile_kind */
    unsigned near, rank;
} tile_kind;

static int tiles_mode; /* tps_testing_se_tiles */
static size_t tile_counts[5]; /* the last tiled request's, under counts_lock */
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

void tps_testing_se_tiles(int mode)
{
    tiles_mode = mode;
    pthread_mutex_lock(&counts_lock);
    memset(tile_counts, 0, sizeof tile_counts);
    pthread_mutex_unlock(&counts_lock);
}

int tps_se_tiles_mode(void)
{
    return tiles_mode;
}

void tps_se_tile_counts_record(const size_t counts[5])
{
    pthread_mutex_lock(&counts_lock);
    memcpy(tile_counts, counts, sizeof tile_counts);
    pthread_mutex_unlock(&counts_lock);
}

void tps_testing_se_tile_counts(size_t counts[5])
{
    pthread_mutex_lock(&counts_lock);
    memcpy(counts, tile_counts, sizeof tile_counts);
    pthread_mutex_unlock(&counts_lock);
}

/* The variance var (over rho) of window cell (row, col) into every output
 * that shares output b's. */
static void store(const se_request *rq, size_t b, size_t row, size_t col, double var)
{
    const tps_model *md = rq->job->model;
    for (size_t o = b; o < rq->n_out; ++o)
        if (rq->first[o] == b) {
            tps_derivs d;
            tps_derivs_zero(&d);
            d.var = rq->rho[o] * var;
            tps_output_store(&rq->outs[o], row, col,
                             tps_quantity_eval(rq->outs[o].quantity, &d, md->scale, NULL));
        }
}

static void se_block(void *user, size_t row, size_t block, void *scratch)
{
    const se_request *rq = user;
    const tps_eval_job *job = rq->job;
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    double *pu = scratch;
    double *pv = pu + TPS_SE_BLOCK, *zs = pv + TPS_SE_BLOCK;
    double *a = zs + TPS_SE_BLOCK * md->n_cov;
    void *work = a + TPS_SE_BLOCK;
    tps_se_block_targets(w, row, block, pu, pv);
    size_t k0, k1;
    tps_se_block_window(w, block, &k0, &k1);
    /* Covariates exist inside the window only; the cells outside get 0
     * (a row's BLAS arithmetic does not depend on the other rows). */
    memset(zs, 0, sizeof(double) * TPS_SE_BLOCK * md->n_cov);
    if (md->n_cov)
        tps_covariates_load(md, job->cov, 1, row, block * TPS_SE_BLOCK + k0 - w->first_col,
                            k1 - k0, zs + k0, TPS_SE_BLOCK);
    for (size_t b = 0; b < rq->n_out; ++b) {
        if (rq->first[b] != b)
            continue;
        tps_se_block(rq->factor[b], job->kernel, TPS_SE_BLOCK, pu, pv, w->cv == 0.0, zs,
                     TPS_SE_BLOCK, work, a);
        for (size_t k = k0; k < k1; ++k)
            store(rq, b, row, block * TPS_SE_BLOCK + k - w->first_col, a[k]);
    }
}

/* One tile: per distinct factorisation, its plan and rows, or the tile
 * exactly in blocks of RB whole tile rows. */
static void se_tile(size_t item, int thread, void *user)
{
    enum { T = TPS_SE_TILE, RB = TPS_SE_BLOCK / TPS_SE_TILE };
    const se_request *rq = user;
    const tps_eval_job *job = rq->job;
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    const size_t c0 = (rq->tc0 + item % rq->tiles_per_row) * T;
    const size_t r0 = (rq->tr0 + item / rq->tiles_per_row) * T;
    /* the window's part of the tile: rows [j0, j1), columns [i0, i1) */
    const size_t wr1 = w->first_row + w->nrows, wc1 = w->first_col + w->ncols;
    const size_t j0 = w->first_row > r0 ? w->first_row - r0 : 0;
    const size_t j1 = (wr1 < r0 + T ? wr1 : r0 + T) - r0;
    const size_t i0 = w->first_col > c0 ? w->first_col - c0 : 0;
    const size_t i1 = (wc1 < c0 + T ? wc1 : c0 + T) - c0;
    const size_t col0 = c0 + i0 - w->first_col; /* the window's column of cell i0 */
    double *pu = tps_scratch_at(&rq->scratch, thread);
    double *pv = pu + TPS_SE_BLOCK, *zs = pv + TPS_SE_BLOCK;
    double *a = zs + TPS_SE_BLOCK * md->n_cov;
    void *work = a + TPS_SE_BLOCK;
    for (size_t b = 0; b < rq->n_out; ++b) {
        if (rq->first[b] != b)
            continue;
        tps_se_tile t;
        tps_se_tile_kind kind = tps_se_tile_plan(rq->factor[b], w, c0, r0, work, &t);
        if (tiles_mode == 3 && kind == TPS_SE_TILE_LOWRANK)
            kind = TPS_SE_TILE_GUARD; /* the test hook's forced fallback */
        tile_kind *tk = &rq->kind[item * rq->n_out + b];
        tk->kind = (unsigned char)kind;
        tk->near = (unsigned)t.n_near;
        tk->rank = (unsigned)t.rank;
        if (kind == TPS_SE_TILE_LOWRANK) {
            for (size_t j = j0; j < j1; ++j) {
                const size_t row = r0 + j - w->first_row;
                memset(zs, 0, sizeof(double) * T * md->n_cov);
                if (md->n_cov)
                    tps_covariates_load(md, job->cov, 1, row, col0, i1 - i0, zs + i0, T);
                tps_se_tile_row(&t, j, zs, T, a);
                for (size_t i = i0; i < i1; ++i)
                    store(rq, b, row, col0 + i - i0, a[i]);
            }
            continue;
        }
        /* exactly: rows [jb, jb + RB) of the tile, cell (i, j) at
         * (j - jb) T + i of the block */
        for (size_t jb = j0 / RB * RB; jb < j1; jb += RB) {
            memset(zs, 0, sizeof(double) * TPS_SE_BLOCK * md->n_cov);
            for (size_t j = jb; j < jb + RB; ++j) {
                for (size_t i = 0; i < T; ++i)
                    tps_cell_centre(w, (double)(c0 + i), (double)(r0 + j), &pu[(j - jb) * T + i],
                                    &pv[(j - jb) * T + i]);
                if (md->n_cov && j >= j0 && j < j1)
                    tps_covariates_load(md, job->cov, 1, r0 + j - w->first_row, col0, i1 - i0,
                                        zs + (j - jb) * T + i0, TPS_SE_BLOCK);
            }
            tps_se_block(rq->factor[b], job->kernel, TPS_SE_BLOCK, pu, pv, 0, zs, TPS_SE_BLOCK,
                         work, a);
            for (size_t j = jb > j0 ? jb : j0; j < jb + RB && j < j1; ++j)
                for (size_t i = i0; i < i1; ++i)
                    store(rq, b, r0 + j - w->first_row, col0 + i - i0, a[(j - jb) * T + i]);
        }
    }
}

/* Whether this request's standard errors go by tiles: for every
 * factorisation, where they pay (tps_testing_se_tiles: never, or wherever
 * they can). */
static int use_tiles(tps_context *ctx, const se_request *rq)
{
    if (tiles_mode == 1)
        return 0;
    for (size_t b = 0; b < rq->n_out; ++b) {
        double fc;
        if (rq->first[b] != b)
            continue;
        const int pays = tps_se_tiles_pay(rq->factor[b], &rq->job->t.w, &fc);
        if (pays < (tiles_mode == 2 ? 1 : 2))
            return 0;
        tps_log(ctx, TPS_LOG_DEBUG,
                "band %zu: standard errors in tiles of %d^2 cells, ~%.3g flops a cell "
                "(exactly: %.3g)", rq->outs[b].band + 1, TPS_SE_TILE, fc,
                (double)(rq->factor[b]->n - rq->factor[b]->m) *
                    (double)(rq->factor[b]->n - rq->factor[b]->m));
    }
    return 1;
}

static tps_status run_tiles(tps_context *ctx, se_request *rq, size_t fixed_bytes)
{
    const tps_window *w = &rq->job->t.w;
    enum { T = TPS_SE_TILE };
    rq->tc0 = w->first_col / T;
    rq->tr0 = w->first_row / T;
    rq->tiles_per_row = (w->first_col + w->ncols - 1) / T + 1 - rq->tc0;
    const size_t n_items = rq->tiles_per_row * ((w->first_row + w->nrows - 1) / T + 1 - rq->tr0);
    size_t bytes = rq->work_bytes;
    for (size_t b = 0; b < rq->n_out; ++b)
        if (tps_se_tile_bytes(rq->factor[b]) > bytes)
            bytes = tps_se_tile_bytes(rq->factor[b]);
    rq->kind = calloc(n_items * rq->n_out, sizeof *rq->kind);
    const int threads = tps_threads_for(rq->job->num_threads, n_items, 1);
    tps_status st = rq->kind ? tps_scratch_alloc(ctx, &rq->scratch, threads, fixed_bytes + bytes)
                             : tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                                             "out of memory for standard errors");
    if (st == TPS_OK) {
        tps_blas_single_begin();
        tps_parallel_for(n_items, threads, se_tile, rq);
        tps_blas_single_end();
        size_t counts[5] = {0, 0, 0, 0, 0};
        for (size_t k = 0; k < n_items; ++k)
            for (size_t b = 0; b < rq->n_out; ++b)
                if (rq->first[b] == b) {
                    const tile_kind *tk = &rq->kind[k * rq->n_out + b];
                    ++counts[tk->kind % 3];
                    if (tk->kind == TPS_SE_TILE_LOWRANK) {
                        counts[3] += tk->near;
                        counts[4] += tk->rank;
                    }
                }
        const double lr = counts[0] ? (double)counts[0] : 1.0;
        tps_log(ctx, TPS_LOG_DEBUG,
                "standard errors: %zu tiles in low rank (on average %.1f near points, rank "
                "%.1f), %zu exactly (%zu too dense, %zu by their guard cells)",
                counts[0], (double)counts[3] / lr, (double)counts[4] / lr, counts[1] + counts[2],
                counts[1], counts[2]);
        tps_se_tile_counts_record(counts);
    }
    tps_scratch_free(&rq->scratch);
    free(rq->kind);
    return st;
}

tps_status tps_cpu_standard_errors(tps_context *ctx, const tps_eval_job *job)
{
    const tps_model *md = job->model;
    const tps_window *w = &job->t.w;
    const size_t n_out = tps_outputs_select(job->quantities, job->n_quantities, 1, NULL);
    if (n_out == 0 || !job->t.is_grid || w->ncols == 0 || w->nrows == 0)
        return TPS_OK;
    if (md->local)
        return tps_cpu_local_standard_errors(ctx, job);
    se_request rq;
    memset(&rq, 0, sizeof rq);
    rq.job = job;
    rq.n_out = n_out;
    tps_output *outs = malloc(sizeof(tps_output) * n_out);
    rq.first = malloc(sizeof(size_t) * n_out);
    rq.factor = malloc(sizeof(tps_se_factor *) * n_out);
    rq.rho = malloc(sizeof(double) * n_out);
    rq.outs = outs;
    tps_status st = TPS_OK;
    if (!outs || !rq.first || !rq.factor || !rq.rho) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for standard errors");
        goto done;
    }
    tps_outputs_select(job->quantities, job->n_quantities, 1, outs);
    tps_outputs_group(outs, n_out, rq.first, NULL);
    for (size_t b = 0; b < n_out && st == TPS_OK; ++b) {
        st = tps_se_factor_of_band(ctx, md, outs[b].band, job->num_threads, &rq.factor[b]);
        rq.rho[b] = tps_se_rho(md, outs[b].band);
        if (st == TPS_OK && tps_se_block_bytes(rq.factor[b]) > rq.work_bytes)
            rq.work_bytes = tps_se_block_bytes(rq.factor[b]);
    }
    if (st != TPS_OK)
        goto done;
    /* pu, pv, the covariates and one output's variances of a block */
    const size_t fixed_bytes = sizeof(double) * TPS_SE_BLOCK * (3 + md->n_cov);
    if (use_tiles(ctx, &rq)) {
        for (size_t b = 0; b < n_out; ++b)
            if (rq.first[b] == b)
                tps_se_tiles_prepare(md, rq.factor[b], job->num_threads);
        st = run_tiles(ctx, &rq, fixed_bytes);
    }
    else
        st = tps_se_for_blocks(ctx, w, job->num_threads, fixed_bytes + rq.work_bytes, se_block,
                               &rq);
done:
    free(outs);
    free(rq.first);
    free(rq.factor);
    free(rq.rho);
    return st;
}

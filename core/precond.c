/* precond.c: the iterative solve's two-level preconditioner.
 *
 * Fine level: approximate cardinal functions (Beatson, Cherrie & Mouat
 * 1999), computed a cell at a time like a local model's patches. The points
 * are cut into the cells of a quadtree of up to TPS_PRECOND_CELL points;
 * each cell's patch is the cell grown by PRECOND_OVERLAP (more, until it
 * has PRECOND_MIN_PATCH points spanning an area). Solving the patch's
 * spline system with the unit vector of cell point i as data gives the
 * coefficients c of a spline that is 1 at x_i and 0 at the patch's other
 * points, with P^T c = 0 on the patch: column i of the preconditioner,
 * restricted to the patch. All the columns of a cell come from one
 * factorisation with several right-hand sides (tps_solve_dense_batch: the
 * CPU threads, or batched on the GPU), in the patch's own frame.
 *
 * Coarse level: such columns are exact near their point, but their far
 * field does not vanish (only the moments of degree <= 1 do), and that
 * smooth error is what a one-level method leaves to the iteration, more of
 * it as N grows. A coarse spline over a well-spread subset of n /
 * TPS_PRECOND_COARSE_RATIO points (within bounds) corrects it: after the
 * fine level's y = L r,
 * the residual left at the coarse points, r_c - (A y)_c (A = K + lambda
 * D: products at those points only, O(N n_c)), is interpolated by the
 * coarse spline, whose coefficients are added at the coarse points
 * (its factorisation kept: n_c^2 doubles). An affine part of that
 * residual changes only the coarse spline's affine part, which is dropped,
 * so no projection of the full product is needed. Measured iteration counts
 * are in docs/benchmarks.md.
 *
 * Every column satisfies P^T c = 0 up to rounding; the result is projected
 * onto that null space exactly (Q1 of P's QR, the caller's). */
#include "iterative.h"

#include "gpu_backend.h"
#include "quadtree.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRECOND_OVERLAP 2.0
#define PRECOND_MIN_PATCH 160
#define PRECOND_GROW 1.25
/* A patch of more than this many times PRECOND_MIN_PATCH points is cut back
 * (measured on 10^5 points half in a 300 m disc: 4x, 28 iterations; 8x, 26;
 * 16x, 23 and patches of up to 2,474 points; none, 19 and a set-up 3-5x
 * longer, whose largest patch grows with the cluster). */
#define PRECOND_CUT_BACK 8u
/* Smallest eigenvalue ratio of a patch's point covariance (local_build.c's). */
#define PRECOND_COLLINEAR 1e-6
/* Cells solved per batch: bounds the memory of the right-hand sides. */
#define PRECOND_WAVE 512

typedef struct block {
    size_t nj, nc;
    size_t *j;    /* nj patch points (model indices) */
    size_t *cell; /* nc cell points (model indices) */
    /* nj x nc, row-major: row r holds patch point r's coefficient for each
     * cell point (the solve writes columns; finish_cell turns them into
     * rows, so that the apply reads each point's terms contiguously: the
     * fine level's apply 0.15 -> 0.09 s on 3*10^5 points, 2 threads) */
    double *c;
} block;

struct tps_precond {
    size_t n;
    int threads;
    double lambda;
    const double *noise; /* the caller's, or NULL */
    const double *q1;    /* n x 3, the caller's: an orthonormal basis of range(P) */
    size_t n_blocks;
    block *blocks;
    size_t nc;           /* coarse points */
    size_t *cidx;
    /* The coarse spline's solve: a kept factorisation (CPU), or, when the
     * GPU solved it, its explicit inverse s (nc x nc: the coefficients
     * for unit data). */
    tps_dense_factor *factor;
    double *s;
    /* Where each point's rows are: point i is row entry_row[e] of block
     * entry_block[e] for e in [entry_start[i], entry_start[i + 1]), in
     * block order, so that y_i sums its terms in one order whatever the
     * threads (the same bytes on any number of them). */
    size_t *entry_start, *entry_block, *entry_row;
    double *rc, *kc;     /* nc each */
    int used_gpu;
};

/* Coarse points for n points: n / TPS_PRECOND_COARSE_RATIO, at least
 * TPS_PRECOND_COARSE (but at most n / 8), at most TPS_PRECOND_COARSE_MAX. */
static size_t coarse_target(size_t n)
{
    size_t target = n / TPS_PRECOND_COARSE_RATIO;
    target = target < TPS_PRECOND_COARSE ? TPS_PRECOND_COARSE : target;
    target = target > TPS_PRECOND_COARSE_MAX ? TPS_PRECOND_COARSE_MAX : target;
    target = target > n / 8 ? n / 8 : target;
    return target < 3 ? (n < 3 ? n : 3) : target;
}

size_t tps_precond_bytes(size_t n)
{
    /* The blocks: about 4.5 cells' points per cell point (measured 4-5),
     * their indices and each point's rows; the coarse inverse and, while it
     * is computed, the dense solve's matrices. */
    const size_t coarse = coarse_target(n);
    return n * (size_t)(5 * TPS_PRECOND_CELL) * sizeof(double) + 18 * n * sizeof(size_t) +
           3 * coarse * coarse * sizeof(double);
}

size_t tps_precond_coarse_points(const tps_precond *pc)
{
    return pc ? pc->nc : 0;
}

int tps_precond_used_gpu(const tps_precond *pc)
{
    return pc && pc->used_gpu;
}

void tps_precond_destroy(tps_precond *pc)
{
    if (!pc)
        return;
    for (size_t b = 0; b < pc->n_blocks; ++b) {
        free(pc->blocks[b].j);
        free(pc->blocks[b].cell);
        free(pc->blocks[b].c);
    }
    free(pc->blocks);
    free(pc->cidx);
    tps_dense_factor_destroy(pc->factor);
    free(pc->s);
    free(pc->entry_start);
    free(pc->entry_block);
    free(pc->entry_row);
    free(pc->rc);
    free(pc->kc);
    free(pc);
}

/* Whether the points (tree order indices idx) span an area. */
static int spans_area(const tps_quadtree *t, const size_t *idx, size_t m)
{
    if (m < 3)
        return 0;
    double su = 0, sv = 0;
    for (size_t k = 0; k < m; ++k) {
        su += t->u[idx[k]];
        sv += t->v[idx[k]];
    }
    const double mu = su / (double)m, mv = sv / (double)m;
    double cuu = 0, cvv = 0, cuv = 0;
    for (size_t k = 0; k < m; ++k) {
        const double du = t->u[idx[k]] - mu, dv = t->v[idx[k]] - mv;
        cuu += du * du;
        cvv += dv * dv;
        cuv += du * dv;
    }
    const double tr = cuu + cvv;
    return tr > 0.0 && cuu * cvv - cuv * cuv > PRECOND_COLLINEAR * tr * tr;
}

/* One cell's patch system, set up for the batch. */
typedef struct cell_job {
    double *pu, *pv, *noise, *z;
    const double **zp;
    double **wp;
    double (*a)[3];
    double frame; /* the patch frame's unit, in model units */
} cell_job;

typedef struct build {
    tps_precond *pc;
    const tps_quadtree *tree;
    const double *u, *v;
    size_t wave0;
    cell_job *cj;
    tps_dense_job *jobs;
    tps_error err; /* the first failure of the set-up */
    pthread_mutex_t lock;
} build;

static void fail_build(build *bd, tps_status code, const char *what)
{
    pthread_mutex_lock(&bd->lock);
    if (bd->err.code == TPS_OK)
        tps_error_set(&bd->err, code, "%s", what);
    pthread_mutex_unlock(&bd->lock);
}

static size_t position(const size_t *sorted, size_t n, size_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The points within h of the leaf's centre (a square): their tree indices
 * in *tj (reallocated), how many in *nj. 1: enough (PRECOND_MIN_PATCH
 * points spanning an area, or every point), 0: not, -1: out of memory. */
static int patch_at(const tps_quadtree *t, const tps_qnode *leaf, double h, size_t **tj,
                    size_t *nj)
{
    *nj = tps_quadtree_query(t, leaf->cu - h, leaf->cv - h, leaf->cu + h, leaf->cv + h, NULL, 0);
    free(*tj);
    *tj = malloc(sizeof(size_t) * (*nj ? *nj : 1));
    if (!*tj)
        return -1;
    tps_quadtree_query(t, leaf->cu - h, leaf->cv - h, leaf->cu + h, leaf->cv + h, *tj, *nj);
    return *nj == t->n || (*nj >= PRECOND_MIN_PATCH && spans_area(t, *tj, *nj));
}

/* Cell wave0 + k: its patch (grown until it is enough, cut back when a
 * dense neighbour makes it far more) and its system. */
static void prepare_cell(size_t k, int thread, void *user)
{
    (void)thread;
    build *bd = user;
    tps_precond *pc = bd->pc;
    const tps_quadtree *t = bd->tree;
    const size_t b = bd->wave0 + k;
    const tps_qnode *leaf = &t->nodes[t->leaves[b]];
    block *bl = &pc->blocks[b];
    cell_job *cj = &bd->cj[k];
    tps_dense_job *job = &bd->jobs[k];
    memset(job, 0, sizeof *job);
    job->status = TPS_ERR_INTERNAL;
    double h = leaf->half * PRECOND_OVERLAP;
    size_t *tj = NULL;
    size_t nj = 0;
    int enough = patch_at(t, leaf, h, &tj, &nj);
    if (enough == 1 && nj > PRECOND_CUT_BACK * PRECOND_MIN_PATCH) {
        /* A dense neighbour (a cluster beside a sparse cell): the patch would
         * take thousands of its points into an O(n^3) solve. The smallest
         * growth of the cell that is enough, by bisection, takes what it
         * needs of the cluster instead (local_build.c does the same). */
        double lo = leaf->half, hi = h;
        for (int it = 0; it < 30 && enough >= 0; ++it) {
            const double mid = 0.5 * (lo + hi);
            enough = patch_at(t, leaf, mid, &tj, &nj);
            if (enough == 1)
                hi = mid;
            else
                lo = mid;
        }
        h = hi;
        if (enough >= 0)
            enough = patch_at(t, leaf, h, &tj, &nj);
    }
    while (enough == 0) {
        h *= PRECOND_GROW;
        enough = patch_at(t, leaf, h, &tj, &nj);
    }
    if (enough < 0) {
        free(tj);
        fail_build(bd, TPS_ERR_OUT_OF_MEMORY, "out of memory for the preconditioner");
        return;
    }
    const size_t nc = leaf->end - leaf->begin;
    bl->nj = nj;
    bl->nc = nc;
    bl->j = malloc(sizeof(size_t) * nj);
    bl->cell = malloc(sizeof(size_t) * nc);
    bl->c = malloc(sizeof(double) * nj * nc);
    cj->pu = malloc(sizeof(double) * nj * 3);
    cj->z = calloc(nj * nc, sizeof(double));
    cj->zp = malloc(sizeof(double *) * nc);
    cj->wp = malloc(sizeof(double *) * nc);
    cj->a = malloc(sizeof(double[3]) * nc);
    if (!bl->j || !bl->cell || !bl->c || !cj->pu || !cj->z || !cj->zp || !cj->wp || !cj->a) {
        free(tj);
        fail_build(bd, TPS_ERR_OUT_OF_MEMORY, "out of memory for the preconditioner");
        return;
    }
    cj->pv = cj->pu + nj;
    cj->noise = pc->noise ? cj->pv + nj : NULL;
    /* The patch frame: centred on the cell, its half side 1 (the solve's
     * QR and conditioning want points of size 1). */
    cj->frame = h;
    for (size_t q = 0; q < nj; ++q) {
        bl->j[q] = t->perm[tj[q]];
        cj->pu[q] = (t->u[tj[q]] - leaf->cu) / h;
        cj->pv[q] = (t->v[tj[q]] - leaf->cv) / h;
        if (cj->noise)
            cj->noise[q] = pc->noise[bl->j[q]];
    }
    for (size_t q = 0; q < nc; ++q) {
        bl->cell[q] = t->perm[leaf->begin + q];
        cj->z[q * nj + position(tj, nj, leaf->begin + q)] = 1.0;
        cj->zp[q] = cj->z + q * nj;
        cj->wp[q] = bl->c + q * nj;
    }
    free(tj);
    job->n = nj;
    job->u = cj->pu;
    job->v = cj->pv;
    /* phi(r / s) = phi(r) / s^2 - log(s) r^2 / s^2, and the r^2 part is
     * absorbed by the affine part: in the frame the system is the model's
     * divided by s^2, so lambda / s^2 there, and c = c_frame / s^2. */
    job->lambda = pc->lambda / (h * h);
    job->noise = cj->noise;
    job->n_rhs = nc;
    job->z = cj->zp;
    job->w = cj->wp;
    job->a = cj->a;
    snprintf(job->what, sizeof job->what, "preconditioner cell %zu of %zu", b + 1, pc->n_blocks);
}

static void finish_cell(size_t k, int thread, void *user)
{
    (void)thread;
    build *bd = user;
    cell_job *cj = &bd->cj[k];
    block *bl = &bd->pc->blocks[bd->wave0 + k];
    const tps_dense_job *job = &bd->jobs[k];
    if (job->status == TPS_OK) {
        /* The columns the solve wrote, scaled back from the frame, as rows. */
        const double f = 1.0 / (cj->frame * cj->frame);
        double *rows = malloc(sizeof(double) * bl->nj * bl->nc);
        if (!rows) {
            tps_error_set(&bd->jobs[k].err, TPS_ERR_OUT_OF_MEMORY,
                          "%s: out of memory", bd->jobs[k].what);
            bd->jobs[k].status = TPS_ERR_OUT_OF_MEMORY;
        } else {
            for (size_t q = 0; q < bl->nc; ++q)
                for (size_t r = 0; r < bl->nj; ++r)
                    rows[r * bl->nc + q] = bl->c[q * bl->nj + r] * f;
            free(bl->c);
            bl->c = rows;
        }
    }
    free(cj->pu);
    free(cj->z);
    free(cj->zp);
    free(cj->wp);
    free(cj->a);
    memset(cj, 0, sizeof *cj);
}

/* The coarse points: the points cut into `groups` groups of nearly equal
 * size by median splits across the longer side of each group's box (a
 * quadtree's leaves would give up to 4x the count asked for); from each
 * group the point nearest its centroid. */
static size_t select_nth(size_t *idx, size_t n, const double *c, size_t nth)
{
    size_t lo = 0, hi = n; /* quickselect: idx[nth] in place, smaller before */
    while (hi - lo > 1) {
        const double pivot = c[idx[lo + (hi - lo) / 2]];
        size_t i = lo, j = hi - 1;
        while (i <= j) {
            while (c[idx[i]] < pivot)
                ++i;
            while (c[idx[j]] > pivot)
                --j;
            if (i <= j) {
                const size_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
                ++i;
                if (j == 0)
                    break;
                --j;
            }
        }
        if (nth <= j)
            hi = j + 1;
        else if (nth >= i)
            lo = i;
        else
            break;
    }
    return nth;
}

static void split_groups(size_t *idx, size_t n, const double *u, const double *v, size_t groups,
                         size_t *out, size_t *count)
{
    if (groups <= 1 || n <= 1) {
        double su = 0, sv = 0;
        for (size_t k = 0; k < n; ++k) {
            su += u[idx[k]];
            sv += v[idx[k]];
        }
        const double mu = su / (double)n, mv = sv / (double)n;
        size_t best = idx[0];
        double d2 = INFINITY;
        for (size_t k = 0; k < n; ++k) {
            const double du = u[idx[k]] - mu, dv = v[idx[k]] - mv;
            if (du * du + dv * dv < d2) {
                d2 = du * du + dv * dv;
                best = idx[k];
            }
        }
        out[(*count)++] = best;
        return;
    }
    double box[4];
    tps_points_box(u, v, idx, n, box);
    const size_t gl = groups / 2;
    const size_t nl = (size_t)((double)n * (double)gl / (double)groups);
    select_nth(idx, n, box[1] - box[0] >= box[3] - box[2] ? u : v, nl);
    split_groups(idx, nl, u, v, gl, out, count);
    split_groups(idx + nl, n - nl, u, v, groups - gl, out, count);
}

static tps_status choose_coarse(tps_error *err, tps_precond *pc, const double *u,
                                const double *v, size_t target)
{
    size_t *idx = malloc(sizeof(size_t) * pc->n);
    pc->cidx = malloc(sizeof(size_t) * target);
    if (!idx || !pc->cidx) {
        free(idx);
        return tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory for the coarse level");
    }
    for (size_t i = 0; i < pc->n; ++i)
        idx[i] = i;
    pc->nc = 0;
    split_groups(idx, pc->n, u, v, target, pc->cidx, &pc->nc);
    free(idx);
    return TPS_OK;
}

/* The coarse spline's solve. On the CPU its dense factorisation is kept
 * (nc^3 / 3 flops once, 2 nc^2 per application); where the GPU can solve
 * (cuSOLVER), the system solved there for the nc unit vectors gives its
 * explicit inverse instead (the GPU keeps no factor; nc^2 per application). */
static tps_status coarse_solver(tps_context *ctx, tps_precond *pc, const double *u,
                                const double *v, int threads, int try_gpu, size_t gpu_max_bytes,
                                const char *what)
{
    const size_t nc = pc->nc;
    /* The GPU takes no per-point noise (solve.c): the CPU's factor then. */
    const int gpu = try_gpu && !pc->noise && tps_gpu_solve_available(NULL) == TPS_OK;
    double *cu = malloc(sizeof(double) * nc * 3);
    double *z = gpu ? calloc(nc * nc, sizeof(double)) : NULL;
    const double **zp = gpu ? malloc(sizeof(double *) * nc) : NULL;
    double **wp = gpu ? malloc(sizeof(double *) * nc) : NULL;
    double(*a)[3] = gpu ? malloc(sizeof(double[3]) * nc) : NULL;
    pc->s = gpu ? malloc(sizeof(double) * nc * nc) : NULL;
    tps_status st = TPS_OK;
    if (!cu || (gpu && (!z || !zp || !wp || !a || !pc->s))) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for the coarse level",
                           what);
        goto done;
    }
    double *cv = cu + nc, *cn = pc->noise ? cv + nc : NULL;
    for (size_t k = 0; k < nc; ++k) {
        cu[k] = u[pc->cidx[k]];
        cv[k] = v[pc->cidx[k]];
        if (cn)
            cn[k] = pc->noise[pc->cidx[k]];
    }
    char label[160];
    snprintf(label, sizeof label, "%s: coarse level of the preconditioner", what);
    /* Its own progress stages would interrupt the caller's: quiet. */
    tps_progress_state quiet;
    tps_progress_state *const outer = tps_progress_begin(&quiet, NULL);
    int used_gpu = 0;
    if (gpu) {
        for (size_t k = 0; k < nc; ++k) {
            z[k * nc + k] = 1.0;
            zp[k] = z + k * nc;
            wp[k] = pc->s + k * nc;
        }
        /* The GPU or nothing: the CPU's fallback there would be the
         * explicit inverse, 7 times the flops of the factor below. */
        const tps_solve_extra gpu_only = {.gpu_only = 1};
        st = tps_solve_dense_ex(ctx, nc, cu, cv, pc->lambda, nc, zp, wp, a, threads, 1,
                                gpu_max_bytes, &used_gpu, &gpu_only, label);
        if (st == TPS_ERR_DEVICE_UNAVAILABLE) {
            tps_log(ctx, TPS_LOG_DEBUG, "%s: on the CPU: %s", label, tps_context_errmsg(ctx));
            tps_clear_error(ctx);
            st = TPS_OK;
        }
    }
    if (!used_gpu) {
        /* No GPU, or it could not (memory): the kept factor. */
        free(pc->s);
        pc->s = NULL;
        if (st == TPS_OK) {
            pc->factor = tps_dense_factor_create(ctx, nc, cu, cv, pc->lambda, cn, threads, label);
            st = pc->factor ? TPS_OK : tps_context_errno(ctx);
        }
    }
    tps_progress_end(outer);
    pc->used_gpu |= used_gpu;
done:
    free(cu);
    free(z);
    free(zp);
    free(wp);
    free(a);
    return st;
}

/* Each point's rows in the blocks (entry_*), in block order. */
static tps_status index_entries(tps_context *ctx, tps_precond *pc, const char *what)
{
    pc->entry_start = calloc(pc->n + 1, sizeof(size_t));
    size_t total = 0;
    for (size_t b = 0; b < pc->n_blocks; ++b)
        total += pc->blocks[b].nj;
    pc->entry_block = malloc(sizeof(size_t) * (total ? total : 1));
    pc->entry_row = malloc(sizeof(size_t) * (total ? total : 1));
    size_t *fill = malloc(sizeof(size_t) * pc->n);
    if (!pc->entry_start || !pc->entry_block || !pc->entry_row || !fill) {
        free(fill);
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for the "
                             "preconditioner", what);
    }
    for (size_t b = 0; b < pc->n_blocks; ++b)
        for (size_t k = 0; k < pc->blocks[b].nj; ++k)
            pc->entry_start[pc->blocks[b].j[k] + 1]++;
    for (size_t i = 0; i < pc->n; ++i)
        pc->entry_start[i + 1] += pc->entry_start[i];
    memcpy(fill, pc->entry_start, sizeof(size_t) * pc->n);
    for (size_t b = 0; b < pc->n_blocks; ++b)
        for (size_t k = 0; k < pc->blocks[b].nj; ++k) {
            const size_t e = fill[pc->blocks[b].j[k]]++;
            pc->entry_block[e] = b;
            pc->entry_row[e] = k;
        }
    free(fill);
    return TPS_OK;
}

tps_precond *tps_precond_create(tps_context *ctx, size_t n, const double *u, const double *v,
                                double lambda, const double *noise, const double *q1,
                                int num_threads, unsigned gpu_parts, size_t gpu_max_bytes,
                                const char *what)
{
    const int threads = num_threads < 1 ? 1 : num_threads;
    tps_precond *pc = calloc(1, sizeof *pc);
    if (!pc) {
        tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        return NULL;
    }
    pc->n = n;
    pc->threads = threads;
    pc->lambda = lambda;
    pc->noise = noise;
    pc->q1 = q1;
    tps_quadtree tree;
    if (tps_quadtree_build(tps_ctx_error(ctx), n, u, v, TPS_PRECOND_CELL, &tree) != TPS_OK) {
        tps_precond_destroy(pc);
        return NULL;
    }
    pc->n_blocks = tree.n_leaves;
    pc->blocks = calloc(pc->n_blocks, sizeof(block));
    build bd = {pc, &tree, u, v, 0, NULL, NULL, {TPS_OK, ""}, PTHREAD_MUTEX_INITIALIZER};
    bd.cj = calloc(PRECOND_WAVE, sizeof(cell_job));
    bd.jobs = calloc(PRECOND_WAVE, sizeof(tps_dense_job));
    if (!pc->blocks || !bd.cj || !bd.jobs) {
        tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory for the preconditioner",
                      what);
        goto fail;
    }
    /* One system per thread, as local_build.c does: OpenBLAS's own threads
     * on top would contend for the same cores; and one OpenBLAS thread
     * whatever ours, so that the columns are the same bytes on any number
     * of threads. (Process-wide, restored at once, as local_build.c.) */
    const int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    tps_progress_stage("%s: preconditioner, %zu patches", what, pc->n_blocks);
    /* seconds in the cells' patches (CPU), their solves (CPU or GPU), the
     * coarse level: for the debug log */
    double t_patches = 0.0, t_solves = 0.0, t_coarse = 0.0;
    double t0 = tps_now_seconds();
    for (size_t w0 = 0; w0 < pc->n_blocks && bd.err.code == TPS_OK; w0 += PRECOND_WAVE) {
        const size_t count = pc->n_blocks - w0 < PRECOND_WAVE ? pc->n_blocks - w0 : PRECOND_WAVE;
        bd.wave0 = w0;
        tps_parallel_for(count, threads, prepare_cell, &bd);
        t_patches += tps_now_seconds() - t0;
        t0 = tps_now_seconds();
        if (bd.err.code == TPS_OK) {
            tps_progress_state quiet;
            tps_progress_state *const outer = tps_progress_begin(&quiet, NULL);
            tps_solve_dense_batch(NULL, count, bd.jobs, threads,
                                  (gpu_parts & TPS_ITERATIVE_GPU_PATCHES) != 0, gpu_max_bytes);
            tps_progress_end(outer);
            for (size_t k = 0; k < count; ++k) {
                if (bd.jobs[k].status != TPS_OK && bd.err.code == TPS_OK)
                    bd.err = bd.jobs[k].err;
                pc->used_gpu |= bd.jobs[k].used_gpu;
            }
        }
        t_solves += tps_now_seconds() - t0;
        t0 = tps_now_seconds();
        tps_parallel_for(count, threads, finish_cell, &bd);
        for (size_t k = 0; k < count && bd.err.code == TPS_OK; ++k)
            if (bd.jobs[k].status != TPS_OK) /* finish_cell's memory */
                bd.err = bd.jobs[k].err;
        tps_progress((double)(w0 + count) / (double)pc->n_blocks);
    }
    openblas_set_num_threads(blas_threads);
    if (bd.err.code != TPS_OK) {
        tps_raise(ctx, &bd.err);
        goto fail;
    }
    if (index_entries(ctx, pc, what) != TPS_OK)
        goto fail;
    t_patches += tps_now_seconds() - t0;
    t0 = tps_now_seconds();
    if (choose_coarse(tps_ctx_error(ctx), pc, u, v, coarse_target(n)) != TPS_OK ||
        coarse_solver(ctx, pc, u, v, threads, (gpu_parts & TPS_ITERATIVE_GPU_COARSE) != 0,
                      gpu_max_bytes, what) != TPS_OK)
        goto fail;
    t_coarse = tps_now_seconds() - t0;
    pc->rc = malloc(sizeof(double) * pc->nc);
    pc->kc = malloc(sizeof(double) * pc->nc);
    if (!pc->rc || !pc->kc) {
        tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        goto fail;
    }
    size_t entries = 0, largest = 0;
    for (size_t b = 0; b < pc->n_blocks; ++b) {
        entries += pc->blocks[b].nj * pc->blocks[b].nc;
        largest = pc->blocks[b].nj > largest ? pc->blocks[b].nj : largest;
    }
    tps_log(ctx, TPS_LOG_DEBUG, "%s: preconditioner: %zu cells, %.0f patch points per column "
            "on average (largest patch %zu), coarse level %zu points%s; patches %.3f s, their "
            "solves %.3f s, coarse level %.3f s", what, pc->n_blocks,
            (double)entries / (double)n, largest, pc->nc, pc->used_gpu ? " (GPU)" : "",
            t_patches, t_solves, t_coarse);
    free(bd.cj);
    free(bd.jobs);
    tps_quadtree_free(&tree);
    return pc;
fail:
    free(bd.cj);
    free(bd.jobs);
    tps_quadtree_free(&tree);
    tps_precond_destroy(pc);
    return NULL;
}

/* x <- x - Q1 (Q1^T x): onto the null space of P^T. Plain loops, not
 * BLAS: their order of summation does not depend on any thread count. */
static void project(const double *q1, size_t n, double *x)
{
    for (int k = 0; k < 3; ++k) {
        const double *q = q1 + (size_t)k * n;
        double d = 0.0;
        for (size_t i = 0; i < n; ++i)
            d += q[i] * x[i];
        for (size_t i = 0; i < n; ++i)
            x[i] -= d * q[i];
    }
}

/* Points per work item of the fine level. */
#define FINE_CHUNK 4096

typedef struct fine_job {
    const tps_precond *pc;
    const double *r;
    double *y;
} fine_job;

/* y_i for a chunk of points: the sum over the blocks whose patch holds i of
 * row i of the block times r on the block's cell. */
static void fine_chunk(size_t item, int thread, void *user)
{
    (void)thread;
    const fine_job *fj = user;
    const tps_precond *pc = fj->pc;
    const size_t i0 = item * FINE_CHUNK, i1 = i0 + FINE_CHUNK < pc->n ? i0 + FINE_CHUNK : pc->n;
    for (size_t i = i0; i < i1; ++i) {
        double acc = 0.0;
        for (size_t e = pc->entry_start[i]; e < pc->entry_start[i + 1]; ++e) {
            const block *bl = &pc->blocks[pc->entry_block[e]];
            const double *row = bl->c + pc->entry_row[e] * bl->nc;
            for (size_t q = 0; q < bl->nc; ++q)
                acc += row[q] * fj->r[bl->cell[q]];
        }
        fj->y[i] = acc;
    }
}

/* kc = s rc, rows [item COARSE_ROWS, ...) of the explicit inverse (each
 * row summed in column order, whatever the threads). */
#define COARSE_ROWS 512

static void coarse_rows(size_t item, int thread, void *user)
{
    (void)thread;
    tps_precond *pc = user;
    const size_t k0 = item * COARSE_ROWS;
    const size_t k1 = k0 + COARSE_ROWS < pc->nc ? k0 + COARSE_ROWS : pc->nc;
    for (size_t k = k0; k < k1; ++k)
        pc->kc[k] = 0.0;
    for (size_t j = 0; j < pc->nc; ++j) {
        const double *col = pc->s + j * pc->nc;
        const double rj = pc->rc[j];
        for (size_t k = k0; k < k1; ++k)
            pc->kc[k] += col[k] * rj;
    }
}

tps_status tps_precond_apply(tps_precond *pc, tps_matvec *mv, const double *r, double *y,
                             tps_error *err)
{
    const size_t n = pc->n, items = (n + FINE_CHUNK - 1) / FINE_CHUNK;
    fine_job fj = {pc, r, y};
    tps_parallel_for(items, items > 1 ? pc->threads : 1, fine_chunk, &fj);
    project(pc->q1, n, y);
    /* The coarse level: the residual the fine level leaves at the coarse
     * points, interpolated by the coarse spline. */
    tps_status st = tps_matvec_at(mv, y, pc->nc, pc->cidx, pc->kc, err);
    if (st != TPS_OK)
        return st;
    for (size_t k = 0; k < pc->nc; ++k) {
        const size_t i = pc->cidx[k];
        const double diag = pc->lambda * (pc->noise ? pc->noise[i] : 1.0);
        pc->rc[k] = r[i] - (pc->kc[k] + diag * y[i]);
    }
    if (pc->factor) {
        memcpy(pc->kc, pc->rc, sizeof(double) * pc->nc);
        st = tps_dense_factor_solve(pc->factor, pc->kc, err);
        if (st != TPS_OK)
            return st;
    } else {
        const size_t rows = (pc->nc + COARSE_ROWS - 1) / COARSE_ROWS;
        tps_parallel_for(rows, rows > 1 ? pc->threads : 1, coarse_rows, pc);
    }
    for (size_t k = 0; k < pc->nc; ++k)
        y[pc->cidx[k]] += pc->kc[k];
    project(pc->q1, n, y);
    return TPS_OK;
}

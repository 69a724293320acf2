/* se_tile.c: the standard error of a tile of grid cells in low rank
 * (se_tile.h has the form, docs/design.md "Tiles in low rank" the
 * numbers that sized it). */
#include "se_tile.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    T = TPS_SE_TILE,
    Q = TPS_SE_TILE_NODES,
    Q2 = Q * Q,
    G = TPS_SE_TILE_GUARDS,
    WCOLS = TPS_SE_TILE_MAX_COLS + TPS_MAX_FIXED + G,
    /* LAPACK's workspace: ample for dgeqrf and dgeqp3 at these widths
     * (block size <= 64), checked by a query before use. */
    LWORK = 72 * WCOLS
};

/* r^2 log r = 0.5 r^2 log r^2 (0 at r = 0) */
static double phi(double du, double dv)
{
    const double r2 = du * du + dv * dv;
    return r2 > 0.0 ? 0.5 * r2 * log(r2) : 0.0;
}

/* The scratch's parts, carved from one block in a fixed order. */
typedef struct tile_mem {
    int *near, *jpvt;
    unsigned char *is_near;
    double *a, *wm, *rs, *x, *tau, *lag, *lwork, *row;
} tile_mem;

/* Per-row arithmetic: mm ((cols + m) x T), h (m x T), q1 (m x T), zr
 * (rank x Q). */
static size_t row_doubles(void)
{
    return (size_t)WCOLS * T + 2 * TPS_MAX_FIXED * T + Q2 * Q;
}

static tile_mem carve(const tps_se_factor *f, void *work)
{
    tile_mem mm;
    const size_t n = f->n;
    mm.near = work;
    mm.jpvt = mm.near + TPS_SE_TILE_MAX_COLS;
    double *d = (double *)(void *)(mm.jpvt + Q2 + (Q2 & 1)); /* 8-byte aligned */
    mm.a = d;
    mm.wm = mm.a + n * Q2;
    mm.rs = mm.wm + n * WCOLS;
    mm.x = mm.rs + Q2 * Q2;
    mm.tau = mm.x + Q2 * Q2;
    mm.lag = mm.tau + WCOLS;
    mm.lwork = mm.lag + Q * T;
    mm.row = mm.lwork + LWORK;
    mm.is_near = (unsigned char *)(mm.row + row_doubles());
    return mm;
}

size_t tps_se_tile_bytes(const tps_se_factor *f)
{
    const size_t n = f->n;
    return sizeof(int) * (TPS_SE_TILE_MAX_COLS + Q2 + 1) +
           sizeof(double) * (n * Q2 + n * WCOLS + 2 * Q2 * Q2 + WCOLS + Q * T + LWORK +
                             row_doubles()) +
           n;
}

/* The grid's index coordinates (i, j) of a point (u, v): grid.h's map
 * inverted. 0 on a degenerate grid. */
static int index_map(const tps_window *w, double inv[4])
{
    const double det = w->cu * w->rv - w->ru * w->cv;
    if (!(fabs(det) > 0.0) || !isfinite(det))
        return 0;
    inv[0] = w->rv / det;
    inv[1] = -w->ru / det;
    inv[2] = -w->cv / det;
    inv[3] = w->cu / det;
    return 1;
}

static void to_index(const tps_window *w, const double inv[4], double u, double v, double *i,
                     double *j)
{
    const double du = u - w->u0, dv = v - w->v0;
    *i = inv[0] * du + inv[1] * dv;
    *j = inv[2] * du + inv[3] * dv;
}

int tps_se_tiles_pay(const tps_se_factor *f, const tps_window *w, double *flops_cell)
{
    double inv[4];
    *flops_cell = 0.0;
    if (!index_map(w, inv) || f->n <= f->m)
        return 0;
    int pays;
    /* The points' bounding box in index space: their mean density there. */
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (size_t p = 0; p < f->n; ++p) {
        double i, j;
        to_index(w, inv, f->u[p], f->v[p], &i, &j);
        lo[0] = fmin(lo[0], i);
        hi[0] = fmax(hi[0], i);
        lo[1] = fmin(lo[1], j);
        hi[1] = fmax(hi[1], j);
    }
    const double n = (double)f->n, m = (double)f->m, nm = n - m;
    const double area = (hi[0] - lo[0] + T) * (hi[1] - lo[1] + T);
    double near = n * (9.0 * T * T) / area;
    near = near < n ? near : n;
    /* half the nodes survive the compression (bench/se_lowrank_probe.py: 30-66 of 144) */
    const double c = near + Q2 / 2.0 + m;
    if (c + G > WCOLS || nm < c + G)
        return 0;
    pays = 1;
    const double tile = nm * nm * (c + G)           /* the product with L^-1 */
                        + 2.0 * n * Q2 * Q2           /* the far block's QR */
                        + 2.0 * nm * c * c            /* [C D]'s QR */
                        + (double)T * T * (c * c + (Q2 / 2.0) * Q + m * c);
    *flops_cell = tile / ((double)T * T);
    /* Tiles when they take a quarter of the exact path's flops or less. */
    if (4.0 * *flops_cell <= nm * nm)
        pays = 2;
    return pays;
}

/* The low-rank variance of `count` targets that share their row's
 * interpolation weights lt (Q values): target k at (pu[k], pv[k]), its
 * column's weights ls + k Q, its fixed part h + k m (R^-T t). */
static void lowrank(const tps_se_tile *t, size_t count, const double *pu, const double *pv,
                    const double *lt, const double *ls, const double *h, double *out)
{
    const tps_se_factor *f = t->f;
    const size_t n = f->n, m = f->m, cols = t->cols, ld = cols + m, r = t->rank;
    double *mm = t->scratch, *q1 = mm + (size_t)WCOLS * T + TPS_MAX_FIXED * T;
    double *zr = q1 + TPS_MAX_FIXED * T;
    /* m(x): the near points' kernel values, then the far block's
     * coordinates X (l(i) (x) l(j)) = (X l(j)) l(i). */
    for (size_t k = 0; k < count; ++k) {
        double *col = mm + k * ld;
        for (size_t a = 0; a < t->n_near; ++a) {
            const int p = t->near[a];
            col[a] = phi(f->u[p] - pu[k], f->v[p] - pv[k]);
        }
    }
    if (r > 0) {
        /* zr (r x Q) = sum_b X[:, a + Q b] l_b(j): X as (r Q) x Q times l(j) */
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)(r * Q), Q, 1.0, t->x, (int)(r * Q), lt, 1,
                    0.0, zr, 1);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)count, Q, 1.0, zr,
                    (int)r, ls, Q, 0.0, mm + t->n_near, (int)ld);
    }
    for (size_t k = 0; k < count; ++k)
        for (size_t c = 0; c < m; ++c)
            mm[k * ld + cols + c] = -h[k * m + c];
    /* q1 = (Q1^T B) m */
    if (cols > 0)
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)count, (int)cols,
                    1.0, t->wm, (int)n, mm, (int)ld, 0.0, q1, (int)m);
    else
        memset(q1, 0, sizeof(double) * m * count);
    /* z = Rc [m; -h] */
    cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, (int)ld,
                (int)count, 1.0, t->wm + m, (int)n, mm, (int)ld);
    for (size_t k = 0; k < count; ++k) {
        const double *z = mm + k * ld, *hk = h + k * m, *qk = q1 + k * m;
        double sq = 0.0, q1h = 0.0;
        for (size_t c = 0; c < ld; ++c)
            sq += z[c] * z[c];
        for (size_t c = 0; c < m; ++c)
            q1h += qk[c] * hk[c];
        out[k] = tps_se_hmh(f, hk) - 2.0 * q1h - sq;
    }
}

void tps_se_tile_row(const tps_se_tile *t, size_t j, const double *zs, size_t stride,
                     double *out)
{
    const size_t m = t->f->m;
    double pu[T], pv[T], *h = t->scratch + (size_t)WCOLS * T;
    for (size_t k = 0; k < T; ++k)
        tps_cell_centre(t->w, (double)(t->c0 + k), (double)(t->r0 + j), &pu[k], &pv[k]);
    tps_se_fixed_rows(t->f, T, T, pu, pv, zs, stride, h);
    lowrank(t, T, pu, pv, t->lag + j * Q, t->lag, h, out);
    for (size_t k = 0; k < T; ++k)
        for (size_t c = 3; c < m; ++c)
            if (isnan(zs[(c - 3) * stride + k]))
                out[k] = NAN;
}

/* The Chebyshev nodes of [0, T - 1] and their barycentric weights. */
static void chebyshev(double *node, double *wt)
{
    for (int a = 0; a < Q; ++a)
        node[a] = 0.5 * (T - 1) * (1.0 + cos((2.0 * a + 1.0) * M_PI / (2.0 * Q)));
    for (int a = 0; a < Q; ++a) {
        double p = 1.0;
        for (int b = 0; b < Q; ++b)
            if (b != a)
                p *= node[a] - node[b];
        wt[a] = 1.0 / p;
    }
}

/* l_a(s), a = 0 .. Q-1 */
static void lagrange_at(const double *node, const double *wt, double s, double *l)
{
    double sum = 0.0;
    for (int a = 0; a < Q; ++a) {
        if (s == node[a]) {
            for (int b = 0; b < Q; ++b)
                l[b] = a == b;
            return;
        }
        l[a] = wt[a] / (s - node[a]);
        sum += l[a];
    }
    for (int a = 0; a < Q; ++a)
        l[a] /= sum;
}

typedef struct zq_job {
    const tps_se_factor *f;
    double *zq;
} zq_job;

enum { ZQ_BLOCK = 64 };

static void zq_block(size_t item, int thread, void *user)
{
    (void)thread;
    const zq_job *zj = user;
    const tps_se_factor *f = zj->f;
    const size_t n = f->n, m = f->m, c0 = item * ZQ_BLOCK;
    const size_t nc = n - c0 < ZQ_BLOCK ? n - c0 : ZQ_BLOCK;
    double *z = zj->zq + c0 * n;
    memset(z, 0, sizeof(double) * n * nc);
    for (size_t c = 0; c < nc; ++c) {
        z[c * n + c0 + c] = 1.0;
        tps_se_apply_qt(f, z + c * n);
    }
    if (n > m)
        cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit,
                    (int)(n - m), (int)nc, 1.0, f->mat + m * n + m, (int)n, z + m, (int)n);
}

void tps_se_tiles_prepare(const tps_model *md, const tps_se_factor *f, int num_threads)
{
    tps_model *mm = (tps_model *)md;
    tps_se_factor *ff = (tps_se_factor *)f;
    pthread_mutex_lock(&mm->se_lock);
    if (!f->zq && f->n <= TPS_SE_TILE_ZQ_MAX_BYTES / sizeof(double) / f->n) {
        zq_job zj = {f, malloc(sizeof(double) * f->n * f->n)};
        if (zj.zq) {
            const size_t items = (f->n + ZQ_BLOCK - 1) / ZQ_BLOCK;
            tps_blas_single_begin();
            const int ok = tps_parallel_for(items, tps_threads_for(num_threads, items, 1),
                                            zq_block, &zj) == 0;
            tps_blas_single_end();
            if (ok)
                ff->zq = zj.zq;
            else
                free(zj.zq);
        }
    }
    pthread_mutex_unlock(&mm->se_lock);
}

void tps_se_tile_nodes(const tps_window *w, size_t c0, size_t r0, double *nu, double *nv)
{
    double node[Q], wt[Q];
    chebyshev(node, wt);
    for (int b = 0; b < Q; ++b)
        for (int a = 0; a < Q; ++a)
            tps_cell_centre(w, (double)c0 + node[a], (double)r0 + node[b], &nu[a + Q * b],
                            &nv[a + Q * b]);
}

void tps_se_tile_weights(double s, double *l)
{
    double node[Q], wt[Q];
    chebyshev(node, wt);
    lagrange_at(node, wt, s, l);
}

int tps_se_tile_guard_pass(double lowrank, double exact, double scale, double *ratio)
{
    const double allowed = TPS_SE_TILE_GUARD_REL * fabs(exact) + TPS_SE_TILE_GUARD_FLOOR * scale;
    *ratio = fabs(lowrank - exact) / allowed;
    if (!(*ratio <= 1.0)) {
        *ratio = isnan(*ratio) ? INFINITY : *ratio;
        return 0;
    }
    return 1;
}

tps_se_tile_kind tps_se_tile_frame_make(const tps_se_factor *f, const tps_window *w, size_t c0,
                                        size_t r0, int *near, unsigned char *is_near,
                                        double *col, tps_se_tile_frame *fr)
{
    const size_t n = f->n, m = f->m, nm = n - m;
    memset(fr, 0, sizeof *fr);
    double inv[4];
    if (!index_map(w, inv))
        return TPS_SE_TILE_DENSE;
    /* Near points: within one tile width of the tile, in index space.
     * Guards: the corner cells (covariates 0: those of cells outside the
     * window are not known, and the check is of the kernel's
     * approximation) and the first two points inside the tile, at the
     * points themselves, where the variance is smallest and most
     * sensitive (their fixed part h = R^-T t(p) = Q1^T e_p needs no
     * covariates). */
    double *gs = fr->gs, *gt = fr->gt;
    int *gp = fr->gp;
    size_t ng = 4;
    for (size_t g = 0; g < 4; ++g) {
        gs[g] = g % 2 ? T - 1 : 0;
        gt[g] = g / 2 ? T - 1 : 0;
        gp[g] = -1;
    }
    const double lo_i = (double)c0 - T, hi_i = (double)c0 + 2.0 * T - 1.0;
    const double lo_j = (double)r0 - T, hi_j = (double)r0 + 2.0 * T - 1.0;
    size_t n_near = 0;
    for (size_t p = 0; p < n; ++p) {
        double i, j;
        to_index(w, inv, f->u[p], f->v[p], &i, &j);
        is_near[p] = i >= lo_i && i <= hi_i && j >= lo_j && j <= hi_j;
        if (!is_near[p])
            continue;
        if (n_near + Q2 >= TPS_SE_TILE_MAX_COLS)
            return TPS_SE_TILE_DENSE;
        near[n_near++] = (int)p;
        i -= (double)c0;
        j -= (double)r0;
        if (ng < G && i >= 0.0 && i <= T - 1 && j >= 0.0 && j <= T - 1) {
            gs[ng] = i;
            gt[ng] = j;
            gp[ng++] = (int)p;
        }
    }
    if (nm < n_near + Q2 + m + ng)
        return TPS_SE_TILE_DENSE;
    fr->n_near = n_near;
    fr->n_guards = ng;
    /* The guards' coordinates and fixed parts: R^-T t at the corners,
     * Q1^T e_p at a point. */
    for (size_t g = 0; g < ng; ++g) {
        if (gp[g] < 0)
            tps_cell_centre(w, (double)c0 + gs[g], (double)r0 + gt[g], &fr->gu[g], &fr->gv[g]);
        else
            fr->gu[g] = f->u[gp[g]], fr->gv[g] = f->v[gp[g]];
    }
    tps_se_fixed_rows(f, 4, 4, fr->gu, fr->gv, NULL, 0, fr->gh);
    for (size_t g = 4; g < ng; ++g) {
        memset(col, 0, sizeof(double) * n);
        col[gp[g]] = 1.0;
        tps_se_apply_qt(f, col);
        memcpy(fr->gh + g * m, col, sizeof(double) * m);
    }
    return TPS_SE_TILE_LOWRANK;
}

tps_se_tile_kind tps_se_tile_plan(const tps_se_factor *f, const tps_window *w, size_t c0,
                                  size_t r0, void *work, tps_se_tile *t)
{
    const size_t n = f->n, m = f->m, nm = n - m;
    tile_mem mem = carve(f, work);
    memset(t, 0, sizeof *t);
    t->f = f;
    t->w = w;
    t->c0 = c0;
    t->r0 = r0;
    t->near = mem.near;
    t->x = mem.x;
    t->wm = mem.wm;
    t->lag = mem.lag;
    t->scratch = mem.row;
    /* 1. Near points and guard targets (their h computed in a, free until 2). */
    tps_se_tile_frame fr;
    const tps_se_tile_kind kind = tps_se_tile_frame_make(f, w, c0, r0, mem.near, mem.is_near,
                                                         mem.a, &fr);
    if (kind != TPS_SE_TILE_LOWRANK)
        return kind;
    const size_t n_near = fr.n_near, ng = fr.n_guards;
    const unsigned char *is_near = mem.is_near;
    const double *gs = fr.gs, *gt = fr.gt, *gu = fr.gu, *gv = fr.gv, *gh = fr.gh;
    t->n_near = n_near;
    t->n_guards = ng;
    /* 2. The far points' kernel at the nodes: a (n x Q2, near rows 0). */
    double node[Q], wt[Q], nu[Q2], nv[Q2];
    chebyshev(node, wt);
    for (int i = 0; i < T; ++i)
        lagrange_at(node, wt, (double)i, mem.lag + i * Q);
    tps_se_tile_nodes(w, c0, r0, nu, nv);
    for (size_t p = 0; p < n; ++p) {
        const int far = !is_near[p];
        for (int c = 0; c < Q2; ++c)
            mem.a[(size_t)c * n + p] = far ? phi(f->u[p] - nu[c], f->v[p] - nv[c]) : 0.0;
    }
    /* 3. Its interpolative decomposition: the QR of a (in wm's columns for
     * now), then the column-pivoted QR of its R: a P = Q' R', the skeleton
     * the first `rank` pivots, X = [I, R11^-1 R12] P^T. */
    memcpy(mem.wm, mem.a, sizeof(double) * n * Q2);
    double wq;
    if (LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (int)n, Q2, mem.wm, (int)n, mem.tau, &wq, -1) != 0 ||
        wq > LWORK ||
        LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (int)n, Q2, mem.wm, (int)n, mem.tau, mem.lwork,
                            LWORK) != 0)
        return TPS_SE_TILE_GUARD;
    memset(mem.rs, 0, sizeof(double) * Q2 * Q2);
    for (int c = 0; c < Q2; ++c)
        for (int r = 0; r <= c; ++r)
            mem.rs[c * Q2 + r] = mem.wm[(size_t)c * n + r];
    memset(mem.jpvt, 0, sizeof(int) * Q2);
    if (LAPACKE_dgeqp3_work(LAPACK_COL_MAJOR, Q2, Q2, mem.rs, Q2, mem.jpvt, mem.tau, &wq, -1) != 0 ||
        wq > LWORK ||
        LAPACKE_dgeqp3_work(LAPACK_COL_MAJOR, Q2, Q2, mem.rs, Q2, mem.jpvt, mem.tau, mem.lwork,
                            LWORK) != 0)
        return TPS_SE_TILE_GUARD;
    const double d0 = fabs(mem.rs[0]);
    size_t rank = 0;
    while (rank < Q2 && fabs(mem.rs[rank * Q2 + rank]) > TPS_SE_TILE_TOL * d0)
        ++rank;
    if (rank > 0) {
        /* R11^-1 R12 in rs's columns rank.. */
        if (rank < Q2)
            cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit,
                        (int)rank, (int)(Q2 - rank), 1.0, mem.rs, Q2, mem.rs + rank * Q2, Q2);
        for (size_t k = 0; k < Q2; ++k) {
            double *xc = mem.x + (size_t)(mem.jpvt[k] - 1) * rank;
            for (size_t s = 0; s < rank; ++s)
                xc[s] = k < rank ? (double)(s == k) : mem.rs[k * Q2 + s];
        }
    }
    t->rank = rank;
    const size_t cols = n_near + rank, ld = n;
    t->cols = cols;
    /* 4. wm = [Q^T B | M21 | Q^T k(guards)]: B's unit columns for the near
     * points, the skeleton nodes' far kernel columns. */
    double *wm = mem.wm;
    const size_t gc = cols + m; /* the guards' first column */
    memset(wm, 0, sizeof(double) * ld * (gc + ng));
    /* the near points' columns, multiplied already (zq) or unit columns */
    for (size_t a = 0; a < n_near; ++a)
        if (f->zq)
            memcpy(wm + a * ld, f->zq + (size_t)mem.near[a] * n, sizeof(double) * n);
        else
            wm[a * ld + (size_t)mem.near[a]] = 1.0;
    const size_t c1 = f->zq ? n_near : 0; /* the first column to multiply */
    for (size_t s = 0; s < rank; ++s)
        memcpy(wm + (n_near + s) * ld, mem.a + (size_t)(mem.jpvt[s] - 1) * n, sizeof(double) * n);
    for (size_t g = 0; g < ng; ++g) {
        double *col = wm + (gc + g) * ld;
        for (size_t p = 0; p < n; ++p)
            col[p] = phi(f->u[p] - gu[g], f->v[p] - gv[g]);
    }
    for (size_t c = c1; c < cols; ++c)
        tps_se_apply_qt(f, wm + c * ld);
    for (size_t g = 0; g < ng; ++g)
        tps_se_apply_qt(f, wm + (gc + g) * ld);
    for (size_t c = 0; c < m; ++c)
        for (size_t r = m; r < n; ++r)
            wm[(cols + c) * ld + r] = f->mat[c * n + r];
    for (size_t g = 0; g < ng; ++g)
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)nm, (int)m, -1.0, f->mat + m, (int)n,
                    gh + g * m, 1, 1.0, wm + (gc + g) * ld + m, 1);
    /* 5. One product with L^-1 for all of them. */
    cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)nm,
                (int)(gc + ng - c1), 1.0, f->mat + m * n + m, (int)n, wm + c1 * ld + m, (int)ld);
    /* 6. The guards' exact variances, then [C D]'s QR (Rc on top). */
    double exact[G], scale[G];
    for (size_t g = 0; g < ng; ++g) {
        const double *col = wm + (gc + g) * ld, *hg = gh + g * m;
        double sq = 0.0, q1h = 0.0;
        for (size_t r = m; r < n; ++r)
            sq += col[r] * col[r];
        for (size_t r = 0; r < m; ++r)
            q1h += col[r] * hg[r];
        const double hmh = tps_se_hmh(f, hg);
        exact[g] = hmh - 2.0 * q1h - sq;
        scale[g] = fabs(hmh) + 2.0 * fabs(q1h) + sq;
    }
    if (LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (int)nm, (int)gc, wm + m, (int)ld, mem.tau, &wq,
                            -1) != 0 ||
        wq > LWORK ||
        LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (int)nm, (int)gc, wm + m, (int)ld, mem.tau,
                            mem.lwork, LWORK) != 0)
        return TPS_SE_TILE_GUARD;
    /* 7. The guards in low rank against their exact values. */
    t->guard_worst = 0.0;
    for (size_t g = 0; g < ng; ++g) {
        double lr, ls[Q], lt[Q];
        lagrange_at(node, wt, gs[g], ls);
        lagrange_at(node, wt, gt[g], lt);
        lowrank(t, 1, &gu[g], &gv[g], lt, ls, gh + g * m, &lr);
        double ratio;
        if (!tps_se_tile_guard_pass(lr, exact[g], scale[g], &ratio)) {
            t->guard_worst = ratio;
            return TPS_SE_TILE_GUARD;
        }
        t->guard_worst = fmax(t->guard_worst, ratio);
    }
    return TPS_SE_TILE_LOWRANK;
}

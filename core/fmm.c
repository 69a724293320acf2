/* fmm.c: a fast multipole method for the thin plate spline kernel in 2-D.
 *
 * With z = u + i v, a source t and s = |z - t|^2,
 *     s log s = 2 Re[(conj(z) - conj(t)) (z - t) log(z - t)]
 * (the imaginary part of the log meets a real factor), so for weights h
 *     sum_j h_j s_j log s_j = Re[ |z|^2 L0(z) - conj(z) L1(z) - z L2(z) + L3(z) ],
 *     L_k(z) = sum_j q_kj log(z - t_j),  q_0 = 2h, q_1 = 2h t, q_2 = 2h conj(t),
 *                                        q_3 = 2h |t|^2:
 * four sums of the 2-D Laplace kernel log(z - t) with complex charges, for
 * which Greengard and Rokhlin's expansions hold (multipole: a0 log(z - c) +
 * sum_k a_k / (z - c)^k; local: sum_l b_l (z - c)^l). The same idea is
 * behind Gumerov and Duraiswami's biharmonic FMM (a pair of Laplace FMMs).
 * A branch of the complex log chosen per pair of boxes adds 2 pi i n times
 * the same box's charges to all four sums alike, which the combination turns
 * into 2 pi i n sum_j q_0j |z - t_j|^2: imaginary, dropped by Re.
 *
 * The tree is adaptive (quadtree.c); which boxes interact is decided by a
 * dual traversal of the target and source trees (Dehnen; Warren and Salmon):
 * a pair is well separated when r_t + r_s < THETA d (r: the largest
 * distance of a box's points from its centre, d: between the centres);
 * then the source box's multipole expansion becomes part of the target
 * box's local expansion (M2L), else the larger box is split; two leaves
 * that are not well separated are summed directly by the SIMD kernel of the
 * evaluation (eval_kernel.c). Every series is truncated after p terms; the
 * truncation error of a well-separated pair is at most about
 * sum|q| THETA^(p+1) / (1 - THETA) (Greengard 1987, Lemma 2.3), so p is
 * chosen from the requested tolerance (terms_for); tests check the stated
 * bound against direct summation.
 *
 * Expansions are kept scaled by their box's half side rho (a_k / rho^k,
 * b_l rho^l), so that no power of a small box's size under- or overflows
 * at any depth; M2L is then a diagonal scaling, one fixed matrix of
 * binomials (shared by every pair) and another scaling. */
#include "fmm.h"

#include "eval.h"
#include "quadtree.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Separation of interacting boxes: r_t + r_s < THETA d. Smaller means
 * fewer terms for a tolerance and more near-field pairs. */
#define THETA 0.5
/* Points per leaf: the near field's SIMD sums against the expansions'. */
#define LEAF_POINTS 256
#define MAX_TERMS 64
/* Four charge sets of complex numbers: 8 doubles per coefficient. */
#define SETS 4
#define W (2 * SETS)

typedef struct cx {
    double re, im;
} cx;

static inline cx cmul(cx a, cx b)
{
    return (cx){a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}

static inline cx cinv(cx a)
{
    const double d = a.re * a.re + a.im * a.im;
    return (cx){a.re / d, -a.im / d};
}

/* Interaction lists grouped by target node (CSR). */
typedef struct lists {
    size_t *start; /* n_target_nodes + 1 */
    size_t *src;
} lists;

typedef struct plan {
    const tps_quadtree *tgt, *src;
    lists m2l, p2p;  /* p2p: for target leaves only */
    size_t max_near; /* most source points in one target leaf's near field */
    double near_pairs;
} plan;

struct tps_fmm {
    size_t n;
    int p, threads;
    tps_kernel_fn kernel;
    tps_quadtree src;
    plan self;
    double *binom_m2l; /* p x p: C(l + k - 1, k - 1), l, k = 1..p */
    double *pascal;    /* (p + 1) x (p + 1): C(l, k) */
    double *hq;        /* the weights in tree order */
    double *mult;      /* n_nodes x (p + 1) x W: a0 and the scaled a_k */
    double *local;     /* the self plan's local expansions, same layout */
};

/* Terms for a tolerance. The bound above, THETA^(p+1) / (1 - THETA) of a
 * pair's charges, is for the worst placement of points in both boxes. The
 * error measured (autotest/c/test_fmm.c: uniform points, and half of them
 * in a disc of 1e-3, whose deep tree pairs small boxes with large ones;
 * targets in and 10% around the square; random and spline weights) falls
 * like 0.43^p for clustered points and faster for uniform ones, from about
 * 3e-4 of sum|h| at p = 0. p is the smallest with 3e-3 0.45^p <= tol: a
 * margin of 5 to 10 over the worst case measured. */
static int terms_for(double tol)
{
    int p = (int)ceil(log(tol / 3e-3) / log(0.45));
    return p < 6 ? 6 : p > MAX_TERMS ? MAX_TERMS : p;
}

static void free_lists(lists *l)
{
    free(l->start);
    free(l->src);
    l->start = l->src = NULL;
}

static void free_plan(plan *pl)
{
    free_lists(&pl->m2l);
    free_lists(&pl->p2p);
}

void tps_fmm_destroy(tps_fmm *f)
{
    if (!f)
        return;
    free_plan(&f->self);
    tps_quadtree_free(&f->src);
    free(f->binom_m2l);
    free(f->pascal);
    free(f->hq);
    free(f->mult);
    free(f->local);
    free(f);
}

/* ---- the plan: a dual traversal of the two trees ---- */

typedef struct pair_list {
    size_t n, cap;
    size_t (*pair)[2];
} pair_list;

static int push_pair(pair_list *l, size_t t, size_t s)
{
    if (l->n == l->cap) {
        const size_t cap = l->cap ? 2 * l->cap : 1024;
        size_t(*grown)[2] = realloc(l->pair, sizeof *grown * cap);
        if (!grown)
            return -1;
        l->pair = grown;
        l->cap = cap;
    }
    l->pair[l->n][0] = t;
    l->pair[l->n][1] = s;
    l->n++;
    return 0;
}

/* Pairs grouped by target node, in the order they were found. */
static int to_lists(const pair_list *pl, size_t n_targets, lists *out)
{
    out->start = calloc(n_targets + 1, sizeof(size_t));
    out->src = malloc(sizeof(size_t) * (pl->n ? pl->n : 1));
    if (!out->start || !out->src)
        return -1;
    for (size_t k = 0; k < pl->n; ++k)
        out->start[pl->pair[k][0] + 1]++;
    for (size_t t = 0; t < n_targets; ++t)
        out->start[t + 1] += out->start[t];
    size_t *fill = malloc(sizeof(size_t) * (n_targets ? n_targets : 1));
    if (!fill)
        return -1;
    memcpy(fill, out->start, sizeof(size_t) * n_targets);
    for (size_t k = 0; k < pl->n; ++k)
        out->src[fill[pl->pair[k][0]]++] = pl->pair[k][1];
    free(fill);
    return 0;
}

static tps_status make_plan(tps_error *err, const tps_quadtree *tgt, const tps_quadtree *src,
                            plan *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->tgt = tgt;
    pl->src = src;
    pair_list m2l = {0, 0, NULL}, p2p = {0, 0, NULL}, stack = {0, 0, NULL};
    int fail = push_pair(&stack, 0, 0);
    while (!fail && stack.n) {
        --stack.n;
        const size_t t = stack.pair[stack.n][0], s = stack.pair[stack.n][1];
        const tps_qnode *T = &tgt->nodes[t], *S = &src->nodes[s];
        const double du = T->cu - S->cu, dv = T->cv - S->cv;
        const double d = sqrt(du * du + dv * dv);
        /* Strict: two boxes of single points at one place (d = 0) are near. */
        if (T->radius + S->radius < THETA * d) {
            fail = push_pair(&m2l, t, s);
        } else if (!T->child && !S->child) {
            fail = push_pair(&p2p, t, s);
        } else if (!S->child || (T->child && T->half >= S->half)) {
            for (int c = 0; !fail && c < T->n_child; ++c)
                fail = push_pair(&stack, T->child + (size_t)c, s);
        } else {
            for (int c = 0; !fail && c < S->n_child; ++c)
                fail = push_pair(&stack, t, S->child + (size_t)c);
        }
    }
    if (!fail)
        fail = to_lists(&m2l, tgt->n_nodes, &pl->m2l) || to_lists(&p2p, tgt->n_nodes, &pl->p2p);
    free(m2l.pair);
    free(p2p.pair);
    free(stack.pair);
    if (fail) {
        free_plan(pl);
        return tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory for the fast summation's "
                             "interaction lists");
    }
    for (size_t t = 0; t < tgt->n_nodes; ++t) {
        size_t near = 0;
        for (size_t k = pl->p2p.start[t]; k < pl->p2p.start[t + 1]; ++k) {
            const tps_qnode *S = &src->nodes[pl->p2p.src[k]];
            near += S->end - S->begin;
        }
        pl->max_near = near > pl->max_near ? near : pl->max_near;
        pl->near_pairs += (double)near * (double)(tgt->nodes[t].end - tgt->nodes[t].begin);
    }
    return TPS_OK;
}

/* ---- expansions ---- */

static inline double *coef(double *base, int p, size_t node)
{
    return base + node * (size_t)(p + 1) * W;
}

/* A leaf's multipole expansion from its points (P2M). */
static void p2m(const tps_fmm *f, size_t node, double *m)
{
    const tps_qnode *nd = &f->src.nodes[node];
    const int p = f->p;
    memset(m, 0, sizeof(double) * (size_t)(p + 1) * W);
    const double inv = 1.0 / nd->half;
    for (size_t j = nd->begin; j < nd->end; ++j) {
        const double q0 = 2.0 * f->hq[j];
        if (q0 == 0.0)
            continue;
        const double tu = f->src.u[j], tv = f->src.v[j];
        const cx q[SETS] = {{q0, 0.0}, {q0 * tu, q0 * tv}, {q0 * tu, -q0 * tv},
                            {q0 * (tu * tu + tv * tv), 0.0}};
        for (int s = 0; s < SETS; ++s) {
            m[2 * s] += q[s].re;
            m[2 * s + 1] += q[s].im;
        }
        const cx d = {(tu - nd->cu) * inv, (tv - nd->cv) * inv};
        cx pw = d;
        for (int k = 1; k <= p; ++k) {
            double *mk = m + (size_t)k * W;
            const double rk = 1.0 / k;
            for (int s = 0; s < SETS; ++s) {
                const cx t = cmul(q[s], pw);
                mk[2 * s] -= t.re * rk;
                mk[2 * s + 1] -= t.im * rk;
            }
            pw = cmul(pw, d);
        }
    }
}

/* A child's multipole expansion shifted to its parent's centre (M2M). */
static void m2m(const tps_fmm *f, const tps_qnode *child, const tps_qnode *parent,
                const double *mc, double *mp)
{
    const int p = f->p;
    const double inv = 1.0 / parent->half, ratio = child->half / parent->half;
    const cx z0 = {(child->cu - parent->cu) * inv, (child->cv - parent->cv) * inv};
    cx zp[MAX_TERMS + 1], rk[MAX_TERMS + 1];
    zp[0] = (cx){1.0, 0.0};
    rk[0] = (cx){1.0, 0.0};
    for (int k = 1; k <= p; ++k) {
        zp[k] = cmul(zp[k - 1], z0);
        rk[k] = (cx){rk[k - 1].re * ratio, 0.0};
    }
    for (int s = 0; s < W; ++s)
        mp[s] += mc[s];
    for (int l = 1; l <= p; ++l) {
        double *ml = mp + (size_t)l * W;
        for (int s = 0; s < SETS; ++s) {
            const cx a0 = {mc[2 * s], mc[2 * s + 1]};
            cx acc = cmul(a0, zp[l]);
            acc.re = -acc.re / l;
            acc.im = -acc.im / l;
            for (int k = 1; k <= l; ++k) {
                const cx ak = {mc[(size_t)k * W + 2 * s] * rk[k].re,
                               mc[(size_t)k * W + 2 * s + 1] * rk[k].re};
                const cx t = cmul(ak, zp[l - k]);
                const double c = f->pascal[(size_t)(l - 1) * (size_t)(p + 1) + (size_t)(k - 1)];
                acc.re += c * t.re;
                acc.im += c * t.im;
            }
            ml[2 * s] += acc.re;
            ml[2 * s + 1] += acc.im;
        }
    }
}

/* A source box's multipole expansion added to a target box's local one (M2L). */
static void m2l(const tps_fmm *f, const tps_qnode *S, const tps_qnode *T, const double *ms,
                double *lt)
{
    const int p = f->p;
    const cx z0 = {S->cu - T->cu, S->cv - T->cv};
    const cx iz = cinv(z0);
    const cx mx = {-S->half * iz.re, -S->half * iz.im}; /* -rho_s / z0 */
    const cx y = {T->half * iz.re, T->half * iz.im};    /* rho_t / z0 */
    double at[MAX_TERMS + 1][W], c[W];
    /* a~_k = a^_k (-rho_s / z0)^k */
    cx pw = mx;
    for (int k = 1; k <= p; ++k) {
        const double *ak = ms + (size_t)k * W;
        for (int s = 0; s < SETS; ++s) {
            const cx t = cmul((cx){ak[2 * s], ak[2 * s + 1]}, pw);
            at[k][2 * s] = t.re;
            at[k][2 * s + 1] = t.im;
        }
        pw = cmul(pw, mx);
    }
    /* b^_0 += a0 log(-z0) + sum_k a~_k */
    const cx lg = {0.5 * log(z0.re * z0.re + z0.im * z0.im), atan2(-z0.im, -z0.re)};
    for (int s = 0; s < SETS; ++s) {
        const cx t = cmul((cx){ms[2 * s], ms[2 * s + 1]}, lg);
        double re = t.re, im = t.im;
        for (int k = 1; k <= p; ++k) {
            re += at[k][2 * s];
            im += at[k][2 * s + 1];
        }
        lt[2 * s] += re;
        lt[2 * s + 1] += im;
    }
    /* b^_l += (rho_t / z0)^l (sum_k C(l+k-1, k-1) a~_k - a0 / l) */
    cx yl = y;
    for (int l = 1; l <= p; ++l) {
        const double *row = f->binom_m2l + (size_t)(l - 1) * (size_t)p;
        for (int s = 0; s < W; ++s)
            c[s] = 0.0;
        for (int k = 1; k <= p; ++k) {
            const double b = row[k - 1];
            for (int s = 0; s < W; ++s)
                c[s] += b * at[k][s];
        }
        double *bl = lt + (size_t)l * W;
        const double il = 1.0 / l;
        for (int s = 0; s < SETS; ++s) {
            const cx t = cmul((cx){c[2 * s] - ms[2 * s] * il, c[2 * s + 1] - ms[2 * s + 1] * il}, yl);
            bl[2 * s] += t.re;
            bl[2 * s + 1] += t.im;
        }
        yl = cmul(yl, y);
    }
}

/* A parent's local expansion shifted to its child's centre (L2L). */
static void l2l(const tps_fmm *f, const tps_qnode *parent, const tps_qnode *child,
                const double *lp, double *lc)
{
    const int p = f->p;
    const double inv = 1.0 / parent->half;
    const cx d = {(child->cu - parent->cu) * inv, (child->cv - parent->cv) * inv};
    double b[MAX_TERMS + 1][W];
    memcpy(b, lp, sizeof(double) * (size_t)(p + 1) * W);
    /* Taylor shift: coefficients in (z - c_child) / rho_parent. */
    for (int j = 0; j < p; ++j)
        for (int k = p - 1; k >= j; --k)
            for (int s = 0; s < SETS; ++s) {
                const cx t = cmul(d, (cx){b[k + 1][2 * s], b[k + 1][2 * s + 1]});
                b[k][2 * s] += t.re;
                b[k][2 * s + 1] += t.im;
            }
    /* ... and in (z - c_child) / rho_child. */
    const double ratio = child->half / parent->half;
    double rl = 1.0;
    for (int l = 0; l <= p; ++l) {
        for (int s = 0; s < W; ++s)
            lc[(size_t)l * W + s] += b[l][s] * rl;
        rl *= ratio;
    }
}

/* The far field at a target from its leaf's local expansion (L2P). */
static double l2p(const tps_fmm *f, const tps_qnode *T, const double *lt, double zu, double zv)
{
    const int p = f->p;
    const double inv = 1.0 / T->half;
    const cx s = {(zu - T->cu) * inv, (zv - T->cv) * inv};
    cx L[SETS];
    for (int k = 0; k < SETS; ++k)
        L[k] = (cx){lt[(size_t)p * W + 2 * k], lt[(size_t)p * W + 2 * k + 1]};
    for (int l = p - 1; l >= 0; --l)
        for (int k = 0; k < SETS; ++k) {
            const cx t = cmul(L[k], s);
            L[k] = (cx){t.re + lt[(size_t)l * W + 2 * k], t.im + lt[(size_t)l * W + 2 * k + 1]};
        }
    const cx z = {zu, zv}, zc = {zu, -zv};
    const cx a = cmul(zc, L[1]), b = cmul(z, L[2]);
    return (zu * zu + zv * zv) * L[0].re - a.re - b.re + L[3].re;
}

/* ---- the passes ---- */

typedef struct pass {
    const tps_fmm *f;
    double *mult;
    const plan *pl;
    double *local;
    size_t level0;          /* the level's first node */
    const double *tu, *tv;  /* targets in target-tree order */
    double *out;            /* in input order of the target tree */
    const size_t *perm;
    char *scratch;
    size_t scratch_stride;
} pass;

static void upward(size_t k, int thread, void *user)
{
    (void)thread;
    pass *ps = user;
    const tps_fmm *f = ps->f;
    const size_t node = ps->level0 + k;
    const tps_qnode *nd = &f->src.nodes[node];
    double *m = coef(ps->mult, f->p, node);
    if (!nd->child) {
        p2m(f, node, m);
        return;
    }
    memset(m, 0, sizeof(double) * (size_t)(f->p + 1) * W);
    for (int c = 0; c < nd->n_child; ++c) {
        const size_t ch = nd->child + (size_t)c;
        m2m(f, &f->src.nodes[ch], nd, coef(ps->mult, f->p, ch), m);
    }
}

static void downward(size_t k, int thread, void *user)
{
    (void)thread;
    pass *ps = user;
    const tps_fmm *f = ps->f;
    const plan *pl = ps->pl;
    const size_t node = ps->level0 + k;
    const tps_qnode *T = &pl->tgt->nodes[node];
    double *lt = coef(ps->local, f->p, node);
    memset(lt, 0, sizeof(double) * (size_t)(f->p + 1) * W);
    if (node != 0)
        l2l(f, &pl->tgt->nodes[T->parent], T, coef(ps->local, f->p, T->parent), lt);
    for (size_t i = pl->m2l.start[node]; i < pl->m2l.start[node + 1]; ++i) {
        const size_t s = pl->m2l.src[i];
        m2l(f, &f->src.nodes[s], T, coef(ps->mult, f->p, s), lt);
    }
}

/* A target leaf: its far field (L2P) and near field (the SIMD kernel over
 * the gathered points of its near source leaves). */
static void leaf_pass(size_t k, int thread, void *user)
{
    pass *ps = user;
    const tps_fmm *f = ps->f;
    const plan *pl = ps->pl;
    const size_t node = pl->tgt->leaves[k];
    const tps_qnode *T = &pl->tgt->nodes[node];
    const size_t nt = T->end - T->begin;
    const size_t m = (nt + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
    double *buf = (double *)(ps->scratch + ps->scratch_stride * (size_t)thread);
    double *su = buf, *sv = su + pl->max_near, *sh = sv + pl->max_near;
    double *pu = sh + pl->max_near, *pv = pu + m, *acc = pv + m;
    size_t ns = 0;
    for (size_t i = pl->p2p.start[node]; i < pl->p2p.start[node + 1]; ++i) {
        const tps_qnode *S = &f->src.nodes[pl->p2p.src[i]];
        const size_t len = S->end - S->begin;
        memcpy(su + ns, f->src.u + S->begin, sizeof(double) * len);
        memcpy(sv + ns, f->src.v + S->begin, sizeof(double) * len);
        memcpy(sh + ns, f->hq + S->begin, sizeof(double) * len);
        ns += len;
    }
    memcpy(pu, ps->tu + T->begin, sizeof(double) * nt);
    memcpy(pv, ps->tv + T->begin, sizeof(double) * nt);
    for (size_t j = nt; j < m; ++j) {
        pu[j] = pu[nt - 1];
        pv[j] = pv[nt - 1];
    }
    const double *w = sh;
    tps_kernel_job kj = {ns, su, sv, 1, &w, m, pu, pv, 0, acc};
    if (ns)
        f->kernel(&kj);
    else
        memset(acc, 0, sizeof(double) * m);
    const double *lt = coef(ps->local, f->p, node);
    for (size_t j = 0; j < nt; ++j)
        ps->out[ps->perm[T->begin + j]] = acc[j] + l2p(f, T, lt, pu[j], pv[j]);
}

static size_t leaf_scratch_bytes(const plan *pl)
{
    size_t most = 0;
    for (size_t k = 0; k < pl->tgt->n_leaves; ++k) {
        const tps_qnode *T = &pl->tgt->nodes[pl->tgt->leaves[k]];
        most = T->end - T->begin > most ? T->end - T->begin : most;
    }
    most = (most + TPS_KERNEL_TILE - 1) / TPS_KERNEL_TILE * TPS_KERNEL_TILE;
    return ((3 * pl->max_near + 3 * most) * sizeof(double) + 63) / 64 * 64;
}

static tps_status run_upward(tps_fmm *f)
{
    pass ps = {f, f->mult, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0};
    for (int d = f->src.depth; d >= 0; --d) {
        ps.level0 = f->src.level[d];
        const size_t count = f->src.level[d + 1] - f->src.level[d];
        tps_parallel_for(count, count > 8 ? f->threads : 1, upward, &ps);
    }
    return TPS_OK;
}

static tps_status run_downward(const tps_fmm *f, const plan *pl, double *local,
                               const double *tu, const double *tv, const size_t *perm,
                               double *out, tps_error *err)
{
    pass ps = {f, f->mult, pl, local, 0, tu, tv, out, perm, NULL, 0};
    const tps_quadtree *tgt = pl->tgt;
    for (int d = 0; d <= tgt->depth; ++d) {
        ps.level0 = tgt->level[d];
        const size_t count = tgt->level[d + 1] - tgt->level[d];
        tps_parallel_for(count, count > 8 ? f->threads : 1, downward, &ps);
    }
    ps.scratch_stride = leaf_scratch_bytes(pl);
    ps.scratch = malloc(ps.scratch_stride * (size_t)(f->threads < 1 ? 1 : f->threads));
    if (!ps.scratch)
        return tps_error_set(err, TPS_ERR_OUT_OF_MEMORY,
                             "out of memory for the fast summation's near field");
    tps_parallel_for(tgt->n_leaves, f->threads, leaf_pass, &ps);
    free(ps.scratch);
    return TPS_OK;
}

/* ---- the API ---- */

tps_fmm *tps_fmm_create(tps_error *err, size_t n, const double *u, const double *v, double tol,
                        int threads)
{
    if (n == 0 || !(tol >= 1e-16 && tol < 1.0)) {
        tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "fast summation: no points, or a tolerance "
                      "outside [1e-16, 1)");
        return NULL;
    }
    tps_fmm *f = calloc(1, sizeof *f);
    if (!f) {
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    f->n = n;
    f->p = terms_for(tol);
    f->threads = threads < 1 ? 1 : threads;
    f->kernel = tps_kernel_for(TPS_CPU_KERNEL_AUTO);
    if (tps_quadtree_build(err, n, u, v, LEAF_POINTS, &f->src) != TPS_OK) {
        tps_fmm_destroy(f);
        return NULL;
    }
    const size_t p = (size_t)f->p;
    f->binom_m2l = malloc(sizeof(double) * p * p);
    f->pascal = calloc((p + 1) * (p + 1), sizeof(double));
    f->hq = malloc(sizeof(double) * n);
    f->mult = malloc(sizeof(double) * f->src.n_nodes * (p + 1) * W);
    f->local = malloc(sizeof(double) * f->src.n_nodes * (p + 1) * W);
    if (!f->binom_m2l || !f->pascal || !f->hq || !f->mult || !f->local) {
        tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory for the fast summation of %zu "
                      "points", n);
        tps_fmm_destroy(f);
        return NULL;
    }
    /* Pascal's triangle, C(l, k) for l, k <= p. */
    for (size_t l = 0; l <= p; ++l) {
        f->pascal[l * (p + 1)] = 1.0;
        for (size_t k = 1; k <= l; ++k)
            f->pascal[l * (p + 1) + k] =
                f->pascal[(l - 1) * (p + 1) + k - 1] + (k < l ? f->pascal[(l - 1) * (p + 1) + k] : 0.0);
    }
    /* C(l + k - 1, k - 1) for l, k = 1..p, by C(m, j) = C(m, j - 1) (m - j + 1) / j
     * (exact while it fits in 53 bits, relatively accurate beyond). */
    for (size_t l = 1; l <= p; ++l) {
        double c = 1.0; /* C(l, 0) */
        for (size_t k = 1; k <= p; ++k) {
            f->binom_m2l[(l - 1) * p + (k - 1)] = c;                 /* C(l + k - 1, k - 1) */
            c = c * (double)(l + k) / (double)k;                     /* C(l + k, k) */
        }
    }
    if (make_plan(err, &f->src, &f->src, &f->self) != TPS_OK) {
        tps_fmm_destroy(f);
        return NULL;
    }
    return f;
}

tps_status tps_fmm_set_weights(tps_fmm *f, const double *h, tps_error *err)
{
    if (!f || !h)
        return tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "fast summation: no plan or weights");
    for (size_t k = 0; k < f->n; ++k)
        f->hq[k] = h[f->src.perm[k]];
    return run_upward(f);
}

tps_status tps_fmm_apply(tps_fmm *f, const double *h, double *out, tps_error *err)
{
    tps_status st = tps_fmm_set_weights(f, h, err);
    if (st != TPS_OK)
        return st;
    return run_downward(f, &f->self, f->local, f->src.u, f->src.v, f->src.perm, out, err);
}

tps_status tps_fmm_eval(const tps_fmm *f, size_t m, const double *pu, const double *pv,
                        double *out, tps_error *err)
{
    if (!f || (m && (!pu || !pv || !out)))
        return tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "fast summation: no plan or targets");
    if (m == 0)
        return TPS_OK;
    tps_quadtree tgt;
    tps_status st = tps_quadtree_build(err, m, pu, pv, LEAF_POINTS, &tgt);
    if (st != TPS_OK)
        return st;
    plan pl;
    st = make_plan(err, &tgt, &f->src, &pl);
    double *local = NULL;
    if (st == TPS_OK) {
        local = malloc(sizeof(double) * tgt.n_nodes * (size_t)(f->p + 1) * W);
        st = local ? run_downward(f, &pl, local, tgt.u, tgt.v, tgt.perm, out, err)
                   : tps_error_set(err, TPS_ERR_OUT_OF_MEMORY,
                                   "out of memory for the fast summation at %zu targets", m);
        free_plan(&pl);
    }
    free(local);
    tps_quadtree_free(&tgt);
    return st;
}

int tps_fmm_terms(const tps_fmm *f)
{
    return f ? f->p : 0;
}

double tps_fmm_near_pairs(const tps_fmm *f)
{
    return f ? f->self.near_pairs : 0.0;
}

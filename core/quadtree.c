/* quadtree.c: the adaptive quadtree of quadtree.h. Breadth first, so that
 * a pass over the nodes in reverse is bottom-up (multipole expansions) and
 * in order top-down (local expansions); only quadrants holding points
 * become nodes, so every node has points and a radius. */
#include "quadtree.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tps_quadtree_free(tps_quadtree *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->perm);
    free(t->u);
    free(t->v);
    free(t->level);
    free(t->leaves);
    memset(t, 0, sizeof *t);
}

/* perm[begin, end) reordered so that the points with c < mid come first;
 * returns where the others start. */
static size_t partition(size_t *perm, size_t begin, size_t end, const double *c, double mid)
{
    size_t i = begin, j = end;
    while (i < j) {
        if (c[perm[i]] < mid) {
            ++i;
        } else {
            --j;
            const size_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
    return i;
}

static double node_radius(const tps_qnode *nd, const double *u, const double *v,
                          const size_t *perm)
{
    double r2 = 0.0;
    for (size_t k = nd->begin; k < nd->end; ++k) {
        const double du = u[perm[k]] - nd->cu, dv = v[perm[k]] - nd->cv;
        r2 = fmax(r2, du * du + dv * dv);
    }
    return sqrt(r2);
}

tps_status tps_quadtree_build(tps_error *err, size_t n, const double *u, const double *v,
                              size_t leaf_points, tps_quadtree *t)
{
    memset(t, 0, sizeof *t);
    if (n == 0 || leaf_points == 0)
        return tps_error_set(err, TPS_ERR_INVALID_ARGUMENT, "a tree of no points");
    size_t cap = 64;
    t->n = n;
    t->nodes = malloc(sizeof(tps_qnode) * cap);
    t->perm = malloc(sizeof(size_t) * n);
    t->u = malloc(sizeof(double) * n);
    t->v = malloc(sizeof(double) * n);
    if (!t->nodes || !t->perm || !t->u || !t->v)
        goto oom;
    double u0 = INFINITY, v0 = INFINITY, u1 = -INFINITY, v1 = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
        t->perm[i] = i;
        u0 = fmin(u0, u[i]);
        u1 = fmax(u1, u[i]);
        v0 = fmin(v0, v[i]);
        v1 = fmax(v1, v[i]);
    }
    /* A square a little larger than the box, so that no point sits on its
     * far edges (partition sends c == mid to the upper quadrant). */
    double half = 0.5 * fmax(u1 - u0, v1 - v0);
    half = half > 0.0 ? half * (1.0 + 1e-12) + 1e-300 : 1.0;
    t->nodes[0] = (tps_qnode){0.5 * (u0 + u1), 0.5 * (v0 + v1), half, 0.0, 0, n, 0, 0, 0, 0};
    t->n_nodes = 1;
    for (size_t k = 0; k < t->n_nodes; ++k) {
        tps_qnode nd = t->nodes[k];
        if (nd.end - nd.begin <= leaf_points || nd.depth >= TPS_QUADTREE_MAX_DEPTH)
            continue;
        if (t->n_nodes + 4 > cap) {
            tps_qnode *grown = realloc(t->nodes, sizeof(tps_qnode) * cap * 2);
            if (!grown)
                goto oom;
            t->nodes = grown;
            cap *= 2;
        }
        const size_t s1 = partition(t->perm, nd.begin, nd.end, v, nd.cv);
        const size_t s0 = partition(t->perm, nd.begin, s1, u, nd.cu);
        const size_t s2 = partition(t->perm, s1, nd.end, u, nd.cu);
        const size_t cut[5] = {nd.begin, s0, s1, s2, nd.end};
        const double h = 0.5 * nd.half;
        t->nodes[k].child = t->n_nodes;
        for (int q = 0; q < 4; ++q) {
            if (cut[q + 1] == cut[q])
                continue;
            const double cu = nd.cu + (q & 1 ? h : -h), cv = nd.cv + (q & 2 ? h : -h);
            t->nodes[t->n_nodes++] =
                (tps_qnode){cu, cv, h, 0.0, cut[q], cut[q + 1], 0, 0, nd.depth + 1, k};
            t->nodes[k].n_child++;
        }
    }
    t->depth = 0;
    for (size_t k = 0; k < t->n_nodes; ++k) {
        tps_qnode *nd = &t->nodes[k];
        nd->radius = node_radius(nd, u, v, t->perm);
        t->depth = nd->depth > t->depth ? nd->depth : t->depth;
        t->n_leaves += nd->child ? 0 : 1;
    }
    t->level = calloc((size_t)t->depth + 2, sizeof(size_t));
    t->leaves = malloc(sizeof(size_t) * t->n_leaves);
    if (!t->level || !t->leaves)
        goto oom;
    for (size_t k = 0; k < t->n_nodes; ++k)
        t->level[t->nodes[k].depth + 1] = k + 1; /* breadth first: depths never decrease */
    /* Leaves in tree order: a depth-first walk, so that their points are
     * consecutive ranges in order. */
    size_t *stack = malloc(sizeof(size_t) * (4 * TPS_QUADTREE_MAX_DEPTH + 8));
    if (!stack)
        goto oom;
    size_t top = 0, nl = 0;
    stack[top++] = 0;
    while (top) {
        const tps_qnode *nd = &t->nodes[stack[--top]];
        if (!nd->child) {
            t->leaves[nl++] = (size_t)(nd - t->nodes);
            continue;
        }
        for (int q = nd->n_child - 1; q >= 0; --q)
            stack[top++] = nd->child + (size_t)q;
    }
    free(stack);
    for (size_t k = 0; k < n; ++k) {
        t->u[k] = u[t->perm[k]];
        t->v[k] = v[t->perm[k]];
    }
    return TPS_OK;
oom:
    tps_quadtree_free(t);
    return tps_error_set(err, TPS_ERR_OUT_OF_MEMORY, "out of memory for a tree of %zu points", n);
}

size_t tps_quadtree_query(const tps_quadtree *t, double u0, double v0, double u1, double v1,
                          size_t *out, size_t cap)
{
    size_t stack[4 * TPS_QUADTREE_MAX_DEPTH + 8];
    size_t top = 0, count = 0;
    stack[top++] = 0;
    while (top) {
        const tps_qnode *nd = &t->nodes[stack[--top]];
        if (nd->cu + nd->half < u0 || nd->cu - nd->half > u1 || nd->cv + nd->half < v0 ||
            nd->cv - nd->half > v1)
            continue;
        if (nd->child) {
            /* Reverse, so that children come off the stack in tree order. */
            for (int q = nd->n_child - 1; q >= 0; --q)
                stack[top++] = nd->child + (size_t)q;
            continue;
        }
        for (size_t k = nd->begin; k < nd->end; ++k)
            if (t->u[k] >= u0 && t->u[k] <= u1 && t->v[k] >= v0 && t->v[k] <= v1) {
                if (count < cap)
                    out[count] = k;
                ++count;
            }
    }
    return count;
}

void tps_points_box(const double *u, const double *v, const size_t *idx, size_t n,
                    double box[4])
{
    box[0] = box[2] = INFINITY;
    box[1] = box[3] = -INFINITY;
    for (size_t k = 0; k < n; ++k) {
        const size_t i = idx ? idx[k] : k;
        box[0] = fmin(box[0], u[i]);
        box[1] = fmax(box[1], u[i]);
        box[2] = fmin(box[2], v[i]);
        box[3] = fmax(box[3], v[i]);
    }
}

/* internal.h's order of points (a file of the lowest layer: model.c and
 * cpu_local_se.c both use it) */
int tps_compare_keyed_point(const void *pa, const void *pb)
{
    const tps_keyed_point *a = pa, *b = pb;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    if (a->y != b->y)
        return a->y < b->y ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

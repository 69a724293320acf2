/* quadtree.h: an adaptive quadtree over points, shared by the fast
 * summation (fmm.c) and the iterative solve's preconditioner (precond.c). */
#ifndef TPS_QUADTREE_H
#define TPS_QUADTREE_H

#include "error.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Points are split while a node holds more than its capacity, up to this
 * depth (distinct points are separated long before it). */
#define TPS_QUADTREE_MAX_DEPTH 48

/* The bounding box {u0, u1, v0, v1} of the points idx[0, n) (idx NULL: the
 * first n); an empty set gives {inf, -inf, inf, -inf}. */
void tps_points_box(const double *u, const double *v, const size_t *idx, size_t n,
                    double box[4]);

typedef struct tps_qnode {
    double cu, cv;     /* the centre of its square */
    double half;       /* the square's half side (> 0) */
    double radius;     /* largest distance from the centre to its points */
    size_t begin, end; /* its points: tree order [begin, end) */
    size_t child;      /* 0: a leaf; else its first child (children are consecutive) */
    int n_child;       /* 0 to 4: only children that hold points exist */
    int depth;
    size_t parent;     /* the root's is 0 */
} tps_qnode;

typedef struct tps_quadtree {
    size_t n;          /* points */
    size_t n_nodes;
    tps_qnode *nodes;  /* breadth first: every parent before its children */
    size_t *perm;      /* point k in tree order is input point perm[k] */
    double *u, *v;     /* the points in tree order */
    int depth;         /* the deepest node's depth */
    size_t *level;     /* nodes of depth d: [level[d], level[d + 1]) */
    size_t n_leaves;
    size_t *leaves;    /* the leaves' node indices, in tree order */
} tps_quadtree;

/* Builds the tree of n > 0 points (u, v): the root is the points' bounding
 * square, a node is split into its quadrants while it holds more than
 * leaf_points points. TPS_OK, or TPS_ERR_OUT_OF_MEMORY in *err. */
tps_status tps_quadtree_build(tps_error *err, size_t n, const double *u, const double *v,
                              size_t leaf_points, tps_quadtree *tree);
void tps_quadtree_free(tps_quadtree *tree);

/* The points in the box [u0, u1] x [v0, v1]: their tree-order indices,
 * ascending, into out[0 .. cap); returns how many there are (more than cap:
 * only counted). */
size_t tps_quadtree_query(const tps_quadtree *tree, double u0, double v0, double u1, double v1,
                          size_t *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif

/* mixed_layout.c: the points as PRECISION=MIXED reads them (mixed.h): cut
 * by a k-d split into tiles of 256 and groups of 32 points, each with its
 * centre, radius, multipole coefficients (FP64) and near-field moments; the
 * points as FP32 offsets from their group's centre, the weights h ln 2 split
 * into two FP32 parts. Built once per model, with its device copy. */
#include "mixed.h"
#include "quadtree.h"
#include "tps.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct keyed {
    double key;
    size_t index;
} keyed;

static int by_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index; /* a total order: reproducible */
}

/* Orders idx[0, n) into leaves of `size` points (all full but the last):
 * split at a multiple of `size` along the longer side of the points' box. */
static void split(const double *u, const double *v, size_t *idx, keyed *scratch, size_t n,
                  size_t size)
{
    if (n <= size)
        return;
    double box[4];
    tps_points_box(u, v, idx, n, box);
    const double *axis = box[3] - box[2] > box[1] - box[0] ? v : u;
    for (size_t k = 0; k < n; ++k)
        scratch[k] = (keyed){axis[idx[k]], idx[k]};
    qsort(scratch, n, sizeof *scratch, by_key);
    for (size_t k = 0; k < n; ++k)
        idx[k] = scratch[k].index;
    const size_t leaves = (n + size - 1) / size;
    const size_t left = (leaves + 1) / 2 * size;
    split(u, v, idx, scratch, left, size);
    split(u, v, idx + left, scratch, n - left, size);
}

/* Centre (box middle), radius and count of the points perm[0, count). */
static void cluster_geometry(const double *u, const double *v, const size_t *perm, size_t count,
                             double *geo)
{
    double box[4];
    tps_points_box(u, v, perm, count, box);
    geo[0] = count ? 0.5 * (box[0] + box[1]) : 0.0;
    geo[1] = count ? 0.5 * (box[2] + box[3]) : 0.0;
    double rho = 0.0;
    for (size_t k = 0; k < count; ++k) {
        const double du = u[perm[k]] - geo[0], dv = v[perm[k]] - geo[1];
        rho = fmax(rho, sqrt(du * du + dv * dv));
    }
    geo[2] = rho * (1.0 + 0x1p-40); /* an upper bound whatever sqrt's rounding */
    geo[3] = (double)count;
}

/* The coefficients of band weights h over perm[0, count) about the centre
 * geo (mixed.h): sum |h|, sum |h| t, sum |h| |t|^2 (the bound's), M0, M1,
 * Q0, a_k, b_k (tps_mixed_m2p's). */
static void cluster_coefficients(const double *u, const double *v, const double *h,
                                 const size_t *perm, size_t count, const double *geo, double *c)
{
    memset(c, 0, sizeof(double) * TPS_MIXED_COEF);
    double mr[TPS_MIXED_PMAX + 2] = {0}, mi[TPS_MIXED_PMAX + 2] = {0};
    double pr[TPS_MIXED_PMAX + 1] = {0}, pi[TPS_MIXED_PMAX + 1] = {0};
    for (size_t k = 0; k < count; ++k) {
        const double w = h[perm[k]];
        if (w == 0.0)
            continue;
        const double tr = u[perm[k]] - geo[0], ti = v[perm[k]] - geo[1];
        const double t2 = tr * tr + ti * ti;
        c[0] += fabs(w);
        c[1] += fabs(w) * tr;
        c[2] += fabs(w) * ti;
        c[3] += fabs(w) * t2;
        c[4] += w;
        c[7] += w * t2;
        double xr = tr, xi = ti; /* t^k */
        mr[1] += w * xr;
        mi[1] += w * xi;
        for (int j = 1; j <= TPS_MIXED_PMAX; ++j) {
            pr[j] += w * t2 * xr;
            pi[j] += w * t2 * xi;
            const double yr = xr * tr - xi * ti, yi = xr * ti + xi * tr;
            xr = yr;
            xi = yi;
            mr[j + 1] += w * xr;
            mi[j + 1] += w * xi;
        }
    }
    c[5] = mr[1];
    c[6] = mi[1];
    for (int j = 1; j <= TPS_MIXED_PMAX; ++j) {
        const double f = 1.0 / ((double)j * (double)(j + 1));
        double *cj = c + 8 + 4 * (j - 1);
        cj[0] = mr[j + 1] * f;
        cj[1] = mi[j + 1] * f;
        cj[2] = pr[j] * f;
        cj[3] = pi[j] * f;
    }
}

void tps_mixed_layout_free(tps_mixed_layout *L)
{
    if (!L)
        return;
    free(L->perm);
    free(L->q);
    free(L->w);
    free(L->wlo);
    free(L->tile);
    free(L->group);
    free(L->tile_coef);
    free(L->group_coef);
    free(L->group_near);
    free(L->abs_h);
    memset(L, 0, sizeof *L);
}

tps_status tps_mixed_layout_build(tps_mixed_layout *L, size_t n, const double *u, const double *v,
                                  size_t n_bands, const double *const *h)
{
    memset(L, 0, sizeof *L);
    const size_t tiles = (n + TPS_MIXED_TILE - 1) / TPS_MIXED_TILE;
    const size_t np = tiles * TPS_MIXED_TILE, groups = tiles * TPS_MIXED_TILE_GROUPS;
    L->n = n;
    L->n_pad = np;
    L->n_tiles = tiles;
    L->n_groups = groups;
    L->n_bands = n_bands;
    size_t *idx = malloc(sizeof(size_t) * (n ? n : 1));
    keyed *scratch = malloc(sizeof(keyed) * (n ? n : 1));
    L->perm = malloc(sizeof(size_t) * (np ? np : 1));
    L->q = calloc(2 * np + 1, sizeof(float));
    L->w = calloc(n_bands * np + 1, sizeof(float));
    L->wlo = calloc(n_bands * np + 1, sizeof(float));
    L->tile = calloc(4 * tiles + 1, sizeof(double));
    L->group = calloc(4 * groups + 1, sizeof(double));
    L->tile_coef = calloc(tiles * n_bands * TPS_MIXED_COEF + 1, sizeof(double));
    L->group_coef = calloc(groups * n_bands * TPS_MIXED_COEF + 1, sizeof(double));
    L->group_near = calloc(groups * n_bands * 4 + 1, sizeof(double));
    L->abs_h = calloc(n_bands + 1, sizeof(double));
    if (!idx || !scratch || !L->perm || !L->q || !L->w || !L->wlo || !L->tile || !L->group ||
        !L->tile_coef || !L->group_coef || !L->group_near || !L->abs_h) {
        free(idx);
        free(scratch);
        tps_mixed_layout_free(L);
        return TPS_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < n; ++i)
        idx[i] = i;
    split(u, v, idx, scratch, n, TPS_MIXED_TILE);
    for (size_t k = 0; k < np; ++k)
        L->perm[k] = SIZE_MAX;
    const double ln2 = 0.69314718055994530942;
    for (size_t t = 0; t < tiles; ++t) {
        const size_t t0 = t * TPS_MIXED_TILE;
        const size_t nt = n - t0 < TPS_MIXED_TILE ? n - t0 : TPS_MIXED_TILE;
        split(u, v, idx + t0, scratch, nt, TPS_MIXED_GROUP);
        memcpy(L->perm + t0, idx + t0, sizeof(size_t) * nt);
        cluster_geometry(u, v, L->perm + t0, nt, L->tile + 4 * t);
        for (size_t b = 0; b < n_bands; ++b)
            cluster_coefficients(u, v, h[b], L->perm + t0, nt, L->tile + 4 * t,
                                 L->tile_coef + (t * n_bands + b) * TPS_MIXED_COEF);
        for (size_t gi = 0; gi < TPS_MIXED_TILE_GROUPS; ++gi) {
            const size_t g = t * TPS_MIXED_TILE_GROUPS + gi, g0 = t0 + gi * TPS_MIXED_GROUP;
            const size_t first = gi * TPS_MIXED_GROUP;
            const size_t ng = first >= nt ? 0
                              : nt - first < TPS_MIXED_GROUP ? nt - first
                                                             : TPS_MIXED_GROUP;
            double *geo = L->group + 4 * g;
            cluster_geometry(u, v, L->perm + g0, ng, geo);
            for (size_t k = 0; k < ng; ++k) {
                const size_t i = L->perm[g0 + k];
                L->q[2 * (g0 + k)] = (float)(u[i] - geo[0]);
                L->q[2 * (g0 + k) + 1] = (float)(v[i] - geo[1]);
            }
            for (size_t b = 0; b < n_bands; ++b) {
                cluster_coefficients(u, v, h[b], L->perm + g0, ng, geo,
                                     L->group_coef + (g * n_bands + b) * TPS_MIXED_COEF);
                double *mo = L->group_near + (g * n_bands + b) * 4;
                for (size_t k = 0; k < ng; ++k) {
                    const size_t i = L->perm[g0 + k];
                    const double wd = h[b][i] * ln2;
                    const float hi = (float)wd, lo = (float)(wd - (double)hi);
                    L->w[b * np + g0 + k] = hi;
                    L->wlo[b * np + g0 + k] = lo;
                    const double qu = L->q[2 * (g0 + k)], qv = L->q[2 * (g0 + k) + 1];
                    const double q2 = qu * qu + qv * qv;
                    /* products of FP32 values: exact in FP64 */
                    mo[0] += (double)hi;
                    mo[0] += (double)lo;
                    mo[1] += (double)hi * qu;
                    mo[1] += (double)lo * qu;
                    mo[2] += (double)hi * qv;
                    mo[2] += (double)lo * qv;
                    mo[3] += (double)hi * q2;
                    mo[3] += (double)lo * q2;
                }
            }
        }
    }
    for (size_t b = 0; b < n_bands; ++b)
        for (size_t t = 0; t < tiles; ++t)
            L->abs_h[b] += L->tile_coef[(t * n_bands + b) * TPS_MIXED_COEF];
    free(idx);
    free(scratch);
    return TPS_OK;
}

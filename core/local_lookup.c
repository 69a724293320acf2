/* local_lookup.c: which patches of a LOCAL model cover a point: the box,
 * the lookup grid over it, each chunk's candidate patches (local_build.c
 * has the method); the blend's denominator at the data points. */
#include "blend.h"
#include "eval.h"
#include "local.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tps_local_destroy(struct tps_local *lc)
{
    if (!lc)
        return;
    for (size_t p = 0; p < lc->n_patches; ++p) {
        patch *pt = &lc->patches[p];
        free(pt->index);
        free(pt->u);
        free(pt->v);
        if (pt->hw)
            for (size_t b = 0; b < lc->n_bands; ++b)
                free(pt->hw[b]);
        free(pt->hw);
        free(pt->affine);
    }
    free(lc->patches);
    free(lc->cell_start);
    free(lc->cell_patch);
    free(lc);
}

/* The points' bounding box in scaled units; build and load alike. */
void local_box(struct tps_local *lc, const tps_model *md)
{
    lc->bu0 = (md->info.min_x - md->cx) / md->scale;
    lc->bu1 = (md->info.max_x - md->cx) / md->scale;
    lc->bv0 = (md->info.min_y - md->cy) / md->scale;
    lc->bv1 = (md->info.max_y - md->cy) / md->scale;
}

/* The lookup grid over the box: about one cell per patch. */
void lookup_grid(struct tps_local *lc)
{
    size_t side = (size_t)ceil(sqrt((double)lc->n_patches)) + 1;
    lc->gx = lc->gy = side > MAX_GRID ? MAX_GRID : side;
    lc->gdu = (lc->bu1 - lc->bu0) / (double)lc->gx;
    lc->gdv = (lc->bv1 - lc->bv0) / (double)lc->gy;
    if (!(lc->gdu > 0.0))
        lc->gdu = 1.0;
    if (!(lc->gdv > 0.0))
        lc->gdv = 1.0;
}

/* The lookup cells a patch's support meets: columns i0..i1, rows j0..j1. */
void patch_cells(const struct tps_local *lc, const patch *pt, size_t *i0, size_t *i1,
                        size_t *j0, size_t *j1)
{
    *i0 = grid_cell(pt->cx - pt->hx, lc->bu0, lc->gdu, lc->gx);
    *i1 = grid_cell(pt->cx + pt->hx, lc->bu0, lc->gdu, lc->gx);
    *j0 = grid_cell(pt->cy - pt->hy, lc->bv0, lc->gdv, lc->gy);
    *j1 = grid_cell(pt->cy + pt->hy, lc->bv0, lc->gdv, lc->gy);
}

size_t grid_cell(double x, double x0, double d, size_t n)
{
    return tps_lookup_cell(x, x0, d, n);
}

tps_status build_lookup(tps_context *ctx, struct tps_local *lc)
{
    lookup_grid(lc);
    size_t entries = 0;
    for (size_t p = 0; p < lc->n_patches; ++p)
        entries += lc->patches[p].n;
    lc->mean_patch_points = lc->n_patches ? (double)entries / (double)lc->n_patches : 0.0;
    const size_t cells = lc->gx * lc->gy;
    lc->cell_start = calloc(cells + 1, sizeof(size_t));
    if (!lc->cell_start)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for the patch lookup");
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t p = 0; p < lc->n_patches; ++p) {
            const patch *pt = &lc->patches[p];
            size_t i0, i1, j0, j1;
            patch_cells(lc, pt, &i0, &i1, &j0, &j1);
            for (size_t j = j0; j <= j1; ++j)
                for (size_t i = i0; i <= i1; ++i) {
                    size_t c = j * lc->gx + i;
                    if (pass == 0)
                        lc->cell_start[c + 1]++;
                    else
                        lc->cell_patch[lc->cell_start[c]++] = p;
                }
        }
        if (pass == 0) {
            for (size_t c = 0; c < cells; ++c)
                lc->cell_start[c + 1] += lc->cell_start[c];
            lc->cell_patch = malloc(sizeof(size_t) * (lc->cell_start[cells] + 1));
            if (!lc->cell_patch)
                return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                                     "out of memory for the patch lookup");
        } else {
            /* The fill advanced each start to the next cell's: shift back. */
            for (size_t c = cells; c > 0; --c)
                lc->cell_start[c] = lc->cell_start[c - 1];
            lc->cell_start[0] = 0;
        }
    }
    return TPS_OK;
}

static int compare_size(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    return a < b ? -1 : (a > b);
}

size_t tps_local_chunk_bytes(const struct tps_local *lc)
{
    return sizeof(size_t) * (TPS_CHUNK + lc->n_patches) + lc->n_patches;
}

tps_local_chunk tps_local_chunk_at(const struct tps_local *lc, void *mem)
{
    tps_local_chunk ch;
    ch.idx = mem;
    ch.cand = ch.idx + TPS_CHUNK;
    ch.mark = (unsigned char *)(ch.cand + lc->n_patches);
    return ch;
}

size_t tps_local_candidates(const struct tps_local *lc, size_t count, const double *pu,
                            const double *pv, double *qu, double *qv, const tps_local_chunk *ch)
{
    size_t *cand = ch->cand;
    unsigned char *mark = ch->mark;
    double mu0 = INFINITY, mu1 = -INFINITY, mv0 = INFINITY, mv1 = -INFINITY;
    for (size_t k = 0; k < count; ++k) {
        qu[k] = tps_clamp(pu[k], lc->bu0, lc->bu1);
        qv[k] = tps_clamp(pv[k], lc->bv0, lc->bv1);
        mu0 = fmin(mu0, qu[k]);
        mu1 = fmax(mu1, qu[k]);
        mv0 = fmin(mv0, qv[k]);
        mv1 = fmax(mv1, qv[k]);
    }
    if (!count || !(mu0 <= mu1 && mv0 <= mv1))
        return 0;
    size_t n_cand = 0;
    size_t i0 = grid_cell(mu0, lc->bu0, lc->gdu, lc->gx);
    size_t i1 = grid_cell(mu1, lc->bu0, lc->gdu, lc->gx);
    size_t j0 = grid_cell(mv0, lc->bv0, lc->gdv, lc->gy);
    size_t j1 = grid_cell(mv1, lc->bv0, lc->gdv, lc->gy);
    for (size_t j = j0; j <= j1; ++j)
        for (size_t i = i0; i <= i1; ++i) {
            const size_t c = j * lc->gx + i;
            for (size_t e = lc->cell_start[c]; e < lc->cell_start[c + 1]; ++e) {
                size_t p = lc->cell_patch[e];
                if (!mark[p]) {
                    mark[p] = 1;
                    cand[n_cand++] = p;
                }
            }
        }
    for (size_t e = 0; e < n_cand; ++e)
        mark[cand[e]] = 0;
    qsort(cand, n_cand, sizeof *cand, compare_size);
    return n_cand;
}

double tps_local_pairs_per_pixel(const struct tps_local *lc)
{
    /* A pixel blends the patches over it: ~overlap^2 of them (each holding
     * its share of points); the average patch size is a fair proxy. */
    return 2.0 * lc->mean_patch_points;
}

/* The blend's denominator at the points (local_cv.c and local_cov.c use it). */
tps_status tps_local_point_blend(tps_context *ctx, const tps_model *md,
                                 const struct tps_local *lc, tps_patch_points_fn points,
                                 void *user, double *S, uint32_t *cover, int cover_all)
{
    size_t largest = 1;
    for (size_t p = 0; p < lc->n_patches; ++p)
        largest = lc->patches[p].n > largest ? lc->patches[p].n : largest;
    size_t *index = malloc(sizeof(size_t) * largest);
    if (!index)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    memset(S, 0, sizeof(double) * md->n);
    if (cover)
        memset(cover, 0, sizeof(uint32_t) * md->n);
    /* In patch order, as the evaluation sums them. */
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        points(user, p, index);
        for (size_t k = 0; k < pt->n; ++k) {
            const size_t i = index[k];
            const double w = tps_patch_bump(pt, md->u[i], md->v[i]);
            S[i] += w;
            if (cover && (w > 0.0 || cover_all))
                cover[i]++;
        }
    }
    free(index);
    return TPS_OK;
}

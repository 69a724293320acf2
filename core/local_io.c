/* local_io.c: the local section of a saved model (core/local_build.c builds the
 * patches, core/model_io.c saves and loads the rest of the model). */
#include "internal.h"
#include "local.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- saving and loading (model_io.c writes the rest of the model) ----
 *
 * The local section of a saved model (docs/design.md, "A solve done once
 * and kept"), in the writer's byte order, counts as uint64, reals as IEEE
 * binary64:
 *   the patch table, per patch: cx, cy, hx, hy, pcx, pcy, ps (7 reals), n
 *   then per patch: u[n], v[n], and per band its affine part (3 reals)
 *   and its half-weights[n]
 * The box is not stored: it is computed from the model's bounding box,
 * centre and scale by the very expression the build uses (local_box). Nor
 * is the patch lookup: it is built again from the patches by build_lookup,
 * deterministically, so a loaded model evaluates to the same bytes. */

/* Bounds no real model reaches, checked before any count is used in
 * arithmetic, so that no size below can overflow 64 bits. */
#define SAVED_MAX_PATCHES ((uint64_t)1 << 40)
#define SAVED_MAX_ENTRIES ((uint64_t)1 << 42) /* sum of the patches' n */
#define SAVED_MAX_VALUES ((uint64_t)1 << 43)  /* entries * (2 + bands) */
#define SAVED_MAX_BANDS ((uint64_t)1 << 20)
#define PATCH_RECORD_BYTES (8u * 8u)
/* The lookup a loaded model may build, in entries per cell and patch: the
 * engine's own stay far below (a patch covers a few lookup cells, its cell
 * enlarged by the overlap: measured 2.3 to 4.2 at overlap 1.5, up to 11.7
 * at overlap 4, over uniform, clustered and curve-like points), while a
 * crafted file could ask for patches x cells. Above the bound the model
 * is not saved (and a file is refused): a re-solve, never a huge
 * allocation. */
#define LOOKUP_ENTRIES_PER_ITEM 64
/* A loaded patch's half-side, in box sides, at most (2 for the engine's). */
#define MAX_SUPPORT_SIDES 4.0

/* The entries build_lookup will make on lc's grid, counted in O(patches);
 * 0 when beyond the bound. */
static size_t lookup_entries(const struct tps_local *lc)
{
    const size_t cells = lc->gx * lc->gy;
    const size_t bound = LOOKUP_ENTRIES_PER_ITEM * (cells + lc->n_patches);
    size_t total = 0;
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        size_t i0, i1, j0, j1;
        patch_cells(lc, pt, &i0, &i1, &j0, &j1);
        total += (i1 - i0 + 1) * (j1 - j0 + 1); /* at most MAX_GRID^2 each */
        if (total > bound)
            return 0;
    }
    return total;
}

size_t tps_local_saved_bytes(size_t n_patches, size_t n_entries, size_t n_bands)
{
    const uint64_t np = n_patches, ne = n_entries, nb = n_bands;
    if (np > SAVED_MAX_PATCHES || ne > SAVED_MAX_ENTRIES || nb > SAVED_MAX_BANDS ||
        ne * (2 + nb) > SAVED_MAX_VALUES || np * nb > SAVED_MAX_PATCHES)
        return 0;
    const uint64_t bytes = PATCH_RECORD_BYTES * np + 8 * ne * (2 + nb) + 24 * np * nb;
    return bytes > SIZE_MAX ? 0 : (size_t)bytes;
}

tps_status tps_local_save_counts(tps_context *ctx, const struct tps_local *lc,
                                 size_t *n_patches, size_t *n_entries)
{
    size_t entries = 0;
    for (size_t p = 0; p < lc->n_patches; ++p)
        entries += lc->patches[p].n;
    /* The bound a load applies, so that no file is written that no load
     * would take. */
    if (lookup_entries(lc) == 0)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             "the patch lookup of this local model (%zu patches) is beyond "
                             "what a saved model may hold", lc->n_patches);
    if (tps_local_saved_bytes(lc->n_patches, entries, lc->n_bands) == 0)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             "a local model of %zu patches and %zu patch points is too large "
                             "to save", lc->n_patches, entries);
    *n_patches = lc->n_patches;
    *n_entries = entries;
    return TPS_OK;
}

static void put_raw(unsigned char **at, const void *src, size_t n)
{
    memcpy(*at, src, n);
    *at += n;
}
static void get_raw(const unsigned char **at, void *dst, size_t n)
{
    memcpy(dst, *at, n);
    *at += n;
}

void tps_local_write(const struct tps_local *lc, unsigned char **cursor)
{
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        const double reals[7] = {pt->cx, pt->cy, pt->hx, pt->hy, pt->pcx, pt->pcy, pt->ps};
        const uint64_t n = pt->n;
        put_raw(cursor, reals, sizeof reals);
        put_raw(cursor, &n, 8);
    }
    for (size_t p = 0; p < lc->n_patches; ++p) {
        const patch *pt = &lc->patches[p];
        put_raw(cursor, pt->u, sizeof(double) * pt->n);
        put_raw(cursor, pt->v, sizeof(double) * pt->n);
        for (size_t b = 0; b < lc->n_bands; ++b) {
            put_raw(cursor, pt->affine[b], sizeof(double[3]));
            put_raw(cursor, pt->hw[b], sizeof(double) * pt->n);
        }
    }
}

static int finite_all(const double *p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

/* Inside the patch frame's [-1, 1] square: the patch's points lie in its
 * support, which the frame maps into it (with room for rounding). */
static int in_frame(const double *p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!(fabs(p[i]) <= 1.0 + 1e-9))
            return 0;
    return 1;
}

static tps_status bad_local(tps_context *ctx, size_t p, const char *what)
{
    return tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA, "not a valid saved model: patch %zu: %s",
                         p + 1, what);
}

tps_status tps_local_read(tps_context *ctx, tps_model *md, const unsigned char **cursor,
                          size_t n_patches, size_t n_entries)
{
    const size_t nb = md->n_bands;
    struct tps_local *lc = calloc(1, sizeof *lc);
    if (!lc)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    lc->n_bands = nb;
    local_box(lc, md);
    tps_status st = TPS_OK;
    if (!isfinite(lc->bu0) || !isfinite(lc->bu1) || !isfinite(lc->bv0) || !isfinite(lc->bv1) ||
        !(lc->bu1 > lc->bu0) || !(lc->bv1 > lc->bv0)) {
        st = tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                           "not a valid saved model: a local model of an empty box");
        goto fail;
    }
    if (n_patches < 1) {
        st = tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                           "not a valid saved model: a local model without patches");
        goto fail;
    }
    lc->patches = calloc(n_patches, sizeof(patch));
    if (!lc->patches) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for %zu patches",
                           n_patches);
        goto fail;
    }
    lc->n_patches = n_patches;
    /* The table first: every count is checked (and their sum against the
     * header's) before anything is allocated for the arrays. */
    size_t sum = 0;
    for (size_t p = 0; p < n_patches; ++p) {
        patch *pt = &lc->patches[p];
        double reals[7];
        uint64_t n;
        get_raw(cursor, reals, sizeof reals);
        get_raw(cursor, &n, 8);
        pt->cx = reals[0];
        pt->cy = reals[1];
        pt->hx = reals[2];
        pt->hy = reals[3];
        pt->pcx = reals[4];
        pt->pcy = reals[5];
        pt->ps = reals[6];
        /* A support starts at most overlap (<= 4) / 2 box sides wide and
         * grows by GROW only while it does not cover the box: never past
         * 2 box sides. */
        if (!finite_all(reals, 7) || !(pt->hx > 0.0) || !(pt->hy > 0.0) || !(pt->ps > 0.0) ||
            !(pt->cx >= lc->bu0 && pt->cx <= lc->bu1) ||
            !(pt->cy >= lc->bv0 && pt->cy <= lc->bv1) ||
            !(pt->hx <= MAX_SUPPORT_SIDES * (lc->bu1 - lc->bu0)) ||
            !(pt->hy <= MAX_SUPPORT_SIDES * (lc->bv1 - lc->bv0))) {
            st = bad_local(ctx, p, "a support or frame that is not finite, outside the box or "
                                   "larger than a local model's");
            goto fail;
        }
        /* Every patch solves each band over at least 3 of the model's points. */
        if (n < 3 || n > md->n || n > n_entries - sum) {
            st = bad_local(ctx, p, "a point count below 3 or beyond the model's");
            goto fail;
        }
        pt->n = (size_t)n;
        sum += pt->n;
    }
    if (sum != n_entries) {
        st = tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                           "not a valid saved model: the patches' point counts do not add up "
                           "to the header's");
        goto fail;
    }
    lookup_grid(lc);
    if (lookup_entries(lc) == 0) {
        st = tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                           "not a valid saved model: patch supports far larger than a local "
                           "model's");
        goto fail;
    }
    for (size_t p = 0; p < n_patches; ++p) {
        patch *pt = &lc->patches[p];
        const size_t n = pt->n;
        pt->u = malloc(sizeof(double) * n);
        pt->v = malloc(sizeof(double) * n);
        pt->hw = calloc(nb, sizeof(double *));
        pt->affine = malloc(sizeof(double[3]) * nb);
        int ok = pt->u && pt->v && pt->hw && pt->affine;
        for (size_t b = 0; ok && b < nb; ++b)
            ok = (pt->hw[b] = malloc(sizeof(double) * n)) != NULL;
        if (!ok) {
            st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                               "out of memory for patch %zu (%zu points)", p + 1, n);
            goto fail;
        }
        get_raw(cursor, pt->u, sizeof(double) * n);
        get_raw(cursor, pt->v, sizeof(double) * n);
        if (!finite_all(pt->u, n) || !finite_all(pt->v, n) || !in_frame(pt->u, n) ||
            !in_frame(pt->v, n)) {
            st = bad_local(ctx, p, "point coordinates outside the patch's square");
            goto fail;
        }
        for (size_t b = 0; b < nb; ++b) {
            get_raw(cursor, pt->affine[b], sizeof(double[3]));
            get_raw(cursor, pt->hw[b], sizeof(double) * n);
            if (!finite_all(pt->affine[b], 3) || !finite_all(pt->hw[b], n)) {
                st = bad_local(ctx, p, "non-finite weights");
                goto fail;
            }
        }
    }
    st = build_lookup(ctx, lc);
    if (st != TPS_OK)
        goto fail;
    md->local = lc;
    return TPS_OK;

fail:
    tps_local_destroy(lc);
    return st;
}


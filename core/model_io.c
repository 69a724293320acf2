/* model_io.c: a solved model to bytes and back, so that an O(N^3) solve is
 * done once and kept (the driver writes the bytes next to the .tps file).
 *
 * The bytes may come from anywhere: a file another machine wrote, a file
 * truncated by a full disk, a torn write, a random file that happens to
 * have the right name. Loading therefore trusts nothing: the header is
 * checked before its counts are used, every count is bounded and the size
 * it implies must be exactly the size given before anything is allocated,
 * a checksum covers every byte, and the values must make a model the
 * engine could have produced (finite, consistent counts). A load either
 * gives back the very arrays that were saved, or fails with
 * TPS_ERR_BAD_MODEL_DATA / TPS_ERR_MODEL_MISMATCH and a message.
 *
 * The layout (docs/design.md describes it too), in the writer's byte order,
 * integers as uint64 and reals as IEEE 754 binary64:
 *
 *   header, TPS_MODEL_HEADER_BYTES:
 *     0  "TPSMODEL"          8  format version (u32)
 *    12  byte-order mark     16 header bytes (u32)   20 sizeof(double) (u32)
 *    24  sizeof(count) (u32) 28 flags (u32)          32 probe double
 *    40  dependency hash (32 bytes)
 *    72  n (u64)  80 n_bands (u64)  88 extra bytes (u64)  96 total bytes (u64)
 *   104  mode (u64: 1 GLOBAL, 2 LOCAL)  112 patches (u64)  120 patch points (u64)
 *        (patches and patch points are 0 for a GLOBAL model)
 *   flags (version 4 on): bits 0..7 the covariates p, bit 8 point weights
 *   stored, bit 9 the fit had per-point weights; the other bits zero
 *   payload:
 *     cx, cy, scale
 *     tps_model_info: 8 counts (n_input, n_points, n_dropped, n_merged,
 *       n_bands, n_factorisations, solve_device, n_dropped_covariate), 5
 *       reals (solve_seconds, min_x, min_y, max_x, max_y)
 *     per band: 3 counts (n_points, n_missing, smoothing_gcv), 10 reals
 *       (smoothing, max_abs_residual, value_min, value_max, gcv_score,
 *       effective_df, loo_rmse, loo_mae: NaN for fixed lambda; sigma2,
 *       tau2: NaN for a local model), the affine part (3 reals), the p
 *       covariate coefficients (of the scaled columns)
 *     u[n], v[n]
 *     per covariate: mean, scale, its values at the n points
 *     GLOBAL: each band's half-weights[n]
 *     LOCAL: the local section, which local_io.c writes and reads (the patch
 *       table, then each patch's points, affine parts and half-weights;
 *       a local model's global half-weights are all zero and not stored)
 *     point weights stored: per band n weights (0: missing in the band)
 *     (version 5) per band: solver (u64: 1 DIRECT, 2 ITERATIVE), GMRES
 *       iterations (u64), relative_residual (real, NaN for DIRECT)
 *     (version 6) the partition's settings: patch points (u64) and overlap
 *       (real) a LOCAL model was built with (a LOCAL GCV may choose them);
 *       0 and 0 for a GLOBAL model
 *     the caller's extra bytes, zero-padded to a multiple of 8
 *   trailer: FNV-1a 64 of every byte before it (u64)
 *
 * Version 6 added the partition's settings, and a LOCAL model may have
 * covariates (their coefficients in the band records, the patches fitted
 * to z - C b): version 5 is read without both.
 * Version 4 had no solver fields (its bands read as DIRECT); version 3 no
 * covariates, variances or point weights either (flags zero, 7 info
 * counts, 8 band reals); version 2 was version 3 for GLOBAL models with
 * zeros at 104..127. All are still read (before 4: sigma2 and tau2 NaN, no
 * standard error until the model is solved again).
 *
 * The device copy of a model is not saved: it is a cache of these arrays,
 * made again on the first GPU evaluation after a load. */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAGIC "TPSMODEL"
/* Bump on any change of the layout or of what the arrays mean. */
#define MODEL_FORMAT_VERSION 6u
/* Earlier versions, still read: no partition settings and no LOCAL models
 * with covariates (5: a file claiming one is refused, since an engine of
 * version 5 would have evaluated it without its covariates' term), no
 * solver fields (4), no covariates,
 * variances or point weights either (3), and a global model with zeros at
 * 104..127 besides (2). */
#define MODEL_FORMAT_VERSION_NO_LOCAL_COVARIATES 5u
#define MODEL_FORMAT_VERSION_NO_SOLVER 4u
#define MODEL_FORMAT_VERSION_NO_COVARIATES 3u
#define MODEL_FORMAT_VERSION_GLOBAL_ONLY 2u
/* Version 4's flags: the covariates (bits 0..7), point weights stored. */
#define FLAG_COVARIATE_MASK 0xffu
#define FLAG_POINT_WEIGHTS 0x100u
#define FLAG_WEIGHTED 0x200u /* the fit had per-point weights */
/* Reads back as 0x04030201 on a machine of the other byte order. */
#define MODEL_BYTE_ORDER_MARK 0x01020304u
/* A double with every byte different: a file whose doubles are not IEEE
 * binary64 in this machine's byte order cannot reproduce it. */
#define MODEL_PROBE (-0x1.23456789abcdep-3)

/* Bounds that no real model reaches, checked before any count is used
 * in arithmetic: 2^40 points is 8 TiB per array. They keep every size
 * computed below far from overflowing 64 bits. */
#define MODEL_MAX_POINTS ((uint64_t)1 << 40)
#define MODEL_MAX_BANDS ((uint64_t)1 << 20)
#define MODEL_MAX_VALUES ((uint64_t)1 << 41) /* n * n_bands */
#define MODEL_MAX_EXTRA ((uint64_t)1 << 32)

/* Version 3's records, and what version 4 adds to them. */
#define INFO_COUNTS 7
#define INFO_REALS 5
#define BAND_COUNTS 3
#define BAND_REALS 11
#define FIXED_PAYLOAD_BYTES (8u * (3 + INFO_COUNTS + INFO_REALS))
#define BAND_BYTES (8u * (BAND_COUNTS + BAND_REALS))
#define V4_INFO_BYTES 8u  /* n_dropped_covariate */
#define V4_BAND_BYTES 16u /* sigma2, tau2; then 8 per covariate */
#define V5_BAND_BYTES 24u /* solver, iterations, relative_residual */
#define V6_BYTES 16u      /* the partition: patch points (u64), overlap (real) */
/* GMRES iterations no solve reaches. */
#define MODEL_MAX_ITERATIONS 1000000000u

/* Where a u64 / u32 field sits in the header. */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 8,
    OFF_BYTE_ORDER = 12,
    OFF_HEADER_BYTES = 16,
    OFF_DOUBLE_BYTES = 20,
    OFF_COUNT_BYTES = 24,
    OFF_FLAGS = 28,
    OFF_PROBE = 32,
    OFF_HASH = 40,
    OFF_N = 72,
    OFF_N_BANDS = 80,
    OFF_EXTRA_BYTES = 88,
    OFF_TOTAL_BYTES = 96,
    OFF_MODE = 104,
    OFF_N_PATCHES = 112,
    OFF_N_ENTRIES = 120,
    OFF_END = 128
};

_Static_assert(sizeof(double) == 8, "the format stores IEEE 754 binary64 reals");
_Static_assert(OFF_END <= TPS_MODEL_HEADER_BYTES, "header fields overflow the header");
_Static_assert(TPS_MODEL_HEADER_BYTES % 8 == 0, "the payload must stay 8-byte aligned");

void tps_free(void *data)
{
    free(data);
}

/* FNV-1a, 64 bits. Any single changed byte changes the result (each step
 * is a bijection of the state for a given byte), and it needs no library. */
static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* What a header says a model is, beyond n and its bands. */
typedef struct model_kind {
    int local;
    uint64_t n_patches, n_entries; /* LOCAL: patches, and the sum of their points */
    uint32_t version;
    uint64_t n_cov;                /* version 4: covariates */
    int point_weights;             /* version 4: per-band point weights stored */
    int weighted;                  /* version 4: the fit had per-point weights */
} model_kind;

/* Bytes of a saved model of these counts; 0 when they are out of bounds. */
static uint64_t saved_bytes(uint64_t n, uint64_t n_bands, uint64_t extra, const model_kind *kind)
{
    if (n > MODEL_MAX_POINTS || n_bands > MODEL_MAX_BANDS || extra > MODEL_MAX_EXTRA ||
        n * n_bands > MODEL_MAX_VALUES)
        return 0;
    uint64_t surface = 8 * n * n_bands; /* GLOBAL: the half-weights */
    if (kind->local) {
        if (kind->n_patches > SIZE_MAX || kind->n_entries > SIZE_MAX)
            return 0;
        surface = tps_local_saved_bytes((size_t)kind->n_patches, (size_t)kind->n_entries,
                                        (size_t)n_bands);
        if (surface == 0)
            return 0;
    }
    uint64_t v4 = 0;
    if (kind->version >= 4) {
        /* n_cov <= 255, n <= 2^40, n_bands <= 2^20, n n_bands <= 2^41: no overflow */
        v4 = V4_INFO_BYTES + n_bands * (V4_BAND_BYTES + 8 * kind->n_cov) +
             kind->n_cov * (16 + 8 * n) + (kind->point_weights ? 8 * n * n_bands : 0);
    }
    const uint64_t v5 = kind->version >= 5 ? V5_BAND_BYTES * n_bands : 0;
    const uint64_t v6 = kind->version >= 6 ? V6_BYTES : 0;
    return TPS_MODEL_HEADER_BYTES + FIXED_PAYLOAD_BYTES + BAND_BYTES * n_bands + 16 * n +
           surface + v4 + v5 + v6 + ((extra + 7) & ~(uint64_t)7) + 8;
}

/* ---- writing ---- */

typedef struct writer {
    unsigned char *p;
} writer;

static void put_bytes(writer *w, const void *src, size_t n)
{
    memcpy(w->p, src, n);
    w->p += n;
}
static void put_u64(writer *w, uint64_t v) { put_bytes(w, &v, 8); }
static void put_f64(writer *w, double v) { put_bytes(w, &v, 8); }

static void put_u32_at(unsigned char *base, size_t off, uint32_t v)
{
    memcpy(base + off, &v, 4);
}
static void put_u64_at(unsigned char *base, size_t off, uint64_t v)
{
    memcpy(base + off, &v, 8);
}

tps_status tps_model_save(tps_context *ctx, const tps_model *model, const unsigned char hash[32],
                          const void *extra, size_t extra_size, void **data, size_t *size)
{
    tps_clear_error(ctx);
    if (data)
        *data = NULL;
    if (size)
        *size = 0;
    if (!model || !hash || !data || !size || (extra_size && !extra))
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             "no model, hash or output, or extra bytes without a pointer");
    int any_pw = 0;
    for (size_t b = 0; model->point_w && b < model->n_bands; ++b)
        any_pw |= model->point_w[b] != NULL;
    model_kind kind = {model->local != NULL, 0, 0, MODEL_FORMAT_VERSION, model->n_cov, any_pw,
                       model->weighted > 0};
    if (model->local) {
        size_t n_patches = 0, n_entries = 0;
        tps_status st = tps_local_save_counts(ctx, model->local, &n_patches, &n_entries);
        if (st != TPS_OK)
            return st;
        kind.n_patches = n_patches;
        kind.n_entries = n_entries;
    }
    const uint64_t total = saved_bytes(model->n, model->n_bands, extra_size, &kind);
    if (total == 0 || total > SIZE_MAX)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                             "a model of %zu points, %zu bands and %zu extra bytes is too large "
                             "to save", model->n, model->n_bands, extra_size);
    unsigned char *buf = calloc(1, (size_t)total);
    if (!buf)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                             "out of memory for the %llu bytes of a saved model",
                             (unsigned long long)total);

    memcpy(buf + OFF_MAGIC, MODEL_MAGIC, 8);
    put_u32_at(buf, OFF_VERSION, MODEL_FORMAT_VERSION);
    put_u32_at(buf, OFF_BYTE_ORDER, MODEL_BYTE_ORDER_MARK);
    put_u32_at(buf, OFF_HEADER_BYTES, TPS_MODEL_HEADER_BYTES);
    put_u32_at(buf, OFF_DOUBLE_BYTES, (uint32_t)sizeof(double));
    put_u32_at(buf, OFF_COUNT_BYTES, (uint32_t)sizeof(uint64_t));
    put_u32_at(buf, OFF_FLAGS, (uint32_t)model->n_cov | (any_pw ? FLAG_POINT_WEIGHTS : 0u) |
                                   (model->weighted ? FLAG_WEIGHTED : 0u));
    const double probe = MODEL_PROBE;
    memcpy(buf + OFF_PROBE, &probe, 8);
    memcpy(buf + OFF_HASH, hash, 32);
    put_u64_at(buf, OFF_N, model->n);
    put_u64_at(buf, OFF_N_BANDS, model->n_bands);
    put_u64_at(buf, OFF_EXTRA_BYTES, extra_size);
    put_u64_at(buf, OFF_TOTAL_BYTES, total);
    put_u64_at(buf, OFF_MODE, kind.local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL);
    put_u64_at(buf, OFF_N_PATCHES, kind.n_patches);
    put_u64_at(buf, OFF_N_ENTRIES, kind.n_entries);

    writer w = {buf + TPS_MODEL_HEADER_BYTES};
    put_f64(&w, model->cx);
    put_f64(&w, model->cy);
    put_f64(&w, model->scale);
    const tps_model_info *in = &model->info;
    put_u64(&w, in->n_input);
    put_u64(&w, in->n_points);
    put_u64(&w, in->n_dropped);
    put_u64(&w, in->n_merged);
    put_u64(&w, in->n_bands);
    put_u64(&w, in->n_factorisations);
    put_u64(&w, (uint64_t)in->solve_device);
    put_u64(&w, in->n_dropped_covariate);
    put_f64(&w, in->solve_seconds);
    put_f64(&w, in->min_x);
    put_f64(&w, in->min_y);
    put_f64(&w, in->max_x);
    put_f64(&w, in->max_y);
    for (size_t b = 0; b < model->n_bands; ++b) {
        const tps_band_info *bi = &model->band_info[b];
        put_u64(&w, bi->n_points);
        put_u64(&w, bi->n_missing);
        put_f64(&w, bi->smoothing);
        put_f64(&w, bi->max_abs_residual);
        put_f64(&w, bi->value_min);
        put_f64(&w, bi->value_max);
        put_u64(&w, (uint64_t)bi->smoothing_gcv);
        put_f64(&w, bi->gcv_score);
        put_f64(&w, bi->effective_df);
        put_f64(&w, bi->loo_rmse);
        put_f64(&w, bi->loo_mae);
        put_f64(&w, bi->sigma2);
        put_f64(&w, bi->tau2);
        put_bytes(&w, model->affine[b], sizeof(double[3]));
        if (model->n_cov)
            put_bytes(&w, model->cov_coef + b * model->n_cov, sizeof(double) * model->n_cov);
    }
    put_bytes(&w, model->u, sizeof(double) * model->n);
    put_bytes(&w, model->v, sizeof(double) * model->n);
    for (size_t k = 0; k < model->n_cov; ++k) {
        put_f64(&w, model->cov_mean[k]);
        put_f64(&w, model->cov_scale[k]);
        put_bytes(&w, model->cov[k], sizeof(double) * model->n);
    }
    if (model->local)
        tps_local_write(model->local, &w.p);
    else
        for (size_t b = 0; b < model->n_bands; ++b)
            put_bytes(&w, model->half_weights[b], sizeof(double) * model->n);
    for (size_t b = 0; any_pw && b < model->n_bands; ++b) {
        if (model->point_w[b]) {
            put_bytes(&w, model->point_w[b], sizeof(double) * model->n);
        } else {
            for (size_t i = 0; i < model->n; ++i)
                put_f64(&w, 1.0);
        }
    }
    for (size_t b = 0; b < model->n_bands; ++b) {
        const tps_band_info *bi = &model->band_info[b];
        put_u64(&w, (uint64_t)bi->solver);
        put_u64(&w, (uint64_t)bi->iterations);
        put_f64(&w, bi->relative_residual);
    }
    put_u64(&w, (uint64_t)model->info.patch_points);
    put_f64(&w, model->info.overlap);
    if (extra_size)
        put_bytes(&w, extra, extra_size);
    w.p = buf + total - 8; /* past the zero padding */
    put_u64(&w, fnv1a64(buf, (size_t)total - 8));

    *data = buf;
    *size = (size_t)total;
    return TPS_OK;
}

/* ---- reading ---- */

typedef struct reader {
    const unsigned char *p;
} reader;

static void get_bytes(reader *r, void *dst, size_t n)
{
    memcpy(dst, r->p, n);
    r->p += n;
}
static uint64_t get_u64(reader *r)
{
    uint64_t v;
    get_bytes(r, &v, 8);
    return v;
}
static double get_f64(reader *r)
{
    double v;
    get_bytes(r, &v, 8);
    return v;
}
static uint32_t get_u32_at(const unsigned char *base, size_t off)
{
    uint32_t v;
    memcpy(&v, base + off, 4);
    return v;
}
static uint64_t get_u64_at(const unsigned char *base, size_t off)
{
    uint64_t v;
    memcpy(&v, base + off, 8);
    return v;
}

static tps_status bad(tps_context *ctx, const char *what)
{
    return tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA, "not a valid saved model: %s", what);
}

static tps_status check_header(tps_context *ctx, const unsigned char *h, size_t size,
                               const unsigned char expected_hash[32], uint64_t *total,
                               model_kind *kind)
{
    if (size < TPS_MODEL_HEADER_BYTES)
        return tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                             "not a valid saved model: %zu bytes, shorter than the %d-byte header",
                             size, TPS_MODEL_HEADER_BYTES);
    if (memcmp(h + OFF_MAGIC, MODEL_MAGIC, 8) != 0)
        return bad(ctx, "no TPSMODEL signature");
    const uint32_t order = get_u32_at(h, OFF_BYTE_ORDER);
    if (order != MODEL_BYTE_ORDER_MARK)
        return bad(ctx, order == 0x04030201u ? "written on a machine of the other byte order"
                                             : "unknown byte order mark");
    const uint32_t version = get_u32_at(h, OFF_VERSION);
    if (version != MODEL_FORMAT_VERSION && version != MODEL_FORMAT_VERSION_NO_LOCAL_COVARIATES &&
        version != MODEL_FORMAT_VERSION_NO_SOLVER &&
        version != MODEL_FORMAT_VERSION_NO_COVARIATES &&
        version != MODEL_FORMAT_VERSION_GLOBAL_ONLY)
        return tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                             "not a valid saved model: format version %u, this engine reads "
                             "%u to %u", version, MODEL_FORMAT_VERSION_GLOBAL_ONLY,
                             MODEL_FORMAT_VERSION);
    const uint32_t flags = get_u32_at(h, OFF_FLAGS);
    if (get_u32_at(h, OFF_HEADER_BYTES) != TPS_MODEL_HEADER_BYTES ||
        get_u32_at(h, OFF_DOUBLE_BYTES) != sizeof(double) ||
        get_u32_at(h, OFF_COUNT_BYTES) != sizeof(uint64_t))
        return bad(ctx, "header, real or count sizes differ from this engine's");
    if (version < 4 ? flags != 0
                    : (flags & ~(FLAG_COVARIATE_MASK | FLAG_POINT_WEIGHTS | FLAG_WEIGHTED)) != 0 ||
                          (flags & FLAG_COVARIATE_MASK) > TPS_MAX_COVARIATES)
        return bad(ctx, "unknown header flags");
    kind->version = version;
    kind->n_cov = flags & FLAG_COVARIATE_MASK;
    kind->point_weights = (flags & FLAG_POINT_WEIGHTS) != 0;
    kind->weighted = (flags & FLAG_WEIGHTED) != 0;
    double probe;
    memcpy(&probe, h + OFF_PROBE, 8);
    if (probe != MODEL_PROBE)
        return bad(ctx, "its reals are not IEEE 754 doubles in this machine's byte order");
    const uint64_t mode = get_u64_at(h, OFF_MODE);
    kind->local = mode == TPS_MODE_LOCAL;
    kind->n_patches = get_u64_at(h, OFF_N_PATCHES);
    kind->n_entries = get_u64_at(h, OFF_N_ENTRIES);
    if (version == MODEL_FORMAT_VERSION_GLOBAL_ONLY) {
        if (mode != 0 || kind->n_patches != 0 || kind->n_entries != 0)
            return bad(ctx, "reserved header bytes are not zero");
    } else if (mode != TPS_MODE_GLOBAL && mode != TPS_MODE_LOCAL) {
        return bad(ctx, "unknown model mode");
    } else if (!kind->local && (kind->n_patches != 0 || kind->n_entries != 0)) {
        return bad(ctx, "patch counts in a global model");
    } else if (kind->local && kind->n_cov && version < MODEL_FORMAT_VERSION) {
        return bad(ctx, "covariates in a local model of a version that had none");
    }
    const uint64_t n = get_u64_at(h, OFF_N), n_bands = get_u64_at(h, OFF_N_BANDS);
    const uint64_t extra = get_u64_at(h, OFF_EXTRA_BYTES);
    if (n < 3 || n_bands < 1)
        return bad(ctx, "fewer than 3 points or no band");
    /* Every patch holds at least 3 points, of the model's n, and every
     * point lies in the patch of its own quadtree cell: n <= n_entries.
     * That also bounds n x n_bands by the patches' half-weights, which the
     * file holds, so no count makes a load allocate more than the file's
     * size in arrays. */
    if (kind->local && (kind->n_patches < 1 || kind->n_entries / 3 < kind->n_patches ||
                        kind->n_entries / n > kind->n_patches || kind->n_entries < n))
        return bad(ctx, "patch counts inconsistent with the point count");
    const uint64_t expected = saved_bytes(n, n_bands, extra, kind);
    if (expected == 0)
        return bad(ctx, "point, band or extra byte counts beyond any model");
    if (get_u64_at(h, OFF_TOTAL_BYTES) != expected)
        return bad(ctx, "the total size in the header does not match its counts");
    if (expected > SIZE_MAX)
        return bad(ctx, "too large for this machine's address space");
    /* The hash last: a damaged header must read as damaged, not as stale. */
    if (expected_hash && memcmp(h + OFF_HASH, expected_hash, 32) != 0)
        return tps_set_error(ctx, TPS_ERR_MODEL_MISMATCH,
                             "the saved model was made from other inputs (dependency hash "
                             "differs)");
    *total = expected;
    return TPS_OK;
}

tps_status tps_model_saved_size(tps_context *ctx, const void *header, size_t header_size,
                                const unsigned char expected_hash[32], size_t *total_size)
{
    tps_clear_error(ctx);
    if (total_size)
        *total_size = 0;
    if (!header || !total_size)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no header or no output");
    uint64_t total = 0;
    model_kind kind;
    memset(&kind, 0, sizeof kind);
    tps_status st = check_header(ctx, header, header_size, expected_hash, &total, &kind);
    if (st == TPS_OK)
        *total_size = (size_t)total;
    return st;
}

tps_status tps_model_saved_counts(tps_context *ctx, const void *header, size_t header_size,
                                  size_t *n_points, size_t *n_bands)
{
    tps_clear_error(ctx);
    if (n_points)
        *n_points = 0;
    if (n_bands)
        *n_bands = 0;
    if (!header || !n_points || !n_bands)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no header or no output");
    uint64_t total = 0;
    model_kind kind;
    memset(&kind, 0, sizeof kind);
    tps_status st = check_header(ctx, header, header_size, NULL, &total, &kind);
    if (st == TPS_OK) {
        *n_points = (size_t)get_u64_at(header, OFF_N);
        *n_bands = (size_t)get_u64_at(header, OFF_N_BANDS);
    }
    return st;
}

static int all_finite(const double *p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

/* Within the [-1, 1] square scale_points maps the points into (with room
 * for the rounding of (x - cx) / scale). */
static int all_scaled(const double *p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!(fabs(p[i]) <= 1.0 + 1e-9))
            return 0;
    return 1;
}

/* What tps_model_create guarantees of a model, checked on one read back. */
static tps_status check_values(tps_context *ctx, const tps_model *md)
{
    const tps_model_info *in = &md->info;
    if (!isfinite(md->cx) || !isfinite(md->cy) || !isfinite(md->scale) || !(md->scale > 0.0))
        return bad(ctx, "non-finite centre or non-positive scale");
    /* A global model solves each group of bands once; a local one, each
     * group of bands in each patch. */
    const size_t units = in->mode == TPS_MODE_LOCAL ? in->n_patches : 1;
    if (in->n_points != md->n || in->n_bands != md->n_bands ||
        in->n_input - in->n_dropped - in->n_merged != md->n || in->n_dropped > in->n_input ||
        in->n_merged > in->n_input || in->n_factorisations < units ||
        in->n_factorisations / units > md->n_bands ||
        (in->n_factorisations / units == md->n_bands && in->n_factorisations % units))
        return bad(ctx, "inconsistent point, band or factorisation counts");
    if (in->solve_device != TPS_DEVICE_CPU && in->solve_device != TPS_DEVICE_GPU)
        return bad(ctx, "unknown solve device");
    /* The partition's settings: none for a GLOBAL model (nor before
     * version 6), else those tps.h allows. */
    const int no_partition = in->patch_points == 0 && in->overlap == 0.0;
    if (in->mode == TPS_MODE_LOCAL
            ? !no_partition && !(in->patch_points >= TPS_MIN_PATCH_POINTS &&
                                 in->overlap > 1.0 && in->overlap <= TPS_MAX_OVERLAP)
            : !no_partition)
        return bad(ctx, "invalid patch settings");
    if (!isfinite(in->solve_seconds) || in->solve_seconds < 0 || !isfinite(in->min_x) ||
        !isfinite(in->min_y) || !isfinite(in->max_x) || !isfinite(in->max_y) ||
        in->min_x > in->max_x || in->min_y > in->max_y)
        return bad(ctx, "invalid solve time or bounding box");
    for (size_t b = 0; b < md->n_bands; ++b) {
        const tps_band_info *bi = &md->band_info[b];
        if (bi->n_points < 3 || bi->n_points > md->n || bi->n_missing != md->n - bi->n_points)
            return bad(ctx, "inconsistent band point counts");
        if (!isfinite(bi->smoothing) || bi->smoothing < 0 || !isfinite(bi->max_abs_residual) ||
            bi->max_abs_residual < 0 || !isfinite(bi->value_min) || !isfinite(bi->value_max) ||
            bi->value_min > bi->value_max)
            return bad(ctx, "invalid band smoothing, residual or value range");
        if (isinf(bi->gcv_score) || isinf(bi->effective_df) || isinf(bi->loo_rmse) ||
            isinf(bi->loo_mae))
            return bad(ctx, "invalid band GCV statistics");
        /* DIRECT: no iterations, no residual; ITERATIVE (global models
         * only): a residual the solve accepts (iterative.c fails above 1e-6). */
        if (bi->solver == TPS_SOLVER_DIRECT
                ? bi->iterations != 0 || !isnan(bi->relative_residual)
                : bi->solver != TPS_SOLVER_ITERATIVE || in->mode == TPS_MODE_LOCAL ||
                      bi->iterations < 0 || !(bi->relative_residual >= 0.0) ||
                      !(bi->relative_residual <= 1e-6))
            return bad(ctx, "invalid band solver, iterations or residual");
        if (!all_finite(md->affine[b], 3) ||
            (md->half_weights[b] && !all_finite(md->half_weights[b], md->n)) ||
            (md->n_cov && !all_finite(md->cov_coef + b * md->n_cov, md->n_cov)))
            return bad(ctx, "non-finite weights");
        /* NaN: not estimated (a local model, an older file) */
        if (isinf(bi->sigma2) || isinf(bi->tau2) || bi->sigma2 < 0 || bi->tau2 < 0 ||
            isnan(bi->sigma2) != isnan(bi->tau2))
            return bad(ctx, "invalid band variances");
        if (!md->local && !md->point_w[b] && bi->n_missing && !isnan(bi->sigma2))
            return bad(ctx, "no point weights for a band with missing values");
        if (md->point_w && md->point_w[b]) {
            size_t used = 0;
            for (size_t i = 0; i < md->n; ++i) {
                const double pw = md->point_w[b][i];
                if (!(isfinite(pw) && pw >= 0))
                    return bad(ctx, "invalid point weights");
                used += pw > 0;
            }
            if (used != bi->n_points)
                return bad(ctx, "point weights inconsistent with the band's points");
        }
    }
    for (size_t k = 0; k < md->n_cov; ++k)
        if (!isfinite(md->cov_mean[k]) || !isfinite(md->cov_scale[k]) ||
            !(md->cov_scale[k] > 0) || !all_finite(md->cov[k], md->n))
            return bad(ctx, "invalid covariates");
    if (!all_finite(md->u, md->n) || !all_finite(md->v, md->n) || !all_scaled(md->u, md->n) ||
        !all_scaled(md->v, md->n))
        return bad(ctx, "point coordinates outside the model's square");
    return TPS_OK;
}

tps_model *tps_model_load(tps_context *ctx, const void *data, size_t size,
                          const unsigned char expected_hash[32], const void **extra,
                          size_t *extra_size)
{
    tps_clear_error(ctx);
    if (extra)
        *extra = NULL;
    if (extra_size)
        *extra_size = 0;
    if (!data) {
        tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "no data");
        return NULL;
    }
    const unsigned char *buf = data;
    uint64_t total = 0;
    model_kind kind;
    memset(&kind, 0, sizeof kind);
    if (check_header(ctx, buf, size, expected_hash, &total, &kind) != TPS_OK)
        return NULL;
    if (size != total) {
        tps_set_error(ctx, TPS_ERR_BAD_MODEL_DATA,
                      "not a valid saved model: %zu bytes where its header says %llu%s", size,
                      (unsigned long long)total, size < total ? " (truncated)" : "");
        return NULL;
    }
    uint64_t stored_sum;
    memcpy(&stored_sum, buf + size - 8, 8);
    if (fnv1a64(buf, size - 8) != stored_sum) {
        bad(ctx, "checksum mismatch (damaged or torn)");
        return NULL;
    }

    const size_t n = (size_t)get_u64_at(buf, OFF_N);
    const size_t n_bands = (size_t)get_u64_at(buf, OFF_N_BANDS);
    const size_t n_extra = (size_t)get_u64_at(buf, OFF_EXTRA_BYTES);
    tps_model *md = calloc(1, sizeof *md);
    if (!md) {
        tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    md->n = n;
    md->n_bands = n_bands;
    md->n_cov = (size_t)kind.n_cov;
    int ok = tps_model_alloc_parts(md);
    md->u = malloc(sizeof(double) * n);
    md->v = malloc(sizeof(double) * n);
    ok = ok && md->u && md->v;
    /* before version 4 nobody said: -1, unknown (no local standard error) */
    md->weighted = kind.version >= 4 ? kind.weighted : -1;
    for (size_t k = 0; ok && k < md->n_cov; ++k)
        ok = (md->cov[k] = malloc(sizeof(double) * n)) != NULL;
    for (size_t b = 0; ok && kind.point_weights && b < n_bands; ++b)
        ok = (md->point_w[b] = malloc(sizeof(double) * n)) != NULL;
    /* A local model's surface is its patches: its global half-weights,
     * which the file does not hold, stay NULL (n x n_bands zeros would be
     * the largest allocation of a load, and nothing reads them). */
    for (size_t b = 0; ok && !kind.local && b < n_bands; ++b)
        ok = (md->half_weights[b] = malloc(sizeof(double) * n)) != NULL;
    if (!ok) {
        tps_set_error(ctx, md->se_lock_ready ? TPS_ERR_OUT_OF_MEMORY : TPS_ERR_INTERNAL,
                      md->se_lock_ready ? "out of memory for a model of %zu points"
                                        : "cannot create a mutex (model of %zu points)", n);
        return tps_model_destroy(md);
    }

    reader r = {buf + TPS_MODEL_HEADER_BYTES};
    md->cx = get_f64(&r);
    md->cy = get_f64(&r);
    md->scale = get_f64(&r);
    tps_model_info *in = &md->info;
    in->n_input = (size_t)get_u64(&r);
    in->n_points = (size_t)get_u64(&r);
    in->n_dropped = (size_t)get_u64(&r);
    in->n_merged = (size_t)get_u64(&r);
    in->n_bands = (size_t)get_u64(&r);
    in->n_factorisations = (size_t)get_u64(&r);
    const uint64_t device = get_u64(&r);
    /* Out-of-range values become an invalid enum value that check_values rejects. */
    in->solve_device = device == TPS_DEVICE_CPU   ? TPS_DEVICE_CPU
                       : device == TPS_DEVICE_GPU ? TPS_DEVICE_GPU
                                                  : TPS_DEVICE_AUTO;
    const int v4 = kind.version >= 4;
    in->n_dropped_covariate = v4 ? (size_t)get_u64(&r) : 0;
    in->n_covariates = md->n_cov;
    in->solve_seconds = get_f64(&r);
    in->min_x = get_f64(&r);
    in->min_y = get_f64(&r);
    in->max_x = get_f64(&r);
    in->max_y = get_f64(&r);
    in->mode = kind.local ? TPS_MODE_LOCAL : TPS_MODE_GLOBAL;
    in->n_patches = (size_t)kind.n_patches;
    for (size_t b = 0; b < n_bands; ++b) {
        tps_band_info *bi = &md->band_info[b];
        bi->n_points = (size_t)get_u64(&r);
        bi->n_missing = (size_t)get_u64(&r);
        bi->smoothing = get_f64(&r);
        bi->max_abs_residual = get_f64(&r);
        bi->value_min = get_f64(&r);
        bi->value_max = get_f64(&r);
        bi->smoothing_gcv = get_u64(&r) ? 1 : 0;
        bi->gcv_score = get_f64(&r);
        bi->effective_df = get_f64(&r);
        bi->loo_rmse = get_f64(&r);
        bi->loo_mae = get_f64(&r);
        bi->sigma2 = v4 ? get_f64(&r) : NAN;
        bi->tau2 = v4 ? get_f64(&r) : NAN;
        get_bytes(&r, md->affine[b], sizeof(double[3]));
        if (md->n_cov)
            get_bytes(&r, md->cov_coef + b * md->n_cov, sizeof(double) * md->n_cov);
    }
    get_bytes(&r, md->u, sizeof(double) * n);
    get_bytes(&r, md->v, sizeof(double) * n);
    for (size_t k = 0; k < md->n_cov; ++k) {
        md->cov_mean[k] = get_f64(&r);
        md->cov_scale[k] = get_f64(&r);
        get_bytes(&r, md->cov[k], sizeof(double) * n);
    }
    const unsigned char *local_at = r.p;
    if (kind.local)
        r.p += tps_local_saved_bytes((size_t)kind.n_patches, (size_t)kind.n_entries, n_bands);
    else
        for (size_t b = 0; b < n_bands; ++b)
            get_bytes(&r, md->half_weights[b], sizeof(double) * n);
    for (size_t b = 0; kind.point_weights && b < n_bands; ++b) {
        get_bytes(&r, md->point_w[b], sizeof(double) * n);
        /* all ones: the band had none (the file stores every band's) */
        size_t i = 0;
        while (i < n && md->point_w[b][i] == 1.0)
            ++i;
        if (i == n) {
            free(md->point_w[b]);
            md->point_w[b] = NULL;
        }
    }
    for (size_t b = 0; b < n_bands; ++b) {
        tps_band_info *bi = &md->band_info[b];
        if (kind.version >= 5) {
            const uint64_t solver = get_u64(&r), iterations = get_u64(&r);
            /* Out-of-range values become values that check_values rejects. */
            bi->solver = solver == TPS_SOLVER_DIRECT      ? TPS_SOLVER_DIRECT
                         : solver == TPS_SOLVER_ITERATIVE ? TPS_SOLVER_ITERATIVE
                                                          : TPS_SOLVER_AUTO;
            bi->iterations = iterations <= MODEL_MAX_ITERATIONS ? (int)iterations : -1;
            bi->relative_residual = get_f64(&r);
        } else {
            bi->solver = TPS_SOLVER_DIRECT;
            bi->iterations = 0;
            bi->relative_residual = NAN;
        }
    }
    if (kind.version >= 6) {
        const uint64_t patch_points = get_u64(&r);
        /* Out of range: a value check_values rejects. */
        md->info.patch_points = patch_points <= MODEL_MAX_POINTS ? (size_t)patch_points : 1;
        md->info.overlap = get_f64(&r);
    }
    const unsigned char *extra_at = r.p;
    for (size_t i = n_extra; i < pad8(n_extra); ++i) {
        if (extra_at[i] != 0) {
            bad(ctx, "non-zero padding");
            return tps_model_destroy(md);
        }
    }
    if (check_values(ctx, md) != TPS_OK)
        return tps_model_destroy(md);
    /* The patches last: their box comes from the checked bounding box. */
    if (kind.local && tps_local_read(ctx, md, &local_at, (size_t)kind.n_patches,
                                     (size_t)kind.n_entries) != TPS_OK)
        return tps_model_destroy(md);
    if (extra)
        *extra = n_extra ? extra_at : NULL;
    if (extra_size)
        *extra_size = n_extra;
    return md;
}

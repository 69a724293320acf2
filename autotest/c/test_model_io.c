/* test_model_io.c: saved models (core/model_io.c).
 *
 *  - a round trip evaluates bit-identically (grid and scattered points,
 *    every band) and gives back the same info, band info and extra bytes;
 *    saving the loaded model gives the same bytes again;
 *  - every truncation of a saved model, every single damaged byte, random
 *    garbage and crafted headers (other version, other byte order, huge
 *    counts, a NaN behind a valid checksum) fail cleanly with
 *    TPS_ERR_BAD_MODEL_DATA; another hash fails with TPS_ERR_MODEL_MISMATCH;
 *  - version-2, 3, 4 and 5 files (the layouts before local models, before
 *    covariates, variances and point weights, before the bands' solver
 *    fields, and before the partition settings) still load, evaluate as the model they were saved from and
 *    read as solved by DIRECT; versions 2 and 3 have no standard error;
 *    a layout under another version number is refused;
 *  - the solver fields (version 5): an ITERATIVE model's round trip keeps
 *    them; crafted values (unknown solver, DIRECT with iterations or a
 *    residual, ITERATIVE without one or above 1e-6, 2^40 iterations) are
 *    refused;
 *  - LOCAL models: 20,000 points, patches of 200, two bands (one with
 *    missing values and smoothing) round-trip bit-identically on a grid
 *    and at scattered points, with the same info (mode, patches,
 *    factorisations), and the loaded surface still interpolates its data
 *    (lambda = 0: exact at the points); a smaller one is truncated at every
 *    length through its header and patch table and at a stride after,
 *    damaged byte by byte there and at a stride, and crafted with a valid
 *    checksum (counts, supports, frames, coordinates, weights, mode,
 *    factorisations, supports far too large): all refused cleanly, and
 *    random resealed damage never crashes;
 *  - `test_model_io gpu` (ctest model_io_gpu): a loaded model (no device
 *    copy yet) is uploaded once on its first GPU evaluation and gives the
 *    saved model's GPU bytes, in FP64 and MIXED; exit 77 (skipped) only
 *    where the probe (gpu_probe.h) finds no GPU, a failure where it finds one.
 * Run under valgrind too (`test_model_io small` skips the large local round
 * trip): no failure path may leak or read out of bounds. */
#include "tps.h"
#include "tps_testing.h" /* tps_model_device_uploads */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gpu_probe.h"

/* Header offsets, as docs/design.md documents them. */
#define OFF_VERSION 8
#define OFF_BYTE_ORDER 12
#define OFF_HASH 40
#define OFF_N 72
#define OFF_N_BANDS 80
#define OFF_TOTAL 96
#define OFF_MODE 104
#define OFF_N_PATCHES 112
#define OFF_N_ENTRIES 120
#define OFF_N_FACTORISATIONS (128 + 24 + 5 * 8)
/* Version 5's solver fields: per band solver, iterations, relative
 * residual, after everything but the extra bytes and the trailer. */
#define SOLVER_RECORD 24
/* Version 6's partition settings (patch points, overlap: 0, 0 for a GLOBAL
 * model), after the solver fields. */
#define PARTITION_RECORD 16
/* Where the local section of a model of n points and nb bands starts. */
#define LOCAL_AT(n, nb) (128 + 8 * 16 + 128 * (nb) + 16 * (n))
#define PATCH_RECORD 64

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t next_u64(void) /* xorshift64 */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double uniform(void)
{
    return (double)(next_u64() >> 11) / 9007199254740992.0;
}

/* The trailer, recomputed independently of the engine, for crafted data. */
static void reseal(unsigned char *buf, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size - 8; ++i) {
        h ^= buf[i];
        h *= 0x100000001b3ULL;
    }
    memcpy(buf + size - 8, &h, 8);
}

/* n random points over a 5 km square, three bands: a smooth field, one
 * with missing values and smoothing, one with a coincident pair merged. */
static tps_model *make_model(tps_context *ctx, size_t n)
{
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *a = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
    double *c = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; ++i) {
        x[i] = 400000 + 5000 * uniform();
        y[i] = 6000000 + 5000 * uniform();
        double u = (x[i] - 400000) / 5000, v = (y[i] - 6000000) / 5000;
        a[i] = sin(6 * u) * cos(4 * v);
        b[i] = i % 7 == 3 ? NAN : 50 * exp(-8 * ((u - .5) * (u - .5) + v * v));
        c[i] = u * v + 0.01 * uniform();
    }
    x[n - 1] = x[0]; /* a duplicate location: merged */
    y[n - 1] = y[0];
    const double *values[3] = {a, b, c};
    const double smoothing[3] = {0.0, 1000.0, 0.0};
    tps_fit_options opt;
    tps_fit_options_init(&opt);
    opt.device = TPS_DEVICE_CPU;
    tps_model *m = tps_model_create(ctx, n, x, y, 3, values, smoothing, &opt);
    free(x);
    free(y);
    free(a);
    free(b);
    free(c);
    return m;
}

static void eval_grid_on(tps_context *ctx, const tps_model *m, double *out, size_t cols,
                         size_t rows, tps_device device, tps_precision precision)
{
    const double gt[6] = {399900, 5200.0 / (double)cols, 0, 6005100, 0, -5200.0 / (double)rows};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, cols, rows);
    tps_output o[3];
    for (size_t b = 0; b < 3; ++b)
        o[b] = (tps_output){b, out + b * cols * rows, TPS_FLOAT64, 8, (ptrdiff_t)(8 * cols)};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = device;
    eo.precision = precision;
    eo.num_threads = 2;
    CHECK(tps_evaluate_grid(ctx, m, &g, 3, o, &eo) == TPS_OK, "%s", tps_context_errmsg(ctx));
}

static void eval_grid(tps_context *ctx, const tps_model *m, double *out, size_t cols,
                      size_t rows)
{
    eval_grid_on(ctx, m, out, cols, rows, TPS_DEVICE_CPU, TPS_PRECISION_DOUBLE);
}

/* The device copy is not saved: a loaded model makes its own, once. */
static void test_gpu(tps_context *ctx, const tps_model *m, const tps_model *l)
{
    const size_t cols = 300, rows = 200, cells = 3 * cols * rows;
    double *g1 = malloc(sizeof(double) * cells), *g2 = malloc(sizeof(double) * cells);
    const tps_precision precisions[2] = {TPS_PRECISION_DOUBLE, TPS_PRECISION_MIXED};
    for (int p = 0; p < 2; ++p) {
        for (size_t k = 0; k < cells; ++k)
            g1[k] = g2[k] = NAN; /* poison: two failed evaluations cannot compare equal */
        eval_grid_on(ctx, m, g1, cols, rows, TPS_DEVICE_GPU, precisions[p]);
        eval_grid_on(ctx, l, g2, cols, rows, TPS_DEVICE_GPU, precisions[p]);
        int same = 1;
        for (size_t k = 0; k < cells; ++k)
            same &= g1[k] == g2[k]; /* false for NaN */
        CHECK(same, "GPU %s values of the loaded model differ", p ? "MIXED" : "DOUBLE");
    }
    CHECK(tps_model_device_uploads(l) == 1, "uploads of the loaded model: %zu",
          tps_model_device_uploads(l));
    printf("GPU (%s): loaded model uploaded once, DOUBLE and MIXED bytes equal the saved "
           "model's\n", tps_gpu_description());
    free(g1);
    free(g2);
}

static const char round_trip_extra[] = "SRS=EPSG:28992";
/* m saved with these extra bytes (*data, *size: for tps_free), the saved
 * size read from its header, loaded back with them: the loaded model (NULL:
 * failed, counted). what: for messages. */
static tps_model *save_and_load(tps_context *ctx, const tps_model *m, const unsigned char hash[32],
                                const char *what, void **data, size_t *size)
{
    *data = NULL, *size = 0;
    CHECK(tps_model_save(ctx, m, hash, round_trip_extra, sizeof round_trip_extra, data, size) ==
              TPS_OK,
          "%s save: %s", what, tps_context_errmsg(ctx));
    size_t total = 0;
    CHECK(tps_model_saved_size(ctx, *data, TPS_MODEL_HEADER_BYTES, hash, &total) == TPS_OK &&
              total == *size,
          "%s saved_size %zu vs %zu: %s", what, total, *size, tps_context_errmsg(ctx));
    const void *got_extra = NULL;
    size_t got_extra_size = 0;
    tps_model *l = tps_model_load(ctx, *data, *size, hash, &got_extra, &got_extra_size);
    CHECK(l != NULL, "%s load: %s", what, tps_context_errmsg(ctx));
    if (l)
        CHECK(got_extra_size == sizeof round_trip_extra &&
                  memcmp(got_extra, round_trip_extra, sizeof round_trip_extra) == 0,
              "%s extra bytes (%zu)", what, got_extra_size);
    return l;
}

/* The loaded model l saved again gives the bytes it was loaded from. */
static void check_resave(tps_context *ctx, const tps_model *l, const unsigned char hash[32],
                         const char *what, const void *data, size_t size)
{
    void *again = NULL;
    size_t again_size = 0;
    CHECK(tps_model_save(ctx, l, hash, round_trip_extra, sizeof round_trip_extra, &again,
                         &again_size) == TPS_OK &&
              again_size == size && memcmp(again, data, size) == 0,
          "%s: saving a loaded model gives other bytes", what);
    tps_free(again);
}

static void test_round_trip(tps_context *ctx, const tps_model *m, const unsigned char hash[32],
                            int with_gpu)
{
    void *data;
    size_t size;
    tps_model *l = save_and_load(ctx, m, hash, "global", &data, &size);
    if (!l) {
        tps_free(data);
        return;
    }
    CHECK(tps_model_device_uploads(l) == 0, "a loaded model has no device copy yet");

    tps_model_info a, b;
    CHECK(tps_model_get_info(ctx, m, &a) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(tps_model_get_info(ctx, l, &b) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(a.n_input == b.n_input && a.n_points == b.n_points && a.n_dropped == b.n_dropped &&
              a.n_merged == b.n_merged && a.n_bands == b.n_bands &&
              a.n_factorisations == b.n_factorisations && a.solve_seconds == b.solve_seconds &&
              a.solve_device == b.solve_device && a.min_x == b.min_x && a.min_y == b.min_y &&
              a.max_x == b.max_x && a.max_y == b.max_y,
          "model info differs");
    CHECK(a.n_merged == 1, "the fixture merges one point (%zu)", a.n_merged);
    for (size_t k = 0; k < 3; ++k) {
        tps_band_info p, q;
        CHECK(tps_model_get_band_info(ctx, m, k, &p) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(tps_model_get_band_info(ctx, l, k, &q) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(&p, &q, sizeof p) == 0, "band %zu info differs", k + 1);
    }

    const size_t cols = 67, rows = 41, cells = 3 * cols * rows;
    double *g1 = malloc(sizeof(double) * cells), *g2 = malloc(sizeof(double) * cells);
    eval_grid(ctx, m, g1, cols, rows);
    eval_grid(ctx, l, g2, cols, rows);
    CHECK(memcmp(g1, g2, sizeof(double) * cells) == 0, "grid values differ after a load");
    double px[50], py[50], o1[50], o2[50];
    for (int i = 0; i < 50; ++i) {
        px[i] = 399000 + 7000 * uniform();
        py[i] = 5999000 + 7000 * uniform();
    }
    for (size_t k = 0; k < 3; ++k) {
        CHECK(tps_evaluate_points(ctx, m, k, 50, px, py, o1, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(tps_evaluate_points(ctx, l, k, 50, px, py, o2, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(o1, o2, sizeof o1) == 0, "band %zu: point values differ", k + 1);
    }

    check_resave(ctx, l, hash, "global", data, size);
    printf("round trip: %zu bytes, %zu points, 3 bands, %zu cells bit-identical\n", size,
           b.n_points, cells);
    if (with_gpu)
        test_gpu(ctx, m, l);
    free(g1);
    free(g2);
    tps_model_destroy(l);
    tps_free(data);
}

static int fails_as(tps_context *ctx, const void *data, size_t size, const unsigned char *hash,
                    tps_status expected)
{
    const void *extra = (const void *)1;
    size_t extra_size = 1;
    tps_model *l = tps_model_load(ctx, data, size, hash, &extra, &extra_size);
    const int ok = l == NULL && tps_context_errno(ctx) == expected && extra == NULL &&
                   extra_size == 0 && tps_context_errmsg(ctx)[0] != '\0';
    tps_model_destroy(l);
    return ok;
}

static void test_damage(tps_context *ctx, const tps_model *m, const unsigned char hash[32])
{
    void *data = NULL;
    size_t size = 0;
    CHECK(tps_model_save(ctx, m, hash, "ab", 2, &data, &size) == TPS_OK, "save");
    if (!data)
        return;
    unsigned char *buf = malloc(size);

    /* Every truncation, down to nothing. */
    size_t bad_trunc = 0;
    for (size_t len = 0; len < size; ++len) {
        memcpy(buf, data, len);
        if (!fails_as(ctx, buf, len, hash, TPS_ERR_BAD_MODEL_DATA))
            ++bad_trunc;
    }
    CHECK(bad_trunc == 0, "%zu truncations did not fail cleanly", bad_trunc);
    CHECK(fails_as(ctx, data, size - 1, hash, TPS_ERR_BAD_MODEL_DATA) &&
              strstr(tps_context_errmsg(ctx), "truncated"),
          "truncation message: %s", tps_context_errmsg(ctx));

    /* One damaged byte, at every position: the checksum (or, for the hash
     * bytes, the hash) must catch it. */
    size_t bad_flip = 0;
    for (size_t pos = 0; pos < size; ++pos) {
        memcpy(buf, data, size);
        buf[pos] ^= (unsigned char)(1 + next_u64() % 255);
        const int in_hash = pos >= OFF_HASH && pos < OFF_HASH + 32;
        if (!fails_as(ctx, buf, size, hash,
                      in_hash ? TPS_ERR_MODEL_MISMATCH : TPS_ERR_BAD_MODEL_DATA))
            ++bad_flip;
        /* Without an expected hash, the checksum catches the hash bytes too. */
        if (!fails_as(ctx, buf, size, NULL, TPS_ERR_BAD_MODEL_DATA))
            ++bad_flip;
    }
    CHECK(bad_flip == 0, "%zu damaged bytes were not caught", bad_flip);

    /* Several random bytes at random places, 2000 times. */
    size_t bad_random = 0;
    for (int t = 0; t < 2000; ++t) {
        memcpy(buf, data, size);
        const int k = 2 + (int)(next_u64() % 8);
        for (int j = 0; j < k; ++j)
            buf[next_u64() % size] = (unsigned char)next_u64();
        if (memcmp(buf, data, size) == 0)
            continue;
        tps_model *l = tps_model_load(ctx, buf, size, hash, NULL, NULL);
        if (l != NULL)
            ++bad_random;
        tps_model_destroy(l);
    }
    CHECK(bad_random == 0, "%zu random damages loaded", bad_random);

    /* Garbage of every small size, and garbage behind a valid header. */
    size_t bad_garbage = 0;
    for (size_t len = 0; len < 2 * size; len += 1 + len / 8) {
        unsigned char *g = malloc(len ? len : 1);
        for (size_t i = 0; i < len; ++i)
            g[i] = (unsigned char)next_u64();
        if (!fails_as(ctx, g, len, hash, TPS_ERR_BAD_MODEL_DATA))
            ++bad_garbage;
        if (len > TPS_MODEL_HEADER_BYTES) {
            memcpy(g, data, TPS_MODEL_HEADER_BYTES);
            if (tps_model_load(ctx, g, len, hash, NULL, NULL) != NULL)
                ++bad_garbage;
        }
        free(g);
    }
    CHECK(bad_garbage == 0, "%zu garbage buffers loaded", bad_garbage);

    /* Another hash: a stale model, said so. */
    unsigned char other[32];
    memcpy(other, hash, 32);
    other[31] ^= 0x80;
    CHECK(fails_as(ctx, data, size, other, TPS_ERR_MODEL_MISMATCH), "other hash: %s",
          tps_context_errmsg(ctx));
    size_t total = 7;
    CHECK(tps_model_saved_size(ctx, data, size, other, &total) == TPS_ERR_MODEL_MISMATCH &&
              total == 0,
          "saved_size with another hash");
    tps_model *any = tps_model_load(ctx, data, size, NULL, NULL, NULL);
    CHECK(any != NULL, "no expected hash: any hash loads (%s)", tps_context_errmsg(ctx));
    tps_model_destroy(any);

    /* Crafted with a valid checksum: another format version. */
    memcpy(buf, data, size);
    const uint32_t version = 1; /* the layout before GCV statistics */
    memcpy(buf + OFF_VERSION, &version, 4);
    reseal(buf, size);
    CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA) &&
              strstr(tps_context_errmsg(ctx), "version"),
          "version 1: %s", tps_context_errmsg(ctx));

    /* The other byte order. */
    memcpy(buf, data, size);
    const uint32_t swapped = 0x04030201u;
    memcpy(buf + OFF_BYTE_ORDER, &swapped, 4);
    reseal(buf, size);
    CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA) &&
              strstr(tps_context_errmsg(ctx), "byte order"),
          "other byte order: %s", tps_context_errmsg(ctx));

    /* Counts that would allocate terabytes. Within the format's bounds and
     * with the total they imply, the header is consistent (saved_size says
     * how much to read) but the data is short; beyond the bounds, the
     * header itself is refused. Either way nothing is allocated (valgrind
     * would see it). */
    const uint64_t counts[][2] = {{(uint64_t)1 << 39, 3}, {(uint64_t)1 << 62, 1},
                                  {100, (uint64_t)1 << 40}, {UINT64_MAX, UINT64_MAX}};
    for (size_t t = 0; t < sizeof counts / sizeof counts[0]; ++t) {
        const uint64_t n = counts[t][0], nb = counts[t][1];
        const int in_bounds = t == 0;
        /* header, cx cy scale + info, bands, u v, half-weights, point
         * weights (a band has missing values), solver fields, partition,
         * padded "ab", trailer */
        const uint64_t total = 128 + 8 * 16 + 128 * nb + 16 * n + 16 * n * nb +
                               SOLVER_RECORD * nb + PARTITION_RECORD + 8 + 8;
        memcpy(buf, data, size);
        memcpy(buf + OFF_N, &n, 8);
        memcpy(buf + OFF_N_BANDS, &nb, 8);
        memcpy(buf + OFF_TOTAL, &total, 8);
        reseal(buf, size);
        CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "huge counts %zu: %s", t,
              tps_context_errmsg(ctx));
        size_t sz = 1;
        const tps_status st = tps_model_saved_size(ctx, buf, TPS_MODEL_HEADER_BYTES, hash, &sz);
        CHECK(in_bounds ? st == TPS_OK && sz == total : st == TPS_ERR_BAD_MODEL_DATA && sz == 0,
              "saved_size of huge counts %zu: %d, %zu", t, (int)st, sz);
    }

    /* A NaN in the last point weight, behind a valid checksum. */
    memcpy(buf, data, size);
    const double nan = NAN;
    uint64_t n_bands;
    memcpy(&n_bands, buf + OFF_N_BANDS, 8);
    /* before the solver fields, the partition, the padded "ab" and the trailer */
    memcpy(buf + size - SOLVER_RECORD * n_bands - PARTITION_RECORD - 8 - 8 - 8, &nan, 8);
    reseal(buf, size);
    CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "NaN weight: %s",
          tps_context_errmsg(ctx));

    /* Arguments. */
    void *d = (void *)1;
    size_t s = 1;
    CHECK(tps_model_save(ctx, NULL, hash, NULL, 0, &d, &s) == TPS_ERR_INVALID_ARGUMENT &&
              d == NULL && s == 0,
          "save without a model");
    CHECK(tps_model_save(ctx, m, NULL, NULL, 0, &d, &s) == TPS_ERR_INVALID_ARGUMENT,
          "save without a hash");
    CHECK(tps_model_save(ctx, m, hash, NULL, 3, &d, &s) == TPS_ERR_INVALID_ARGUMENT,
          "extra size without extra bytes");
    CHECK(fails_as(ctx, NULL, size, hash, TPS_ERR_INVALID_ARGUMENT), "load of NULL");
    tps_free(NULL);

    printf("damage: %zu truncations, %zu single-byte and 2000 random damages, garbage, "
           "crafted headers: all refused\n", size, 2 * size);
    free(buf);
    tps_free(data);
}

/* A version-4 save of a global model without covariates in an older
 * layout (docs/design.md): version 3 had no n_dropped_covariate, no sigma2
 * and tau2 per band and no point weights (flags 0); version 2 is version 3
 * with zeros at 104..127. Returns the new size (the buffer shrinks). */
static size_t to_older(unsigned char *buf, size_t size, size_t n, size_t nb, uint32_t version)
{
    uint32_t flags;
    memcpy(&flags, buf + 28, 4);
    const size_t pw = flags & 0x100u ? 8 * n * nb : 0;
    const size_t info_end = 128 + 8 * (3 + 7), bands = info_end + 8 + 5 * 8;
    unsigned char *out = malloc(size);
    size_t o = 0;
    memcpy(out, buf, info_end);
    o = info_end;
    memcpy(out + o, buf + info_end + 8, 5 * 8); /* the info's reals, past the new count */
    o += 5 * 8;
    for (size_t b = 0; b < nb; ++b) { /* 11 values, then skip sigma2 and tau2, then affine */
        memcpy(out + o, buf + bands + 128 * b, 88);
        memcpy(out + o + 88, buf + bands + 128 * b + 104, 24);
        o += 112;
    }
    const size_t arrays = bands + 128 * nb, arrays_len = 16 * n + 8 * n * nb;
    memcpy(out + o, buf + arrays, arrays_len);
    o += arrays_len;
    const size_t tail = size - (arrays + arrays_len + pw); /* extra bytes and the trailer */
    memcpy(out + o, buf + arrays + arrays_len + pw, tail);
    o += tail;
    memcpy(out + OFF_VERSION, &version, 4);
    memset(out + 28, 0, 4);
    if (version == 2)
        memset(out + OFF_MODE, 0, 24);
    const uint64_t total = o;
    memcpy(out + OFF_TOTAL, &total, 8);
    memcpy(buf, out, o);
    free(out);
    reseal(buf, o);
    return o;
}

/* A save without extra bytes as version `version` (5: its partition
 * settings, just before the trailer, dropped; 4: its solver fields too).
 * Returns the new size. */
static size_t to_v(unsigned char *buf, size_t size, size_t nb, uint32_t version)
{
    const size_t o = size - 8 - PARTITION_RECORD - (version < 5 ? SOLVER_RECORD * nb : 0);
    const uint64_t total = o + 8;
    memcpy(buf + OFF_VERSION, &version, 4);
    memcpy(buf + OFF_TOTAL, &total, 8);
    reseal(buf, o + 8);
    return o + 8;
}

/* Version-2 to 5 files of a global model load and evaluate as saved,
 * as solved by DIRECT; versions 2 and 3 carry no variances, so no
 * standard error. A layout under another version number is refused. */
static void test_versions(tps_context *ctx, const tps_model *m, const unsigned char hash[32])
{
    tps_model_info mi;
    CHECK(tps_model_get_info(ctx, m, &mi) == TPS_OK, "%s", tps_context_errmsg(ctx));
    for (uint32_t version = 2; version <= 5; ++version) {
        void *data = NULL;
        size_t size = 0;
        CHECK(tps_model_save(ctx, m, hash, NULL, 0, &data, &size) == TPS_OK, "save");
        if (!data)
            return;
        unsigned char *buf = data;
        /* The version-6 layout labelled 4 or 5: refused (its size is not
         * theirs). */
        const uint32_t older = version == 5 ? 5 : 4;
        memcpy(buf + OFF_VERSION, &older, 4);
        reseal(buf, size);
        CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA),
              "a version-6 layout labelled %u loaded", older);
        size = to_v(buf, size, mi.n_bands, version == 5 ? 5 : 4);
        if (version < 4)
            size = to_older(buf, size, mi.n_points, mi.n_bands, version);
        tps_model *l = tps_model_load(ctx, buf, size, hash, NULL, NULL);
        CHECK(l != NULL, "version %u: %s", version, tps_context_errmsg(ctx));
        if (l) {
            tps_model_info info;
            CHECK(tps_model_get_info(ctx, l, &info) == TPS_OK, "%s", tps_context_errmsg(ctx));
            CHECK(info.mode == TPS_MODE_GLOBAL && info.n_patches == 0, "version %u mode",
                  version);
            tps_band_info bi, bm;
            CHECK(tps_model_get_band_info(ctx, l, 0, &bi) == TPS_OK &&
                      tps_model_get_band_info(ctx, m, 0, &bm) == TPS_OK &&
                      bi.solver == TPS_SOLVER_DIRECT && bi.iterations == 0 &&
                      isnan(bi.relative_residual),
                  "version %u: solver fields %d %d %g", version, (int)bi.solver, bi.iterations,
                  bi.relative_residual);
            CHECK(version < 4 ? isnan(bi.sigma2) && isnan(bi.tau2)
                              : bi.sigma2 == bm.sigma2 && bi.tau2 == bm.tau2,
                  "version %u: variances %g %g", version, bi.sigma2, bi.tau2);
            double se = 0;
            tps_grid one;
            const double gt1[6] = {400000, 10, 0, 6001000, 0, -10};
            tps_grid_from_geotransform(&one, gt1, 0, 0, 1, 1);
            const tps_output so = {0, &se, TPS_FLOAT64, 8, 8, TPS_QUANTITY_STANDARD_ERROR};
            const tps_status sst = tps_evaluate_grid(ctx, l, &one, 1, &so, NULL);
            CHECK(version < 4 ? sst == TPS_ERR_INVALID_ARGUMENT : sst == TPS_OK && se >= 0,
                  "version %u: a standard error (%s)", version, tps_context_errmsg(ctx));
            const size_t cols = 31, rows = 23, cells = 3 * cols * rows;
            double *g1 = malloc(sizeof(double) * cells), *g2 = malloc(sizeof(double) * cells);
            eval_grid(ctx, m, g1, cols, rows);
            eval_grid(ctx, l, g2, cols, rows);
            CHECK(memcmp(g1, g2, sizeof(double) * cells) == 0, "version %u values differ",
                  version);
            free(g1);
            free(g2);
        }
        tps_model_destroy(l);
        if (version == 2) {
            /* A version-2 header with a mode: those bytes were reserved then. */
            const uint64_t local = TPS_MODE_LOCAL;
            memcpy(buf + OFF_MODE, &local, 8);
            reseal(buf, size);
            CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA),
                  "version 2 with a mode");
        } else if (version == 3) {
            /* Flags were zero before version 4. */
            buf[28] = 1;
            reseal(buf, size);
            CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "version 3 with flags");
        } else if (version == 4) {
            /* The version-4 layout labelled 5: refused. */
            const uint32_t five = 5;
            memcpy(buf + OFF_VERSION, &five, 4);
            reseal(buf, size);
            CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA),
                  "a version-4 layout labelled 5 loaded");
        }
        tps_free(data);
    }
    printf("versions 2 to 5: a global file loads and evaluates as saved (DIRECT)\n");
}

/* The bands' solver fields: an ITERATIVE model keeps them through a round
 * trip; crafted values behind a valid checksum are refused. */
static void test_solver_fields(tps_context *ctx, const unsigned char hash[32])
{
    const size_t n = 300;
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *z = malloc(sizeof(double) * n);
    CHECK(x && y && z, "out of memory");
    if (!x || !y || !z) {
        free(x);
        free(y);
        free(z);
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        x[i] = 1000 * uniform();
        y[i] = 1000 * uniform();
        z[i] = sin(x[i] / 200) + cos(y[i] / 300);
    }
    const double *values[1] = {z};
    const double smoothing[1] = {0.0};
    tps_fit_options opt;
    tps_fit_options_init(&opt);
    opt.device = TPS_DEVICE_CPU;
    opt.mode = TPS_MODE_GLOBAL;
    opt.solver = TPS_SOLVER_ITERATIVE;
    tps_model *m = tps_model_create(ctx, n, x, y, 1, values, smoothing, &opt);
    CHECK(m != NULL, "iterative model: %s", tps_context_errmsg(ctx));
    void *data = NULL;
    size_t size = 0;
    if (m)
        CHECK(tps_model_save(ctx, m, hash, NULL, 0, &data, &size) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
    if (data) {
        tps_model *l = tps_model_load(ctx, data, size, hash, NULL, NULL);
        CHECK(l != NULL, "load: %s", tps_context_errmsg(ctx));
        tps_band_info p, q;
        if (l) {
            CHECK(tps_model_get_band_info(ctx, m, 0, &p) == TPS_OK &&
                      tps_model_get_band_info(ctx, l, 0, &q) == TPS_OK &&
                      memcmp(&p, &q, sizeof p) == 0 && q.solver == TPS_SOLVER_ITERATIVE &&
                      q.iterations > 0 && q.relative_residual <= 1e-10 && isnan(q.sigma2),
                  "ITERATIVE band info: solver %d, %d iterations, residual %g", (int)q.solver,
                  q.iterations, q.relative_residual);
        }
        tps_model_destroy(l);
        unsigned char *buf = malloc(size);
        CHECK(buf != NULL, "out of memory");
        /* one band, no extra bytes */
        const size_t at = size - 8 - PARTITION_RECORD - SOLVER_RECORD;
        const struct {
            uint64_t solver, iterations;
            double residual;
            const char *what;
        } crafted[] = {{7, 3, 1e-11, "unknown solver"},
                       {TPS_SOLVER_DIRECT, 3, NAN, "DIRECT with iterations"},
                       {TPS_SOLVER_DIRECT, 0, 1e-11, "DIRECT with a residual"},
                       {TPS_SOLVER_ITERATIVE, 3, NAN, "ITERATIVE without a residual"},
                       {TPS_SOLVER_ITERATIVE, 3, 0.5, "ITERATIVE that did not converge"},
                       {TPS_SOLVER_ITERATIVE, (uint64_t)1 << 40, 1e-11, "2^40 iterations"}};
        for (size_t k = 0; buf && k < sizeof crafted / sizeof crafted[0]; ++k) {
            memcpy(buf, data, size);
            memcpy(buf + at, &crafted[k].solver, 8);
            memcpy(buf + at + 8, &crafted[k].iterations, 8);
            memcpy(buf + at + 16, &crafted[k].residual, 8);
            reseal(buf, size);
            CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "crafted (%s) loaded",
                  crafted[k].what);
        }
        /* The same fields untouched but resealed: loads (the offsets hold). */
        if (buf) {
            memcpy(buf, data, size);
            reseal(buf, size);
            tps_model *again = tps_model_load(ctx, buf, size, hash, NULL, NULL);
            CHECK(again != NULL, "resealed: %s", tps_context_errmsg(ctx));
            tps_model_destroy(again);
        }
        free(buf);
        tps_free(data);
    }
    tps_model_destroy(m);
    free(x);
    free(y);
    free(z);
    printf("solver fields: an ITERATIVE band round-trips; crafted values refused\n");
}

/* ---- LOCAL models ---- */

#define LOCAL_BANDS 2

/* n random points over a 5 km square; band 1 smooth (lambda = 0), band 2
 * with every 7th value missing and smoothing. The values go to z1 (n). */
static tps_model *make_local_model(tps_context *ctx, size_t n, size_t patch_points,
                                   double *z1)
{
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    double *b = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; ++i) {
        x[i] = 400000 + 5000 * uniform();
        y[i] = 6000000 + 5000 * uniform();
        double u = (x[i] - 400000) / 5000, v = (y[i] - 6000000) / 5000;
        z1[i] = sin(6 * u) * cos(4 * v);
        b[i] = i % 7 == 3 ? NAN : 50 * exp(-8 * ((u - .5) * (u - .5) + v * v));
    }
    const double *values[LOCAL_BANDS] = {z1, b};
    const double smoothing[LOCAL_BANDS] = {0.0, 1000.0};
    tps_fit_options opt;
    tps_fit_options_init(&opt);
    opt.device = TPS_DEVICE_CPU;
    opt.mode = TPS_MODE_LOCAL;
    opt.patch_points = patch_points;
    opt.num_threads = 2;
    tps_model *m = tps_model_create(ctx, n, x, y, LOCAL_BANDS, values, smoothing, &opt);
    /* the points, for the interpolation check */
    memcpy(z1 + n, x, sizeof(double) * n);
    memcpy(z1 + 2 * n, y, sizeof(double) * n);
    free(x);
    free(y);
    free(b);
    return m;
}

static void eval_local_grid(tps_context *ctx, const tps_model *m, double *out, size_t cols,
                            size_t rows)
{
    /* Reaches past the points' box on every side: extrapolation too. */
    const double gt[6] = {399800, 5400.0 / (double)cols, 0, 6005200, 0, -5400.0 / (double)rows};
    tps_grid g;
    tps_grid_from_geotransform(&g, gt, 0, 0, cols, rows);
    tps_output o[LOCAL_BANDS];
    for (size_t b = 0; b < LOCAL_BANDS; ++b)
        o[b] = (tps_output){b, out + b * cols * rows, TPS_FLOAT64, 8, (ptrdiff_t)(8 * cols)};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.num_threads = 2;
    CHECK(tps_evaluate_grid(ctx, m, &g, LOCAL_BANDS, o, &eo) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
}

static void test_local_round_trip(tps_context *ctx, const unsigned char hash[32])
{
    const size_t n = 20000;
    double *pts = malloc(sizeof(double) * 3 * n); /* z1, x, y */
    tps_model *m = make_local_model(ctx, n, 200, pts);
    CHECK(m != NULL, "create local: %s", tps_context_errmsg(ctx));
    if (!m) {
        free(pts);
        return;
    }
    void *data;
    size_t size;
    tps_model *l = save_and_load(ctx, m, hash, "local", &data, &size);
    if (!l)
        goto done;

    tps_model_info a, b;
    CHECK(tps_model_get_info(ctx, m, &a) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(tps_model_get_info(ctx, l, &b) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(a.mode == TPS_MODE_LOCAL && b.mode == TPS_MODE_LOCAL && a.n_patches > 50 &&
              a.n_patches == b.n_patches && a.n_factorisations == b.n_factorisations &&
              a.n_factorisations > a.n_patches && a.n_points == b.n_points &&
              a.n_input == b.n_input && a.n_bands == b.n_bands &&
              a.solve_seconds == b.solve_seconds && a.min_x == b.min_x && a.max_y == b.max_y,
          "local info differs: mode %d/%d, patches %zu/%zu, factorisations %zu/%zu",
          (int)a.mode, (int)b.mode, a.n_patches, b.n_patches, a.n_factorisations,
          b.n_factorisations);
    /* the partition's settings (version 6) */
    CHECK(a.patch_points >= TPS_MIN_PATCH_POINTS && a.overlap > 1.0 &&
              b.patch_points == a.patch_points && b.overlap == a.overlap,
          "partition settings %zu:%g, reloaded %zu:%g", a.patch_points, a.overlap,
          b.patch_points, b.overlap);
    for (size_t k = 0; k < LOCAL_BANDS; ++k) {
        tps_band_info p, q;
        CHECK(tps_model_get_band_info(ctx, m, k, &p) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(tps_model_get_band_info(ctx, l, k, &q) == TPS_OK, "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(&p, &q, sizeof p) == 0, "local band %zu info differs", k + 1);
    }
    tps_band_info b2;
    CHECK(tps_model_get_band_info(ctx, l, 1, &b2) == TPS_OK, "%s", tps_context_errmsg(ctx));
    CHECK(b2.n_missing == n / 7 + (n % 7 > 3), "band 2 has missing values (%zu)", b2.n_missing);

    const size_t cols = 301, rows = 203, cells = LOCAL_BANDS * cols * rows;
    double *g1 = malloc(sizeof(double) * cells), *g2 = malloc(sizeof(double) * cells);
    eval_local_grid(ctx, m, g1, cols, rows);
    eval_local_grid(ctx, l, g2, cols, rows);
    CHECK(memcmp(g1, g2, sizeof(double) * cells) == 0, "local grid values differ after a load");
    size_t finite = 0;
    for (size_t k = 0; k < cells; ++k)
        finite += isfinite(g2[k]) != 0;
    CHECK(finite == cells, "%zu of %zu local grid values finite", finite, cells);

    /* Scattered: random places (some outside the box), and the data points,
     * where band 1 (lambda = 0) must give its data back. */
    const size_t ns = 3000;
    double *sx = malloc(sizeof(double) * ns), *sy = malloc(sizeof(double) * ns);
    double *o1 = malloc(sizeof(double) * n), *o2 = malloc(sizeof(double) * n);
    for (size_t i = 0; i < ns; ++i) {
        sx[i] = 399000 + 7000 * uniform();
        sy[i] = 5999000 + 7000 * uniform();
    }
    for (size_t k = 0; k < LOCAL_BANDS; ++k) {
        CHECK(tps_evaluate_points(ctx, m, k, ns, sx, sy, o1, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(tps_evaluate_points(ctx, l, k, ns, sx, sy, o2, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(o1, o2, sizeof(double) * ns) == 0, "local band %zu: point values differ",
              k + 1);
    }
    CHECK(tps_evaluate_points(ctx, l, 0, n, pts + n, pts + 2 * n, o2, NULL) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i)
        worst = max_nan(worst, fabs(o2[i] - pts[i]));
    CHECK(worst <= 1e-9 * 2.0, "loaded local model at its data points: max error %.3g", worst);

    check_resave(ctx, l, hash, "local", data, size);
    printf("local round trip: %zu points, %zu patches, %zu bytes (%.1f per point), %zu grid "
           "cells and %zu points bit-identical, data reproduced to %.2g\n", n, b.n_patches,
           size, (double)size / (double)n, cells, ns * LOCAL_BANDS, worst);
    free(g1);
    free(g2);
    free(sx);
    free(sy);
    free(o1);
    free(o2);
done:
    tps_model_destroy(l);
    tps_model_destroy(m);
    tps_free(data);
    free(pts);
}

/* Loads buf (crafted, resealed) and, when it loads, evaluates a small grid:
 * neither may crash or leak (valgrind). Returns whether it loaded. */
static int load_and_touch(tps_context *ctx, const unsigned char *buf, size_t size,
                          const unsigned char *hash)
{
    tps_model *l = tps_model_load(ctx, buf, size, hash, NULL, NULL);
    if (!l)
        return 0;
    double out[LOCAL_BANDS * 7 * 5];
    eval_local_grid(ctx, l, out, 7, 5);
    tps_model_destroy(l);
    return 1;
}

static void put_u64_at(unsigned char *buf, size_t off, uint64_t v) { memcpy(buf + off, &v, 8); }
static void put_f64_at(unsigned char *buf, size_t off, double v) { memcpy(buf + off, &v, 8); }
static uint64_t get_u64_at(const unsigned char *buf, size_t off)
{
    uint64_t v;
    memcpy(&v, buf + off, 8);
    return v;
}

/* table_stride: the damaged-byte stride through the patch table. */
static void test_local_damage(tps_context *ctx, const unsigned char hash[32], size_t table_stride)
{
    const size_t n = 2000;
    double *pts = malloc(sizeof(double) * 3 * n);
    tps_model *m = make_local_model(ctx, n, 20, pts);
    free(pts);
    CHECK(m != NULL, "create local: %s", tps_context_errmsg(ctx));
    void *data = NULL;
    size_t size = 0;
    if (m)
        CHECK(tps_model_save(ctx, m, hash, "ab", 2, &data, &size) == TPS_OK, "save local: %s",
              tps_context_errmsg(ctx));
    if (!data) {
        tps_model_destroy(m);
        return;
    }
    const unsigned char *orig = data;
    unsigned char *buf = malloc(size);
    const size_t np = (size_t)get_u64_at(orig, OFF_N_PATCHES);
    const size_t local_at = LOCAL_AT(n, LOCAL_BANDS);
    const size_t table_end = local_at + PATCH_RECORD * np;
    CHECK(get_u64_at(orig, OFF_MODE) == TPS_MODE_LOCAL && np > 130 && table_end < size,
          "the fixture is a local model of several patches (%zu)", np);

    /* Truncations: every length through the header and patch table, then a
     * stride (prime, so it meets every field alignment) to the end. */
    size_t bad_trunc = 0, n_trunc = 0;
    for (size_t len = 0; len < size; len += len < table_end ? 1 : 97) {
        memcpy(buf, orig, len);
        ++n_trunc;
        if (!fails_as(ctx, buf, len, hash, TPS_ERR_BAD_MODEL_DATA))
            ++bad_trunc;
    }
    CHECK(bad_trunc == 0, "%zu of %zu local truncations did not fail cleanly", bad_trunc,
          n_trunc);

    /* One damaged byte: every byte of the header and of the first 8 patch
     * records, a stride through the rest of the table (every field
     * offset: the stride is odd) and through the arrays. */
    size_t bad_flip = 0, n_flip = 0;
    const size_t every = local_at + 8 * PATCH_RECORD;
    for (size_t pos = 0; pos < size;
         pos += pos < TPS_MODEL_HEADER_BYTES || (pos >= local_at && pos < every) ? 1
                : pos >= local_at && pos < table_end                             ? table_stride
                                                                                 : 61) {
        memcpy(buf, orig, size);
        buf[pos] ^= (unsigned char)(1 + next_u64() % 255);
        ++n_flip;
        if (!fails_as(ctx, buf, size, NULL, TPS_ERR_BAD_MODEL_DATA))
            ++bad_flip;
    }
    CHECK(bad_flip == 0, "%zu of %zu local damaged bytes were not caught", bad_flip, n_flip);

    /* Crafted, with a valid checksum: each must be refused. */
    struct craft {
        const char *what;
        size_t off;
        int is_real;
        double real;
        uint64_t count;
    };
    const size_t p3 = local_at + PATCH_RECORD * 3; /* the 4th patch's record */
    const size_t arrays = table_end;               /* patch 1's u[0] */
    const size_t n1 = (size_t)get_u64_at(orig, local_at + 56);
    const struct craft crafts[] = {
        {"mode 3", OFF_MODE, 0, 0, 3},
        {"mode GLOBAL over a local payload", OFF_MODE, 0, 0, TPS_MODE_GLOBAL},
        {"no patches", OFF_N_PATCHES, 0, 0, 0},
        {"one patch more", OFF_N_PATCHES, 0, 0, np + 1},
        {"2^39 patches", OFF_N_PATCHES, 0, 0, (uint64_t)1 << 39},
        {"2^62 patches", OFF_N_PATCHES, 0, 0, (uint64_t)1 << 62},
        {"one patch point more", OFF_N_ENTRIES, 0, 0, get_u64_at(orig, OFF_N_ENTRIES) + 1},
        {"2^63 patch points", OFF_N_ENTRIES, 0, 0, (uint64_t)1 << 63},
        {"no factorisation per patch", OFF_N_FACTORISATIONS, 0, 0, np - 1},
        {"more factorisations than bands x patches", OFF_N_FACTORISATIONS, 0, 0,
         np * LOCAL_BANDS + 1},
        {"patch centre NaN", p3 + 0, 1, NAN, 0},
        {"patch centre outside the box", p3 + 8, 1, 5.0, 0},
        {"zero half-width", p3 + 16, 1, 0.0, 0},
        {"negative half-height", p3 + 24, 1, -0.1, 0},
        {"infinite half-width", p3 + 16, 1, INFINITY, 0},
        {"half-width far beyond a local model's", p3 + 16, 1, 1e300, 0},
        {"frame centre NaN", p3 + 32, 1, NAN, 0},
        {"zero frame scale", p3 + 48, 1, 0.0, 0},
        {"patch of 2 points", p3 + 56, 0, 0, 2},
        {"patch of more points than the model", p3 + 56, 0, 0, n + 1},
        {"patch of 2^60 points", p3 + 56, 0, 0, (uint64_t)1 << 60},
        {"point outside the patch frame", arrays, 1, 1.5, 0},
        {"point NaN", arrays + 8 * n1, 1, NAN, 0},
        {"affine part infinite", arrays + 16 * n1, 1, INFINITY, 0},
        {"half-weight NaN", arrays + 16 * n1 + 24 + 8 * (n1 - 1), 1, NAN, 0},
        /* the partition's settings, before the padded "ab" and the trailer */
        {"patch points below the least", size - 16 - PARTITION_RECORD, 0, 0,
         TPS_MIN_PATCH_POINTS - 1},
        {"patch points 2^63", size - 16 - PARTITION_RECORD, 0, 0, (uint64_t)1 << 63},
        {"overlap 1", size - 16 - 8, 1, 1.0, 0},
        {"overlap NaN", size - 16 - 8, 1, NAN, 0},
        {"overlap beyond the most", size - 16 - 8, 1, TPS_MAX_OVERLAP * 2, 0},
    };
    size_t n_crafts = sizeof crafts / sizeof crafts[0];
    for (size_t t = 0; t < n_crafts; ++t) {
        memcpy(buf, orig, size);
        if (crafts[t].is_real)
            put_f64_at(buf, crafts[t].off, crafts[t].real);
        else
            put_u64_at(buf, crafts[t].off, crafts[t].count);
        reseal(buf, size);
        CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "crafted (%s) loaded: %s",
              crafts[t].what, tps_context_errmsg(ctx));
    }
    /* ... and the partition's fields are where the crafts above put them:
     * the settings as saved. */
    CHECK(get_u64_at(orig, size - 16 - PARTITION_RECORD) == 20,
          "the saved patch points: %llu",
          (unsigned long long)get_u64_at(orig, size - 16 - PARTITION_RECORD));
    /* Every patch as large as a patch may be (3.5 box sides; the box is
     * [-1, 1] wide): each alone passes, but the lookup they need
     * together (every patch in every cell) is refused before it is
     * allocated. */
    memcpy(buf, orig, size);
    for (size_t p = 0; p < np; ++p) {
        put_f64_at(buf, local_at + PATCH_RECORD * p + 16, 7.0);
        put_f64_at(buf, local_at + PATCH_RECORD * p + 24, 7.0);
    }
    reseal(buf, size);
    CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "huge supports: %s",
          tps_context_errmsg(ctx));
    /* A count consistent with a total: the header passes, the data is short. */
    memcpy(buf, orig, size);
    put_u64_at(buf, OFF_N_PATCHES, (uint64_t)1 << 30);
    put_u64_at(buf, OFF_N_ENTRIES, (uint64_t)3 << 30);
    const uint64_t huge_total = LOCAL_AT(n, LOCAL_BANDS) + 64 * ((uint64_t)1 << 30) +
                                8 * ((uint64_t)3 << 30) * (2 + LOCAL_BANDS) +
                                24 * ((uint64_t)1 << 30) * LOCAL_BANDS +
                                SOLVER_RECORD * LOCAL_BANDS + PARTITION_RECORD + 8 + 8;
    put_u64_at(buf, OFF_TOTAL, huge_total);
    reseal(buf, size);
    size_t sz = 0;
    CHECK(tps_model_saved_size(ctx, buf, TPS_MODEL_HEADER_BYTES, hash, &sz) == TPS_OK &&
              sz == huge_total,
          "saved_size of 2^30 patches: %s", tps_context_errmsg(ctx));
    CHECK(fails_as(ctx, buf, size, hash, TPS_ERR_BAD_MODEL_DATA), "2^30 patches, short data");

    /* The header announces the model's shape before anything is read. */
    size_t got_n = 0, got_nb = 0;
    CHECK(tps_model_saved_counts(ctx, orig, TPS_MODEL_HEADER_BYTES, &got_n, &got_nb) == TPS_OK &&
              got_n == n && got_nb == LOCAL_BANDS,
          "saved_counts: %zu points, %zu bands: %s", got_n, got_nb, tps_context_errmsg(ctx));
    /* Many points and bands over a single tiny patch, every count and the
     * total consistent: the header alone is refused (a point outside every
     * patch), before the n x n_bands arrays a load would need. */
    {
        const uint64_t hn = (uint64_t)1 << 20, hnb = 256, hne = 3;
        memcpy(buf, orig, TPS_MODEL_HEADER_BYTES);
        put_u64_at(buf, OFF_N, hn);
        put_u64_at(buf, OFF_N_BANDS, hnb);
        put_u64_at(buf, OFF_N_PATCHES, 1);
        put_u64_at(buf, OFF_N_ENTRIES, hne);
        put_u64_at(buf, OFF_TOTAL,
                   LOCAL_AT(hn, hnb) + PATCH_RECORD + 8 * hne * (2 + hnb) +
                       (24 + SOLVER_RECORD) * hnb + PARTITION_RECORD +
                       8 * ((get_u64_at(orig, 88) + 7) / 8) + 8);
        size_t hsz = 0;
        CHECK(tps_model_saved_size(ctx, buf, TPS_MODEL_HEADER_BYTES, hash, &hsz) ==
                      TPS_ERR_BAD_MODEL_DATA &&
                  tps_model_saved_counts(ctx, buf, TPS_MODEL_HEADER_BYTES, &got_n, &got_nb) ==
                      TPS_ERR_BAD_MODEL_DATA,
              "2^20 points in one patch of 3: header accepted (%zu bytes)", hsz);
        /* The same counts with as many patch points as points pass the
         * header (the control: only the point count was wrong). */
        put_u64_at(buf, OFF_N_ENTRIES, hn);
        put_u64_at(buf, OFF_TOTAL,
                   LOCAL_AT(hn, hnb) + PATCH_RECORD + 8 * hn * (2 + hnb) +
                       (24 + SOLVER_RECORD) * hnb + PARTITION_RECORD +
                       8 * ((get_u64_at(orig, 88) + 7) / 8) + 8);
        CHECK(tps_model_saved_size(ctx, buf, TPS_MODEL_HEADER_BYTES, hash, &hsz) == TPS_OK,
              "2^20 points in one patch of 2^20: %s", tps_context_errmsg(ctx));
    }

    /* Random resealed damage through the local section: a value the
     * checks cannot tell from a real one may load (a weight is a weight),
     * but nothing may crash, leak or read out of bounds. */
    size_t loaded = 0;
    const int rounds = 600;
    for (int t = 0; t < rounds; ++t) {
        memcpy(buf, orig, size);
        const size_t pos = local_at + (size_t)(next_u64() % (size - 8 - local_at));
        buf[pos] ^= (unsigned char)(1 + next_u64() % 255);
        reseal(buf, size);
        loaded += (size_t)load_and_touch(ctx, buf, size, hash);
    }
    printf("local damage (%zu points, %zu patches, %zu bytes): %zu truncations, %zu damaged bytes, %zu crafted files refused; %d "
           "resealed random damages (%zu loaded, none crashed)\n", n, np, size, n_trunc, n_flip,
           n_crafts + 2, rounds, loaded);
    free(buf);
    tps_free(data);
    tps_model_destroy(m);
}

/* `test_model_io gpu`: the round trips, each loaded model evaluated on the
 * GPU too. */
static int gpu_main(tps_context *ctx, const unsigned char hash[32])
{
    if (!gpu_required())
        return 77;
    CHECK(tps_device_check(ctx, TPS_DEVICE_GPU) == TPS_OK,
          "a GPU is present but the engine cannot use it: %s", tps_context_errmsg(ctx));
    if (failures == 0) {
        const size_t sizes[2] = {400, 24};
        for (int k = 0; k < 2; ++k) {
            tps_model *m = make_model(ctx, sizes[k]);
            CHECK(m != NULL, "create: %s", tps_context_errmsg(ctx));
            if (m)
                test_round_trip(ctx, m, hash, 1);
            tps_model_destroy(m);
        }
    }
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    tps_context *ctx = tps_context_create();
    unsigned char hash[32];
    for (int i = 0; i < 32; ++i)
        hash[i] = (unsigned char)(i * 37 + 11);
    if (argc > 1 && strcmp(argv[1], "gpu") == 0) {
        const int rc = gpu_main(ctx, hash);
        tps_context_destroy(ctx);
        return rc;
    }

    tps_model *m = make_model(ctx, 400);
    CHECK(m != NULL, "create: %s", tps_context_errmsg(ctx));
    if (m)
        test_round_trip(ctx, m, hash, 0);
    tps_model_destroy(m);

    /* A small model keeps the exhaustive damage tests fast under valgrind. */
    m = make_model(ctx, 24);
    CHECK(m != NULL, "create: %s", tps_context_errmsg(ctx));
    if (m) {
        test_round_trip(ctx, m, hash, 0);
        test_damage(ctx, m, hash);
        test_versions(ctx, m, hash);
    }
    tps_model_destroy(m);

    /* `test_model_io small` (or TPS_TEST_QUICK=1): the local damage tests only, sampled
     * more sparsely (for valgrind). */
    const char *quick = getenv("TPS_TEST_QUICK"); /* scripts/valgrind_tests.py sets it */
    const int small = (argc > 1 && strcmp(argv[1], "small") == 0) ||
                      (quick && strcmp(quick, "1") == 0);
    if (!small)
        test_local_round_trip(ctx, hash);
    else
        printf("small (TPS_TEST_QUICK=1): the 20,000-point local round trip is left out (plain "
               "ctest runs it)\n");
    test_local_damage(ctx, hash, small ? 29 : 3);
    test_solver_fields(ctx, hash);
    tps_context_destroy(ctx);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

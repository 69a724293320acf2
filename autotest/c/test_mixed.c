/* test_mixed.c: PRECISION=MIXED's arithmetic and guard, on the CPU, through
 * its emulation (core/mixed_emulate.c: the GPU kernel's steps with the same
 * arithmetic, lg2.approx modelled within its documented error):
 *   - the layout: every point once, within its clusters' radii, FP32
 *     offsets and moments as documented;
 *   - the multipole expansion against the direct FP64 sum, within its
 *     truncation bound, and the order chosen for it;
 *   - on a suite of fields (smooth to noise, offsets, elongated, clustered,
 *     rotated and coarse grids, several bands, missing values), every
 *     block kept in MIXED within its rigorous error bound of the CPU path,
 *     with the lg2.approx error modelled random and systematic; smooth
 *     fields kept in MIXED; a fallen-back block exactly the CPU path's;
 *   - the guard: forced fallbacks (the test hook) exactly where asked and
 *     counted, a tolerance no block meets, windows giving the same bytes;
 *   - the dispatcher's options: AUTO, the tolerance, the stats.
 * The GPU kernel's own checks are in test_gpu.c (parity). */
#include "eval.h"
#include "mixed.h"
#include "tps_testing.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mixed_fields.h"
#include "testdata.h"

enum { NB = MF_BANDS };

typedef mixed_field field;

typedef struct fixture {
    tps_model *model;
    tps_grid grid; /* the raster; windows of it are evaluated */
    size_t nb;
    double range[NB];
} fixture;

/* The field's model, and a raster of side_c x side_r pixels (grid kinds 0,
 * 1, 2) over its points. */
static int make(const field *f, fixture *fx, size_t side_c, size_t side_r)
{
    tps_context *ctx = tps_context_create();
    fx->model = mixed_field_model(ctx, f, 2, &fx->nb);
    CHECK(fx->model != NULL, "%s: %s", f->name, tps_context_errmsg(ctx));
    for (size_t b = 0; fx->model && b < fx->nb; ++b) {
        tps_band_info bi;
        CHECK(tps_model_get_band_info(ctx, fx->model, b, &bi) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        fx->range[b] = bi.value_max - bi.value_min;
    }
    mixed_field_grid(f, side_c, side_r, 8, 6, &fx->grid); /* coarse: 8 x 6 pixels */
    tps_context_destroy(ctx);
    return fx->model != NULL;
}

/* The CPU path over a window of fx's grid, Float64, bands 0..nb-1. */
static void cpu_window(const fixture *fx, size_t c0, size_t r0, size_t nc, size_t nr, double *out)
{
    tps_grid g = fx->grid;
    g.first_col = c0;
    g.first_row = r0;
    g.ncols = nc;
    g.nrows = nr;
    tps_output o[NB];
    for (size_t b = 0; b < fx->nb; ++b)
        o[b] = (tps_output){b, out + b * nc * nr, TPS_FLOAT64, 8, (ptrdiff_t)(8 * nc)};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    eo.device = TPS_DEVICE_CPU;
    eo.num_threads = 2;
    tps_context *ctx = tps_context_create();
    CHECK(tps_evaluate_grid(ctx, fx->model, &g, fx->nb, o, &eo) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    tps_context_destroy(ctx);
}

/* The emulation over a window; returns its stats. */
static tps_eval_stats emulate(const fixture *fx, size_t c0, size_t r0, size_t nc, size_t nr,
                              double tolerance, size_t force_every, double *out)
{
    tps_grid g = fx->grid;
    g.first_col = c0;
    g.first_row = r0;
    g.ncols = nc;
    g.nrows = nr;
    tps_output o[NB];
    for (size_t k = 0; k < fx->nb * nc * nr; ++k)
        out[k] = NAN; /* poison: every pixel must be written */
    for (size_t b = 0; b < fx->nb; ++b)
        o[b] = (tps_output){b, out + b * nc * nr, TPS_FLOAT64, 8, (ptrdiff_t)(8 * nc)};
    tps_eval_stats st;
    memset(&st, 0xff, sizeof st);
    tps_context *ctx = tps_context_create();
    CHECK(tps_mixed_emulate_grid(ctx, fx->model, &g, fx->nb, o, tolerance, 1, force_every, &st) ==
              TPS_OK,
          "%s", tps_context_errmsg(ctx));
    tps_context_destroy(ctx);
    return st;
}

/* ---- the layout and the expansion ---- */

static void layout_checks(int quick)
{
    const field f = {"layout", quick ? 600 : 1500, MF_CLUSTERED,
                     {MF_WIGGLY, MF_BUMP_HOLES, MF_NONE}, 0, MF_COVER, 0, 1};
    fixture fx;
    if (!make(&f, &fx, 64, 64))
        return;
    const tps_model *md = fx.model;
    tps_mixed_layout L;
    CHECK(tps_mixed_layout_build(&L, md->n, md->u, md->v, md->n_bands,
                                 (const double *const *)md->half_weights) == TPS_OK,
          "layout");
    CHECK(L.n_pad == L.n_tiles * TPS_MIXED_TILE && L.n_groups == L.n_tiles * 8 &&
              L.n_pad >= md->n && L.n_pad < md->n + TPS_MIXED_TILE,
          "sizes %zu %zu %zu", L.n_pad, L.n_tiles, L.n_groups);
    for (size_t b = 0; b < md->n_bands; ++b) { /* each band's sum |h|, from its points */
        double sum = 0.0;
        for (size_t i = 0; i < md->n; ++i)
            sum += fabs(md->half_weights[b][i]);
        CHECK(fabs(L.abs_h[b] - sum) <= 1e-12 * sum, "band %zu: sum |h| %.17g, points say %.17g",
              b, L.abs_h[b], sum);
    }
    char *seen = calloc(md->n, 1);
    int once = 1, inside = 1, offsets = 1, padding = 1;
    for (size_t k = 0; k < L.n_pad; ++k) {
        const size_t i = L.perm[k], g = k / TPS_MIXED_GROUP, t = k / TPS_MIXED_TILE;
        if (i == SIZE_MAX) {
            padding &= L.w[k] == 0.0f && L.wlo[k] == 0.0f && L.q[2 * k] == 0.0f;
            continue;
        }
        once &= i < md->n && !seen[i];
        if (i >= md->n)
            continue;
        seen[i] = 1;
        const double *gg = L.group + 4 * g, *tt = L.tile + 4 * t;
        inside &= hypot(md->u[i] - gg[0], md->v[i] - gg[1]) <= gg[2] &&
                  hypot(md->u[i] - tt[0], md->v[i] - tt[1]) <= tt[2];
        offsets &= L.q[2 * k] == (float)(md->u[i] - gg[0]) &&
                   L.q[2 * k + 1] == (float)(md->v[i] - gg[1]);
        const double w = md->half_weights[0][i] * 0.69314718055994531;
        offsets &= fabs((double)L.w[k] + (double)L.wlo[k] - w) <= 1e-13 * fabs(w);
    }
    size_t count = 0;
    for (size_t i = 0; i < md->n; ++i)
        count += seen[i];
    CHECK(once && count == md->n, "every point once: %zu of %zu", count, md->n);
    CHECK(inside, "points within their group's and tile's radius");
    CHECK(offsets, "FP32 offsets and split weights as documented");
    CHECK(padding, "padding has weight 0 at the centre");
    free(seen);

    /* The expansion of each cluster against its direct FP64 sum, at pixels
     * 1.5 to 20 radii away, within its truncation bound (+ roundings). */
    double worst = 0.0;
    int within = 1, orders = 1;
    for (size_t c = 0; c < L.n_tiles + L.n_groups; ++c) {
        const int is_tile = c < L.n_tiles;
        const size_t idx = is_tile ? c : c - L.n_tiles;
        const double *geo = is_tile ? L.tile + 4 * idx : L.group + 4 * idx;
        if (geo[3] == 0.0)
            continue;
        const size_t k0 = is_tile ? idx * TPS_MIXED_TILE : idx * TPS_MIXED_GROUP;
        const size_t k1 = k0 + (is_tile ? TPS_MIXED_TILE : TPS_MIXED_GROUP);
        for (size_t b = 0; b < md->n_bands; ++b) {
            const double *coef =
                (is_tile ? L.tile_coef : L.group_coef) + (idx * md->n_bands + b) * TPS_MIXED_COEF;
            for (int trial = 0; trial < 3; ++trial) {
                const double dist = geo[2] * (trial == 0 ? 2.05 : trial == 1 ? 3.5 : 20.0);
                const double ang = 2.0 * 3.14159265358979 * uniform();
                const double pu = geo[0] + dist * cos(ang), pv = geo[1] + dist * sin(ang);
                double direct = 0.0, absum = 0.0;
                for (size_t k = k0; k < k1; ++k) {
                    if (L.perm[k] == SIZE_MAX)
                        continue;
                    const size_t i = L.perm[k];
                    const double du = pu - md->u[i], dv = pv - md->v[i], r2 = du * du + dv * dv;
                    direct += md->half_weights[b][i] * r2 * log(r2);
                    absum += fabs(md->half_weights[b][i]) * r2 * fabs(log(r2));
                }
                const double gamma = geo[2] / dist;
                /* the strictest target, and a loose one a budget may give */
                const double tau = trial == 1 ? 0x1p-24 : TPS_MIXED_TAU;
                const int p = tps_mixed_order(gamma, tau);
                orders &= p > 0 && tps_mixed_trunc(gamma, p) <= tau &&
                          (p == 1 || tps_mixed_trunc(gamma, p - 1) > tau);
                if (p <= 0)
                    continue;
                double zr[1] = {pu - geo[0]}, zi[1] = {pv - geo[1]};
                double r2[1] = {zr[0] * zr[0] + zi[0] * zi[0]}, lr[1] = {log(r2[0])};
                double er[1] = {zr[0] / r2[0]}, ei[1] = {-zi[0] / r2[0]}, got[1] = {0.0};
                tps_mixed_m2p(coef, p, 1, zr, zi, r2, lr, er, ei, got);
                const double bound = tps_mixed_trunc(gamma, p) * coef[0] * r2[0] + 1e-13 * absum;
                within &= fabs(got[0] - direct) <= bound;
                worst = fmax(worst, fabs(got[0] - direct) / (absum > 0 ? absum : 1.0));
            }
        }
    }
    printf("multipole expansions: worst |expansion - direct| / sum|terms| = %.2e\n", worst);
    CHECK(within, "an expansion off its direct sum by more than its truncation bound");
    CHECK(orders, "the order is the smallest meeting its target");
    CHECK(tps_mixed_order(0.5, TPS_MIXED_TAU) == 0 && tps_mixed_order(0.6, TPS_MIXED_TAU) == 0 &&
              tps_mixed_order(0.0, TPS_MIXED_TAU) == 1,
          "orders at 0.5, 0.6 and 0");
    /* The budget for truncation: the least tolerance x range / sum |h| over
     * the bands with weights, shared out; each cluster's target within
     * [TPS_MIXED_TAU, TPS_MIXED_TAU_MAX]. */
    {
        const double range[3] = {2.0, 4.0, 1.0}, abs_h[3] = {10.0, 100.0, 0.0};
        const double k = tps_mixed_trunc_budget(1e-5, range, abs_h, 3);
        CHECK(k == 1e-5 * 4.0 / 100.0 / TPS_MIXED_TRUNC_SHARE, "budget %.17g", k);
        const double flat[1] = {0.0};
        CHECK(tps_mixed_trunc_budget(1e-5, flat, abs_h, 1) == 0.0 &&
                  tps_mixed_trunc_budget(0.0, range, abs_h, 2) == 0.0 &&
                  tps_mixed_trunc_budget(1e-5, range + 2, abs_h + 2, 1) == 0.0,
              "a band without range or tolerance, and none with weights: the strictest target");
        CHECK(tps_mixed_cluster_tau(0.0, 0.5) == TPS_MIXED_TAU &&
                  tps_mixed_cluster_tau(1.0, 0.5) == TPS_MIXED_TAU_MAX &&
                  tps_mixed_cluster_tau(1e-9, 0.5) == 4e-9,
              "cluster targets: %g %g %g", tps_mixed_cluster_tau(0.0, 0.5),
              tps_mixed_cluster_tau(1.0, 0.5), tps_mixed_cluster_tau(1e-9, 0.5));
    }
    tps_mixed_layout_free(&L);
    tps_model_destroy(fx.model);
}

/* ---- the suite ---- */

/* Per block of the window [wc, wc + wn) x [wr, wr + wm) of the raster,
 * whose corner is on the blocks' lattice (each block emulated as its own
 * window: values do not depend on the window): MIXED within its bound of
 * the CPU path, or the CPU path's bytes. Returns the worst error / range;
 * counts into *total. */
static double check_blocks(const field *f, const fixture *fx, size_t wc, size_t wr, size_t wn,
                           size_t wm, double tolerance, size_t force_every, tps_eval_stats *total)
{
    const tps_grid *g = &fx->grid;
    const size_t bc = TPS_MIXED_BLOCK_COLS, br = TPS_MIXED_BLOCK_ROWS;
    const size_t c_end = wc + wn < g->ncols ? wc + wn : g->ncols;
    const size_t r_end = wr + wm < g->nrows ? wr + wm : g->nrows;
    double *cpu = malloc(NB * bc * br * sizeof(double)), *emu = malloc(NB * bc * br * sizeof(double));
    double worst = 0.0;
    memset(total, 0, sizeof *total);
    for (size_t r0 = wr; r0 < r_end; r0 += br)
        for (size_t c0 = wc; c0 < c_end; c0 += bc) {
            const size_t nc = c_end - c0 < bc ? c_end - c0 : bc;
            const size_t nr = r_end - r0 < br ? r_end - r0 : br;
            cpu_window(fx, c0, r0, nc, nr, cpu);
            const tps_eval_stats st = emulate(fx, c0, r0, nc, nr, tolerance, force_every, emu);
            CHECK(st.mixed_blocks == 1 && st.check_failures == 0, "%s block %zu,%zu: %zu blocks, "
                  "%zu failed checks", f->name, c0 / bc, r0 / br, st.mixed_blocks,
                  st.check_failures);
            const int forced = force_every && (c0 / bc + r0 / br) % force_every == 0;
            if (forced)
                CHECK(st.fallback_blocks == 1, "%s: forced block %zu,%zu kept", f->name, c0 / bc,
                      r0 / br);
            total->mixed_blocks += st.mixed_blocks;
            total->fallback_blocks += st.fallback_blocks;
            total->check_failures += st.check_failures;
            total->max_error_estimate = fmax(total->max_error_estimate, st.max_error_estimate);
            for (size_t b = 0; b < fx->nb; ++b) {
                double e = 0.0;
                for (size_t k = 0; k < nc * nr; ++k)
                    e = max_nan(e, fabs(emu[b * nc * nr + k] - cpu[b * nc * nr + k]));
                const double rel = fx->range[b] > 0 ? e / fx->range[b] : e;
                if (st.fallback_blocks) {
                    CHECK(memcmp(emu + b * nc * nr, cpu + b * nc * nr, nc * nr * sizeof(double)) ==
                              0,
                          "%s band %zu block %zu,%zu: fallen back, not the CPU path's bytes",
                          f->name, b, c0 / bc, r0 / br);
                } else {
                    /* the bound is the block's largest over its bands, x range */
                    CHECK(rel <= st.max_error_estimate * (1 + 1e-9) + 1e-300,
                          "%s band %zu block %zu,%zu: error %.3g x range above its bound %.3g",
                          f->name, b, c0 / bc, r0 / br, rel, st.max_error_estimate);
                    CHECK(st.max_error_estimate <= tolerance, "%s: bound %.3g above tolerance",
                          f->name, st.max_error_estimate);
                }
                worst = max_nan(worst, rel);
            }
        }
    free(cpu);
    free(emu);
    return worst;
}

static void suite(int quick)
{
    /* name, n, layout, bands' values, lambda, grid, tolerance, smooth */
    static const field fields[] = {
        {"smooth", 1000, MF_BOX, {MF_SMOOTH, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 1},
        {"wiggly (test_gpu's)", 2000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 1},
        {"franke", 1500, MF_BOX, {MF_FRANKE, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 1},
        {"rough", 600, MF_BOX, {MF_ROUGH, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 0},
        {"noise", 400, MF_BOX, {MF_NOISE, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 0},
        {"noise, smoothed", 800, MF_BOX, {MF_NOISE, MF_NONE, MF_NONE}, 1e7, MF_COVER, 1e-5, 1},
        {"UTM offset, 3 bands", 1200, MF_UTM, {MF_WIGGLY, MF_BUMP_HOLES, MF_SMOOTH},
            0, MF_COVER, 1e-5, 1},
        {"elongated 4:1", 1200, MF_ELONGATED, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 1},
        {"clustered", 1500, MF_CLUSTERED, {MF_SMOOTH, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-5, 1},
        {"rotated, 50% past", 1000, MF_BOX, {MF_WIGGLY, MF_NONE, MF_NONE}, 0, MF_ROTATED, 1e-5, 1},
        {"zoom", 1000, MF_BOX, {MF_SMOOTH, MF_NONE, MF_NONE}, 0, MF_ZOOM, 1e-5, 1},
        {"coarse grid", 1000, MF_BOX, {MF_WIGGLY, MF_SMOOTH, MF_NONE}, 0, MF_COARSE, 1e-5, 0},
        {"rough, loose tolerance", 600, MF_BOX, {MF_ROUGH, MF_NONE, MF_NONE}, 0, MF_COVER, 1e-2, 1},
    };
    const size_t n_fields = sizeof fields / sizeof fields[0];
    /* Windows of 2 x 2 blocks of a 2048^2 raster: a corner, the middle,
     * an edge (all of the coarse grid's 8 x 6). */
    const size_t wins[3][2] = {{0, 0}, {1024, 1024}, {2016, 512}};
    /* Under valgrind (TPS_TEST_QUICK): a third of the fields, half their
     * points, the random model only, one window each. */
    for (int model = 0; model < (quick ? 1 : 2); ++model) {
        /* lg2.approx's error: random within its bound, then systematic */
        tps_mixed_set_lg2_model(model == 0 ? 1.0 : -1.0);
        for (size_t k = 0; k < n_fields; ++k) {
            field fq = fields[k];
            const field *f = &fq;
            if (quick && k % 3)
                continue;
            if (quick)
                fq.n /= 2;
            fixture fx;
            if (!make(f, &fx, 2048, 2048))
                continue;
            tps_eval_stats st, all;
            memset(&all, 0, sizeof all);
            double worst = 0.0;
            for (size_t w = 0; w < (quick ? 1u : 3u); ++w) {
                worst = max_nan(worst, check_blocks(f, &fx, wins[w][0], wins[w][1], 64, 32,
                                                    f->tolerance, 0, &st));
                all.mixed_blocks += st.mixed_blocks;
                all.fallback_blocks += st.fallback_blocks;
                all.max_error_estimate = fmax(all.max_error_estimate, st.max_error_estimate);
                if (f->grid == 3)
                    break;
            }
            printf("%-24s lg2 %s: max error %.2e x range, bound %.2e, %zu of %zu blocks fell "
                   "back\n",
                   f->name, model ? "systematic" : "random", worst, all.max_error_estimate,
                   all.fallback_blocks, all.mixed_blocks);
            CHECK(worst <= f->tolerance, "%s: error %.3g above the tolerance", f->name, worst);
            if (f->smooth)
                CHECK(all.fallback_blocks == 0, "%s: %zu blocks fell back", f->name,
                      all.fallback_blocks);
            tps_model_destroy(fx.model);
        }
    }
    tps_mixed_set_lg2_model(1.0);
}

/* ---- the guard ---- */

static void guard_checks(int quick)
{
    const field f = {"guard", quick ? 500 : 900, MF_BOX,
                     {MF_WIGGLY, MF_BUMP_HOLES, MF_NONE}, 0, MF_ROTATED, 1e-5, 1};
    fixture fx;
    if (!make(&f, &fx, 2048, 2048))
        return;
    /* Forced fallbacks: exactly the blocks asked for, the CPU path's bytes
     * (blocks 1..4 x 1..3 of the raster). */
    tps_eval_stats st;
    check_blocks(&f, &fx, 32, 16, 128, 48, 1e-5, 3, &st);
    size_t forced = 0;
    for (size_t by = 1; by <= 3; ++by)
        for (size_t bx = 1; bx <= 4; ++bx)
            forced += (bx + by) % 3 == 0;
    CHECK(st.fallback_blocks == forced && st.mixed_blocks == 12, "forced: %zu of %zu, expected "
          "%zu of 12", st.fallback_blocks, st.mixed_blocks, forced);
    /* A tolerance no block meets: the CPU path's bytes everywhere. */
    enum { WC = 100, WR = 40, C0 = 35, R0 = 17 };
    double *cpu = malloc(NB * WC * WR * sizeof(double)), *emu = malloc(NB * WC * WR * sizeof(double));
    cpu_window(&fx, C0, R0, WC, WR, cpu);
    st = emulate(&fx, C0, R0, WC, WR, 1e-14, 0, emu);
    CHECK(st.fallback_blocks == st.mixed_blocks && st.mixed_blocks == 4 * 3 &&
              st.max_error_estimate == 0.0,
          "tolerance 1e-14: %zu of %zu fell back, estimate %.3g", st.fallback_blocks,
          st.mixed_blocks, st.max_error_estimate);
    CHECK(memcmp(cpu, emu, fx.nb * WC * WR * sizeof(double)) == 0,
          "tolerance 1e-14: not the CPU path's bytes");
    /* Windows: a pixel's value does not depend on the window around it. */
    st = emulate(&fx, C0, R0, WC, WR, 1e-5, 0, emu);
    CHECK(st.fallback_blocks == 0, "%zu blocks fell back", st.fallback_blocks);
    const size_t wins[][4] = {{1, 1, 1, 1}, {7, 3, 93, 1}, {31, 15, 2, 2}, {13, 17, 50, 23}};
    for (size_t w = 0; w < 4; ++w) {
        const size_t c0 = wins[w][0], r0 = wins[w][1], nc = wins[w][2], nr = wins[w][3];
        double *sub = malloc(NB * nc * nr * sizeof(double));
        emulate(&fx, C0 + c0, R0 + r0, nc, nr, 1e-5, 0, sub);
        int same = 1;
        for (size_t b = 0; b < fx.nb; ++b)
            for (size_t r = 0; r < nr; ++r)
                for (size_t c = 0; c < nc; ++c)
                    same &= sub[b * nc * nr + r * nc + c] ==
                            emu[b * WC * WR + (r0 + r) * WC + (c0 + c)];
        CHECK(same, "window %zu: values differ from the full window's", w);
        free(sub);
    }
    free(cpu);
    free(emu);

    /* The dispatcher: AUTO and MIXED on the CPU evaluate in double and
     * report nothing; bad options are refused. */
    tps_context *ctx = tps_context_create();
    double out[8 * 4], ref[8 * 4];
    tps_grid g = fx.grid;
    g.first_col = 100;
    g.first_row = 100;
    g.ncols = 8;
    g.nrows = 4;
    tps_output o = {0, out, TPS_FLOAT64, 8, 64}, orf = {0, ref, TPS_FLOAT64, 8, 64};
    tps_eval_options eo;
    tps_eval_options_init(&eo);
    CHECK(eo.tolerance == TPS_DEFAULT_TOLERANCE && eo.stats == NULL, "init: %g %p", eo.tolerance,
          (void *)eo.stats);
    eo.device = TPS_DEVICE_CPU;
    CHECK(tps_evaluate_grid(ctx, fx.model, &g, 1, &orf, &eo) == TPS_OK, "%s",
          tps_context_errmsg(ctx));
    for (int p = 1; p <= 2; ++p) {
        tps_eval_stats s;
        memset(&s, 0xff, sizeof s);
        eo.precision = (tps_precision)p;
        eo.stats = &s;
        CHECK(tps_evaluate_grid(ctx, fx.model, &g, 1, &o, &eo) == TPS_OK, "%s",
              tps_context_errmsg(ctx));
        CHECK(memcmp(out, ref, sizeof out) == 0, "precision %d on the CPU: other values", p);
        CHECK(s.mixed_blocks == 0 && s.fallback_blocks == 0 && s.check_failures == 0 &&
                  s.max_error_estimate == 0.0,
              "precision %d on the CPU: stats not zeroed", p);
    }
    eo.stats = NULL;
    eo.precision = (tps_precision)3;
    CHECK(tps_evaluate_grid(ctx, fx.model, &g, 1, &o, &eo) == TPS_ERR_INVALID_ARGUMENT,
          "precision 3 accepted");
    eo.precision = TPS_PRECISION_AUTO;
    eo.tolerance = NAN;
    CHECK(tps_evaluate_grid(ctx, fx.model, &g, 1, &o, &eo) == TPS_ERR_INVALID_ARGUMENT,
          "tolerance NaN accepted");
    /* The emulation takes global models and value outputs only. */
    tps_eval_stats s;
    tps_output od = {0, out, TPS_FLOAT64, 8, 64, TPS_QUANTITY_SLOPE};
    CHECK(tps_mixed_emulate_grid(ctx, fx.model, &g, 1, &od, 1e-5, 1, 0, &s) ==
              TPS_ERR_INVALID_ARGUMENT,
          "a slope output emulated");
    tps_context_destroy(ctx);
    tps_model_destroy(fx.model);
}

int main(void)
{
    const char *q = getenv("TPS_TEST_QUICK");
    const int quick = q && strcmp(q, "1") == 0;
    layout_checks(quick);
    suite(quick);
    guard_checks(quick);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

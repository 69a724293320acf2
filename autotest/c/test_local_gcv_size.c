/* test_local_gcv_size.c: a LOCAL model's GCV sizes its patches from the
 * lambda it chose when neither PatchPoints nor Overlap is given (issue 14;
 * core/local_size.c, docs/design.md "Patch sizes for GCV").
 *
 * - Against the global GCV (N = 4,000 uniform points, Franke's function plus
 *   noise of 30 % of its standard deviation): with the defaults given
 *   explicitly (PatchPoints 500, Overlap 1.5: honoured, not re-partitioned)
 *   the RMSE against the noise-free field is more than 5 % above the global
 *   GCV's; sized from lambda it is within 5 %, and lambda within a factor 2.
 * - The sized model is bit-identical to the fixed-lambda local model with
 *   the lambda and the patch settings it reports (tps_model_info).
 * - PatchPoints alone, Overlap alone: honoured. Low noise (a small lambda):
 *   no re-partition. Clustered points: re-partitioned, bit-identical too. Two bands: sized for the larger lambda (the settings
 *   of the noisy band alone). A fixed lambda: the defaults, however large.
 * - The rule itself (local_size.h) on a quadtree of known counts, the
 *   N = 20,000 case of docs/benchmarks.md in miniature: a partition whose
 *   larger cells the work cap denies to a GCV pass is still taken for the
 *   final solve when it is large enough and within the solve's share;
 *   a partition that is still short is not (only a GCV pass takes those);
 *   none when the cells are large enough.
 * - A memory limit that the defaults fit and the larger cells do not: the
 *   model opens on the defaults, bit-identical to its fixed-lambda twin.
 * `test_local_gcv_size compare` runs the comparison with the global GCV
 * (skipped, 77, under TPS_TEST_QUICK=1: valgrind), `test_local_gcv_size`
 * the rest (under TPS_TEST_QUICK=1, valgrind: 700 points, the sized model and
 * its fixed-lambda twin only). */
#include "check.h"
#include "local_size.h"
#include "testdata.h"
#include "tps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int quick = 0;
static size_t max_memory = 0; /* fit()'s */

static double gauss(void)
{
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Franke's function's standard deviation over the unit square is ~0.25. */
#define FRANKE_SD 0.25

typedef struct points {
    size_t n;
    double *x, *y, *z1, *z2; /* z1: noise `noise`, z2: noise 1 % */
} points;

static points make_points(size_t n, double noise)
{
    points p = {n, malloc(sizeof(double) * n * 4), NULL, NULL, NULL};
    p.y = p.x + n;
    p.z1 = p.y + n;
    p.z2 = p.z1 + n;
    for (size_t i = 0; i < n; ++i) {
        p.x[i] = uniform();
        p.y[i] = uniform();
        const double f = franke(p.x[i], p.y[i]);
        p.z1[i] = f + noise * FRANKE_SD * gauss();
        p.z2[i] = f + 0.01 * FRANKE_SD * gauss();
    }
    return p;
}

typedef struct fitted {
    tps_model *m;
    double lambda[2];
    tps_model_info info;
} fitted;

/* A model of bands z (n_bands of them, GCV where gcv, else lambda). */
static fitted fit(tps_context *ctx, const points *p, size_t n_bands, const double *const *z,
                  int gcv, double lambda, tps_mode mode, size_t pp, double overlap)
{
    fitted f = {NULL, {NAN, NAN}, {0}};
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = mode;
    o.patch_points = pp;
    o.overlap = overlap;
    o.num_threads = 2;
    o.device = TPS_DEVICE_CPU;
    o.max_memory = max_memory;
    const int flags[2] = {gcv, gcv};
    const double sm[2] = {lambda, lambda};
    o.smoothing_gcv = flags;
    f.m = tps_model_create(ctx, p->n, p->x, p->y, n_bands, z, sm, &o);
    CHECK(f.m != NULL, "model (%s, %s, PatchPoints %zu, Overlap %g): %s",
          mode == TPS_MODE_LOCAL ? "LOCAL" : "GLOBAL", gcv ? "GCV" : "fixed", pp, overlap,
          tps_context_errmsg(ctx));
    if (!f.m)
        return f;
    CHECK(tps_model_get_info(ctx, f.m, &f.info) == TPS_OK, "%s", tps_context_errmsg(ctx));
    for (size_t b = 0; b < n_bands; ++b) {
        tps_band_info bi;
        CHECK(tps_model_get_band_info(ctx, f.m, b, &bi) == TPS_OK, "%s", tps_context_errmsg(ctx));
        f.lambda[b] = bi.smoothing;
    }
    return f;
}

enum { NT = 10000 };
static double tx[NT], ty[NT], tf[NT], out[2][NT];

/* The RMSE of band 0 against Franke's function at the test points. */
static double rmse(tps_context *ctx, const fitted *f)
{
    if (!f->m)
        return NAN;
    const tps_status st = tps_evaluate_points(ctx, f->m, 0, NT, tx, ty, out[0], NULL);
    CHECK(st == TPS_OK, "evaluate: %s", tps_context_errmsg(ctx));
    if (st != TPS_OK)
        return NAN;
    double ss = 0.0;
    for (int k = 0; k < NT; ++k)
        ss += (out[0][k] - tf[k]) * (out[0][k] - tf[k]);
    return sqrt(ss / NT);
}

static int repartitioned(const tps_model_info *in)
{
    return in->patch_points != TPS_DEFAULT_PATCH_POINTS || in->overlap != TPS_DEFAULT_OVERLAP;
}

/* ---- the rule, on a quadtree of known counts ---- */

/* A full quadtree over the unit square, three levels below the root, 300
 * points in each of its 64 leaves (N = 19,200, uniform): the partition of
 * PatchPoints 500. nodes[0] the root, each node's children together. */
enum { LEVELS = 3, LEAF_POINTS = 300, TREE_NODES = 1 + 4 + 16 + 64 };

static size_t make_tree(tps_size_node *nodes)
{
    size_t count = 1, first = 0, width = 1;
    nodes[0] = (tps_size_node){0.0, 0.0, 1.0, 1.0, LEAF_POINTS * 64, 0};
    for (int level = 0; level < LEVELS; ++level, width *= 4) {
        for (size_t k = first; k < first + width; ++k) {
            tps_size_node *nd = &nodes[k];
            const double hu = 0.5 * (nd->u1 - nd->u0), hv = 0.5 * (nd->v1 - nd->v0);
            nd->child = count;
            for (int q = 0; q < 4; ++q) {
                const double u0 = nd->u0 + hu * (q & 1), v0 = nd->v0 + hv * (q >> 1);
                nodes[count++] = (tps_size_node){u0, v0, u0 + hu, v0 + hv, nd->n / 4, 0};
            }
        }
        first += width;
    }
    return count;
}

static void test_rule(void)
{
    tps_size_node nodes[TREE_NODES];
    const size_t n_nodes = make_tree(nodes);
    CHECK(n_nodes == TREE_NODES, "%zu nodes", n_nodes);
    const double box[4] = {0.0, 0.0, 1.0, 1.0};
    /* sqrt(lambda rho) = 100: a cell needs (2 * 1.5 / (Overlap - 1))^2 * 100
     * points (docs/design.md): 3,600 at Overlap 1.5, 1,600 at 1.75, 900 at
     * 2. So the leaves (300) fall short by 12 at 1.5 and 3 at 2; the cells
     * of 1,200 by 1.33 at 1.75, and at 2 they are large enough (0.75). Their
     * estimated work (sum of n_p^3, the box's edges clipping the patches):
     * 1,200 points at 1.75 4.4e11, at 2 8.9e11. */
    const double lambda_s = 1e4 / (LEAF_POINTS * 64.0);
    char why[400];
    tps_size_plan plan = {0, 0.0, NAN, NAN};

    const double now = tps_local_size_shortfall(nodes, n_nodes, lambda_s, 500, 1.5);
    CHECK(fabs(now - 12.0) < 1e-9, "the leaves at Overlap 1.5 fall short by %.17g, not 12", now);

    /* A GCV pass within the cap: the least short it affords (none large
     * enough is within it), the cells of 1,200 at 1.75. */
    int r = tps_local_size_next(nodes, n_nodes, box, lambda_s, 500, 1.5,
                                TPS_LOCAL_SIZE_WORK_CAP, &plan, why, sizeof why);
    CHECK(r == 1 && plan.patch_points == 1200 && plan.overlap == 1.75 &&
              fabs(plan.shortfall - 1600.0 / 1200.0) < 1e-9 && plan.work > 4e11 &&
              plan.work < 5e11,
          "GCV pass from 500:1.5: %d, %zu:%g, shortfall %g, work %g (%s)", r,
          plan.patch_points, plan.overlap, plan.shortfall, plan.work, why);
    /* The final solve with no more than that: nothing large enough, so
     * none (a partition still short is a GCV pass's to take). */
    tps_size_plan none = {0, 0.0, NAN, NAN};
    r = tps_local_size_final(nodes, n_nodes, box, lambda_s, 500, 1.5, TPS_LOCAL_SIZE_WORK_CAP,
                             &none, why, sizeof why);
    CHECK(r == 0 && none.patch_points == 0, "final solve from 500:1.5 within %g: %d, %zu (%s)",
          TPS_LOCAL_SIZE_WORK_CAP, r, none.patch_points, why);

    /* From there (1,200:1.75, the cells of the 20,000-point case): the cap's
     * rest allows no GCV pass; the final solve's share (the solve ratio
     * times the passes' work) takes the cells of 1,200 at Overlap 2. The
     * rule reads the tree of the partition built (here: its leaves at the
     * second level). */
    for (size_t k = 5; k < 5 + 16; ++k)
        nodes[k].child = 0;
    const double spent = plan.work + 1.5e10; /* the passes: this one and the first */
    tps_size_plan next = {0, 0.0, NAN, NAN};
    r = tps_local_size_next(nodes, n_nodes, box, lambda_s, 1200, 1.75,
                            TPS_LOCAL_SIZE_WORK_CAP - spent, &next, why, sizeof why);
    CHECK(r == 0 && next.patch_points == 0, "GCV pass from 1200:1.75 within the cap: %d (%s)",
          r, why);
    r = tps_local_size_final(nodes, n_nodes, box, lambda_s, 1200, 1.75,
                             TPS_LOCAL_SIZE_SOLVE_RATIO * spent, &next, why, sizeof why);
    CHECK(r == 1 && next.patch_points == 1200 && next.overlap == 2.0 &&
              fabs(next.shortfall - 0.75) < 1e-9 && next.work > TPS_LOCAL_SIZE_WORK_CAP &&
              next.work <= TPS_LOCAL_SIZE_SOLVE_RATIO * spent,
          "final solve from 1200:1.75: %d, %zu:%g, shortfall %g, work %g (%s)", r,
          next.patch_points, next.overlap, next.shortfall, next.work, why);
    /* ... but not beyond its share. */
    tps_size_plan capped = {0, 0.0, NAN, NAN};
    r = tps_local_size_final(nodes, n_nodes, box, lambda_s, 1200, 1.75, 0.5 * next.work,
                             &capped, why, sizeof why);
    CHECK(r == 0 && capped.patch_points == 0, "final solve within %g: %d (%s)",
          0.5 * next.work, r, why);
    /* Large enough already: none. */
    r = tps_local_size_final(nodes, n_nodes, box, lambda_s, 1200, 2.0, 1e300, &capped, why,
                             sizeof why);
    CHECK(r == 0 && capped.patch_points == 0, "final solve from 1200:2: %d (%s)", r, why);
}

/* ---- against the global GCV ---- */

static void test_against_global(tps_context *ctx)
{
    points p = make_points(4000, 0.3);
    const double *z[1] = {p.z1};
    fitted g = fit(ctx, &p, 1, z, 1, 0.0, TPS_MODE_GLOBAL, 0, 0.0);
    fitted d = fit(ctx, &p, 1, z, 1, 0.0, TPS_MODE_LOCAL, TPS_DEFAULT_PATCH_POINTS,
                   TPS_DEFAULT_OVERLAP);
    fitted s = fit(ctx, &p, 1, z, 1, 0.0, TPS_MODE_LOCAL, 0, 0.0);
    const double rg = rmse(ctx, &g), rd = rmse(ctx, &d), rs = rmse(ctx, &s);
    printf("N = 4000, Franke, noise 30 %%: global lambda %.5g RMSE %.6g; defaults (%zu "
           "patches) lambda %.5g RMSE %.6g (%.4f); sized (%zu:%g, %zu patches) lambda %.5g "
           "RMSE %.6g (%.4f)\n", g.lambda[0], rg, d.info.n_patches, d.lambda[0], rd, rd / rg,
           s.info.patch_points, s.info.overlap, s.info.n_patches, s.lambda[0], rs, rs / rg);
    CHECK(d.info.patch_points == TPS_DEFAULT_PATCH_POINTS &&
              d.info.overlap == TPS_DEFAULT_OVERLAP,
          "the defaults given: reported %zu:%g", d.info.patch_points, d.info.overlap);
    CHECK(rd > 1.05 * rg, "the defaults meet the target here (RMSE %g, global %g): the case "
          "no longer tests the sizing", rd, rg);
    CHECK(repartitioned(&s.info), "not re-partitioned: %zu:%g", s.info.patch_points,
          s.info.overlap);
    CHECK(s.lambda[0] >= 0.5 * g.lambda[0] && s.lambda[0] <= 2.0 * g.lambda[0],
          "lambda sized %g global %g", s.lambda[0], g.lambda[0]);
    CHECK(rs <= 1.05 * rg, "RMSE sized %g global %g", rs, rg);
    tps_model_destroy(g.m);
    tps_model_destroy(d.m);
    tps_model_destroy(s.m);
    free(p.x);
}

/* ---- the rest ---- */

static void test_sized(tps_context *ctx)
{
    points p = make_points(quick ? 700 : 3000, 0.3);
    const double *z1[1] = {p.z1}, *z2[1] = {p.z2}, *both[2] = {p.z1, p.z2};

    /* Sized: re-partitioned, and the same bytes as the fixed-lambda model
     * with what it reports. */
    fitted s = fit(ctx, &p, 1, z1, 1, 0.0, TPS_MODE_LOCAL, 0, 0.0);
    CHECK(repartitioned(&s.info), "30 %% noise: not re-partitioned (%zu:%g)",
          s.info.patch_points, s.info.overlap);
    fitted f = fit(ctx, &p, 1, z1, 0, s.lambda[0], TPS_MODE_LOCAL, s.info.patch_points,
                   s.info.overlap);
    if (s.m && f.m) {
        CHECK(f.info.n_patches == s.info.n_patches, "patches %zu / %zu", f.info.n_patches,
              s.info.n_patches);
        CHECK(tps_evaluate_points(ctx, s.m, 0, NT, tx, ty, out[0], NULL) == TPS_OK &&
                  tps_evaluate_points(ctx, f.m, 0, NT, tx, ty, out[1], NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0,
              "the sized GCV model differs from the fixed-lambda model at lambda %.17g, "
              "PatchPoints %zu, Overlap %.17g", s.lambda[0], s.info.patch_points,
              s.info.overlap);
    }
    tps_model_destroy(f.m);

    /* A memory limit that the default partition fits and the larger
     * cells do not: the model opens on the defaults (the limit from the
     * need the engine names when it refuses 1 byte), bit-identical to the
     * fixed-lambda model with them. */
    max_memory = 1;
    tps_context *lim = tps_context_create();
    tps_fit_options o;
    tps_fit_options_init(&o);
    o.mode = TPS_MODE_LOCAL;
    o.num_threads = 2; /* as fit()'s: the need counts the threads' solves */
    o.device = TPS_DEVICE_CPU;
    o.max_memory = 1;
    const int gcv_flag = 1;
    const double zero = 0.0;
    o.smoothing_gcv = &gcv_flag;
    tps_model *refused = tps_model_create(lim, p.n, p.x, p.y, 1, z1, &zero, &o);
    const char *need = strstr(tps_context_errmsg(lim), "needs ");
    max_memory = 0;
    CHECK(refused == NULL && tps_context_errno(lim) == TPS_ERR_MEMORY_LIMIT && need &&
              sscanf(need, "needs %zu bytes", &max_memory) == 1 && max_memory > 1,
          "1 byte: %s", tps_context_errmsg(lim));
    tps_model_destroy(refused);
    tps_context_destroy(lim);
    if (max_memory > 1) {
        /* GCV's own reckoning of its sums asks somewhat more than the
         * partition's check: a quarter more, still short of the larger
         * cells'. */
        max_memory += max_memory / 4;
        fitted m = fit(ctx, &p, 1, z1, 1, 0.0, TPS_MODE_LOCAL, 0, 0.0);
        max_memory = 0;
        CHECK(m.m && !repartitioned(&m.info), "the defaults' memory: %zu:%g",
              m.info.patch_points, m.info.overlap);
        fitted mf = fit(ctx, &p, 1, z1, 0, m.lambda[0], TPS_MODE_LOCAL,
                        TPS_DEFAULT_PATCH_POINTS, TPS_DEFAULT_OVERLAP);
        if (m.m && mf.m) {
            CHECK(tps_evaluate_points(ctx, m.m, 0, NT, tx, ty, out[0], NULL) == TPS_OK &&
                      tps_evaluate_points(ctx, mf.m, 0, NT, tx, ty, out[1], NULL) == TPS_OK,
                  "%s", tps_context_errmsg(ctx));
            CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0,
                  "under the memory limit: the GCV model differs from the fixed-lambda model "
                  "at lambda %.17g with the defaults", m.lambda[0]);
        }
        tps_model_destroy(m.m);
        tps_model_destroy(mf.m);
    }
    max_memory = 0;
    if (quick) {
        /* Under valgrind (each GCV pass ~1,000x slower there): the sized
         * path and its fixed-lambda twin only; the rest runs in `make test`. */
        tps_model_destroy(s.m);
        free(p.x);
        return;
    }

    /* The user's settings: honoured, each alone. */
    fitted a = fit(ctx, &p, 1, z1, 1, 0.0, TPS_MODE_LOCAL, 300, 0.0);
    CHECK(a.info.patch_points == 300 && a.info.overlap == TPS_DEFAULT_OVERLAP,
          "PatchPoints 300: %zu:%g", a.info.patch_points, a.info.overlap);
    fitted b = fit(ctx, &p, 1, z1, 1, 0.0, TPS_MODE_LOCAL, 0, 1.25);
    CHECK(b.info.patch_points == TPS_DEFAULT_PATCH_POINTS && b.info.overlap == 1.25,
          "Overlap 1.25: %zu:%g", b.info.patch_points, b.info.overlap);
    tps_model_destroy(a.m);
    tps_model_destroy(b.m);

    /* Low noise: lambda small, the defaults kept. */
    fitted l = fit(ctx, &p, 1, z2, 1, 0.0, TPS_MODE_LOCAL, 0, 0.0);
    CHECK(!repartitioned(&l.info), "1 %% noise (lambda %g): re-partitioned (%zu:%g)",
          l.lambda[0], l.info.patch_points, l.info.overlap);
    CHECK(l.lambda[0] < 0.1 * s.lambda[0], "1 %% noise: lambda %g, 30 %%: %g", l.lambda[0],
          s.lambda[0]);
    tps_model_destroy(l.m);

    /* Two bands: sized for the larger lambda, each band's lambda chosen on
     * that partition (the noisy band's as alone: its path is the same). */
    fitted t = fit(ctx, &p, 2, both, 1, 0.0, TPS_MODE_LOCAL, 0, 0.0);
    CHECK(t.info.patch_points == s.info.patch_points && t.info.overlap == s.info.overlap &&
              t.info.n_patches == s.info.n_patches,
          "two bands: %zu:%g (%zu patches), the noisy band alone %zu:%g (%zu)",
          t.info.patch_points, t.info.overlap, t.info.n_patches, s.info.patch_points,
          s.info.overlap, s.info.n_patches);
    CHECK(t.lambda[0] == s.lambda[0] && t.lambda[1] < t.lambda[0],
          "two bands: lambdas %.17g %.17g, the noisy band alone %.17g", t.lambda[0],
          t.lambda[1], s.lambda[0]);
    tps_model_destroy(t.m);
    tps_model_destroy(s.m);

    /* Clustered: half the points in a square of 1/25 of the box (the cells
     * there are 25x denser, and the rule asks more points of them). */
    for (size_t i = 0; i < p.n / 2; ++i) {
        p.x[i] = 0.4 + 0.2 * p.x[i];
        p.y[i] = 0.4 + 0.2 * p.y[i];
        p.z1[i] = franke(p.x[i], p.y[i]) + 0.3 * FRANKE_SD * gauss();
    }
    fitted c = fit(ctx, &p, 1, z1, 1, 0.0, TPS_MODE_LOCAL, 0, 0.0);
    fitted cf = fit(ctx, &p, 1, z1, 0, c.lambda[0], TPS_MODE_LOCAL, c.info.patch_points,
                    c.info.overlap);
    printf("clustered: lambda %.5g, %zu:%g, %zu patches\n", c.lambda[0], c.info.patch_points,
           c.info.overlap, c.info.n_patches);
    CHECK(repartitioned(&c.info), "clustered, 30 %% noise: not re-partitioned (%zu:%g)",
          c.info.patch_points, c.info.overlap);
    if (c.m && cf.m) {
        CHECK(tps_evaluate_points(ctx, c.m, 0, NT, tx, ty, out[0], NULL) == TPS_OK &&
                  tps_evaluate_points(ctx, cf.m, 0, NT, tx, ty, out[1], NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0,
              "clustered: the sized GCV model differs from the fixed-lambda model");
    }
    tps_model_destroy(c.m);
    tps_model_destroy(cf.m);

    /* A fixed lambda, however large: the defaults. */
    fitted x = fit(ctx, &p, 1, z1, 0, 10.0, TPS_MODE_LOCAL, 0, 0.0);
    CHECK(x.info.patch_points == TPS_DEFAULT_PATCH_POINTS &&
              x.info.overlap == TPS_DEFAULT_OVERLAP,
          "fixed lambda 10: %zu:%g", x.info.patch_points, x.info.overlap);
    tps_model_destroy(x.m);
    free(p.x);
}

int main(int argc, char **argv)
{
    quick = getenv("TPS_TEST_QUICK") && strcmp(getenv("TPS_TEST_QUICK"), "0") != 0;
    const int compare = argc > 1 && strcmp(argv[1], "compare") == 0;
    if (compare && quick) {
        printf("skipped: TPS_TEST_QUICK=1 (valgrind); the comparison with the global GCV runs "
               "in plain ctest\n");
        return 77;
    }
    for (int k = 0; k < NT; ++k) {
        tx[k] = 0.02 + 0.96 * uniform();
        ty[k] = 0.02 + 0.96 * uniform();
        tf[k] = franke(tx[k], ty[k]);
    }
    if (!compare)
        test_rule();
    tps_context *ctx = tps_context_create();
    if (compare)
        test_against_global(ctx);
    else
        test_sized(ctx);
    tps_context_destroy(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

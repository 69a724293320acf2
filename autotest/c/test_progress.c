/* test_progress.c: progress reports of long solves (tps_fit_options.progress).
 *
 * - every report comes on the thread that called tps_model_create, even
 *   with worker threads;
 * - within a stage the fractions start at 0, strictly increase in whole
 *   percents and end at 1; the stages are the documented ones (building the
 *   system, the Cholesky factorisation in panels, GCV's eigendecomposition,
 *   local patches, a local model's GCV per wave of patches; a local model's
 *   per-patch solves and eigendecompositions report nothing);
 * - a model solved with progress is the model solved without it, and the
 *   panelled Cholesky (N > 1024) agrees with a direct LU solve
 *   (LAPACKE_dgesv) of the full saddle-point system. */
#include "check.h"
#include "testdata.h"
#include "tps.h"

#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORTS 4096

typedef struct report {
    char stage[256];
    double fraction;
} report;

typedef struct recorder {
    pthread_t caller;
    int wrong_thread;
    size_t n;
    report r[MAX_REPORTS];
} recorder;

static void record(void *user, const char *stage, double fraction)
{
    recorder *rec = user;
    if (!pthread_equal(pthread_self(), rec->caller))
        rec->wrong_thread++;
    if (rec->n < MAX_REPORTS) {
        snprintf(rec->r[rec->n].stage, sizeof rec->r[rec->n].stage, "%s", stage);
        rec->r[rec->n].fraction = fraction;
        rec->n++;
    }
}

/* Checks the structure of the reports; returns how many reports the first
 * stage containing `needle` had (0 if none). */
static size_t check_stages(const recorder *rec, const char *what, const char *needle)
{
    CHECK(rec->wrong_thread == 0, "%s: %d reports from another thread", what, rec->wrong_thread);
    CHECK(rec->n < MAX_REPORTS, "%s: %zu reports", what, rec->n);
    size_t found = 0;
    for (size_t i = 0; i < rec->n;) {
        size_t j = i + 1;
        while (j < rec->n && strcmp(rec->r[j].stage, rec->r[i].stage) == 0)
            ++j;
        CHECK(rec->r[i].fraction == 0.0, "%s: stage '%s' starts at %g", what, rec->r[i].stage,
              rec->r[i].fraction);
        CHECK(rec->r[j - 1].fraction == 1.0, "%s: stage '%s' ends at %g", what, rec->r[i].stage,
              rec->r[j - 1].fraction);
        for (size_t k = i + 1; k < j; ++k)
            CHECK(floor(rec->r[k].fraction * 100 + 1e-9) > floor(rec->r[k - 1].fraction * 100 + 1e-9),
                  "%s: stage '%s': %g after %g", what, rec->r[i].stage, rec->r[k].fraction,
                  rec->r[k - 1].fraction);
        if (!found && strstr(rec->r[i].stage, needle))
            found = j - i;
        i = j;
    }
    CHECK(found > 0, "%s: no stage '%s' among %zu reports", what, needle, rec->n);
    return found;
}

static size_t count_stages(const recorder *rec, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < rec->n; ++i)
        n += strstr(rec->r[i].stage, needle) && rec->r[i].fraction == 0.0;
    return n;
}

/* Points of the global solve: 1500, or 1100 with TPS_TEST_QUICK=1 (valgrind,
 * scripts/valgrind_tests.py): still three panels of the Cholesky, half the
 * work of the reference LU. */
static size_t global_points = 1500;

static void test_global(void)
{
    enum { N_FULL = 1500 };
    const size_t N = global_points;
    static double x[N_FULL], y[N_FULL], z[N_FULL], f_with[N_FULL], f_without[N_FULL],
        f_ref[N_FULL];
    for (size_t i = 0; i < N; ++i) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = franke(x[i], y[i]);
    }
    const double *zp = z, lambda = 1e-4;
    tps_context *ctx = tps_context_create();
    static recorder rec;
    rec.caller = pthread_self();
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.num_threads = 3; /* workers build the system; only the caller reports */
    fo.device = TPS_DEVICE_CPU;
    fo.progress = record;
    fo.progress_data = &rec;
    tps_model *m = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &fo);
    CHECK(m != NULL, "global: %s", tps_context_errmsg(ctx));
    char stage[128];
    snprintf(stage, sizeof stage, "building the %zu x %zu system", N, N);
    check_stages(&rec, "global", stage);
    /* N - 3 columns (1497, or 1097) in panels of 512: three panels, a report after each. */
    snprintf(stage, sizeof stage, "band 1: factorising (Cholesky, %zu x %zu)", N - 3, N - 3);
    size_t chol = check_stages(&rec, "global", stage);
    CHECK(chol == 4, "global: %zu Cholesky reports, expected 0 and three panels", chol);

    fo.progress = NULL;
    tps_model *m2 = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &fo);
    CHECK(m2 != NULL, "global without progress: %s", tps_context_errmsg(ctx));
    if (m && m2) {
        CHECK(tps_evaluate_points(ctx, m, 0, N, x, y, f_with, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(tps_evaluate_points(ctx, m2, 0, N, x, y, f_without, NULL) == TPS_OK,
              "%s", tps_context_errmsg(ctx));
        CHECK(memcmp(f_with, f_without, N * sizeof *f_with) == 0, "progress changed the model");
    }

    /* The reference: LU of [K + lambda I, P; P^T, 0] in the points' own coordinates. */
    const size_t mm = N + 3;
    double *a = calloc(mm * mm, sizeof(double)), *c = calloc(mm, sizeof(double));
    lapack_int *piv = malloc(sizeof(lapack_int) * mm);
    for (size_t i = 0; i < N; ++i) {
        for (size_t j = 0; j < N; ++j) {
            double dx = x[i] - x[j], dy = y[i] - y[j], r2 = dx * dx + dy * dy;
            a[i + j * mm] = (r2 > 0 ? 0.5 * r2 * log(r2) : 0.0) + (i == j ? lambda : 0.0);
        }
        double p[3] = {1.0, x[i], y[i]};
        for (size_t k = 0; k < 3; ++k)
            a[i + (N + k) * mm] = a[(N + k) + i * mm] = p[k];
        c[i] = z[i];
    }
    CHECK(LAPACKE_dgesv(LAPACK_COL_MAJOR, (lapack_int)mm, 1, a, (lapack_int)mm, piv, c,
                        (lapack_int)mm) == 0, "reference LU failed");
    double worst = 0.0;
    for (size_t i = 0; i < N; ++i) {
        double s = c[N] + c[N + 1] * x[i] + c[N + 2] * y[i];
        for (size_t j = 0; j < N; ++j) {
            double dx = x[i] - x[j], dy = y[i] - y[j], r2 = dx * dx + dy * dy;
            s += c[j] * (r2 > 0 ? 0.5 * r2 * log(r2) : 0.0);
        }
        f_ref[i] = s;
        worst = max_nan(worst, fabs(f_with[i] - f_ref[i]));
    }
    CHECK(worst < 1e-8, "panelled Cholesky vs LU: max diff %g (values in [-0.2, 1.2])", worst);
    printf("global, N = %zu: %zu reports, max diff to LU %.3g\n", N, rec.n, worst);
    free(a);
    free(c);
    free(piv);
    tps_model_destroy(m);
    tps_model_destroy(m2);
    tps_context_destroy(ctx);
}

static void test_local_and_gcv(void)
{
    enum { N = 6000 };
    static double x[N], y[N], z[N];
    for (int i = 0; i < N; ++i) {
        x[i] = uniform();
        y[i] = uniform();
        z[i] = franke(x[i], y[i]) + 0.01 * (uniform() - 0.5);
    }
    const double *zp = z, lambda = 0.0;
    tps_context *ctx = tps_context_create();
    static recorder rec;
    rec.caller = pthread_self();
    rec.n = 0;
    tps_fit_options fo;
    tps_fit_options_init(&fo);
    fo.mode = TPS_MODE_LOCAL;
    fo.patch_points = 50;
    fo.progress = record;
    fo.progress_data = &rec;
    /* With workers, the caller's thread reports as it takes patches (how
     * many it gets depends on the scheduler); alone, it takes them all. */
    for (int threads = 3; threads >= 1; threads -= 2) {
        rec.n = 0;
        fo.num_threads = threads;
        tps_model *m = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &fo);
        CHECK(m != NULL, "local: %s", tps_context_errmsg(ctx));
        size_t patches = check_stages(&rec, "local", "patches");
        CHECK(threads > 1 || patches >= 10, "local: only %zu reports while solving the patches",
              patches);
        CHECK(count_stages(&rec, "building") == 0 && count_stages(&rec, "factorising") == 0,
              "local: a patch's own solve reported progress");
        tps_model_destroy(m);
    }

    /* GCV over 300 points: the eigendecomposition is one LAPACK call,
     * reported at its start and end. */
    rec.n = 0;
    fo.mode = TPS_MODE_GLOBAL;
    const int gcv = 1;
    fo.smoothing_gcv = &gcv;
    tps_model *m = tps_model_create(ctx, 300, x, y, 1, &zp, &lambda, &fo);
    CHECK(m != NULL, "gcv: %s", tps_context_errmsg(ctx));
    size_t eig = check_stages(&rec, "gcv", "GCV: eigendecomposition (297 x 297)");
    CHECK(eig == 2, "gcv: %zu eigendecomposition reports, expected 2", eig);
    check_stages(&rec, "gcv", "GCV: building");
    tps_model_destroy(m);

    /* A local model's GCV: one stage, reported per wave of patches (their
     * own eigendecompositions report nothing), then the patches' solves;
     * with workers too. */
    fo.mode = TPS_MODE_LOCAL;
    for (int threads = 3; threads >= 1; threads -= 2) {
        rec.n = 0;
        fo.num_threads = threads;
        m = tps_model_create(ctx, N, x, y, 1, &zp, &lambda, &fo);
        CHECK(m != NULL, "local gcv: %s", tps_context_errmsg(ctx));
        const size_t waves = check_stages(&rec, "local gcv", "GCV over");
        check_stages(&rec, "local gcv", "solving");
        CHECK(waves >= 3, "local gcv: %zu reports over the patches' waves", waves);
        CHECK(count_stages(&rec, "building") == 0 && count_stages(&rec, "eigendecomposition (") == 0,
              "local gcv: a patch's own steps reported progress");
        tps_model_destroy(m);
    }
    tps_context_destroy(ctx);
}

int main(void)
{
    const char *quick = getenv("TPS_TEST_QUICK");
    if (quick && strcmp(quick, "1") == 0)
        global_points = 1100;
    rng_state = 0x5DEECE66DULL;
    test_global();
    test_local_and_gcv();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

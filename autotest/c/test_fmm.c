/* test_fmm.c: the fast summation (core/fmm.c) against direct summation in
 * long double, to its stated tolerance: |fast - direct| <= tol * sum |h|
 * (core/fmm.h), at the sources themselves (the iterative solve's products)
 * and at other targets in and around the model's square, for uniform and
 * clustered points (a deep, unbalanced tree), random weights and a
 * spline's weights (large, cancelling), tolerances 1e-6, 1e-10 and 1e-14.
 * Also: the same bytes on one thread and two; tiny inputs; the worst error
 * shrinks as the tolerance does (the expansions do the work, not the near
 * field alone).
 *
 * TPS_TEST_QUICK=1 (valgrind): 1,200 points instead of 3,000. */
#include "check.h"
#include "fmm.h"
#include "internal.h"
#include "testdata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t n_points = 3000;
#define N_TARGETS 2000

/* sum_j h_j s log s, s = |p - t_j|^2, in long double. */
static void direct(size_t n, const double *u, const double *v, const double *h, size_t m,
                   const double *pu, const double *pv, double *out)
{
    for (size_t i = 0; i < m; ++i) {
        long double acc = 0.0L;
        for (size_t j = 0; j < n; ++j) {
            const long double du = (long double)pu[i] - u[j], dv = (long double)pv[i] - v[j];
            const long double s = du * du + dv * dv;
            if (s > 0.0L)
                acc += (long double)h[j] * s * logl(s);
        }
        out[i] = (double)acc;
    }
}

static double max_error(const double *a, const double *b, size_t n)
{
    double e = 0.0;
    for (size_t i = 0; i < n; ++i)
        e = max_nan(e, fabs(a[i] - b[i]));
    return e;
}

/* Points: uniform in [-1, 1]^2, or half of them in a disc of radius 1e-3. */
static void make_points(int clustered, size_t n, double *u, double *v)
{
    for (size_t i = 0; i < n; ++i) {
        if (clustered && i % 2) {
            const double r = 1e-3 * sqrt(uniform()), a = 6.283185307179586 * uniform();
            u[i] = 0.31 + r * cos(a);
            v[i] = -0.27 + r * sin(a);
        } else {
            u[i] = 2.0 * uniform() - 1.0;
            v[i] = 2.0 * uniform() - 1.0;
        }
    }
}

/* A spline's weights: the interpolant of a wiggly field (the weights of an
 * interpolating thin plate spline are large and of both signs). */
static int spline_weights(size_t n, const double *u, const double *v, double *h)
{
    double *z = malloc(sizeof(double) * n), *w = malloc(sizeof(double) * n), a[1][3];
    if (!z || !w)
        return -1;
    for (size_t i = 0; i < n; ++i)
        z[i] = sin(6 * u[i]) * cos(4 * v[i]) + 0.3 * u[i];
    const double *zp = z;
    int used_gpu = 0;
    tps_status st = tps_solve_dense(NULL, n, u, v, 0.0, 1, &zp, &w, a, 2, 0, 0, &used_gpu, "w");
    for (size_t i = 0; i < n; ++i)
        h[i] = 0.5 * w[i];
    free(z);
    free(w);
    return st == TPS_OK ? 0 : -1;
}

static void accuracy(int clustered, int spline)
{
    const size_t n = n_points, m = N_TARGETS;
    double *u = malloc(sizeof(double) * n), *v = malloc(sizeof(double) * n);
    double *h = malloc(sizeof(double) * n), *ref = malloc(sizeof(double) * n);
    double *out = malloc(sizeof(double) * n), *out2 = malloc(sizeof(double) * n);
    double *pu = malloc(sizeof(double) * m), *pv = malloc(sizeof(double) * m);
    double *pref = malloc(sizeof(double) * m), *pout = malloc(sizeof(double) * m);
    CHECK(u && v && h && ref && out && out2 && pu && pv && pref && pout, "out of memory");
    if (!(u && v && h && ref && out && out2 && pu && pv && pref && pout))
        return;
    make_points(clustered, n, u, v);
    if (spline) {
        CHECK(spline_weights(n, u, v, h) == 0, "the spline's solve failed");
    } else {
        for (size_t i = 0; i < n; ++i)
            h[i] = uniform() - 0.5;
    }
    /* Targets in the square and up to 10% around it. */
    for (size_t i = 0; i < m; ++i) {
        pu[i] = 2.2 * uniform() - 1.1;
        pv[i] = 2.2 * uniform() - 1.1;
    }
    double sum_h = 0.0;
    for (size_t i = 0; i < n; ++i)
        sum_h += fabs(h[i]);
    direct(n, u, v, h, n, u, v, ref);
    direct(n, u, v, h, m, pu, pv, pref);

    const double tols[] = {1e-6, 1e-10, 1e-14};
    double previous = INFINITY;
    for (size_t t = 0; t < sizeof tols / sizeof tols[0]; ++t) {
        tps_error err = {TPS_OK, ""};
        tps_fmm *f = tps_fmm_create(&err, n, u, v, tols[t], 2);
        CHECK(f != NULL, "create: %s", err.message);
        if (!f)
            continue;
        CHECK(tps_fmm_apply(f, h, out, &err) == TPS_OK, "apply: %s", err.message);
        const double e_self = max_error(out, ref, n) / sum_h;
        CHECK(tps_fmm_eval(f, m, pu, pv, pout, &err) == TPS_OK, "eval: %s", err.message);
        const double e_other = max_error(pout, pref, m) / sum_h;
        printf("%s points, %s weights, tol %.0e (%d terms): error / sum|h| %.2e at the sources, "
               "%.2e at other targets\n", clustered ? "clustered" : "uniform",
               spline ? "spline" : "random", tols[t], tps_fmm_terms(f), e_self, e_other);
        CHECK(e_self <= tols[t], "at the sources: %.3e > %.0e", e_self, tols[t]);
        CHECK(e_other <= tols[t], "at other targets: %.3e > %.0e", e_other, tols[t]);
        /* The expansions carry the far field: a looser tolerance is
         * measurably worse (else the test would pass on direct sums). */
        if (t > 0 && tols[t] >= 1e-12)
            CHECK(e_other < previous, "error %.3e not below %.3e at a tighter tolerance", e_other,
                  previous);
        previous = e_other;
        /* The same bytes on one thread. */
        tps_fmm *f1 = tps_fmm_create(&err, n, u, v, tols[t], 1);
        CHECK(f1 && tps_fmm_apply(f1, h, out2, &err) == TPS_OK, "one thread: %s", err.message);
        CHECK(memcmp(out, out2, sizeof(double) * n) == 0, "one thread and two differ");
        /* Evaluation at the sources as other targets: the same sums. */
        CHECK(tps_fmm_eval(f, n, u, v, out2, &err) == TPS_OK, "eval at sources: %s", err.message);
        CHECK(max_error(out, out2, n) / sum_h <= tols[t], "eval at the sources %.3e off apply",
              max_error(out, out2, n) / sum_h);
        tps_fmm_destroy(f1);
        tps_fmm_destroy(f);
    }
    free(u), free(v), free(h), free(ref), free(out), free(out2);
    free(pu), free(pv), free(pref), free(pout);
}

static void tiny(void)
{
    const double u[3] = {-1.0, 1.0, 0.2}, v[3] = {-1.0, 0.5, 1.0}, h[3] = {1.0, -2.0, 0.5};
    for (size_t n = 1; n <= 3; ++n) {
        tps_error err = {TPS_OK, ""};
        double out[3], ref[3];
        tps_fmm *f = tps_fmm_create(&err, n, u, v, 1e-12, 1);
        CHECK(f && tps_fmm_apply(f, h, out, &err) == TPS_OK, "n = %zu: %s", n, err.message);
        direct(n, u, v, h, n, u, v, ref);
        CHECK(f && max_error(out, ref, n) <= 1e-14, "n = %zu: %.3e", n, max_error(out, ref, n));
        tps_fmm_destroy(f);
    }
    tps_error err = {TPS_OK, ""};
    CHECK(tps_fmm_create(&err, 0, u, v, 1e-12, 1) == NULL && err.code == TPS_ERR_INVALID_ARGUMENT,
          "no points accepted");
    CHECK(tps_fmm_create(&err, 3, u, v, 0.0, 1) == NULL && err.code == TPS_ERR_INVALID_ARGUMENT,
          "tolerance 0 accepted");
}

int main(void)
{
    const char *quick = getenv("TPS_TEST_QUICK");
    if (quick && strcmp(quick, "1") == 0)
        n_points = 1200;
    tiny();
    for (int clustered = 0; clustered < 2; ++clustered)
        for (int spline = 0; spline < 2; ++spline)
            accuracy(clustered, spline);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

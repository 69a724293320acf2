/* bench_solve.c: the solver choice of docs/design.md, measured. For random
 * points in the unit square, solves the same TPS system three ways and
 * prints time and the relative residual of the full saddle-point system
 *   || [A P; P^T 0] [w; a] - [z; 0] || / || z ||:
 *   ours   null-space QR projection + Cholesky (core/solve.c)
 *   dgesv  LU with partial pivoting of the (N+3) system
 *   dsysv  Bunch-Kaufman LDL^T of the (N+3) system
 *   usage: tps_bench_solve N [lambda] */
#include "internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double phi(double r2) { return r2 > 0 ? 0.5 * r2 * log(r2) : 0.0; }

/* The full (N+3) x (N+3) system, column-major. */
static double *full_system(size_t n, const double *u, const double *v, double lambda)
{
    size_t m = n + 3;
    double *a = calloc(m * m, sizeof(double));
    for (size_t j = 0; j < n; ++j) {
        for (size_t i = 0; i < n; ++i) {
            double du = u[i] - u[j], dv = v[i] - v[j];
            a[i + j * m] = phi(du * du + dv * dv) + (i == j ? lambda : 0.0);
        }
        double p[3] = {1.0, u[j], v[j]};
        for (size_t k = 0; k < 3; ++k)
            a[j + (n + k) * m] = a[(n + k) + j * m] = p[k];
    }
    return a;
}

static double residual(size_t n, const double *u, const double *v, double lambda, const double *z,
                       const double *sol)
{
    size_t m = n + 3;
    double *a = full_system(n, u, v, lambda);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < m; ++i) {
        double s = 0.0;
        for (size_t j = 0; j < m; ++j)
            s += a[i + j * m] * sol[j];
        double rhs = i < n ? z[i] : 0.0;
        num += (s - rhs) * (s - rhs);
        den += rhs * rhs;
    }
    free(a);
    return sqrt(num / den);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s N [lambda]\n", argv[0]);
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10), m = n + 3;
    double lambda = argc > 2 ? atof(argv[2]) : 0.0;
    double *u = malloc(sizeof(double) * n), *v = malloc(sizeof(double) * n),
           *z = malloc(sizeof(double) * n), *sol = malloc(sizeof(double) * m);
    srand(7);
    for (size_t i = 0; i < n; ++i) {
        u[i] = 2.0 * rand() / RAND_MAX - 1.0;
        v[i] = 2.0 * rand() / RAND_MAX - 1.0;
        z[i] = sin(3 * u[i]) + cos(2 * v[i]);
    }
    tps_context *ctx = tps_context_create();

    double t0 = tps_now_seconds();
    const double *zp = z;
    double *w = sol;
    double (*a)[3] = (double(*)[3])(sol + n);
    int used_gpu = 0;
    if (tps_solve_dense(ctx, n, u, v, lambda, 1, &zp, &w, a, 2, 0, 0, &used_gpu, "bench") != TPS_OK) {
        fprintf(stderr, "%s\n", tps_context_errmsg(ctx));
        return 1;
    }
    double t_ours = tps_now_seconds() - t0;
    printf("{\"n\": %zu, \"method\": \"qr_nullspace_cholesky\", \"seconds\": %.4f, "
           "\"rel_residual\": %.3e, \"openblas_core\": \"%s\", \"openblas_threads\": %d}\n",
           n, t_ours, residual(n, u, v, lambda, z, sol), openblas_get_corename(),
           openblas_get_num_threads());

    const char *names[2] = {"dgesv_lu", "dsysv_ldlt"};
    for (int k = 0; k < 2; ++k) {
        double *full = full_system(n, u, v, lambda);
        lapack_int *piv = malloc(sizeof(lapack_int) * m);
        for (size_t i = 0; i < m; ++i)
            sol[i] = i < n ? z[i] : 0.0;
        t0 = tps_now_seconds();
        lapack_int info = k == 0 ? LAPACKE_dgesv(LAPACK_COL_MAJOR, (lapack_int)m, 1, full,
                                                 (lapack_int)m, piv, sol, (lapack_int)m)
                                 : LAPACKE_dsysv(LAPACK_COL_MAJOR, 'L', (lapack_int)m, 1, full,
                                                 (lapack_int)m, piv, sol, (lapack_int)m);
        double t = tps_now_seconds() - t0;
        printf("{\"n\": %zu, \"method\": \"%s\", \"seconds\": %.4f, \"rel_residual\": %.3e, "
               "\"info\": %d}\n", n, names[k], t, residual(n, u, v, lambda, z, sol), (int)info);
        free(full);
        free(piv);
    }
    tps_context_destroy(ctx);
    free(u);
    free(v);
    free(z);
    free(sol);
    return 0;
}

/* iterative.c: the global spline's system solved by preconditioned GMRES,
 * in O(N) memory (docs/design.md, "The iterative solve").
 *
 * The system [A P; P^T 0][w; a] = [z; 0], A = K + lambda D. Every w with
 * P^T w = 0 makes the best affine part a = R^-1 Q1^T (z - A w) (P = Q R),
 * and then the system's residual is Pi (z - A w), Pi = I - Q1 Q1^T the
 * projection onto the null space of P^T. So GMRES runs on the operator
 * Pi A restricted to that null space, right-preconditioned by M
 * (precond.c, whose output lies in the null space): w = M t, and it
 * minimises ||Pi (z - A M t)|| directly, the residual we report. (The
 * projected form Z^T A Z is symmetric positive definite, but the
 * preconditioner is not symmetric: GMRES, not CG.) Restarted every
 * RESTART iterations, the basis being RESTART + 1 vectors of N; at each
 * restart and at the end the residual is recomputed by a product, so the
 * relative residual reported is measured, not GMRES's recurrence. */
#include "iterative.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RESTART 60
/* A right-hand side that ends above this relative residual fails: the
 * surface would miss its data by more than the engine promises. */
#define ACCEPTABLE_RESIDUAL 1e-6

void tps_iterative_options_init(tps_iterative_options *o)
{
    o->tol = 1e-10;
    o->max_iter = 500;
    o->fmm_tol = 1e-14;
    o->num_threads = 1;
    o->try_gpu = 0;
    o->gpu_max_bytes = 0;
}

/* Where a usable GPU beats the CPU threads, from the GPU host's rates
 * (NVIDIA H200 and 16 cores, 10^6 points, 2026-12-04; docs/benchmarks.md,
 * "where the time goes"): a GPU all-pairs product ~n^2 / 5.6e11 s against
 * the fast summation's ~7.8e-6 s x n / threads; a batch of patch solves
 * 2.7e-4 s a cell against 1.1e-3 s x cells / threads (the GPU's batches of
 * 226-point systems are dominated by their set-up and copies); the coarse
 * level's explicit inverse on the GPU against the CPU's factorisation, 4.0
 * s against 27.6 s / threads for 13,333 points (both grow as nc^3). On
 * that host the CPU wins all three at 10^6 points (the solve 47.1 s with
 * every part on the GPU, 19.7 s with none); with few threads, or fewer
 * points, the GPU does. */
unsigned tps_iterative_gpu_parts(size_t n, int num_threads)
{
    const double threads = num_threads < 1 ? 1.0 : (double)num_threads;
    unsigned parts = 0;
    if ((double)n * (double)n / 5.6e11 < 7.8e-6 * (double)n / threads)
        parts |= TPS_ITERATIVE_GPU_PRODUCTS;
    if (2.7e-4 < 1.1e-3 / threads)
        parts |= TPS_ITERATIVE_GPU_PATCHES;
    if (4.0 < 27.6 / threads)
        parts |= TPS_ITERATIVE_GPU_COARSE;
    return parts;
}

size_t tps_iterative_bytes(size_t n, size_t n_rhs)
{
    /* The preconditioner, the GMRES basis and work vectors, the fast
     * summation's trees and expansions (~400 bytes a point), the inputs'
     * copies per right-hand side. */
    return tps_precond_bytes(n) + (RESTART + 16) * n * sizeof(double) + 400 * n +
           n * n_rhs * 2 * sizeof(double);
}

typedef struct solver {
    size_t n;
    double lambda;
    const double *noise;
    tps_matvec *mv;
    tps_precond *pc;
    const double *q1;
    double *t;        /* n: a product */
    /* seconds in the products and in the preconditioner, for the debug log */
    double t_products, t_precond;
} solver;

/* Level-1 loops of our own, not BLAS: their order of summation does not
 * depend on any thread count, so a solve gives the same bytes on any
 * number of threads. */
static double dot(size_t n, const double *a, const double *b)
{
    double s = 0.0;
    for (size_t i = 0; i < n; ++i)
        s += a[i] * b[i];
    return s;
}

static void axpy(size_t n, double alpha, const double *x, double *y)
{
    for (size_t i = 0; i < n; ++i)
        y[i] += alpha * x[i];
}

static double norm2(size_t n, const double *a)
{
    return sqrt(dot(n, a, a));
}

static void project(const double *q1, size_t n, double *x)
{
    for (int k = 0; k < 3; ++k) {
        const double *q = q1 + (size_t)k * n;
        axpy(n, -dot(n, q, x), q, x);
    }
}

/* y = A x = K x + lambda D x. */
static tps_status apply_a(solver *s, const double *x, double *y, tps_error *err)
{
    const double t0 = tps_now_seconds();
    tps_status st = tps_matvec_apply(s->mv, x, y, err);
    s->t_products += tps_now_seconds() - t0;
    if (st == TPS_OK && s->lambda != 0.0)
        for (size_t i = 0; i < s->n; ++i)
            y[i] += s->lambda * (s->noise ? s->noise[i] : 1.0) * x[i];
    return st;
}

/* t = M x, timed for the debug log (every application: the inner ones and
 * the one per restart cycle). */
static tps_status apply_m(solver *s, const double *x, tps_error *err)
{
    const double t0 = tps_now_seconds();
    tps_status st = tps_precond_apply(s->pc, s->mv, x, s->t, err);
    s->t_precond += tps_now_seconds() - t0;
    return st;
}

/* r = z - A x (unprojected in full, projected in r); returns ||Pi r||. */
static tps_status residual(solver *s, const double *z, const double *x, double *full,
                           double *r, double *norm, tps_error *err)
{
    tps_status st = apply_a(s, x, full, err);
    if (st != TPS_OK)
        return st;
    for (size_t i = 0; i < s->n; ++i)
        full[i] = z[i] - full[i];
    memcpy(r, full, sizeof(double) * s->n);
    project(s->q1, s->n, r);
    *norm = norm2(s->n, r);
    return TPS_OK;
}

/* One right-hand side: x (zero in) receives w; *iters, *relres. */
static tps_status gmres(solver *s, const double *z, double tol, int max_iter, double *x,
                        double *full, double *r, double *basis, int *iters, double *relres,
                        tps_error *err)
{
    const size_t n = s->n;
    double h[(RESTART + 1) * RESTART], cs[RESTART], sn[RESTART], g[RESTART + 1], y[RESTART];
    const double znorm = norm2(n, z);
    const double target = tol * znorm;
    memset(x, 0, sizeof(double) * n);
    double beta;
    tps_status st = residual(s, z, x, full, r, &beta, err);
    const double beta0 = beta;
    int its = 0, stalls = 0;
    while (st == TPS_OK && beta > target && its < max_iter && stalls < 2) {
        double *v0 = basis;
        for (size_t i = 0; i < n; ++i)
            v0[i] = r[i] / beta;
        memset(g, 0, sizeof g);
        g[0] = beta;
        int k = 0; /* columns of this cycle */
        while (k < RESTART && its < max_iter) {
            double *vk = basis + (size_t)k * n, *w = basis + (size_t)(k + 1) * n;
            st = apply_m(s, vk, err);
            if (st == TPS_OK)
                st = apply_a(s, s->t, w, err);
            if (st != TPS_OK)
                return st;
            project(s->q1, n, w);
            /* Modified Gram-Schmidt, twice (the basis must stay orthogonal
             * for the residual to mean what it says at 1e-10). */
            double *hk = h + (size_t)k * (RESTART + 1);
            memset(hk, 0, sizeof(double) * (RESTART + 1));
            for (int pass = 0; pass < 2; ++pass)
                for (int i = 0; i <= k; ++i) {
                    const double *vi = basis + (size_t)i * n;
                    const double d = dot(n, vi, w);
                    hk[i] += d;
                    axpy(n, -d, vi, w);
                }
            hk[k + 1] = norm2(n, w);
            if (hk[k + 1] > 0.0)
                for (size_t i = 0; i < n; ++i)
                    w[i] /= hk[k + 1];
            for (int i = 0; i < k; ++i) {
                const double a = cs[i] * hk[i] + sn[i] * hk[i + 1];
                hk[i + 1] = -sn[i] * hk[i] + cs[i] * hk[i + 1];
                hk[i] = a;
            }
            const double d = hypot(hk[k], hk[k + 1]);
            cs[k] = d > 0.0 ? hk[k] / d : 1.0;
            sn[k] = d > 0.0 ? hk[k + 1] / d : 0.0;
            hk[k] = d;
            hk[k + 1] = 0.0;
            g[k + 1] = -sn[k] * g[k];
            g[k] = cs[k] * g[k];
            ++k;
            ++its;
            const double est = fabs(g[k]);
            if (beta0 > target && est > 0.0)
                tps_progress(log(beta0 / fmax(est, target)) / log(beta0 / target));
            /* A little below the target: the recurrence drifts from the
             * true residual by rounding. */
            if (est <= 0.5 * target || hk[k - 1] == 0.0)
                break;
        }
        /* y = H^-1 g (upper triangular), then x += M (V y). */
        for (int i = k - 1; i >= 0; --i) {
            double acc = g[i];
            for (int j = i + 1; j < k; ++j)
                acc -= h[(size_t)j * (RESTART + 1) + (size_t)i] * y[j];
            y[i] = acc / h[(size_t)i * (RESTART + 1) + (size_t)i];
        }
        memset(full, 0, sizeof(double) * n);
        for (int i = 0; i < k; ++i)
            axpy(n, y[i], basis + (size_t)i * n, full);
        st = apply_m(s, full, err);
        if (st != TPS_OK)
            return st;
        axpy(n, 1.0, s->t, x);
        const double before = beta;
        st = residual(s, z, x, full, r, &beta, err);
        stalls = beta > 0.5 * before ? stalls + 1 : 0;
    }
    *iters = its;
    *relres = znorm > 0.0 ? beta / znorm : 0.0;
    return st;
}

/* P = [1 u v] = Q R: q1 (n x 3) receives Q's first columns, r the 3 x 3 R. */
static tps_status poly_qr(tps_context *ctx, size_t n, const double *u, const double *v,
                          double *q1, double r[9], const char *what)
{
    const lapack_int ni = (lapack_int)n;
    double tau[3];
    for (size_t i = 0; i < n; ++i) {
        q1[i] = 1.0;
        q1[n + i] = u[i];
        q1[2 * n + i] = v[i];
    }
    if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, ni, 3, q1, ni, tau) != 0)
        return tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: QR of the polynomial part failed", what);
    for (int j = 0; j < 3; ++j)
        for (int i = 0; i < 3; ++i)
            r[j * 3 + i] = i <= j ? q1[(size_t)j * n + (size_t)i] : 0.0;
    /* As solve.c: a tiny R11 or R22 means all points on one line. */
    if (!(fabs(r[4]) > 1e-10 * fabs(r[0])) || !(fabs(r[8]) > 1e-10 * fabs(r[0])))
        return tps_set_error(ctx, TPS_ERR_COLLINEAR,
                             "%s: all %zu points lie on one line; a surface needs points that "
                             "span an area", what, n);
    if (LAPACKE_dorgqr(LAPACK_COL_MAJOR, ni, 3, 3, q1, ni, tau) != 0)
        return tps_set_error(ctx, TPS_ERR_INTERNAL, "%s: forming Q failed", what);
    return TPS_OK;
}

tps_status tps_solve_iterative(tps_context *ctx, size_t n, const double *u, const double *v,
                               double lambda, const double *noise, size_t n_rhs,
                               const double *const *z, double **w, double (*a)[3],
                               const tps_iterative_options *options, tps_iterative_result *res,
                               const char *what)
{
    tps_iterative_options opt;
    if (options)
        opt = *options;
    else
        tps_iterative_options_init(&opt);
    if (n < 3)
        return tps_set_error(ctx, TPS_ERR_TOO_FEW_POINTS,
                             "%s: %zu distinct usable point%s, at least 3 are needed", what, n,
                             n == 1 ? "" : "s");
    if (n > (size_t)INT32_MAX)
        return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "%s: too many points (%zu)", what, n);
    res->used_gpu = 0;
    solver s = {n, lambda, noise, NULL, NULL, NULL, NULL, 0.0, 0.0};
    double r3[9];
    double *q1 = malloc(sizeof(double) * n * 3);
    double *work = malloc(sizeof(double) * n * 3);
    double *basis = malloc(sizeof(double) * n * (RESTART + 1));
    tps_status st = TPS_OK;
    if (!q1 || !work || !basis) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                           "%s: out of memory for the iterative solve of %zu points (%zu bytes)",
                           what, n, tps_iterative_bytes(n, n_rhs));
        goto done;
    }
    s.t = work;
    double *full = work + n, *r = work + 2 * n;
    st = poly_qr(ctx, n, u, v, q1, r3, what);
    if (st != TPS_OK)
        goto done;
    s.q1 = q1;
    const double t0 = tps_now_seconds();
    const unsigned gpu_parts = opt.try_gpu ? tps_iterative_gpu_parts(n, opt.num_threads) : 0u;
    s.mv = tps_matvec_create(tps_ctx_error(ctx), n, u, v, opt.fmm_tol, opt.num_threads,
                             (gpu_parts & TPS_ITERATIVE_GPU_PRODUCTS) != 0, opt.gpu_max_bytes);
    if (!s.mv) {
        st = tps_context_errno(ctx);
        goto done;
    }
    s.pc = tps_precond_create(ctx, n, u, v, lambda, noise, q1, opt.num_threads, gpu_parts,
                              opt.gpu_max_bytes, what);
    if (!s.pc) {
        st = tps_context_errno(ctx);
        goto done;
    }
    res->used_gpu = tps_matvec_on_gpu(s.mv) || tps_precond_used_gpu(s.pc);
    tps_log(ctx, TPS_LOG_DEBUG, "%s: preconditioner of %zu points (coarse level %zu points) in "
            "%.3f s; products: %s", what, n, tps_precond_coarse_points(s.pc),
            tps_now_seconds() - t0, tps_matvec_name(s.mv));
    for (size_t k = 0; k < n_rhs && st == TPS_OK; ++k) {
        const double t1 = tps_now_seconds();
        s.t_products = s.t_precond = 0.0;
        tps_progress_stage("%s: iterative solve of %zu points (GMRES%s)", what, n,
                           n_rhs > 1 ? ", one band after another" : "");
        st = gmres(&s, z[k], opt.tol, opt.max_iter, w[k], full, r, basis, &res->iterations[k],
                   &res->relres[k], tps_ctx_error(ctx));
        if (st != TPS_OK)
            break;
        tps_progress(1.0);
        /* full = z - A w: the best affine part is R^-1 Q1^T full, and then
         * f(x_i) - z_i = -(Pi full)_i - lambda D_ii w_i. */
        double c[3];
        for (int j = 0; j < 3; ++j)
            c[j] = dot(n, q1 + (size_t)j * n, full);
        for (int j = 2; j >= 0; --j) {
            double acc = c[j];
            for (int l = j + 1; l < 3; ++l)
                acc -= r3[l * 3 + j] * a[k][l];
            a[k][j] = acc / r3[j * 3 + j];
        }
        double worst = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const double fit = -r[i] - lambda * (noise ? noise[i] : 1.0) * w[k][i];
            worst = fmax(worst, fabs(fit));
        }
        res->max_fit_error[k] = worst;
        tps_log(ctx, TPS_LOG_DEBUG,
                "%s: GMRES %d iterations, relative residual %.3g, %.3f s (products %.3f s, "
                "preconditioner %.3f s)",
                what, res->iterations[k], res->relres[k], tps_now_seconds() - t1, s.t_products,
                s.t_precond);
        if (!(res->relres[k] <= ACCEPTABLE_RESIDUAL))
            st = tps_set_error(ctx, TPS_ERR_SINGULAR,
                               "%s: the iterative solve of %zu points did not converge (relative "
                               "residual %.3g after %d iterations): the points are degenerate or "
                               "too close together for an exact fit; a smoothing > 0 may help, "
                               "or SOLVER=DIRECT", what, n, res->relres[k], res->iterations[k]);
        else if (res->relres[k] > opt.tol)
            tps_log(ctx, TPS_LOG_WARNING, "%s: the iterative solve stopped at a relative residual "
                    "of %.3g, above the %.3g asked for", what, res->relres[k], opt.tol);
    }
done:
    tps_precond_destroy(s.pc);
    tps_matvec_destroy(s.mv);
    free(q1);
    free(work);
    free(basis);
    return st;
}

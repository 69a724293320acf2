/* model_iterative.c: SOLVER=ITERATIVE for model.c: which solver a group of
 * bands gets, and the group's solve by preconditioned GMRES (iterative.c),
 * its results stored in the model as the dense solve's are. */
#include "gpu_backend.h"
#include "internal.h"
#include "iterative.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* DIRECT or ITERATIVE for a group of m points (tps.h, tps_solver): AUTO
 * keeps the dense factorisation while it is small and fits the memory
 * limit (on the GPU, cuSOLVER keeps it fast much longer), and always for
 * cross-validation, which needs its factor, and for covariates. */
tps_solver tps_model_choose_solver(const tps_model *md, size_t m, size_t n_group, int want_loo,
                                   const tps_fit_options *options)
{
    if (options->solver != TPS_SOLVER_AUTO)
        return options->solver;
    /* The iterative solve's fixed part is the affine one: covariates (and
     * cross-validation) stay with the dense solve. */
    if (want_loo || md->n_cov)
        return TPS_SOLVER_DIRECT;
    const size_t direct_max = options->device != TPS_DEVICE_CPU &&
                                      tps_gpu_solve_available(NULL) == TPS_OK
                                  ? TPS_AUTO_GLOBAL_MAX_POINTS_GPU
                                  : TPS_AUTO_DIRECT_MAX_POINTS;
    const size_t need = tps_solve_bytes(m, n_group);
    if (m <= direct_max && (!options->max_memory || need <= options->max_memory))
        return TPS_SOLVER_DIRECT;
    /* Over the limit: ITERATIVE if it fits; if neither does, the dense
     * solve's need is the one the error reports. */
    if (m <= direct_max && tps_iterative_bytes(m, n_group) > options->max_memory)
        return TPS_SOLVER_DIRECT;
    return TPS_SOLVER_ITERATIVE;
}

/* The group by preconditioned GMRES (iterative.c): O(m) memory. Each band
 * records its iterations and residual; its largest residual at the data
 * comes from the solve's last product (so the model's evaluation at its
 * points, O(m^2), is not needed). Its variances stay NaN: the standard
 * error needs the dense factorisation (evaluate.c refuses it). */
tps_status tps_model_solve_iterative(tps_context *ctx, tps_model *md, double *const *merged,
                                     double *const *merged_w, const size_t *group, size_t n_group,
                                     size_t m, const tps_fit_options *options, const char *what)
{
    const size_t first = group[0];
    size_t *index = malloc(sizeof(size_t) * m);
    double *buf = malloc(sizeof(double) * m * (3 + 2 * n_group));
    const double **z = malloc(sizeof(double *) * n_group);
    double **w = malloc(sizeof(double *) * n_group);
    double (*a)[3] = malloc(sizeof(double[3]) * n_group);
    int *iterations = malloc(sizeof(int) * n_group);
    double *stats = malloc(sizeof(double) * 2 * n_group);
    tps_status st = TPS_OK;
    if (!index || !buf || !z || !w || !a || !iterations || !stats) {
        st = tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        goto done;
    }
    double *su = buf, *sv = buf + m, *noise = merged_w ? buf + 2 * m : NULL;
    size_t k = 0;
    for (size_t i = 0; i < md->n; ++i) {
        if (!isfinite(merged[first][i]))
            continue;
        index[k] = i;
        su[k] = md->u[i];
        sv[k] = md->v[i];
        if (noise)
            noise[k] = 1.0 / merged_w[first][i];
        ++k;
    }
    for (size_t g = 0; g < n_group; ++g) {
        double *zg = buf + (3 + 2 * g) * m;
        for (size_t j = 0; j < m; ++j)
            zg[j] = merged[group[g]][index[j]];
        z[g] = zg;
        w[g] = zg + m;
    }
    tps_iterative_options io;
    tps_iterative_options_init(&io);
    if (options->solver_tolerance > 0.0)
        io.tol = options->solver_tolerance;
    io.num_threads = options->num_threads;
    /* The products and the patches on the GPU unless DEVICE=CPU; the
     * products need no cuSOLVER, only a usable device. */
    io.try_gpu = options->device != TPS_DEVICE_CPU && tps_gpu_probe(NULL) == TPS_OK;
    io.gpu_max_bytes = options->gpu_max_memory;
    tps_iterative_result res = {iterations, stats, stats + n_group, 0};
    /* Scaled coordinates: lambda / scale^2, as for the dense solve. */
    const double lambda = md->band_info[first].smoothing / (md->scale * md->scale);
    st = tps_solve_iterative(ctx, m, su, sv, lambda, noise, n_group, z, w, a, &io, &res, what);
    if (st != TPS_OK)
        goto done;
    if (res.used_gpu)
        md->info.solve_device = TPS_DEVICE_GPU;
    for (size_t g = 0; g < n_group; ++g) {
        tps_band_info *bi = &md->band_info[group[g]];
        for (size_t j = 0; j < m; ++j)
            md->half_weights[group[g]][index[j]] = 0.5 * w[g][j];
        memcpy(md->affine[group[g]], a[g], sizeof a[g]);
        bi->solver = TPS_SOLVER_ITERATIVE;
        bi->iterations = iterations[g];
        bi->relative_residual = stats[g];
        bi->max_abs_residual = stats[n_group + g];
    }
    md->info.n_factorisations++;
done:
    free(index);
    free(buf);
    free(z);
    free(w);
    free(a);
    free(iterations);
    free(stats);
    return st;
}

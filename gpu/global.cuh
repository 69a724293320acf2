/* global.cuh: a global model's device copy (gpu/global.cu makes it; the
 * derivative sums of gpu/global_deriv.cu and the bench timing read it). */
#ifndef TPS_GPU_GLOBAL_CUH
#define TPS_GPU_GLOBAL_CUH

#include "common.cuh"

struct tps_gpu_model {
    size_t n, n_pad, n_bands;
    double2 *uv;   /* n_pad */
    double *w;     /* n_bands rows of n_pad half-weights */
    float2 *uv32;
    float *w32;    /* half-weights x ln 2 (MIXED evaluates log2) */
    double2 *log_table; /* LOG_TABLE_SIZE entries for table_log */
    double (*affine)[3];
    double mu, mv, spread;  /* MIXED's log centring: the points' mean and spread */
    double (*moment)[4];    /* per band: sum w32, w32 u32, w32 v32, w32 (u32^2 + v32^2) */
};

namespace tps_gpu {

/* Launches the value kernel for nb (1..MAX_NB) consecutive model bands from
 * bands[0] over `rows` rows of g into o's planes. */
cudaError_t launch_global(const tps_gpu_model *m, tps_precision precision, const int *bands,
                          int nb, const GridArgs &g, const OutArgs &o, int rows,
                          cudaStream_t stream);

} // namespace tps_gpu

#endif

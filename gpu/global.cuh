/* global.cuh: a global model's device copy (gpu/global.cu makes it; the
 * MIXED kernel of gpu/mixed.cu, the derivative sums of gpu/global_deriv.cu
 * and the bench timing read it). */
#ifndef TPS_GPU_GLOBAL_CUH
#define TPS_GPU_GLOBAL_CUH

#include "common.cuh"
#include "mixed.h"

/* MIXED's copy of the points, in core/mixed.h's layout (tiles of 256,
 * groups of 32): FP32 offsets and split weights for the near field, FP64
 * centres, coefficients and moments for the far field and the bound. */
struct MixedModel {
    size_t n_pad, n_tiles;
    float2 *q;             /* n_pad offsets from the group's centre */
    float *w, *wlo;        /* n_bands rows of n_pad: h ln 2 = w + wlo */
    double *tile, *group;  /* 4 per cluster: centre u, v, radius, points */
    double *tile_coef, *group_coef; /* [cluster * n_bands + band] x TPS_MIXED_COEF */
    double *group_near;    /* 4 per [group * n_bands + band]: sum w, w qu, w qv, w |q|^2 */
    double *abs_h;         /* host: per band, sum |h| (the self-check's slack) */
    double *range;         /* host: per band, the data range (the tolerance's unit) */
};

struct tps_gpu_model {
    size_t n, n_pad, n_bands;
    double2 *uv;   /* n_pad */
    double *w;     /* n_bands rows of n_pad half-weights */
    double2 *log_table; /* LOG_TABLE_SIZE entries for table_log */
    double (*affine)[3];
    MixedModel mixed;
};

namespace tps_gpu {

/* What a MIXED request asks of its guard: the tolerance (relative to each
 * band's range) and the test hook that forces blocks to fall back. */
struct MixedGuard {
    double tolerance;
    size_t force_every;
};

/* Launches the value kernel for nb (1..MAX_NB) consecutive model bands from
 * bands[0] over `rows` rows of g into o's planes. */
cudaError_t launch_global(const tps_gpu_model *m, tps_precision precision, const MixedGuard &guard,
                          const int *bands, int nb, const GridArgs &g, const OutArgs &o, int rows,
                          cudaStream_t stream);

/* The MIXED kernel (gpu/mixed.cu), the same arguments. */
cudaError_t launch_mixed(const tps_gpu_model *m, const MixedGuard &guard, const int *bands, int nb,
                         const GridArgs &g, const OutArgs &o, int rows, cudaStream_t stream);

} // namespace tps_gpu

#endif

/* local.cuh: a local model's device copy and the request loop of its
 * kernels (gpu/local.cu: values; gpu/local_deriv.cu: derivatives). */
#ifndef TPS_GPU_LOCAL_CUH
#define TPS_GPU_LOCAL_CUH

#include "blend.h"
#include "common.cuh"

#include <vector>

namespace tps_gpu {

/* ---- local models ----------------------------------------------------------
 * A block covers a tile of LOCAL_TW x LOCAL_TH pixels (each thread one
 * column, PIX rows) and visits the tile's candidate patches, listed on the
 * host in patch order, so that each pixel sums its patches in the order of
 * the CPU path (core/cpu_local.c) whatever window or chunk it falls in. */
constexpr int LOCAL_TW = 32;
constexpr int LOCAL_TH = THREADS / LOCAL_TW * PIX;

struct LocalPatch {
    double cx, cy, hx, hy, pcx, pcy, ps;
    unsigned long long offset, n;
};

struct LocalArgs {
    const LocalPatch *patches;
    const double2 *uv;      /* every patch's points, patch after patch */
    const double *w;        /* model band b's half-weights at w + b * w_stride */
    size_t w_stride;
    const double *affine;   /* [patch][model band][3] */
    int n_model_bands, first_band;
    const unsigned *tile_start, *tile_patch;
    int tiles_x, tile_row0, rows; /* rows: of this chunk */
    double bu0, bv0, bu1, bv1;
    const double2 *log_table;
    unsigned needs; /* derivatives: the sums asked for (core/sums.h) */
};

/* A local kernel thread's pixels: column col, rows row_base.. (clamped
 * into the window), their centres (core/grid.h) and the same clamped into
 * the points' box (q: where the weights are taken; core/blend.h). */
__device__ __forceinline__ void local_pixels(const LocalArgs &a, const GridArgs &g, int col,
                                             int row_base, double pu[PIX], double pv[PIX],
                                             double qu[PIX], double qv[PIX])
{
    for (int p = 0; p < PIX; ++p) {
        const int r = row_base + p < a.rows ? row_base + p : a.rows - 1;
        cell_centre(g, col < g.ncols ? col : g.ncols - 1, r, &pu[p], &pv[p]);
        qu[p] = tps_clamp(pu[p], a.bu0, a.bu1);
        qv[p] = tps_clamp(pv[p], a.bv0, a.bv1);
    }
}

/* Launches a local kernel over `blocks` tiles for nb consecutive model
 * bands (c.first_band..) into o's planes. */
typedef cudaError_t (*LocalLaunch)(const LocalArgs &c, const GridArgs &g, const OutArgs &o,
                                   int nb, dim3 blocks, cudaStream_t stream);

/* The request loop of a local model's kernels: the tiles' candidate
 * patches, then the chunks of rows, each launched by `launch` for up to
 * `group` outputs at once; `needs` goes to the kernels in LocalArgs. */
tps_status local_run(tps_gpu_local *m, const tps_window *grid, size_t n_outputs,
              const tps_output *outputs, LocalLaunch launch, size_t group, unsigned needs,
              size_t max_bytes, tps_error *err);

} // namespace tps_gpu

struct tps_gpu_local {
    size_t n_patches, n_entries, n_bands;
    tps_gpu::LocalPatch *patches; /* device */
    double2 *uv;             /* device, n_entries */
    double *w;               /* device, n_bands rows of n_entries */
    double *affine;          /* device, [patch][band][3] */
    double2 *log_table;      /* device */
    /* Host: the patches' supports and the lookup grid, to list each tile's
     * candidate patches. */
    std::vector<double> support; /* cx, cy, hx, hy per patch */
    tps_gpu_lookup lookup;
    std::vector<size_t> cell_start, cell_patch;
};

#endif

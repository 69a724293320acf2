/* tps_testing.h: for the engine's own tests and benchmarks only, not part
 * of its API (include/tps.h): the CPU kernel of an evaluation chosen by
 * hand, and the count of device copies. */
#ifndef TPS_TESTING_H
#define TPS_TESTING_H

#include "tps.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CPU evaluation kernel's instruction set; AUTO (what tps_evaluate_grid
 * uses) picks the best this processor runs. */
typedef enum tps_cpu_kernel {
    TPS_CPU_KERNEL_AUTO = 0,
    TPS_CPU_KERNEL_GENERIC = 1,
    TPS_CPU_KERNEL_AVX2 = 2,
    TPS_CPU_KERNEL_AVX512 = 3
} tps_cpu_kernel;

/* "avx512", "avx2", "generic" (AUTO: what it resolves to here). */
const char *tps_cpu_kernel_name(tps_cpu_kernel kernel);
tps_cpu_kernel tps_cpu_kernel_best(void);

/* tps_evaluate_grid and tps_evaluate_points with that kernel on the CPU
 * parts (TPS_ERR_DEVICE_UNAVAILABLE when this processor cannot run it). */
tps_status tps_evaluate_grid_kernel(tps_context *ctx, const tps_model *model,
                                    const tps_grid *grid, size_t n_outputs,
                                    const tps_output *outputs, const tps_eval_options *options,
                                    tps_cpu_kernel kernel);
tps_status tps_evaluate_points_kernel(tps_context *ctx, const tps_model *model, size_t band,
                                      size_t n, const double *x, const double *y, double *out,
                                      const tps_eval_options *options, tps_cpu_kernel kernel);

/* PRECISION=MIXED's arithmetic on the CPU (core/mixed_emulate.c): the GPU
 * kernel's blocks, error bound, near and far fields, self-check and DOUBLE
 * fallback (the CPU path's values), for value outputs of a global model.
 * block_stride > 1 evaluates every block_stride-th block in each direction
 * only (the others' pixels are not written); force_every > 0 makes the
 * blocks with (bx + by) % force_every == 0 fall back as if their bound had
 * failed (bx, by: the grid's block indices). Slow: for tests and benchmarks. */
tps_status tps_mixed_emulate_grid(tps_context *ctx, const tps_model *model, const tps_grid *grid,
                                  size_t n_outputs, const tps_output *outputs, double tolerance,
                                  size_t block_stride, size_t force_every, tps_eval_stats *stats);
/* The model of lg2.approx in that emulation: log2f plus a deterministic
 * pseudo-random error uniform within kappa x the documented bound (2^-22
 * absolute on [0.5, 2], else 2 ulp); kappa = 1 by default, 0: log2f alone,
 * < 0: the error always |kappa| x the bound, one sign (systematic). Not
 * thread-safe: set it before emulating. */
void tps_mixed_set_lg2_model(double kappa);

/* A test hook of the GPU's MIXED path (core/gpu_eval.c): the blocks with
 * (bx + by) % every == 0 (bx, by: the grid's 32 x 16 block indices) are
 * recomputed in DOUBLE as if their error bound had failed, and counted;
 * 0 (the default) turns it off. Process-wide: set it before evaluating. */
void tps_testing_mixed_force_fallback(size_t every);

/* The CPU standard error's tiles in low rank (core/se_tile.h): 0 (the
 * default) where they pay, 1 never (the exact blocks of TPS_SE_BLOCK cells
 * of a row, as before the tiles), 2 wherever they can be used, paying or
 * not, 3 where they pay but every tile as if its guard had failed
 * (computed exactly). The same modes for the GPU's tiles (gpu_se_tiles.c).
 * Process-wide: set it before evaluating; setting it clears the counts. */
void tps_testing_se_tiles(int mode);
/* The last tiled standard-error request's tiles, CPU or GPU (per distinct
 * factorisation on the CPU, per output on the GPU): [0] in low rank, [1]
 * exactly (too many points near them), [2] exactly (a guard cell
 * disagreed); over the low-rank ones, [3] the sum of their near points and
 * [4] of their far blocks' ranks (on the GPU every node: no compression).
 * Zeros until a tiled request since the mode was last set. */
void tps_testing_se_tile_counts(size_t counts[5]);

/* tps_model_info's device_uploads alone. */
size_t tps_model_device_uploads(const tps_model *model);

#ifdef __cplusplus
}
#endif

#endif

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

/* tps_model_info's device_uploads alone. */
size_t tps_model_device_uploads(const tps_model *model);

#ifdef __cplusplus
}
#endif

#endif

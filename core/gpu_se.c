/* gpu_se.c: the standard-error outputs of a GPU request. */
#include "variance.h"

tps_status tps_gpu_standard_errors(tps_context *ctx, const tps_eval_job *job)
{
    return tps_cpu_standard_errors(ctx, job);
}

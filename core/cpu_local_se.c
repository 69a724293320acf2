/* cpu_local_se.c: the standard error of a LOCAL model on the CPU. */
#include "variance.h"

tps_status tps_cpu_local_standard_errors(tps_context *ctx, const tps_eval_job *job)
{
    (void)job;
    return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT,
                         "the standard error of a local model is not available yet");
}

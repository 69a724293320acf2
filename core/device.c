/* device.c: which device evaluates (evaluate.c asks). */
#include "gpu_backend.h"
#include "internal.h"

/* Below this many point-pixel pairs AUTO evaluates on the CPU: the GPU's
 * fixed costs (launch, transfer, synchronisation; ~0.1 ms) would dominate. */
#define TPS_GPU_MIN_PAIRS 2e7

const char *tps_device_name(tps_device device)
{
    switch (device) {
    case TPS_DEVICE_AUTO: return "AUTO";
    case TPS_DEVICE_CPU: return "CPU";
    case TPS_DEVICE_GPU: return "GPU";
    }
    return "unknown";
}

tps_status tps_device_check(tps_context *ctx, tps_device device)
{
    tps_clear_error(ctx);
    tps_error err;
    switch (device) {
    case TPS_DEVICE_AUTO:
    case TPS_DEVICE_CPU:
        return TPS_OK;
    case TPS_DEVICE_GPU:
        if (tps_gpu_probe(&err) != TPS_OK)
            return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                                 "GPU evaluation is not available: %s; use DEVICE=CPU or "
                                 "DEVICE=AUTO", err.message);
        return TPS_OK;
    }
    return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "unknown device %d", (int)device);
}

tps_device tps_device_choose(tps_device requested, double pairs)
{
    if (requested == TPS_DEVICE_CPU || tps_gpu_probe(NULL) != TPS_OK)
        return TPS_DEVICE_CPU;
    if (requested == TPS_DEVICE_GPU)
        return TPS_DEVICE_GPU;
    return pairs >= TPS_GPU_MIN_PAIRS ? TPS_DEVICE_GPU : TPS_DEVICE_CPU;
}

const char *tps_gpu_description(void)
{
    return tps_gpu_name();
}

/* device.c: which backend evaluates. Only the CPU exists in this build; the
 * GPU backend (gpu/) plugs in here. */
#include "internal.h"

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
    switch (device) {
    case TPS_DEVICE_AUTO:
    case TPS_DEVICE_CPU:
        return TPS_OK;
    case TPS_DEVICE_GPU:
        return tps_set_error(ctx, TPS_ERR_DEVICE_UNAVAILABLE,
                             "GPU evaluation is not available: this build of gdal-tps has no "
                             "GPU support; use DEVICE=CPU or DEVICE=AUTO");
    }
    return tps_set_error(ctx, TPS_ERR_INVALID_ARGUMENT, "unknown device %d", (int)device);
}

tps_device tps_device_choose(tps_device requested, double pairs)
{
    (void)pairs;
    (void)requested;
    return TPS_DEVICE_CPU;
}

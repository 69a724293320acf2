/* probe.cu: whether a GPU can be used, probed once per process, and its name. */
#include "common.cuh"

#include <pthread.h>

using namespace tps_gpu;

namespace {

pthread_once_t probe_once = PTHREAD_ONCE_INIT;
tps_error probe_error = {TPS_ERR_DEVICE_UNAVAILABLE, ""};
char device_name[512];

void probe_device()
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver) {
        int runtime = 0;
        cudaRuntimeGetVersion(&runtime);
        tps_error_set(&probe_error, TPS_ERR_DEVICE_UNAVAILABLE,
                      "no usable GPU: no NVIDIA driver found, or one older than this build's "
                      "CUDA %d.%d runtime needs (cudaErrorInsufficientDriver)",
                      runtime / 1000, runtime % 1000 / 10);
        cudaGetLastError();
        return;
    }
    if (e != cudaSuccess) {
        fail(&probe_error, "no usable GPU", e);
        cudaGetLastError();
        return;
    }
    if (count == 0) {
        tps_error_set(&probe_error, TPS_ERR_DEVICE_UNAVAILABLE,
                      "no usable GPU: no CUDA device found");
        return;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
        fail(&probe_error, "no usable GPU: cannot query device 0", e);
        return;
    }
    snprintf(device_name, sizeof device_name, "%s, %.1f GiB, compute capability %d.%d",
             prop.name, double(prop.totalGlobalMem) / 1073741824.0, prop.major, prop.minor);
    /* Starting the context here makes the first evaluation's time honest
     * and catches a device we have no machine code or PTX for. */
    e = cudaFree(nullptr);
    if (e != cudaSuccess) {
        fail(&probe_error, "no usable GPU: cannot start a CUDA context", e);
        return;
    }
    tps_error_clear(&probe_error);
}

} // namespace

extern "C" tps_status tps_gpu_probe(tps_error *err)
{
    pthread_once(&probe_once, probe_device);
    if (probe_error.code != TPS_OK)
        return tps_error_set(err, probe_error.code, "%s", probe_error.message);
    return TPS_OK;
}

extern "C" const char *tps_gpu_name(void)
{
    pthread_once(&probe_once, probe_device);
    return probe_error.code == TPS_OK ? device_name : "";
}

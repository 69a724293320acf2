/* fault_inject.cu: the test hooks of gpu/fault.cuh for the C test test_gpu
 * only (never in the engine's libraries): TPS_GPU_INJECT_FAULT=upload makes
 * every device copy fail as if out of memory, =launch every kernel launch
 * fail, =trap every launch queue a kernel that traps on the device. */
#include "fault.cuh"

#include <stdlib.h>
#include <string.h>

namespace {

bool injected(const char *kind)
{
    const char *f = getenv("TPS_GPU_INJECT_FAULT");
    return f && strcmp(f, kind) == 0;
}

__global__ void trap_kernel()
{
    __trap();
}

} // namespace

extern "C" int tps_gpu_fault_upload(void)
{
    return injected("upload");
}

extern "C" cudaError_t tps_gpu_fault_launch(cudaStream_t stream)
{
    if (injected("trap"))
        trap_kernel<<<1, 1, 0, stream>>>();
    return injected("launch") ? cudaErrorLaunchFailure : cudaSuccess;
}

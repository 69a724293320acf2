/* fault.cu: fault injection for tests (gpu/fault.cuh). */
#include "fault.cuh"

#include <stdlib.h>
#include <string.h>

namespace tps_gpu {

Fault injected_fault()
{
    const char *f = getenv("TPS_GPU_INJECT_FAULT");
    if (!f)
        return FAULT_NONE;
    if (strcmp(f, "upload") == 0)
        return FAULT_UPLOAD;
    if (strcmp(f, "launch") == 0)
        return FAULT_LAUNCH;
    return strcmp(f, "trap") == 0 ? FAULT_TRAP : FAULT_NONE;
}

namespace {

__global__ void trap_kernel()
{
    __trap();
}

} // namespace

void launch_trap(cudaStream_t stream)
{
    trap_kernel<<<1, 1, 0, stream>>>();
}

} // namespace tps_gpu

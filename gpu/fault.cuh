/* fault.cuh: injected faults, for tests (gpu/fault.cu). */
#ifndef TPS_GPU_FAULT_CUH
#define TPS_GPU_FAULT_CUH

#include <cuda_runtime.h>

namespace tps_gpu {

/* ---- fault injection (tests only) ------------------------------------------
 * TPS_GPU_INJECT_FAULT=upload|launch|trap makes the next device copy fail
 * as if out of memory, a kernel launch fail, or a kernel trap on the device
 * (a sticky error that kills the CUDA context, as a real device fault does),
 * so that tests can prove every such failure ends in a clear error or a CPU
 * fallback, never a wrong block (docs/reliability.md). */
enum Fault { FAULT_NONE, FAULT_UPLOAD, FAULT_LAUNCH, FAULT_TRAP };
Fault injected_fault();
/* Queues a kernel that traps on the device. */
void launch_trap(cudaStream_t stream);

} // namespace tps_gpu

#endif

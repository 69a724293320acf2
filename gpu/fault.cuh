/* fault.cuh: test hooks, the places where a test makes the GPU backend fail
 * on purpose (docs/reliability.md): a device copy fails as if out of memory,
 * a kernel launch fails, or a kernel traps on the device (a sticky error that
 * kills the CUDA context, as a real device fault does), so that tests can
 * prove every such failure ends in a clear error or a CPU fallback, never a
 * wrong block.
 *
 * The engine links gpu/fault_none.cu, where nothing ever fails. Only the C
 * test test_gpu links gpu/fault_inject.cu in its place (its object comes
 * before the engine's archives, so the archive's member is never pulled
 * in): no production build reads TPS_GPU_INJECT_FAULT. */
#ifndef TPS_GPU_FAULT_CUH
#define TPS_GPU_FAULT_CUH

#include <cuda_runtime.h>

extern "C" {
/* Nonzero: the device copy about to be made fails as if out of memory. */
int tps_gpu_fault_upload(void);
/* cudaSuccess, or the error to report for the kernel launch about to be
 * made on `stream` (after queueing a trapping kernel on it, for a trap). */
cudaError_t tps_gpu_fault_launch(cudaStream_t stream);
}

#endif

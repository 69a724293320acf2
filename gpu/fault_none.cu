/* fault_none.cu: the test hooks of gpu/fault.cuh as every build of the
 * engine has them: nothing ever fails. */
#include "fault.cuh"

extern "C" int tps_gpu_fault_upload(void)
{
    return 0;
}

extern "C" cudaError_t tps_gpu_fault_launch(cudaStream_t stream)
{
    (void)stream;
    return cudaSuccess;
}

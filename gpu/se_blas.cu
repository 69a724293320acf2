/* se_blas.cu: the cuBLAS functions of the standard error (se.cuh's
 * SeBlas), bound at run time through cuda_libs.cuh, so that the plugin
 * needs no CUDA library but the driver to load. A file of its own so that
 * se.cu (the exact blocks) and se_tiles.cu (tiles in low rank) both use
 * it without depending on each other's code. */
#include "cuda_libs.cuh"
#include "se.cuh"

namespace tps_gpu {

SeBlas se_blas;

namespace {

bool bind_cublas(SymbolBinder &b)
{
    return b.require(&se_blas.create, "cublasCreate_v2") &&
           b.require(&se_blas.destroy, "cublasDestroy_v2") &&
           b.require(&se_blas.set_stream, "cublasSetStream_v2") &&
           b.require(&se_blas.dgemm, "cublasDgemm_v2");
}

CudaSymbols cublas_symbols(CudaLib::cublas, bind_cublas);

} // namespace

tps_status se_blas_need(tps_error *err) { return cublas_symbols.need(err); }

} // namespace tps_gpu

/* emu.cpp (scripts/cuda_emu/run.sh): a launch's indices, the block
 * reduction of gpu/se_tiles.cu (its thread 0 sums, in the device's order),
 * cuBLAS's functions by name (DGEMM by OpenBLAS, its leading dimensions
 * checked as cuBLAS does), and a GPU probe that finds one. */
#include "common.cuh"
#include "cuda_libs.cuh"
#include <cublas_v2.h>
#include <cblas.h>
#include <map>
#include <string>
emu_idx blockIdx, threadIdx;
dim3 blockDim, gridDim;
double block_sum_squares(const double *x, int r0, int r1)
{
    if (threadIdx.x != 0) return 0.0;
    const int RED = (int)blockDim.x;
    double part[1024];
    for (int t = 0; t < RED; ++t) {
        double s = 0.0;
        for (int r = r0 + t; r < r1; r += RED) s += x[r] * x[r];
        part[t] = s;
    }
    for (int k = RED / 2; k > 0; k >>= 1)
        for (int t = 0; t < k; ++t) part[t] += part[t + k];
    return part[0];
}
static cublasStatus_t emu_create(cublasHandle_t *h) { *h = (void *)1; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t emu_destroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t emu_set_stream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
long long emu_gemm_calls = 0;
static cublasStatus_t emu_dgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                int k, const double *alpha, const double *a, int lda, const double *b,
                                int ldb, const double *beta, double *c, int ldc)
{
    ++emu_gemm_calls;
    const int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) ||
        ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "EMU: invalid dgemm %c%c m %d n %d k %d lda %d ldb %d ldc %d\n",
                ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, *alpha, a, lda, b, ldb, *beta, c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
namespace tps_gpu {
void *SymbolBinder::lookup(const char *name, bool required)
{
    static std::map<std::string, void *> fns = {
        {"cublasCreate_v2", (void *)emu_create}, {"cublasDestroy_v2", (void *)emu_destroy},
        {"cublasSetStream_v2", (void *)emu_set_stream}, {"cublasDgemm_v2", (void *)emu_dgemm}};
    auto it = fns.find(name);
    if (it == fns.end()) {
        if (required) snprintf(error_, size_, "EMU has no %s", name);
        return nullptr;
    }
    return it->second;
}
void CudaSymbols::load()
{
    SymbolBinder binder(nullptr, "emu", error_, sizeof error_);
    ready_ = bind_(binder);
}
tps_status CudaSymbols::need(tps_error *err)
{
    std::call_once(once_, &CudaSymbols::load, this);
    if (!ready_) return unavailable(err, "%s", error_);
    return TPS_OK;
}
} // namespace tps_gpu
extern "C" tps_status tps_gpu_probe(tps_error *) { return TPS_OK; }

/* cuda_libs.cuh: cuSOLVER and cuBLAS, opened at run time (dlopen), in this
 * one place for every file that calls them (solve.cu, eigen.cu, se.cu).
 *
 * Why dlopen: gdal_TPS.so must load on a machine without these libraries
 * (no CUDA toolkit, only a driver, or no GPU at all) and evaluate on the
 * CPU there. A library in the plugin's NEEDED list that is absent makes
 * the dynamic loader refuse the whole plugin, CPU path included. The CUDA
 * runtime is linked statically and finds the driver itself (probe.cu);
 * cuSOLVER and cuBLAS come with the toolkit, not the driver, so they are
 * opened only when a GPU path first needs them, and without them that
 * path reports TPS_ERR_DEVICE_UNAVAILABLE with this loader's message (the
 * engine then solves on the CPU, or reports it under DEVICE=GPU).
 *
 * A caller names the functions it needs as one CudaSymbols: the library
 * and a function that binds them through a SymbolBinder. Each library is
 * opened once per process and never closed; each set is bound once;
 * std::call_once for both, so any thread may be first. A required
 * function that is absent makes its set unavailable, with a message
 * naming it ("cuSOLVER has no cusolverDnXsyevBatched"), and leaves the
 * library and the other sets usable; an optional one (newer than some
 * library the plugin may meet, e.g. cublasSetEmulationStrategy) is left a
 * null pointer that the caller checks before calling it. */
#ifndef TPS_GPU_CUDA_LIBS_CUH
#define TPS_GPU_CUDA_LIBS_CUH

#include "error.h"

#include <mutex>
#include <stddef.h>

namespace tps_gpu {

/* The libraries (cuda_libs.cu lists the file names tried for each). */
enum class CudaLib { cusolver, cublas };

/* Looks functions up in an opened library, for a CudaSymbols' bind
 * function. Both return whether the set can still be used, so that a bind
 * function is one && chain (its first missing required function stops it). */
class SymbolBinder {
public:
    SymbolBinder(void *handle, const char *library, char *error, size_t size)
        : handle_(handle), library_(library), error_(error), size_(size)
    {
    }
    /* *fn = the function `name`; false (the message naming it) when absent. */
    template <typename F> bool require(F *fn, const char *name)
    {
        *fn = reinterpret_cast<F>(lookup(name, true));
        return *fn != nullptr;
    }
    /* *fn = the function `name`, or nullptr when absent; always true. */
    template <typename F> bool optional(F *fn, const char *name)
    {
        *fn = reinterpret_cast<F>(lookup(name, false));
        return true;
    }

private:
    void *lookup(const char *name, bool required);
    void *handle_;
    const char *library_; /* "cuSOLVER", in messages */
    char *error_;
    size_t size_;
};

/* One caller's functions of one library, loaded and bound on first need. */
class CudaSymbols {
public:
    using Bind = bool (*)(SymbolBinder &);
    constexpr CudaSymbols(CudaLib library, Bind bind) : library_(library), bind_(bind) {}
    /* TPS_OK when the library is open and every required function bound;
     * else TPS_ERR_DEVICE_UNAVAILABLE, err saying why (the same message on
     * every call). */
    tps_status need(tps_error *err);

private:
    void load();
    CudaLib library_;
    Bind bind_;
    std::once_flag once_;
    bool ready_ = false;
    char error_[512] = "";
};

} // namespace tps_gpu

#endif

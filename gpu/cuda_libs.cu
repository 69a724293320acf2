/* cuda_libs.cu: the run-time loader of cuSOLVER and cuBLAS (cuda_libs.cuh
 * says why they are not linked). */
#include "cuda_libs.cuh"

#include "common.cuh"

#include <dlfcn.h>
#include <stdio.h>

namespace tps_gpu {

namespace {

/* A library and the files tried for it, in order: its sonames (found
 * through LD_LIBRARY_PATH and ld.so.conf), then the toolkit's usual home.
 * The first file names it in the message when none loads. */
struct Library {
    const char *name;
    const char *files[4];
    std::once_flag once;
    void *handle;
    char error[512];
};

Library libraries[] = {
    {"cuSOLVER", {"libcusolver.so.12", "/usr/local/cuda/lib64/libcusolver.so.12"}, {}, nullptr, ""},
    {"cuBLAS",
     {"libcublas.so.13", "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.13",
      "/usr/local/cuda/lib64/libcublas.so.12"},
     {},
     nullptr,
     ""},
};

Library &library(CudaLib which)
{
    return libraries[which == CudaLib::cusolver ? 0 : 1];
}

void open_library(Library *lib)
{
    for (const char *file : lib->files)
        if (file && (lib->handle = dlopen(file, RTLD_NOW | RTLD_LOCAL)) != nullptr)
            return;
    const char *why = dlerror();
    snprintf(lib->error, sizeof lib->error, "cannot load %s (%s): %s", lib->name, lib->files[0],
             why ? why : "not found");
}

} // namespace

void *SymbolBinder::lookup(const char *name, bool required)
{
    void *fn = dlsym(handle_, name);
    if (!fn && required)
        snprintf(error_, size_, "%s has no %s", library_, name);
    return fn;
}

void CudaSymbols::load()
{
    Library &lib = library(library_);
    std::call_once(lib.once, open_library, &lib);
    if (!lib.handle) {
        snprintf(error_, sizeof error_, "%s", lib.error);
        return;
    }
    SymbolBinder binder(lib.handle, lib.name, error_, sizeof error_);
    ready_ = bind_(binder);
    if (!ready_ && !error_[0]) /* a bind function that failed without a lookup */
        snprintf(error_, sizeof error_, "cannot bind the %s functions", lib.name);
}

tps_status CudaSymbols::need(tps_error *err)
{
    std::call_once(once_, &CudaSymbols::load, this);
    if (!ready_)
        return unavailable(err, "%s", error_);
    return TPS_OK;
}

} // namespace tps_gpu

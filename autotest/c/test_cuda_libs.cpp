/* test_cuda_libs: the run-time loader of cuBLAS and cuSOLVER
 * (gpu/cuda_libs.cuh), which needs the libraries but no GPU:
 *   - a set of present functions binds, an optional absent one is a null
 *     pointer and the set still binds;
 *   - a required absent one makes its set unavailable, with a message naming
 *     it, on every call, and leaves the other sets of the library usable;
 *   - threads that race to a set's first use bind it once, all succeeding;
 *   - a library that is not installed is reported "cannot load ...".
 * Skipped (exit 77) where the test's own probe (dlopen of the library by its
 * sonames, then in the toolkit this build used) finds neither library, and
 * under valgrind (TPS_TEST_QUICK=1, scripts/valgrind_tests.py): opening the
 * CUDA libraries there reports ld.so's reads of their RPATH and the
 * allocations their own initialisers keep (libstdc++'s exception pool), none
 * of them this loader's, which allocates nothing. */
#include "cuda_libs.cuh"

#include <atomic>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <thread>
#include <vector>

using tps_gpu::CudaLib;
using tps_gpu::CudaSymbols;
using tps_gpu::SymbolBinder;

namespace {

int failures = 0;

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what);                         \
            ++failures;                                                                            \
        }                                                                                          \
    } while (0)

const char ABSENT[] = "tps_test_no_such_function";

/* Is the library installed? Independently of the loader: dlopen by itself. */
bool installed(const char *const *sonames)
{
    for (const char *const *s = sonames; *s; ++s) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", TPS_TEST_CUDA_LIBDIR, *s);
        for (const char *file : {*s, static_cast<const char *>(path)}) {
            if (void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL)) {
                dlclose(h);
                return true;
            }
        }
    }
    return false;
}

/* Every set's functions: one type is enough to test binding by name. */
using Fn = int (*)(void *);
Fn present, optional_present, optional_absent, after_absent;
std::atomic<int> bind_calls{0};

bool bind_blas_optional(SymbolBinder &b)
{
    optional_absent = reinterpret_cast<Fn>(1); /* must become nullptr */
    return b.require(&present, "cublasCreate_v2") &&
           b.optional(&optional_present, "cublasSetMathMode") &&
           b.optional(&optional_absent, ABSENT);
}

bool bind_blas_missing(SymbolBinder &b)
{
    Fn create;
    return b.require(&create, "cublasCreate_v2") && b.require(&after_absent, ABSENT) &&
           b.require(&create, "cublasDestroy_v2");
}

bool bind_blas_counted(SymbolBinder &b)
{
    ++bind_calls;
    Fn dgemm;
    return b.require(&dgemm, "cublasDgemm_v2");
}

bool bind_solver(SymbolBinder &b)
{
    Fn create;
    return b.require(&create, "cusolverDnCreate") && b.require(&create, "cusolverDnDpotrf");
}

/* need() fails with a message that starts with `prefix`. */
void check_fails(CudaSymbols &set, const char *prefix, const char *what)
{
    tps_error err{};
    CHECK(set.need(&err) == TPS_ERR_DEVICE_UNAVAILABLE, what);
    CHECK(err.code == TPS_ERR_DEVICE_UNAVAILABLE, what);
    if (strncmp(err.message, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "  message: '%s', expected '%s...'\n", err.message, prefix);
        CHECK(false, what);
    }
}

void check_cublas()
{
    static CudaSymbols with_optional(CudaLib::cublas, bind_blas_optional);
    static CudaSymbols missing(CudaLib::cublas, bind_blas_missing);
    tps_error err{};
    CHECK(with_optional.need(&err) == TPS_OK, err.message);
    CHECK(present != nullptr, "a required function is bound");
    CHECK(optional_present != nullptr, "an optional present function is bound");
    CHECK(optional_absent == nullptr, "an optional absent function is a null pointer");

    for (int call = 0; call < 2; ++call)
        check_fails(missing, "cuBLAS has no tps_test_no_such_function",
                    "a required absent function names itself, on every call");
    CHECK(after_absent == nullptr, "the absent function is a null pointer");
    CHECK(with_optional.need(&err) == TPS_OK, "the library stays usable after a set fails");

    static CudaSymbols counted(CudaLib::cublas, bind_blas_counted);
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&ok] {
            tps_error e{};
            if (counted.need(&e) == TPS_OK)
                ++ok;
        });
    for (std::thread &t : threads)
        t.join();
    CHECK(ok == 8, "every racing thread gets the bound set");
    CHECK(bind_calls == 1, "a set is bound once");
}

} // namespace

int main()
{
    const char *quick = getenv("TPS_TEST_QUICK");
    if (quick && strcmp(quick, "0") != 0) {
        printf("SKIP: TPS_TEST_QUICK=1 (valgrind): the CUDA libraries' own initialisers "
               "would be reported\n");
        return 77;
    }
    static const char *const blas[] = {"libcublas.so.13", "libcublas.so.12", nullptr};
    static const char *const solver[] = {"libcusolver.so.12", nullptr};
    const bool have_blas = installed(blas), have_solver = installed(solver);

    static CudaSymbols blas_set(CudaLib::cublas, bind_blas_optional);
    if (have_blas)
        check_cublas();
    else
        check_fails(blas_set, "cannot load cuBLAS (libcublas.so.13): ", "cuBLAS absent");

    static CudaSymbols solver_set(CudaLib::cusolver, bind_solver);
    if (have_solver) {
        tps_error err{};
        CHECK(solver_set.need(&err) == TPS_OK, err.message);
    } else {
        check_fails(solver_set, "cannot load cuSOLVER (libcusolver.so.12): ", "cuSOLVER absent");
    }

    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    if (!have_blas && !have_solver) {
        printf("SKIP: neither cuBLAS nor cuSOLVER is installed (looked for by soname and in %s)\n",
               TPS_TEST_CUDA_LIBDIR);
        return 77;
    }
    printf("OK: cuBLAS %s, cuSOLVER %s\n", have_blas ? "checked" : "absent (message checked)",
           have_solver ? "checked" : "absent (message checked)");
    return 0;
}

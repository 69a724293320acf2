/* gpu_probe.h: is there a GPU here? Asked of the CUDA driver itself
 * (libcuda.so.1 through dlopen: cuInit, cuDeviceGetCount; no link to CUDA),
 * never of the code under test. A GPU test skips (exit 77) only when this
 * probe finds no GPU, or the build has no GPU backend; where it finds one,
 * any failure of the GPU path (tps_device_check saying no, a DEVICE=GPU
 * open failing) is a test failure, not a skip. CUDA_VISIBLE_DEVICES= hides
 * the GPUs from the probe as from the engine (cuInit: no device), which is
 * how the fallback tests run on a GPU host. */
#ifndef TPS_TEST_GPU_PROBE_H
#define TPS_TEST_GPU_PROBE_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set by autotest/c/CMakeLists.txt from the build's TPS_HAVE_CUDA. */
#ifndef TPS_TEST_GPU_BACKEND
#define TPS_TEST_GPU_BACKEND 0
#endif

/* The number of CUDA devices the driver reports (0: none), with why in
 * `why`. The library stays loaded: the CUDA runtime in the engine loads it
 * too, and unloading a driver after cuInit is not supported. */
static int gpu_probe_count(char *why, size_t size)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *err = dlerror();
        snprintf(why, size, "no CUDA driver (%s)", err ? err : "libcuda.so.1 not found");
        return 0;
    }
    int (*cu_init)(unsigned int) = NULL;
    int (*cu_count)(int *) = NULL;
    /* Through void **: dlsym's object pointer to a function pointer, in C and C++. */
    *(void **)(&cu_init) = dlsym(lib, "cuInit");
    *(void **)(&cu_count) = dlsym(lib, "cuDeviceGetCount");
    if (!cu_init || !cu_count) {
        snprintf(why, size, "libcuda.so.1 lacks cuInit/cuDeviceGetCount");
        return 0;
    }
    const int rc = cu_init(0);
    if (rc != 0) { /* 100: CUDA_ERROR_NO_DEVICE (none, or CUDA_VISIBLE_DEVICES=) */
        snprintf(why, size, "cuInit: CUDA error %d (100: no device)", rc);
        return 0;
    }
    int n = 0;
    if (cu_count(&n) != 0 || n < 1) {
        snprintf(why, size, "cuDeviceGetCount: %d devices", n);
        return 0;
    }
    snprintf(why, size, "%d CUDA device%s", n, n > 1 ? "s" : "");
    return n;
}

/* Whether a GPU must be usable here: the probe finds one and the build
 * has the GPU backend. `why` says what was found. */
static int gpu_expected(char *why, size_t size)
{
    char found[400];
    const int n = gpu_probe_count(found, sizeof found);
    if (n > 0 && !TPS_TEST_GPU_BACKEND) {
        snprintf(why, size, "%s, but this build has no GPU backend (TPS_CUDA=OFF or no nvcc)",
                 found);
        return 0;
    }
    snprintf(why, size, "%s%s", n > 0 ? "" : "no GPU: ", found);
    return n > 0;
}

/* A test's GPU mode, decided by the probe: 1, after saying that the GPU
 * path must work; 0, after printing the skip (the caller exits 77). */
static inline int gpu_required(void)
{
    char why[512] = "";
    if (!gpu_expected(why, sizeof why)) {
        printf("SKIP: %s\n", why);
        return 0;
    }
    printf("the probe finds %s: every GPU check must pass\n", why);
    return 1;
}

/* TPS_TEST_BREAK_GPU=1, read by the GPU test programs only (never by the
 * engine or the driver): one expected value is flipped, so that the run
 * fails. It shows that a failing GPU test fails bench/gpu_host.sh. */
static int gpu_test_broken_on_purpose(void)
{
    const char *v = getenv("TPS_TEST_BREAK_GPU");
    const int broken = v && strcmp(v, "1") == 0;
    if (broken)
        printf("TPS_TEST_BREAK_GPU=1: one expected value is wrong on purpose: this run must "
               "fail\n");
    return broken;
}

#endif

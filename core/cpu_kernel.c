/* cpu_kernel.c: which build of the SIMD value kernel (eval_kernel.c) this
 * processor runs, picked at run time as GDAL does for its SIMD code. */
#include "eval.h"

static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && has_avx2();
}

tps_cpu_kernel tps_cpu_kernel_best(void)
{
    if (has_avx512())
        return TPS_CPU_KERNEL_AVX512;
    if (has_avx2())
        return TPS_CPU_KERNEL_AVX2;
    return TPS_CPU_KERNEL_GENERIC;
}

const char *tps_cpu_kernel_name(tps_cpu_kernel kernel)
{
    switch (kernel == TPS_CPU_KERNEL_AUTO ? tps_cpu_kernel_best() : kernel) {
    case TPS_CPU_KERNEL_AVX512: return "avx512";
    case TPS_CPU_KERNEL_AVX2: return "avx2";
    default: return "generic";
    }
}

const char *tps_cpu_description(void)
{
    return tps_cpu_kernel_name(TPS_CPU_KERNEL_AUTO);
}

tps_kernel_fn tps_kernel_for(tps_cpu_kernel kernel)
{
    switch (kernel) {
    case TPS_CPU_KERNEL_AUTO: return tps_kernel_for(tps_cpu_kernel_best());
    case TPS_CPU_KERNEL_AVX512: return has_avx512() ? tps_kernel_avx512 : NULL;
    case TPS_CPU_KERNEL_AVX2: return has_avx2() ? tps_kernel_avx2 : NULL;
    case TPS_CPU_KERNEL_GENERIC: return tps_kernel_generic;
    }
    return NULL;
}

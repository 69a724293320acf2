/* hd.h: for the headers whose inline functions both the C engine and the
 * CUDA backend compile (grid.h, sums.h, blend.h): one definition of each
 * formula, built for the host by the C compiler and for the device by nvcc.
 * The CPU and GPU results depend on these formulas being the same. */
#ifndef TPS_HD_H
#define TPS_HD_H

#ifdef __CUDACC__
#define TPS_HD __host__ __device__ __forceinline__
#else
#define TPS_HD static inline
#endif

/* A quiet NaN in host and device code. */
#ifdef __CUDA_ARCH__
#define TPS_NAN __longlong_as_double(0x7ff8000000000000LL)
#else
#include <math.h>
#define TPS_NAN ((double)NAN)
#endif

#endif

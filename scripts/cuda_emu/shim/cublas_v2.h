/* cublas_v2.h for scripts/cuda_emu: the types gpu/se*.cu name (emu.cpp
 * has the functions). */
#pragma once
typedef void *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;

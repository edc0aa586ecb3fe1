// Host/device portability macros shared by every layer. This header is the
// bottom of the include graph: it includes nothing from recur.
#pragma once

#if defined(__CUDACC__)
#define RECUR_HD __host__ __device__ __forceinline__
#define RECUR_DEVICE_CODE 1
#else
#define RECUR_HD inline
#define RECUR_DEVICE_CODE 0
#endif

// Loop unrolling hint for device code; host passes get nothing (no unknown-pragma warnings).
#if defined(__CUDA_ARCH__)
#define RECUR_UNROLL _Pragma("unroll")
#else
#define RECUR_UNROLL
#endif

#define RECUR_STRINGIFY_IMPL(x) #x
#define RECUR_STRINGIFY(x) RECUR_STRINGIFY_IMPL(x)

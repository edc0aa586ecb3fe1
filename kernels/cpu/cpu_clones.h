#pragma once
// RECUR_CPU_CLONES: a function compiled once per x86-64 instruction set
// (AVX-512, AVX2, the baseline), the copy picked when the library loads, where
// GCC or Clang 14+ can clone functions (not in sanitizer builds). The files
// that use it are compiled without floating-point contraction
// (CMakeLists.txt), so every clone rounds as the baseline does.
//
// RECUR_CPU_CLONES_FMA: the same for code compiled with contraction, whose
// clones all have FMA but the baseline's (x86-64-v3 is AVX2 with FMA; AVX-512
// has it): there a * b + c is one rounding where the baseline rounds twice.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(RECUR_SANITIZE) && \
    (!defined(__clang__) || __clang_major__ >= 14)
#define RECUR_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define RECUR_CPU_CLONES_FMA __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define RECUR_CPU_CLONES
#define RECUR_CPU_CLONES_FMA
#endif

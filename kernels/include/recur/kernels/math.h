// Scalar math shared by the CPU twins and the CUDA kernels. Overloads pick the
// float or double library function so that one template serves float32 kernels
// and the float64 reference alike.
#pragma once

#include <cmath>

#include "recur/common/macros.h"

namespace recur::kernels {

RECUR_HD float rexp(float x) { return ::expf(x); }
RECUR_HD double rexp(double x) { return ::exp(x); }
RECUR_HD float rtanh(float x) { return ::tanhf(x); }
RECUR_HD double rtanh(double x) { return ::tanh(x); }
RECUR_HD float rlog(float x) { return ::logf(x); }
RECUR_HD double rlog(double x) { return ::log(x); }
RECUR_HD float rlog1p(float x) { return ::log1pf(x); }
RECUR_HD double rlog1p(double x) { return ::log1p(x); }
RECUR_HD float square_root(float x) { return ::sqrtf(x); }
RECUR_HD double square_root(double x) { return ::sqrt(x); }

// 1 / (1 + e^-x), written so that neither branch overflows.
template <class T>
RECUR_HD T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + rexp(-x));
  T e = rexp(x);
  return e / (T(1) + e);
}

// NaN passes through (as in PyTorch): NaN < 0 is false.
template <class T>
RECUR_HD T relu(T x) {
  return x < T(0) ? T(0) : x;
}

template <class T>
RECUR_HD bool is_nan(T x) {
  return x != x;
}

}  // namespace recur::kernels

// Weight initializers, as Keras defines them, for PyTorch-layout weights.
// Every random draw comes from an explicit seed through std::mt19937_64 (whose
// output the C++ standard fixes) and recur's own uniform and Box-Muller
// transforms (not std::*_distribution, whose algorithms vary by library), so
// a seed gives the same values in every run and build on the CPU. Values are
// computed in double on the host, then copied into the tensor (any device).
//
// Fans (PyTorch layouts): [out, in] -> fan_in = in, fan_out = out;
// [out, in, k...] -> both times the receptive field prod(k...); [n] -> n, n.
// (Keras stores the transpose, [in, out], and reads the same fans from it.)
#pragma once

#include <cstdint>
#include <utility>

#include "recur/host/tensor.h"

namespace recur::init {

// {fan_in, fan_out} of a weight of this shape, as above.
std::pair<double, double> fans(const Shape& shape);

void zeros(const Tensor& t);
void ones(const Tensor& t);
void constant(const Tensor& t, double value);
// Uniform in [lo, hi).
void uniform(const Tensor& t, double lo, double hi, std::uint64_t seed);
// Normal(mean, stddev).
void normal(const Tensor& t, double mean, double stddev, std::uint64_t seed);
// Keras's default kernel initializer: uniform in [-limit, limit),
// limit = sqrt(6 / (fan_in + fan_out)).
void glorot_uniform(const Tensor& t, std::uint64_t seed);
// Keras's default recurrent initializer: the Q of a QR decomposition of a
// standard-normal matrix, columns sign-corrected by diag(R), times gain. The
// tensor is viewed as [rows = shape[0], cols = the rest]; the result has
// orthonormal columns when rows >= cols, orthonormal rows otherwise (so
// PyTorch's W_hh [4H, H] gets Q^T Q = I, Keras's [H, 4H] transposed).
// Householder QR in double: no LAPACK.
void orthogonal(const Tensor& t, std::uint64_t seed, double gain = 1.0);
// Keras's unit_forget_bias for an LSTM bias [4H], gate order i, f, g, o:
// zeros, then ones on the forget block [H, 2H).
void unit_forget_bias(const Tensor& bias);

}  // namespace recur::init

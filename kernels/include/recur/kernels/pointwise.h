// The elementwise and reduction op set, as enums plus one functor each. The op
// is a template parameter, chosen once at dispatch, so no kernel switches on it
// per element. Used by kernels/cpu and kernels/cuda alike.
#pragma once

#include <cstdint>
#include <limits>

#include "recur/kernels/math.h"

namespace recur {

enum class UnaryOp : std::uint8_t { Sigmoid, Tanh, Relu };
enum class BinaryOp : std::uint8_t { Add, Sub, Mul };
enum class ReduceOp : std::uint8_t { Sum, Mean, Max };

const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
const char* op_name(ReduceOp op);

namespace kernels {

template <UnaryOp op, class T>
RECUR_HD T apply_unary(T x) {
  if constexpr (op == UnaryOp::Sigmoid) return sigmoid(x);
  if constexpr (op == UnaryOp::Tanh) return rtanh(x);
  if constexpr (op == UnaryOp::Relu) return relu(x);
}

template <BinaryOp op, class T>
RECUR_HD T apply_binary(T a, T b) {
  if constexpr (op == BinaryOp::Add) return a + b;
  if constexpr (op == BinaryOp::Sub) return a - b;
  if constexpr (op == BinaryOp::Mul) return a * b;
}

// Reductions: identity, combine, and finish (Mean divides by the count).
// Max propagates NaN: a NaN anywhere in the reduced range gives NaN.
template <ReduceOp op, class Acc>
RECUR_HD Acc reduce_identity() {
  if constexpr (op == ReduceOp::Max) return -std::numeric_limits<Acc>::infinity();
  else return Acc(0);
}

template <ReduceOp op, class Acc>
RECUR_HD Acc reduce_combine(Acc a, Acc b) {
  if constexpr (op == ReduceOp::Max) return (is_nan(a) || a > b) ? a : b;
  else return a + b;
}

template <ReduceOp op, class Acc>
RECUR_HD Acc reduce_finish(Acc a, std::int64_t n) {
  if constexpr (op == ReduceOp::Mean) return a / Acc(n);
  else return a;
}

}  // namespace kernels
}  // namespace recur

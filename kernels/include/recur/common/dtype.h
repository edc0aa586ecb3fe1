// Element types a tensor can hold. float32 is the working type everywhere;
// float64 exists on the CPU backend for reference computations and
// finite-difference gradient checks; bf16 and int32 are reserved so that
// tensors, files and kernels can grow into them without a format change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace recur {

enum class DType : std::uint8_t { f32 = 0, f64 = 1, bf16 = 2, i32 = 3 };

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::i32: return "int32";
  }
  return "?";
}

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<std::int32_t> { static constexpr DType value = DType::i32; };
template <class T> inline constexpr DType dtype_of = DTypeOf<T>::value;

}  // namespace recur

// 1D convolution: Keras's output lengths, forward against a direct float64
// convolution written here (every padding, stride, dilation, groups; CPU and
// CUDA), gradients by finite differences in float64 on the CPU, bad arguments.
// The CPU runs each check on both of its paths: the direct convolution
// (kernels/cpu/conv1d_direct.cpp) and im2col + GEMM.
#include <cmath>

#include "recur/kernels/cpu.h"
#include "test_util.h"

namespace recur::test {
namespace {

TEST(Conv1dShape, KerasLengthsAndTheBookModel) {
  Conv1dOptions o;
  o.kernel_size = 7;
  EXPECT_EQ(conv1d_shape(500, o).T_out, 494);  // Conv1D(32, 7) on 500 steps
  EXPECT_EQ(conv1d_shape(98, o).T_out, 92);    // after MaxPooling1D(5)
  o.padding = Conv1dPadding::Same;
  EXPECT_EQ(conv1d_shape(500, o).T_out, 500);
  EXPECT_EQ(conv1d_shape(500, o).pad_left, 3);
  o.kernel_size = 4;  // odd total padding (3): Keras puts the extra step on the right
  EXPECT_EQ(conv1d_shape(10, o).T_out, 10);
  EXPECT_EQ(conv1d_shape(10, o).pad_left, 1);
  o.kernel_size = 7;
  o.stride = 3;
  EXPECT_EQ(conv1d_shape(10, o).T_out, 4);
  o = {};
  o.kernel_size = 3;
  o.dilation = 2;
  o.padding = Conv1dPadding::Causal;
  EXPECT_EQ(conv1d_shape(10, o).T_out, 10);
  EXPECT_EQ(conv1d_shape(10, o).pad_left, 4);
  o.padding = Conv1dPadding::Valid;
  EXPECT_EQ(conv1d_shape(5, o).T_out, 1);
  EXPECT_THROW(conv1d_shape(4, o), ShapeError);  // span 5 > 4 steps
  // Conv1D(32, 7) on 128 channels has 128 * 7 * 32 + 32 = 28,704 parameters.
  const Tensor w = Tensor::zeros({32, 128, 7}, DType::f32, Device::cpu());
  EXPECT_EQ(w.numel() + 32, 28704);
  o = {};
  o.kernel_size = 7;
  const Tensor y = ops::conv1d(Tensor::zeros({2, 500, 128}, DType::f32, Device::cpu()), w,
                               Tensor::zeros({32}, DType::f32, Device::cpu()), o);
  EXPECT_EQ(y.shape(), (Shape{2, 494, 32}));
}

struct Case {
  std::int64_t B, T, C, F, K, stride, dilation, groups;
  Conv1dPadding padding;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (Conv1dPadding p : {Conv1dPadding::Valid, Conv1dPadding::Same, Conv1dPadding::Causal})
    for (std::int64_t s : {1, 2, 3})
      for (std::int64_t d : {1, 2})
        for (std::int64_t g : {1, 2}) out.push_back({2, 9, 4, 6, 3, s, d, g, p});
  out.push_back({1, 1, 1, 1, 1, 1, 1, 1, Conv1dPadding::Valid});
  out.push_back({3, 33, 7, 5, 5, 1, 1, 1, Conv1dPadding::Same});
  out.push_back({2, 33, 6, 9, 1, 2, 1, 3, Conv1dPadding::Causal});
  out.push_back({2, 10, 4, 6, 4, 1, 1, 1, Conv1dPadding::Same});  // odd total padding
  out.push_back({2, 11, 4, 6, 2, 2, 3, 2, Conv1dPadding::Same});
  return out;
}

std::string describe(const Case& c) {
  return "B " + std::to_string(c.B) + " T " + std::to_string(c.T) + " C " + std::to_string(c.C) + " F " +
         std::to_string(c.F) + " K " + std::to_string(c.K) + " stride " + std::to_string(c.stride) +
         " dilation " + std::to_string(c.dilation) + " groups " + std::to_string(c.groups) + " " +
         conv1d_padding_name(c.padding);
}

Conv1dOptions options(const Case& c) {
  Conv1dOptions o;
  o.kernel_size = c.K;
  o.stride = c.stride;
  o.dilation = c.dilation;
  o.groups = c.groups;
  o.padding = c.padding;
  return o;
}

// Keras's output length and left padding, written here independently of
// conv1d_shape (TensorFlow's rules).
Conv1dShape keras_shape(const Case& c) {
  const std::int64_t span = c.dilation * (c.K - 1) + 1;
  switch (c.padding) {
    case Conv1dPadding::Valid: return {(c.T - span) / c.stride + 1, 0};
    case Conv1dPadding::Same: {
      const std::int64_t out = (c.T + c.stride - 1) / c.stride;
      return {out, std::max<std::int64_t>((out - 1) * c.stride + span - c.T, 0) / 2};
    }
    case Conv1dPadding::Causal: return {(c.T + span - 1 - span) / c.stride + 1, span - 1};
  }
  return {};
}

// y and the magnitude of its terms, from the definition.
void reference(const Case& c, const std::vector<float>& x, const std::vector<float>& w,
               const std::vector<float>& b, std::vector<double>& y, std::vector<double>& scale) {
  const Conv1dShape s = keras_shape(c);
  EXPECT_EQ(conv1d_shape(c.T, options(c)).T_out, s.T_out);
  const std::int64_t Cg = c.C / c.groups, Fg = c.F / c.groups;
  y.assign(std::size_t(c.B * s.T_out * c.F), 0.0);
  scale.assign(y.size(), 0.0);
  for (std::int64_t bi = 0; bi < c.B; ++bi)
    for (std::int64_t t = 0; t < s.T_out; ++t)
      for (std::int64_t f = 0; f < c.F; ++f) {
        double acc = b[std::size_t(f)], mag = std::abs(b[std::size_t(f)]);
        const std::int64_t g = f / Fg;
        for (std::int64_t cp = 0; cp < Cg; ++cp)
          for (std::int64_t k = 0; k < c.K; ++k) {
            const std::int64_t pos = t * c.stride - s.pad_left + k * c.dilation;
            if (pos < 0 || pos >= c.T) continue;
            const double term = double(w[std::size_t((f * Cg + cp) * c.K + k)]) *
                                x[std::size_t((bi * c.T + pos) * c.C + g * Cg + cp)];
            acc += term;
            mag += std::abs(term);
          }
        y[std::size_t((bi * s.T_out + t) * c.F + f)] = acc;
        scale[std::size_t((bi * s.T_out + t) * c.F + f)] = mag;
      }
}

// Leaves a NaN-filled block of `n` floats in the device's cache, so the next
// allocation of that size starts poisoned: an element the op fails to write
// stays NaN and fails the comparison.
void poison_next_allocation(std::int64_t n, Device dev) { poison(Tensor::empty({n}, DType::f32, dev)); }

// Sets the CPU's conv1d path for a scope, restoring the previous one.
class CpuConvPath {
 public:
  explicit CpuConvPath(kernels::cpu::Conv1dPath p) : old_(kernels::cpu::conv1d_path()) {
    kernels::cpu::set_conv1d_path(p);
  }
  ~CpuConvPath() { kernels::cpu::set_conv1d_path(old_); }
  CpuConvPath(const CpuConvPath&) = delete;
  CpuConvPath& operator=(const CpuConvPath&) = delete;

 private:
  kernels::cpu::Conv1dPath old_;
};

constexpr kernels::cpu::Conv1dPath kCpuPaths[] = {kernels::cpu::Conv1dPath::Direct,
                                                  kernels::cpu::Conv1dPath::Im2col};
const char* path_name(kernels::cpu::Conv1dPath p) {
  return p == kernels::cpu::Conv1dPath::Direct ? "CPU path direct" : "CPU path im2col";
}

void check_forward(Device dev) {
  RECUR_SKIP_IF_UNAVAILABLE(dev);
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (const Case& c : cases()) {
    SCOPED_TRACE(describe(c));
    const auto x = rng.floats(c.B * c.T * c.C), w = rng.floats(c.F * (c.C / c.groups) * c.K), b = rng.floats(c.F);
    std::vector<double> y, scale;
    reference(c, x, w, b, y, scale);
    poison_next_allocation(std::int64_t(y.size()), dev);
    const Tensor out = ops::conv1d(Tensor::from_vector(x, {c.B, c.T, c.C}, dev),
                                   Tensor::from_vector(w, {c.F, c.C / c.groups, c.K}, dev),
                                   Tensor::from_vector(b, {c.F}, dev), options(c));
    EXPECT_TRUE(close_to(out, y, scale, 1e-5));
  }
}

TEST(Conv1d, ForwardMatchesDirectConvolution) {
  for (auto p : kCpuPaths) {
    SCOPED_TRACE(path_name(p));
    CpuConvPath path(p);
    check_forward(Device::cpu());
  }
}

// The two CPU paths at the book's model shapes (the Jena conv and conv-gru
// layers, a filter count that is no multiple of the vector width, channels
// past the default choice's limit): forward and input gradient agree within
// float32 rounding, outputs poisoned beforehand.
TEST(Conv1d, DirectAndIm2colPathsAgreeAtModelShapes) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const Device cpu = Device::cpu();
  for (const Case& c : {Case{4, 40, 6, 32, 5, 1, 1, 1, Conv1dPadding::Valid},
                        Case{3, 40, 14, 32, 5, 1, 1, 1, Conv1dPadding::Valid},
                        Case{3, 26, 32, 32, 5, 1, 1, 1, Conv1dPadding::Valid},
                        Case{2, 17, 32, 33, 3, 2, 1, 1, Conv1dPadding::Same},
                        Case{2, 19, 60, 20, 5, 1, 2, 1, Conv1dPadding::Causal}}) {
    SCOPED_TRACE(describe(c));
    const std::int64_t T_out = conv1d_shape(c.T, options(c)).T_out;
    const Tensor x = Tensor::from_vector(rng.floats(c.B * c.T * c.C), {c.B, c.T, c.C}, cpu);
    const Tensor w = Tensor::from_vector(rng.floats(c.F * c.C * c.K), {c.F, c.C, c.K}, cpu);
    const Tensor b = Tensor::from_vector(rng.floats(c.F), {c.F}, cpu);
    const Tensor dy = Tensor::from_vector(rng.floats(c.B * T_out * c.F), {c.B, T_out, c.F}, cpu);
    std::vector<float> y[2], dx[2], dw[2];
    for (int i = 0; i < 2; ++i) {
      CpuConvPath path(kCpuPaths[i]);
      poison_next_allocation(c.B * T_out * c.F, cpu);
      y[i] = ops::conv1d(x, w, b, options(c)).to_vector<float>();
      poison_next_allocation(c.B * c.T * c.C, cpu);
      const ops::Conv1dGrads g = ops::conv1d_backward(x, w, dy, options(c));
      dx[i] = g.dx.to_vector<float>();
      dw[i] = g.dw.to_vector<float>();
    }
    // Relative to the largest magnitude: the terms are O(1), their sums O(sqrt(C K F)).
    auto agree = [](const std::vector<float>& a, const std::vector<float>& r, const char* what) {
      ASSERT_EQ(a.size(), r.size()) << what;
      double big = 0;
      for (float v : r) big = std::max(big, double(std::abs(v)));
      for (std::size_t i = 0; i < a.size(); ++i) {
        ASSERT_FALSE(std::isnan(a[i]) || std::isnan(r[i])) << what << " " << i;
        ASSERT_LE(std::abs(double(a[i]) - r[i]), 1e-5 * big) << what << " " << i;
      }
    };
    agree(y[0], y[1], "y");
    agree(dx[0], dx[1], "dx");
    agree(dw[0], dw[1], "dw");
  }
}
TEST(Conv1dCUDA, ForwardMatchesDirectConvolution) { check_forward(Device::cuda(0)); }

TEST(Conv1d, GradientsByFiniteDifferences) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const Device cpu = Device::cpu();
  auto f64 = [&](std::int64_t n, const Shape& s) {
    const auto v = rng.floats(n);
    return Tensor::from_vector(std::vector<double>(v.begin(), v.end()), s, cpu);
  };
  for (auto path_choice : kCpuPaths)
  for (const Case& c : cases()) {
    SCOPED_TRACE(path_name(path_choice));
    CpuConvPath path(path_choice);
    SCOPED_TRACE(describe(c));
    const Conv1dOptions o = options(c);
    const std::int64_t T_out = conv1d_shape(c.T, o).T_out;
    const Tensor x = f64(c.B * c.T * c.C, {c.B, c.T, c.C});
    const Tensor w = f64(c.F * (c.C / c.groups) * c.K, {c.F, c.C / c.groups, c.K});
    const Tensor b = f64(c.F, {c.F});
    const Tensor R = f64(c.B * T_out * c.F, {c.B, T_out, c.F});
    auto loss = [&] {
      const auto y = ops::conv1d(x, w, b, o).to_vector<double>();
      const auto r = R.to_vector<double>();
      double l = 0;
      for (std::size_t i = 0; i < y.size(); ++i) l += y[i] * r[i];
      return l;
    };
    Tensor cols;
    ops::conv1d(x, w, b, o, &cols);
    const ops::Conv1dGrads g = ops::conv1d_backward(x, w, R, o, cols);
    const ops::Conv1dGrads g2 = ops::conv1d_backward(x, w, R, o);  // recomputes cols
    EXPECT_EQ(g.dw.to_vector<double>(), g2.dw.to_vector<double>());
    for (auto [name, param, grad] : {std::tuple{"x", x, g.dx}, std::tuple{"w", w, g.dw}, std::tuple{"b", b, g.db}}) {
      ASSERT_EQ(grad.shape(), param.shape()) << name;
      expect_finite_differences(param, grad.to_vector<double>(), loss, name);
    }

  }
}

TEST(Conv1d, BadArgumentsAreClearErrors) {
  const Device cpu = Device::cpu();
  Conv1dOptions o;
  o.kernel_size = 3;
  const Tensor x = Tensor::zeros({2, 9, 4}, DType::f32, cpu);
  EXPECT_THROW(ops::conv1d(x, Tensor::zeros({6, 4, 5}, DType::f32, cpu), {}, o), ShapeError);  // K
  EXPECT_THROW(ops::conv1d(x, Tensor::zeros({6, 3, 3}, DType::f32, cpu), {}, o), ShapeError);  // C
  EXPECT_THROW(ops::conv1d(x, Tensor::zeros({6, 4, 3}, DType::f32, cpu), Tensor::zeros({5}, DType::f32, cpu), o), ShapeError);
  EXPECT_THROW(ops::conv1d(x.reshape({18, 4}), Tensor::zeros({6, 4, 3}, DType::f32, cpu), {}, o), ShapeError);
  o.groups = 3;  // 4 channels do not divide into 3 groups
  EXPECT_THROW(ops::conv1d(x, Tensor::zeros({6, 1, 3}, DType::f32, cpu), {}, o), ShapeError);
  o.groups = 1;
  o.stride = 0;
  EXPECT_THROW(ops::conv1d(x, Tensor::zeros({6, 4, 3}, DType::f32, cpu), {}, o), ValueError);
  o.stride = 1;
  EXPECT_THROW(ops::conv1d(x, Tensor::zeros({6, 4, 3}, DType::f64, cpu), {}, o), DTypeError);
  EXPECT_THROW(ops::conv1d_backward(x, Tensor::zeros({6, 4, 3}, DType::f32, cpu), Tensor::zeros({2, 9, 6}, DType::f32, cpu), o),
               ShapeError);  // dy must be [2, 7, 6]
}

}  // namespace
}  // namespace recur::test

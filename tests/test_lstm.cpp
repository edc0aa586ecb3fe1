// The LSTM sequence forward (engine/lstm): against a float64 reference of the
// whole recurrence written here, and CUDA against the CPU.
#include <cmath>

#include "test_util.h"

namespace recur::test {
namespace {

struct Ref {
  std::vector<double> y, h, c;
};

Ref reference(const std::vector<float>& x, const LstmWeights& w, std::int64_t T, std::int64_t B,
              std::int64_t I, std::int64_t H, const std::vector<float>& h0,
              const std::vector<float>& c0) {
  const auto wih = w.w_ih.to_vector<float>(), whh = w.w_hh.to_vector<float>();
  const auto bih = w.b_ih.to_vector<float>(), bhh = w.b_hh.to_vector<float>();
  std::vector<double> h(h0.begin(), h0.end()), c(c0.begin(), c0.end());
  Ref r;
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<double> hn(h.size());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = 0; j < H; ++j) {
        double a[4];
        for (int k = 0; k < 4; ++k) {
          const std::int64_t row = k * H + j;
          double s = double(bih[row]) + bhh[row];
          for (std::int64_t q = 0; q < I; ++q) s += double(wih[row * I + q]) * x[(t * B + b) * I + q];
          for (std::int64_t q = 0; q < H; ++q) s += double(whh[row * H + q]) * h[b * H + q];
          a[k] = s;
        }
        auto sg = [](double v) { return 1 / (1 + std::exp(-v)); };
        const double cc = sg(a[1]) * c[b * H + j] + sg(a[0]) * std::tanh(a[2]);
        c[b * H + j] = cc;
        hn[b * H + j] = sg(a[3]) * std::tanh(cc);
      }
    h = hn;
    r.y.insert(r.y.end(), h.begin(), h.end());
  }
  r.h = h;
  r.c = c;
  return r;
}

void check(Device dev) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (auto [T, B, I, H] : std::vector<std::array<std::int64_t, 4>>{{1, 1, 1, 1}, {7, 3, 6, 33}, {33, 2, 7, 7}}) {
    SCOPED_TRACE(::testing::Message() << "T " << T << " B " << B << " I " << I << " H " << H);
    const auto x = rng.floats(T * B * I), h0 = rng.floats(B * H), c0 = rng.floats(B * H);
    const LstmWeights w = LstmWeights::random(I, H, rng.gen()(), dev);
    const LstmOutput out = lstm_forward(Tensor::from_vector(x, {T, B, I}, dev), w,
                                        Tensor::from_vector(h0, {B, H}, dev),
                                        Tensor::from_vector(c0, {B, H}, dev));
    const Ref r = reference(x, w, T, B, I, H, h0, c0);
    // Errors compound over the steps; the recurrence is contractive here.
    EXPECT_TRUE(close_to(out.y, r.y, {0.1}, 1e-4)) << "y";
    EXPECT_TRUE(close_to(out.h_n, r.h, {0.1}, 1e-4)) << "h_n";
    EXPECT_TRUE(close_to(out.c_n, r.c, {0.1}, 1e-4)) << "c_n";
  }
}

TEST(LstmForward, CpuMatchesReference) { check(Device::cpu()); }

TEST(LstmForwardCUDA, MatchesReference) {
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  check(Device::cuda(0));
}

TEST(LstmForward, RejectsMismatchedInput) {
  const LstmWeights w = LstmWeights::random(6, 8, 1, Device::cpu());
  EXPECT_THROW(lstm_forward(Tensor::zeros({4, 2, 5}, DType::f32, Device::cpu()), w), ShapeError);
  EXPECT_THROW(lstm_forward(Tensor::zeros({4, 6}, DType::f32, Device::cpu()), w), ShapeError);
  EXPECT_THROW(LstmWeights::random(0, 8, 1, Device::cpu()), ValueError);
}

TEST(LstmForward, ZeroStepsReturnsInitialState) {
  const LstmWeights w = LstmWeights::random(3, 4, 1, Device::cpu());
  const LstmOutput o = lstm_forward(Tensor::zeros({0, 2, 3}, DType::f32, Device::cpu()), w);
  EXPECT_EQ(o.y.shape(), (Shape{0, 2, 4}));
  EXPECT_EQ(o.h_n.to_vector<float>(), std::vector<float>(8, 0.f));
}

}  // namespace
}  // namespace recur::test

// The LSTM layer's forward pass against a float64 reference of the whole
// recurrence written here from the equations (PyTorch's nn.LSTM), on every
// device: an independent check of gate order and layout.
#include <array>
#include <cmath>

#include "test_util.h"

namespace recur::test {
namespace {

void check(Device dev) {
  RECUR_SKIP_IF_UNAVAILABLE(dev);
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (auto [T, B, I, H] : std::vector<std::array<std::int64_t, 4>>{{1, 1, 1, 1}, {7, 3, 6, 33}, {33, 2, 7, 7}}) {
    SCOPED_TRACE(::testing::Message() << "T " << T << " B " << B << " I " << I << " H " << H);
    const auto x = rng.floats(B * T * I), h0 = rng.floats(B * H), c0 = rng.floats(B * H);
    RecurrentOptions o;
    o.cell = CellType::LSTM;
    o.input_size = I;
    o.units = H;
    o.return_sequences = true;
    o.return_state = true;
    Recurrent lstm(o, dev, rng.gen()());
    const auto out = lstm.forward(Tensor::from_vector(x, {B, T, I}, dev), {},
                                  {Tensor::from_vector(h0, {B, H}, dev), Tensor::from_vector(c0, {B, H}, dev)});
    const auto wih = lstm.weights().w_ih.to_vector<float>(), whh = lstm.weights().w_hh.to_vector<float>();
    const auto bih = lstm.weights().b_ih.to_vector<float>(), bhh = lstm.weights().b_hh.to_vector<float>();
    std::vector<double> h(h0.begin(), h0.end()), c(c0.begin(), c0.end()), y(std::size_t(B * T * H));
    auto sg = [](double v) { return 1 / (1 + std::exp(-v)); };
    for (std::int64_t t = 0; t < T; ++t) {
      std::vector<double> hn(h.size());
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < H; ++j) {
          double a[4];
          for (int k = 0; k < 4; ++k) {
            const std::int64_t row = k * H + j;
            double s = double(bih[row]) + bhh[row];
            for (std::int64_t q = 0; q < I; ++q) s += double(wih[row * I + q]) * x[(b * T + t) * I + q];
            for (std::int64_t q = 0; q < H; ++q) s += double(whh[row * H + q]) * h[b * H + q];
            a[k] = s;
          }
          const double cc = sg(a[1]) * c[b * H + j] + sg(a[0]) * std::tanh(a[2]);
          c[b * H + j] = cc;
          hn[b * H + j] = sg(a[3]) * std::tanh(cc);
          y[(b * T + t) * H + j] = hn[b * H + j];
        }
      h = hn;
    }
    // Errors compound over the steps; the recurrence is contractive here.
    EXPECT_TRUE(close_to(out.y, y, {0.1}, 1e-4)) << "y";
    EXPECT_TRUE(close_to(out.states[0], h, {0.1}, 1e-4)) << "h_n";
    EXPECT_TRUE(close_to(out.states[1], c, {0.1}, 1e-4)) << "c_n";
  }
}

TEST(LstmLayer, CpuMatchesReference) { check(Device::cpu()); }
TEST(LstmLayerCUDA, MatchesReference) { check(Device::cuda(0)); }

TEST(LstmLayer, ZeroStepsReturnsInitialState) {
  RecurrentOptions o;
  o.cell = CellType::LSTM;
  o.input_size = 3;
  o.units = 4;
  o.return_sequences = true;
  o.return_state = true;
  Recurrent lstm(o, Device::cpu(), 1);
  const auto out = lstm.forward(Tensor::zeros({2, 0, 3}, DType::f32, Device::cpu()));
  EXPECT_EQ(out.y.shape(), (Shape{2, 0, 4}));
  EXPECT_EQ(out.states[0].to_vector<float>(), std::vector<float>(8, 0.f));
}

}  // namespace
}  // namespace recur::test

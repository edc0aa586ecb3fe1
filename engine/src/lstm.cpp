#include "recur/engine/lstm.h"

#include <cmath>
#include <random>
#include <vector>

#include "recur/host/ops.h"

namespace recur {
namespace {
Tensor uniform(const Shape& shape, double bound, std::mt19937_64& rng, Device device) {
  std::uniform_real_distribution<float> dist(float(-bound), float(bound));
  std::vector<float> v(std::size_t(shape_numel(shape)));
  for (float& x : v) x = dist(rng);
  return Tensor::from_vector(v, shape, device);
}
}  // namespace

LstmWeights LstmWeights::random(std::int64_t input_size, std::int64_t hidden_size,
                                std::uint64_t seed, Device device) {
  RECUR_CHECK(input_size > 0 && hidden_size > 0, Value, "LSTM sizes must be positive, got input ",
              input_size, " and hidden ", hidden_size);
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(hidden_size));
  const std::int64_t G = 4 * hidden_size;
  LstmWeights w;
  w.w_ih = uniform({G, input_size}, bound, rng, device);
  w.w_hh = uniform({G, hidden_size}, bound, rng, device);
  w.b_ih = uniform({G}, bound, rng, device);
  w.b_hh = uniform({G}, bound, rng, device);
  return w;
}

LstmWeights LstmWeights::to(Device device) const {
  return {w_ih.to(device), w_hh.to(device), b_ih.to(device), b_hh.to(device)};
}

LstmOutput lstm_forward(const Tensor& x, const LstmWeights& w, const Tensor& h0, const Tensor& c0) {
  RECUR_CHECK(x.defined() && x.ndim() == 3, Shape, "lstm_forward: x must be [T, B, I], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  RECUR_CHECK(w.w_ih.defined() && w.w_hh.defined(), Value, "lstm_forward: weights are not set");
  const std::int64_t T = x.dim(0), B = x.dim(1), I = x.dim(2), H = w.hidden_size();
  RECUR_CHECK(w.input_size() == I, Shape, "lstm_forward: x has ", I,
              " features but the weights expect ", w.input_size());
  const Device dev = x.device();

  LstmOutput out;
  out.y = Tensor::empty({T, B, H}, x.dtype(), dev);
  out.c_n = c0.defined() ? c0.to(dev) : Tensor::zeros({B, H}, x.dtype(), dev);
  Tensor h_prev = h0.defined() ? h0 : Tensor::zeros({B, H}, x.dtype(), dev);

  // All steps' input projections in one GEMM: [T*B, I] x [I, 4H].
  Tensor xproj = ops::matmul(x.reshape({T * B, I}), w.w_ih, false, true);
  Tensor hproj = Tensor::empty({B, 4 * H}, x.dtype(), dev);
  for (std::int64_t t = 0; t < T; ++t) {
    ops::gemm(h_prev, w.w_hh, hproj, false, true);
    LstmStep step;
    step.xproj = xproj.slice(t * B, (t + 1) * B);
    step.hproj = hproj;
    step.b_ih = w.b_ih;
    step.b_hh = w.b_hh;
    step.c_prev = out.c_n;
    step.c = out.c_n;  // updated in place
    step.h = out.y.slice(t, t + 1).reshape({B, H});
    ops::lstm_step(step);
    h_prev = step.h;
  }
  out.h_n = T > 0 ? h_prev.to(dev) : h_prev;
  return out;
}

}  // namespace recur

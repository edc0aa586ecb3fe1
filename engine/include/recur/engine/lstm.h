// LSTM over a whole sequence, inference only, built from recur's op set: the
// input projection of all T steps as one GEMM, then per step one recurrent
// GEMM and one fused pointwise kernel (the "standard" algorithm).
// Equations and gate order: recur/kernels/rnn_cells.h. Weight layout: PyTorch's
// nn.LSTM (weight_ih_l0 [4H, I], weight_hh_l0 [4H, H], bias_ih_l0, bias_hh_l0).
//
// This is the foundation's proof that the stack composes; the recurrent-layer
// issue grows it into the full layer (training, masking, bidirectional...).
#pragma once

#include <cstdint>

#include "recur/host/tensor.h"

namespace recur {

struct LstmWeights {
  Tensor w_ih;  // [4H, I]
  Tensor w_hh;  // [4H, H]
  Tensor b_ih;  // [4H]
  Tensor b_hh;  // [4H]

  std::int64_t input_size() const { return w_ih.dim(1); }
  std::int64_t hidden_size() const { return w_hh.dim(1); }
  // PyTorch's initialisation: uniform(-1/sqrt(H), 1/sqrt(H)) from an explicit seed.
  static LstmWeights random(std::int64_t input_size, std::int64_t hidden_size,
                            std::uint64_t seed, Device device = default_device());
  LstmWeights to(Device device) const;
};

struct LstmOutput {
  Tensor y;    // [T, B, H]: h at every step
  Tensor h_n;  // [B, H]
  Tensor c_n;  // [B, H]
};

// x: [T, B, I], time-major (PyTorch's batch_first=False). h0, c0: [B, H] or
// undefined (zeros). Everything runs on x's device; the weights must be there.
LstmOutput lstm_forward(const Tensor& x, const LstmWeights& w, const Tensor& h0 = {},
                        const Tensor& c0 = {});

}  // namespace recur

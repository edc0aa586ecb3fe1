// Recurrent layers: SimpleRNN, LSTM and GRU over whole sequences, forward and
// backward through time, on any backend, with Keras's semantics and PyTorch's
// weight layout.
//
// Semantics (Keras): input x is batch-major [B, T, I]. return_sequences gives
// y [B, T, H] (else the last output, [B, H]); return_state adds the final
// states (LSTM: h, c; GRU and SimpleRNN: h); initial_state sets them (zeros
// when absent); go_backwards processes time in reverse and returns the
// sequence in processing order, as Keras does.
// stateful: the final states of one batch are the initial states of the next
// (same batch size) until reset_states(); gradients stop at the batch boundary.
// dropout / recurrent_dropout (training only, variational as Keras): one mask
// per sequence, drawn from the layer's seed at each training forward and
// reused at every step, on the input x and on h_{t-1} before W_hh.
// Masking: mask [B, T] (1 valid, 0 padding, any pattern: right-, left-padded,
// fully masked rows). A masked step keeps the state unchanged and outputs 0,
// so the final state is each row's last valid state, and the reverse
// direction starts at each row's own last valid step. Gradients respect the mask.
// (Zero outputs at padding are what PyTorch's packed sequences and cuDNN give,
// and what Keras's Bidirectional forces; a standalone Keras layer instead
// repeats the previous output there.) A fully masked row's last output is 0.
//
// Weights (PyTorch's nn.LSTM/nn.GRU/nn.RNN layer 0, gate orders in
// recur/kernels/rnn_cells.h): w_ih [G*H, I] (weight_ih_l0), w_hh [G*H, H]
// (weight_hh_l0), b_ih, b_hh [G*H] (bias_ih_l0, bias_hh_l0); G = 4 (LSTM),
// 3 (GRU, reset gate after the recurrent matmul), 1 (SimpleRNN). Keras's
// kernel [I, G*H] is w_ih transposed (with Keras's gate order), its bias b_ih + b_hh
// (GRU reset_after: the two rows of Keras's [2, 3H] bias).
//
// Algorithm ("standard"): time-major inside; the input projection of all T
// steps is one GEMM; each step one recurrent GEMM and one fused pointwise
// kernel. Backward: the reverse recurrence with fused pointwise backward
// kernels and one GEMM per step for dh, then the weight gradients as GEMMs
// over all steps at once. Training keeps the states, the gate activations and
// the time-major input; inference keeps nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "recur/host/backend.h"
#include "recur/host/tensor.h"

namespace recur {

enum class CellType : unsigned char { SimpleRNN, LSTM, GRU };
const char* cell_name(CellType cell);
int cell_gates(CellType cell);   // G: 1, 4, 3
int cell_states(CellType cell);  // 1, 2, 1

struct RecurrentOptions {
  CellType cell = CellType::LSTM;
  std::int64_t input_size = 0;
  std::int64_t units = 0;                            // H
  RnnActivation activation = RnnActivation::Tanh;    // SimpleRNN only
  // GRU only: true (default; cuDNN, PyTorch) applies the reset gate after the
  // recurrent matmul; false is the original GRU (Keras reset_after=False).
  bool reset_after = true;
  bool use_bias = true;
  // LSTM only, as Keras: biases start at zero except the forget gate's, at 1
  // (in b_ih; b_hh zero), so early training does not forget everything.
  bool unit_forget_bias = false;
  bool return_sequences = false;
  bool return_state = false;
  bool go_backwards = false;
  bool stateful = false;
  double dropout = 0.0;            // on the inputs, in [0, 1)
  double recurrent_dropout = 0.0;  // on the recurrent state, in [0, 1)
  // With go_backwards: return the sequence in input time order instead of
  // processing order (what Bidirectional needs; Keras's go_backwards does not).
  bool output_in_input_order = false;
  DType dtype = DType::f32;
};

struct RecurrentWeights {
  Tensor w_ih, w_hh;  // [G*H, I], [G*H, H]
  Tensor b_ih, b_hh;  // [G*H] each; undefined when use_bias is false
};

class Recurrent {
 public:
  // Weights drawn as PyTorch does, uniform(-1/sqrt(H), 1/sqrt(H)), from `seed`.
  Recurrent(const RecurrentOptions& options, Device device, std::uint64_t seed);

  const RecurrentOptions& options() const { return options_; }
  Device device() const { return device_; }
  RecurrentWeights& weights() { return w_; }
  const RecurrentWeights& weights() const { return w_; }
  // Gradients, same shapes as weights(); backward() adds into them.
  RecurrentWeights& grads() { return g_; }
  void zero_grad();

  struct Output {
    Tensor y;                    // [B, T, H] with return_sequences, else [B, H]
    std::vector<Tensor> states;  // with return_state: final h (and c for LSTM), [B, H]
  };
  // x [B, T, I]; mask [B, T] or undefined; initial_state: empty or
  // cell_states() tensors [B, H]. With training, keeps what backward needs.
  Output forward(const Tensor& x, const Tensor& mask = {},
                 const std::vector<Tensor>& initial_state = {}, bool training = false);

  struct InputGrads {
    Tensor dx;                           // [B, T, I]
    std::vector<Tensor> d_initial_state;  // cell_states() tensors [B, H]
  };
  // dy: gradient of forward's y (undefined: none); d_states: empty or
  // cell_states() tensors (undefined entries: none). Adds the weight
  // gradients into grads(). Needs the last forward() to have had training.
  // input_grad false: dx is left undefined (skips a GEMM over every step).
  InputGrads backward(const Tensor& dy, const std::vector<Tensor>& d_states = {},
                      bool input_grad = true);

  // Drops what the last training forward kept for backward (its memory goes
  // back to the allocator); a later backward() then needs a new forward.
  void release_saved() { saved_ = Saved{}; }
  // stateful: forget the carried states (the next batch starts from zeros).
  void reset_states() { carried_.clear(); }
  // Fixes the dropout masks used by training forwards (values 0 or 1/(1-p)):
  // input [B, I], recurrent [B, H]; undefined tensors restore random draws.
  // For reproducible runs and gradient checks.
  void set_dropout_masks(const Tensor& input_mask, const Tensor& recurrent_mask);
  // The dropout stream: its seed and how many masks have been drawn, which
  // fix the next mask (checkpoints save them so a resumed run draws the same).
  std::uint64_t dropout_seed() const { return dropout_seed_; }
  std::uint64_t dropout_draws() const { return dropout_draws_; }
  void set_dropout_state(std::uint64_t seed, std::uint64_t draws) {
    dropout_seed_ = seed;
    dropout_draws_ = draws;
  }

 private:
  Tensor draw_mask(double rate, const Shape& shape);
  RecurrentOptions options_;
  Device device_;
  RecurrentWeights w_, g_;
  // Saved by forward(training = true), all in processing order (time reversed
  // for go_backwards), time-major.
  struct Saved {
    bool valid = false;
    std::int64_t T = 0, B = 0;
    Tensor x;       // [T, B, I]
    Tensor mask;    // [T, B] or undefined
    Tensor h;       // [T + 1, B, H]: h[0] initial, h[t + 1] after step t
    Tensor c;       // [T + 1, B, H] (LSTM)
    Tensor gates;   // [T, B, 4H] (LSTM, GRU)
    Tensor in_mask, rec_mask;  // dropout masks [B, I], [B, H], or undefined
    Tensor row_valid;          // [B]: 1 where a row has a valid step (masked, last output only)
  } saved_;
  std::vector<Tensor> carried_;  // stateful
  Tensor fixed_in_mask_, fixed_rec_mask_;
  std::uint64_t dropout_seed_ = 0, dropout_draws_ = 0;
};

// Keras's layout of the same weights: kernel [I, G*H], recurrent_kernel
// [H, G*H], bias [G*H] (LSTM, SimpleRNN: b_ih + b_hh) or [2, 3H] (GRU with
// reset_after: row 0 the input bias, row 1 the recurrent bias). Gate blocks in
// Keras's order: LSTM i, f, c, o (PyTorch's too); GRU z, r, h (PyTorch: r, z, n).
struct KerasWeights {
  Tensor kernel, recurrent_kernel, bias;  // bias undefined without use_bias
};
// PyTorch layout (recur's) -> Keras. Host-side conversion (float32/float64 on the CPU).
// gru_reset_after: whether a GRU's Keras bias is [2, 3H] (true) or [3H] (false).
KerasWeights to_keras(CellType cell, const RecurrentWeights& w, bool gru_reset_after = true);
// Keras -> PyTorch layout on `device`. Keras's single LSTM/SimpleRNN bias goes to
// b_ih, with b_hh zero (only their sum matters).
RecurrentWeights from_keras(CellType cell, const KerasWeights& k, Device device,
                            bool gru_reset_after = true);

// [B, T] mask from per-row lengths (right padding): 1 for t < lengths[b].
// Throws ValueError for a length below 0 or above T.
Tensor lengths_to_mask(const std::vector<std::int64_t>& lengths, std::int64_t T,
                       DType dtype = DType::f32, Device device = default_device());

}  // namespace recur

// Bidirectional (Keras): one recurrent layer reads the sequence forwards, a
// second backwards, and their outputs are merged. With a mask, the backward
// direction starts at each row's own last valid step (masked steps keep the
// state). Sequence outputs of the backward direction are aligned with input
// time before merging. Merge modes: concat (features [fwd, bwd]), sum, mul,
// ave. Weight layout per direction as Recurrent; in PyTorch terms the
// backward direction's weights are the `_reverse` tensors.
#pragma once

#include "recur/engine/recurrent.h"

namespace recur {

enum class MergeMode : unsigned char { Concat, Sum, Mul, Ave };
const char* merge_mode_name(MergeMode mode);

class Bidirectional {
 public:
  // `layer` configures both directions (its go_backwards is ignored); the
  // forward direction draws its weights from `seed`, the backward from seed + 1.
  Bidirectional(const RecurrentOptions& layer, MergeMode merge, Device device, std::uint64_t seed);

  Recurrent& forward_layer() { return fwd_; }
  Recurrent& backward_layer() { return bwd_; }
  MergeMode merge_mode() const { return merge_; }
  void zero_grad();
  // Drops what the last training forward kept for backward.
  void release_saved() {
    fwd_.release_saved();
    bwd_.release_saved();
    yf_ = Tensor();
    yb_ = Tensor();
  }
  // stateful: both directions forget their carried states.
  void reset_states() {
    fwd_.reset_states();
    bwd_.reset_states();
  }

  // y: [B, T, 2H] (concat) or [B, T, H] with return_sequences, else [B, 2H] or
  // [B, H]; states (return_state): the forward direction's, then the backward's.
  // initial_state: empty, or the forward's states then the backward's.
  Recurrent::Output forward(const Tensor& x, const Tensor& mask = {},
                            const std::vector<Tensor>& initial_state = {}, bool training = false);
  // d_states: empty, or one per state in forward's order (undefined: none).
  Recurrent::InputGrads backward(const Tensor& dy, const std::vector<Tensor>& d_states = {});

 private:
  Recurrent fwd_, bwd_;
  MergeMode merge_;
  Tensor yf_, yb_;  // direction outputs, kept for mul's backward
};

}  // namespace recur

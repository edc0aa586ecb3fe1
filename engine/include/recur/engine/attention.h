// Attention over recurrent states (docs/attention.md): Keras's two attention
// layers for the functional API, and two single-input poolings for Sequential
// models (an RNN with return_sequences followed by a summary vector).
//
//   Attention(use_scale, score_mode)      [query, value(, key)] -> [B, Tq, Dv]
//   AdditiveAttention(use_scale)          Keras's layers of those names (merge layers)
//   AttentionPooling(options)             [B, T, D] -> [B, D]: one query per sequence
//   HierarchicalAttention(chunk, options) [B, T, D] -> [B, D]: chunks, then their summaries
//
// The computation, for a query q_i, keys k_j and values v_j (j over time):
//   score    dot:      s_ij = post * (q_i . k_j)
//            additive: s_ij = post * sum_d w_d tanh(pre * (q_id + k_jd))
//   weights  a_ij = softmax_j(s_ij) over the valid (unmasked) keys; a masked key
//            gets exactly 0; a row with no valid key gets all 0 (so its output
//            is 0 and no gradient flows from it: no NaN).
//   output   o_i = sum_j a_ij v_j
// post, pre and w are learned (or 1 when absent):
//   Attention(dot, use_scale)           post = "scale" [1], ones
//   Attention(concat)                   post = "concat_score_weight" [1], ones;
//                                       with use_scale pre = "scale" [1], ones
//   AdditiveAttention(use_scale)        w = "scale" [D], glorot_uniform
//   AttentionPooling / Hierarchical     dot: post = "scale" [1]; additive: w = "scale" [D]
//                                       (use_scale); learned queries "query" [D]
//                                       (and "chunk_query" [D]), glorot_uniform.
// This is Keras's Attention / AdditiveAttention except for one deliberate
// difference: Keras gives a fully masked row uniform weights over the padding
// (it subtracts 1e9 from masked scores); recur gives it zeros.
//
// Masks: Attention's output mask is the query's (Keras's compute_mask); the
// keys' mask is the value's (input 1), as in Keras; the output is multiplied
// by the query mask. The poolings consume the mask and output none.
//
// Every op is a recur::ops call (batched GEMM, softmax, tanh, transposes,
// reductions), so the layers run unchanged on the CPU and on CUDA.
// query = last reads the mask back to the host (to find each row's last valid
// step): one device synchronisation per forward on CUDA when a mask is given.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recur/engine/functional.h"
#include "recur/engine/layer.h"

namespace recur {

// How scores are computed: dot products, or Bahdanau's additive (tanh) form
// (Keras's score_mode "concat" for Attention; AdditiveAttention always).
enum class AttentionScore : std::uint8_t { Dot, Additive };
// The query of a pooling: one learned vector, or each sequence's last valid state.
enum class AttentionQuery : std::uint8_t { Learned, Last };

const char* attention_score_name(AttentionScore s);  // "dot", "additive"
const char* attention_query_name(AttentionQuery q);  // "learned", "last"
// "dot" / "additive" (also Keras's "concat"), "learned" / "last"; ValueError otherwise.
AttentionScore parse_attention_score(const std::string& text);
AttentionQuery parse_attention_query(const std::string& text);

namespace detail {
// One attention computation's learned score parameters (views into the
// store, undefined when absent) and what a training forward keeps.
struct AttentionScorer {
  AttentionScore score = AttentionScore::Dot;
  Tensor pre, pre_grad;    // [1]: multiplies q + k inside tanh (additive)
  Tensor vec, vec_grad;    // [D]: weights of the tanh features (additive)
  Tensor post, post_grad;  // [1]: multiplies the scores
};
struct AttentionSaved {
  Tensor q, k, v, key_mask, raw, sum, tanh, p, w;
  void clear() { *this = AttentionSaved(); }
};
// q [B, Tq, D], k [B, Tv, D], v [B, Tv, Dv], key_mask [B, Tv] or undefined ->
// [B, Tq, Dv]. saved: filled for attention_backward when not null.
Tensor attention_forward(const AttentionScorer& s, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& key_mask, AttentionSaved* saved);
struct AttentionGrads {
  Tensor dq, dk, dv;
};
// Adds the score parameters' gradients into s's *_grad views.
AttentionGrads attention_backward(const AttentionScorer& s, const AttentionSaved& saved, const Tensor& dout);
}  // namespace detail

// ---- Keras's Attention and AdditiveAttention (functional API) -----------------------
// Inputs [query [B, Tq, D], value [B, Tv, Dv]] or [query, value, key [B, Tv, D]]
// (key defaults to value, which then needs Dv = D). Output [B, Tq, Dv].
class AttentionMerge : public MergeLayer {
 public:
  AttentionMerge(AttentionScore score, bool use_scale, std::string name);
  std::string config_str() const override;
  AttentionScore score_mode() const { return score_; }
  bool use_scale() const { return use_scale_; }
  // The query's mask (Keras's Attention.compute_mask).
  Tensor merged_mask(const std::vector<Tensor>& masks) const override;

 protected:
  Shape merge_build(const std::vector<Shape>& in) override;
  void check_runtime_shapes(const std::vector<Tensor>& xs) const override;
  Tensor merge_forward(const std::vector<Tensor>& xs, bool training) override;
  Tensor merge_forward_masked(const std::vector<Tensor>& xs, const std::vector<Tensor>& masks,
                              bool training) override;
  std::vector<Tensor> merge_backward(const Tensor& dy) override;
  void release_saved() override;
  virtual bool keras_additive() const = 0;  // AdditiveAttention's parameterisation

 private:
  detail::AttentionScorer scorer();
  AttentionScore score_;
  bool use_scale_;
  std::size_t n_inputs_ = 0;
  detail::AttentionSaved saved_;
  Tensor query_mask_;  // [B * Tq, Dv] expanded, or undefined
};

// keras.layers.Attention(use_scale=False, score_mode="dot" | "concat").
class Attention final : public AttentionMerge {
 public:
  explicit Attention(bool use_scale = false, AttentionScore score_mode = AttentionScore::Dot,
                     std::string name = "attention");
  const char* type() const override { return "Attention"; }

 protected:
  bool keras_additive() const override { return false; }
};

// keras.layers.AdditiveAttention(use_scale=True).
class AdditiveAttention final : public AttentionMerge {
 public:
  explicit AdditiveAttention(bool use_scale = true, std::string name = "additive_attention");
  const char* type() const override { return "AdditiveAttention"; }

 protected:
  bool keras_additive() const override { return true; }
};

// ---- single-input poolings (Sequential) -----------------------------------------------
struct AttentionPoolingOptions {
  AttentionScore score = AttentionScore::Dot;
  AttentionQuery query = AttentionQuery::Learned;
  bool use_scale = true;
};

// [B, T, D] (+ mask [B, T]) -> [B, D]: o = sum_t a_t h_t with the query a
// learned vector or the row's last valid state (a row with no valid step: 0).
class AttentionPooling final : public Layer {
 public:
  explicit AttentionPooling(const AttentionPoolingOptions& options = {}, std::string name = "attention_pooling");
  const char* type() const override { return "AttentionPooling"; }
  std::string config_str() const override;
  const AttentionPoolingOptions& options() const { return o_; }
  Tensor output_mask(const Tensor&, const Tensor&) const override { return {}; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override;

 private:
  AttentionPoolingOptions o_;
  std::int64_t query_ = -1, vec_ = -1, post_ = -1;  // parameter indices
  detail::AttentionSaved saved_;
  Tensor last_;  // [B, 1, T] one-hot of the last valid step (query = last)
  Shape x_shape_;
};

// [B, T, D] (+ mask) -> [B, D] in two hops: the T states are cut into chunks
// of chunk_size steps (the last one padded and masked), each chunk is pooled
// to a summary by attention, then the summaries are pooled by attention (a
// chunk with no valid step is masked at the second level). With query = last
// both levels use the row's last valid state; with learned queries each level
// has its own ("chunk_query", "query"). Scores: "chunk_scale" and "scale".
class HierarchicalAttention final : public Layer {
 public:
  explicit HierarchicalAttention(std::int64_t chunk_size, const AttentionPoolingOptions& options = {},
                                 std::string name = "hierarchical_attention");
  const char* type() const override { return "HierarchicalAttention"; }
  std::string config_str() const override;
  std::int64_t chunk_size() const { return chunk_; }
  const AttentionPoolingOptions& options() const { return o_; }
  Tensor output_mask(const Tensor&, const Tensor&) const override { return {}; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override;

 private:
  struct Level {
    std::int64_t query = -1, vec = -1, post = -1;
  };
  detail::AttentionScorer scorer(const Level& l);
  std::int64_t chunk_;
  AttentionPoolingOptions o_;
  Level chunk_level_, top_level_;
  detail::AttentionSaved saved1_, saved2_;
  Tensor last_;
  Shape x_shape_;
  std::int64_t n_chunks_ = 0;
};

}  // namespace recur

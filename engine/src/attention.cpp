// Attention over recurrent states: see attention.h and docs/attention.md.
// Everything is composed of recur::ops, so CPU and CUDA run the same code.
//
// Layouts. Scores and weights are [B, Tq, Tv]. The key mask [B, Tv] is applied
// in the transposed layout [Tq, B, Tv], where it is a suffix of the shape and
// so broadcasts through ops::binary. The additive form builds its tanh
// features as [Tq, Tv, B, D] (q broadcast in [Tv, Tq, B, D], transposed, then
// k added as the suffix [Tv, B, D]); its backward reduces over the leading
// axis for dk and, after one transpose, for dq.
#include "recur/engine/attention.h"

#include <algorithm>
#include <functional>
#include <sstream>

#include "recur/host/ops.h"

namespace recur {

namespace {

// A score of a masked key before the softmax: far below any real score, so
// its exponential is exactly 0 in float32 and float64 (exp(-1e9) underflows);
// the weights are multiplied by the mask afterwards as well, which also zeroes
// a row whose keys are all masked.
constexpr double kMaskedScore = 1e9;

void add_into(const Tensor& acc, const Tensor& v) { ops::binary(BinaryOp::Add, acc, v, acc); }

// t * s for a scalar tensor s [1] (a device value: no host round trip).
Tensor scale_by(const Tensor& t, const Tensor& s) {
  Tensor y = Tensor::empty(t.shape(), t.dtype(), t.device());
  ops::binary(BinaryOp::Mul, t.reshape({-1, 1}), s, y.reshape({-1, 1}));
  return y;
}

// [R] -> [R, C], each value repeated along the row (an outer product with ones).
Tensor repeat_columns(const Tensor& v, std::int64_t C) {
  const std::int64_t R = v.numel();
  Tensor out = Tensor::empty({R, C}, v.dtype(), v.device());
  ops::gemm(v.reshape({R, 1}), Tensor::full({1, C}, 1.0, v.dtype(), v.device()), out);
  return out;
}

// q [B, D] repeated n times: [B, n, D].
Tensor repeat_rows(const Tensor& q, std::int64_t n) {
  const Tensor t = Tensor::zeros({n, q.dim(0), q.dim(1)}, q.dtype(), q.device());
  ops::binary(BinaryOp::Add, t, q, t);
  return ops::transpose01(t);
}

// The one-hot [B, 1, T] of each row's last valid step (all zeros for a row
// with none). Without a mask: the last step. Reads the mask to the host.
Tensor last_valid_one_hot(const Tensor& mask, std::int64_t B, std::int64_t T, DType dtype, Device device) {
  std::vector<double> m;
  if (mask.defined())
    m = mask.dtype() == DType::f64 ? mask.to_vector<double>()
                                   : [&] {
                                       const auto f = mask.to_vector<float>();
                                       return std::vector<double>(f.begin(), f.end());
                                     }();
  std::vector<double> h(std::size_t(B * T), 0.0);
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t last = mask.defined() ? -1 : T - 1;
    if (mask.defined())
      for (std::int64_t t = T - 1; t >= 0; --t)
        if (m[std::size_t(b * T + t)] != 0) {
          last = t;
          break;
        }
    if (last >= 0) h[std::size_t(b * T + last)] = 1.0;
  }
  Tensor out;
  if (dtype == DType::f64) {
    out = Tensor::from_vector(h, {B, 1, T}, device);
  } else {
    out = Tensor::from_vector(std::vector<float>(h.begin(), h.end()), {B, 1, T}, device);
  }
  return out;
}

std::string bool_str(bool b) { return b ? "true" : "false"; }

}  // namespace

const char* attention_score_name(AttentionScore s) { return s == AttentionScore::Dot ? "dot" : "additive"; }
const char* attention_query_name(AttentionQuery q) { return q == AttentionQuery::Learned ? "learned" : "last"; }

AttentionScore parse_attention_score(const std::string& text) {
  if (text == "dot") return AttentionScore::Dot;
  if (text == "additive" || text == "concat") return AttentionScore::Additive;
  RECUR_THROW(Value, "attention score_mode '", text, "' is not dot, additive or concat");
}

AttentionQuery parse_attention_query(const std::string& text) {
  if (text == "learned") return AttentionQuery::Learned;
  if (text == "last") return AttentionQuery::Last;
  RECUR_THROW(Value, "attention query '", text, "' is not learned or last");
}

// ---- the computation ------------------------------------------------------------------
namespace detail {

Tensor attention_forward(const AttentionScorer& s, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& key_mask, AttentionSaved* saved) {
  const std::int64_t B = q.dim(0), Tq = q.dim(1), D = q.dim(2), Tv = k.dim(1), Dv = v.dim(2);
  const DType dt = q.dtype();
  const Device dev = q.device();
  AttentionSaved sv;
  Tensor raw;  // scores before `post`
  if (s.score == AttentionScore::Dot) {
    raw = Tensor::empty({B, Tq, Tv}, dt, dev);
    ops::gemm(q, k, raw, false, true);  // [B, Tq, D] x [B, Tv, D]^T
  } else {
    Tensor x;  // [Tq, Tv, B, D]: q[b, i] + k[b, j]
    if (Tq == 1) {
      x = ops::add(ops::transpose01(k), q.reshape({B, D}));  // q is a suffix of [Tv, B, D]
    } else {
      const Tensor y = Tensor::zeros({Tv, Tq, B, D}, dt, dev);
      ops::binary(BinaryOp::Add, y, ops::transpose01(q), y);  // y[j, i, b] = q[b, i]
      x = ops::transpose01(y);
      ops::binary(BinaryOp::Add, x, ops::transpose01(k), x);  // + k[b, j]
    }
    const Tensor e = ops::tanh(s.pre.defined() ? scale_by(x, s.pre) : x);
    const std::int64_t N = Tq * Tv * B;
    Tensor r;
    if (s.vec.defined()) {
      r = Tensor::empty({N, 1}, dt, dev);
      ops::gemm(e.reshape({N, D}), s.vec.reshape({D, 1}), r);
    } else {
      r = ops::sum(e.reshape({N, D}), 1);
    }
    raw = ops::transpose01(r.reshape({Tq * Tv, B})).reshape({B, Tq, Tv});
    if (s.pre.defined()) sv.sum = x;
    sv.tanh = e;
  }
  const Tensor scores = s.post.defined() ? scale_by(raw, s.post) : raw;
  Tensor w;
  if (key_mask.defined()) {
    // bias = (mask - 1) * 1e9: 0 on valid keys, -1e9 on masked ones.
    const Tensor bias = ops::mul(ops::sub(key_mask, Tensor::full(key_mask.shape(), 1.0, dt, dev)),
                                 Tensor::full(key_mask.shape(), kMaskedScore, dt, dev));
    const Tensor st = ops::transpose01(scores);  // [Tq, B, Tv]
    ops::binary(BinaryOp::Add, st, bias, st);
    const Tensor p = ops::softmax(st);
    w = ops::transpose01(ops::mul(p, key_mask));
    sv.p = p;
    sv.key_mask = key_mask;
  } else {
    w = ops::softmax(scores);
  }
  Tensor out = Tensor::empty({B, Tq, Dv}, dt, dev);
  ops::gemm(w, v, out);
  if (saved != nullptr) {
    sv.q = q;
    sv.k = k;
    sv.v = v;
    sv.w = w;
    if (s.post.defined()) sv.raw = raw;
    *saved = std::move(sv);
  }
  return out;
}

AttentionGrads attention_backward(const AttentionScorer& s, const AttentionSaved& sv, const Tensor& dout) {
  const Tensor& q = sv.q;
  const Tensor& k = sv.k;
  const std::int64_t B = q.dim(0), Tq = q.dim(1), D = q.dim(2), Tv = k.dim(1), Dv = sv.v.dim(2);
  const DType dt = q.dtype();
  const Device dev = q.device();
  AttentionGrads g;
  Tensor dw = Tensor::empty({B, Tq, Tv}, dt, dev);
  ops::gemm(dout, sv.v, dw, false, true);  // [B, Tq, Dv] x [B, Tv, Dv]^T
  g.dv = Tensor::empty({B, Tv, Dv}, dt, dev);
  ops::gemm(sv.w, dout, g.dv, true, false);  // [B, Tq, Tv]^T x [B, Tq, Dv]
  Tensor ds;  // d(scores)
  if (sv.key_mask.defined()) {
    const Tensor dp = ops::mul(ops::transpose01(dw), sv.key_mask);  // [Tq, B, Tv]
    ds = ops::transpose01(ops::activation_backward(Activation::Softmax, sv.p, dp));
  } else {
    ds = ops::activation_backward(Activation::Softmax, sv.w, dw);
  }
  Tensor draw = ds;
  if (s.post.defined()) {
    add_into(s.post_grad, ops::reduce_all(ReduceOp::Sum, ops::mul(ds, sv.raw)));
    draw = scale_by(ds, s.post);
  }
  if (s.score == AttentionScore::Dot) {
    g.dq = Tensor::empty({B, Tq, D}, dt, dev);
    ops::gemm(draw, k, g.dq);  // [B, Tq, Tv] x [B, Tv, D]
    g.dk = Tensor::empty({B, Tv, D}, dt, dev);
    ops::gemm(draw, q, g.dk, true, false);  // [B, Tq, Tv]^T x [B, Tq, D]
    return g;
  }
  const std::int64_t N = Tq * Tv * B;
  const Tensor dr = ops::transpose01(draw.reshape({B, Tq * Tv})).reshape({N, 1});
  const Tensor e = sv.tanh.reshape({N, D});
  Tensor de = Tensor::empty({N, D}, dt, dev);
  if (s.vec.defined()) {
    ops::gemm(e, dr, s.vec_grad.reshape({D, 1}), true, false, 1.0, 1.0);
    ops::gemm(dr, s.vec.reshape({1, D}), de);
  } else {
    de = repeat_columns(dr, D);
  }
  Tensor dx = ops::activation_backward(Activation::Tanh, e, de);  // d(pre * (q + k))
  if (s.pre.defined()) {
    add_into(s.pre_grad, ops::reduce_all(ReduceOp::Sum, ops::mul(dx, sv.sum.reshape({N, D}))));
    dx = scale_by(dx, s.pre);
  }
  dx = dx.reshape({Tq, Tv, B, D});
  // Sums over Tq (for dk) and Tv (for dq); with one query (the poolings) the
  // first is a reshape and the second a sum over the leading axis.
  g.dk = ops::transpose01(Tq == 1 ? dx.reshape({Tv, B, D}) : ops::sum(dx, 0));  // [B, Tv, D]
  g.dq = Tq == 1 ? ops::sum(dx.reshape({Tv, B, D}), 0).reshape({B, 1, D})
                 : ops::transpose01(ops::sum(ops::transpose01(dx), 0));         // [B, Tq, D]
  return g;
}

}  // namespace detail

// ---- Attention / AdditiveAttention ------------------------------------------------------
AttentionMerge::AttentionMerge(AttentionScore score, bool use_scale, std::string name)
    : MergeLayer(std::move(name)), score_(score), use_scale_(use_scale) {}

Attention::Attention(bool use_scale, AttentionScore score_mode, std::string name)
    : AttentionMerge(score_mode, use_scale, name.empty() ? "attention" : std::move(name)) {}

AdditiveAttention::AdditiveAttention(bool use_scale, std::string name)
    : AttentionMerge(AttentionScore::Additive, use_scale, name.empty() ? "additive_attention" : std::move(name)) {}

std::string AttentionMerge::config_str() const {
  std::string s = "use_scale=" + bool_str(use_scale_);
  if (!keras_additive()) s += std::string(", score_mode=") + (score_ == AttentionScore::Dot ? "dot" : "concat");
  return s;
}

Shape AttentionMerge::merge_build(const std::vector<Shape>& in) {
  if (in.size() > 3)
    shape_error("takes [query, value] or [query, value, key], got " + std::to_string(in.size()) + " inputs");
  for (const Shape& s : in)
    if (s.size() != 2)
      shape_error("inputs must be sequences [batch, time, features], got " + shapes_str(in));
  const Shape& q = in[0];
  const Shape& v = in[1];
  const Shape& k = in.size() == 3 ? in[2] : in[1];
  if (q.back() == kAnyDim || k.back() == kAnyDim || v.back() == kAnyDim)
    shape_error("the feature axes must be known, got " + shapes_str(in));
  if (q.back() != k.back())
    shape_error("the query and the key need the same number of features, got " + shapes_str(in) +
                (in.size() == 2 ? " (the key is the value)" : ""));
  if (k[0] != kAnyDim && v[0] != kAnyDim && k[0] != v[0])
    shape_error("the key and the value need the same number of steps, got " + shapes_str(in));
  n_inputs_ = in.size();
  if (keras_additive()) {
    if (use_scale_) add_param("scale", {q.back()}, ParamInit::GlorotUniform);
  } else if (score_ == AttentionScore::Dot) {
    if (use_scale_) add_param("scale", {1}, ParamInit::Ones);
  } else {
    if (use_scale_) add_param("scale", {1}, ParamInit::Ones);
    add_param("concat_score_weight", {1}, ParamInit::Ones);
  }
  return {q[0], v[1]};
}

detail::AttentionScorer AttentionMerge::scorer() {
  detail::AttentionScorer s;
  s.score = score_;
  if (keras_additive()) {
    if (use_scale_) s.vec = value(0), s.vec_grad = grad(0);
  } else if (score_ == AttentionScore::Dot) {
    if (use_scale_) s.post = value(0), s.post_grad = grad(0);
  } else {
    std::size_t i = 0;
    if (use_scale_) s.pre = value(i), s.pre_grad = grad(i), ++i;
    s.post = value(i), s.post_grad = grad(i);
  }
  return s;
}

void AttentionMerge::check_runtime_shapes(const std::vector<Tensor>& xs) const {
  const Tensor& v = xs[1];
  const Tensor& k = xs.size() == 3 ? xs[2] : xs[1];
  if (xs[0].dim(0) != v.dim(0) || k.dim(0) != v.dim(0) || k.dim(1) != v.dim(1))
    shape_error("inputs of shapes " + shapes_str(xs) +
                " do not fit: one batch size, and the key and the value need the same steps");
}

Tensor AttentionMerge::merged_mask(const std::vector<Tensor>& masks) const {
  return masks.empty() ? Tensor() : masks[0];
}

Tensor AttentionMerge::merge_forward(const std::vector<Tensor>& xs, bool training) {
  return merge_forward_masked(xs, {}, training);
}

Tensor AttentionMerge::merge_forward_masked(const std::vector<Tensor>& xs, const std::vector<Tensor>& masks,
                                            bool training) {
  saved_.clear();
  query_mask_ = Tensor();
  const Tensor& q = xs[0];
  const Tensor& v = xs[1];
  const Tensor& k = xs.size() == 3 ? xs[2] : xs[1];
  const Tensor key_mask = masks.size() > 1 ? masks[1] : Tensor();
  Tensor out = detail::attention_forward(scorer(), q, k, v, key_mask, training ? &saved_ : nullptr);
  if (!masks.empty() && masks[0].defined()) {
    const Tensor qm = repeat_columns(masks[0], out.dim(2));  // [B * Tq, Dv]
    out = ops::mul(out, qm.reshape(out.shape()));
    if (training) query_mask_ = qm;
  }
  return out;
}

std::vector<Tensor> AttentionMerge::merge_backward(const Tensor& dy) {
  const Tensor dout = query_mask_.defined() ? ops::mul(dy, query_mask_.reshape(dy.shape())) : dy;
  detail::AttentionGrads g = detail::attention_backward(scorer(), saved_, dout);
  release_saved();
  if (n_inputs_ == 3) return {g.dq, g.dv, g.dk};
  return {g.dq, ops::add(g.dv, g.dk)};
}

void AttentionMerge::release_saved() {
  saved_.clear();
  query_mask_ = Tensor();
}

// ---- AttentionPooling -------------------------------------------------------------------
namespace {

// Declares a pooling level's parameters; returns their indices.
void add_level_params(const AttentionPoolingOptions& o, std::int64_t D,
                      const std::string& prefix, std::int64_t& query, std::int64_t& vec, std::int64_t& post,
                      std::int64_t next, const std::function<void(std::string, Shape, ParamInit)>& add) {
  if (o.query == AttentionQuery::Learned) {
    add(prefix + "query", {D}, ParamInit::GlorotUniform);
    query = next++;
  }
  if (o.use_scale) {
    if (o.score == AttentionScore::Dot) {
      add(prefix + "scale", {1}, ParamInit::Ones);
      post = next++;
    } else {
      add(prefix + "scale", {D}, ParamInit::GlorotUniform);
      vec = next++;
    }
  }
}

std::string pooling_config(const AttentionPoolingOptions& o) {
  return std::string("score_mode=") + attention_score_name(o.score) + ", query=" + attention_query_name(o.query) +
         ", use_scale=" + bool_str(o.use_scale);
}

void check_sequence_input(const Shape& in, const std::function<void(const std::string&)>& fail) {
  if (in.size() != 2) fail("needs sequences [batch, time, features], got input " + keras_shape_str(in));
  if (in[1] == kAnyDim) fail("the feature axis must be known, got input " + keras_shape_str(in));
}

}  // namespace

AttentionPooling::AttentionPooling(const AttentionPoolingOptions& options, std::string name)
    : Layer(name.empty() ? "attention_pooling" : std::move(name)), o_(options) {}

std::string AttentionPooling::config_str() const { return pooling_config(o_); }

Shape AttentionPooling::do_build(const Shape& in) {
  check_sequence_input(in, [this](const std::string& m) { shape_error(m); });
  query_ = vec_ = post_ = -1;
  add_level_params(o_, in[1], "", query_, vec_, post_, 0,
                   [this](std::string n, Shape s, ParamInit i) { add_param(std::move(n), std::move(s), i); });
  return {in[1]};
}

Tensor AttentionPooling::do_forward(const Tensor& x, const Tensor& mask, bool training) {
  release_saved();
  const std::int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  detail::AttentionScorer s;
  s.score = o_.score;
  if (vec_ >= 0) s.vec = value(std::size_t(vec_));
  if (post_ >= 0) s.post = value(std::size_t(post_));
  Tensor q, last;
  if (o_.query == AttentionQuery::Learned) {
    q = repeat_rows(value(std::size_t(query_)).reshape({1, D}), B).reshape({B, 1, D});
  } else {
    last = last_valid_one_hot(mask, B, T, x.dtype(), x.device());
    q = Tensor::empty({B, 1, D}, x.dtype(), x.device());
    ops::gemm(last, x, q);  // [B, 1, T] x [B, T, D]
  }
  const Tensor out = detail::attention_forward(s, q, x, x, mask, training ? &saved_ : nullptr);
  if (training) {
    last_ = last;
    x_shape_ = x.shape();
  }
  return out.reshape({B, D});
}

Tensor AttentionPooling::do_backward(const Tensor& dy) {
  detail::AttentionScorer s;
  s.score = o_.score;
  if (vec_ >= 0) s.vec = value(std::size_t(vec_)), s.vec_grad = grad(std::size_t(vec_));
  if (post_ >= 0) s.post = value(std::size_t(post_)), s.post_grad = grad(std::size_t(post_));
  const std::int64_t B = dy.dim(0), D = dy.dim(1);
  const detail::AttentionGrads g = detail::attention_backward(s, saved_, dy.reshape({B, 1, D}));
  if (o_.query == AttentionQuery::Learned) add_into(grad(std::size_t(query_)), ops::sum(g.dq.reshape({B, D}), 0));
  if (!input_grad_wanted()) return {};
  Tensor dx = ops::add(g.dk, g.dv);
  if (o_.query == AttentionQuery::Last) ops::gemm(last_, g.dq, dx, true, false, 1.0, 1.0);  // [B, T, 1] x [B, 1, D]
  return dx;
}

void AttentionPooling::release_saved() {
  saved_.clear();
  last_ = Tensor();
}

// ---- HierarchicalAttention --------------------------------------------------------------
HierarchicalAttention::HierarchicalAttention(std::int64_t chunk_size, const AttentionPoolingOptions& options,
                                             std::string name)
    : Layer(name.empty() ? "hierarchical_attention" : std::move(name)), chunk_(chunk_size), o_(options) {
  RECUR_CHECK(chunk_size >= 1, Value, "HierarchicalAttention: chunk_size must be at least 1, got ", chunk_size);
}

std::string HierarchicalAttention::config_str() const {
  return "chunk_size=" + std::to_string(chunk_) + ", " + pooling_config(o_);
}

Shape HierarchicalAttention::do_build(const Shape& in) {
  check_sequence_input(in, [this](const std::string& m) { shape_error(m); });
  chunk_level_ = top_level_ = Level();
  std::int64_t next = 0;
  auto add = [this, &next](std::string n, Shape s, ParamInit i) {
    add_param(std::move(n), std::move(s), i);
    ++next;
  };
  add_level_params(o_, in[1], "chunk_", chunk_level_.query, chunk_level_.vec, chunk_level_.post, 0, add);
  add_level_params(o_, in[1], "", top_level_.query, top_level_.vec, top_level_.post, next, add);
  return {in[1]};
}

detail::AttentionScorer HierarchicalAttention::scorer(const Level& l) {
  detail::AttentionScorer s;
  s.score = o_.score;
  if (l.vec >= 0) s.vec = value(std::size_t(l.vec)), s.vec_grad = grad(std::size_t(l.vec));
  if (l.post >= 0) s.post = value(std::size_t(l.post)), s.post_grad = grad(std::size_t(l.post));
  return s;
}

Tensor HierarchicalAttention::do_forward(const Tensor& x, const Tensor& mask, bool training) {
  release_saved();
  const std::int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  const DType dt = x.dtype();
  const Device dev = x.device();
  const std::int64_t n = (T + chunk_ - 1) / chunk_, Tp = n * chunk_;
  // Pad time to whole chunks; the padding is masked.
  Tensor xp = x, mp = mask;
  if (Tp != T) {
    xp = Tensor::zeros({B, Tp, D}, dt, dev);
    ops::copy_columns(x.reshape({B, T * D}), xp.reshape({B, Tp * D}), 0);
    mp = Tensor::zeros({B, Tp}, dt, dev);
    ops::copy_columns(mask.defined() ? mask : Tensor::full({B, T}, 1.0, dt, dev), mp, 0);
  }
  const Tensor xc = xp.reshape({B * n, chunk_, D});
  const Tensor mc = mp.defined() ? mp.reshape({B * n, chunk_}) : Tensor();
  Tensor last, q1, q2;
  if (o_.query == AttentionQuery::Learned) {
    q1 = repeat_rows(value(std::size_t(chunk_level_.query)).reshape({1, D}), B * n).reshape({B * n, 1, D});
    q2 = repeat_rows(value(std::size_t(top_level_.query)).reshape({1, D}), B).reshape({B, 1, D});
  } else {
    last = last_valid_one_hot(mask, B, T, dt, dev);
    q2 = Tensor::empty({B, 1, D}, dt, dev);
    ops::gemm(last, x, q2);
    q1 = repeat_rows(q2.reshape({B, D}), n).reshape({B * n, 1, D});
  }
  const Tensor summaries =
      detail::attention_forward(scorer(chunk_level_), q1, xc, xc, mc, training ? &saved1_ : nullptr)
          .reshape({B, n, D});
  const Tensor chunk_mask = mc.defined() ? ops::max(mc, 1).reshape({B, n}) : Tensor();
  const Tensor out = detail::attention_forward(scorer(top_level_), q2, summaries, summaries, chunk_mask,
                                               training ? &saved2_ : nullptr);
  if (training) {
    last_ = last;
    x_shape_ = x.shape();
    n_chunks_ = n;
  }
  return out.reshape({B, D});
}

Tensor HierarchicalAttention::do_backward(const Tensor& dy) {
  const std::int64_t B = x_shape_[0], T = x_shape_[1], D = x_shape_[2], n = n_chunks_;
  const detail::AttentionGrads g2 = detail::attention_backward(scorer(top_level_), saved2_, dy.reshape({B, 1, D}));
  const Tensor ds = ops::add(g2.dk, g2.dv);  // [B, n, D]
  const detail::AttentionGrads g1 =
      detail::attention_backward(scorer(chunk_level_), saved1_, ds.reshape({B * n, 1, D}));
  const Tensor dq1 = g1.dq.reshape({B, n, D});
  if (o_.query == AttentionQuery::Learned) {
    add_into(grad(std::size_t(chunk_level_.query)), ops::sum(dq1.reshape({B * n, D}), 0));
    add_into(grad(std::size_t(top_level_.query)), ops::sum(g2.dq.reshape({B, D}), 0));
  }
  if (!input_grad_wanted()) return {};
  Tensor dx = ops::add(g1.dk, g1.dv).reshape({B, n * chunk_, D});
  if (n * chunk_ != T) dx = ops::extract_columns(dx.reshape({B, n * chunk_ * D}), 0, T * D).reshape({B, T, D});
  if (o_.query == AttentionQuery::Last) {
    const Tensor dq = ops::add(g2.dq.reshape({B, D}), ops::sum(dq1, 1)).reshape({B, 1, D});
    ops::gemm(last_, dq, dx, true, false, 1.0, 1.0);
  }
  return dx;
}

void HierarchicalAttention::release_saved() {
  saved1_.clear();
  saved2_.clear();
  last_ = Tensor();
}

}  // namespace recur

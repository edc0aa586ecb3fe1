#include "recur/engine/bidirectional.h"

#include "recur/host/ops.h"

namespace recur {

const char* merge_mode_name(MergeMode mode) {
  switch (mode) {
    case MergeMode::Concat: return "concat";
    case MergeMode::Sum: return "sum";
    case MergeMode::Mul: return "mul";
    case MergeMode::Ave: return "ave";
  }
  return "?";
}

namespace {
RecurrentOptions direction(RecurrentOptions o, bool backwards) {
  o.go_backwards = backwards;
  o.output_in_input_order = backwards;
  return o;
}
Tensor halve(const Tensor& t) {
  return ops::mul(t, Tensor::full(t.shape(), 0.5, t.dtype(), t.device()));
}
}  // namespace

Bidirectional::Bidirectional(const RecurrentOptions& layer, MergeMode merge, Device device,
                             std::uint64_t seed)
    : fwd_(direction(layer, false), device, seed),
      bwd_(direction(layer, true), device, seed + 1),
      merge_(merge) {}

void Bidirectional::zero_grad() {
  fwd_.zero_grad();
  bwd_.zero_grad();
}

Recurrent::Output Bidirectional::forward(const Tensor& x, const Tensor& mask,
                                         const std::vector<Tensor>& initial_state, bool training) {
  const std::size_t ns = std::size_t(cell_states(fwd_.options().cell));
  RECUR_CHECK(initial_state.empty() || initial_state.size() == 2 * ns, Value,
              "Bidirectional: ", initial_state.size(), " initial states given, expected ", 2 * ns,
              " (the forward direction's, then the backward's)");
  std::vector<Tensor> init_f, init_b;
  if (!initial_state.empty()) {
    init_f.assign(initial_state.begin(), initial_state.begin() + std::ptrdiff_t(ns));
    init_b.assign(initial_state.begin() + std::ptrdiff_t(ns), initial_state.end());
  }
  Recurrent::Output f = fwd_.forward(x, mask, init_f, training);
  Recurrent::Output b = bwd_.forward(x, mask, init_b, training);
  Recurrent::Output out;
  switch (merge_) {
    case MergeMode::Concat: {
      Shape s = f.y.shape();
      const std::int64_t H = s.back();
      s.back() = 2 * H;
      out.y = Tensor::empty(s, f.y.dtype(), f.y.device());
      ops::copy_columns(f.y, out.y, 0);
      ops::copy_columns(b.y, out.y, H);
      break;
    }
    case MergeMode::Sum: out.y = ops::add(f.y, b.y); break;
    case MergeMode::Mul: out.y = ops::mul(f.y, b.y); break;
    case MergeMode::Ave: out.y = halve(ops::add(f.y, b.y)); break;
  }
  out.states = f.states;
  out.states.insert(out.states.end(), b.states.begin(), b.states.end());
  yf_ = merge_ == MergeMode::Mul && training ? f.y : Tensor();
  yb_ = merge_ == MergeMode::Mul && training ? b.y : Tensor();
  return out;
}

Recurrent::InputGrads Bidirectional::backward(const Tensor& dy, const std::vector<Tensor>& d_states) {
  const std::size_t ns = std::size_t(cell_states(fwd_.options().cell));
  RECUR_CHECK(d_states.empty() || d_states.size() == 2 * ns, Value, "Bidirectional: ",
              d_states.size(), " state gradients given, expected ", 2 * ns);
  Tensor df, db;
  if (dy.defined()) {
    switch (merge_) {
      case MergeMode::Concat: {
        const std::int64_t H = fwd_.options().units;
        RECUR_CHECK(dy.dim(-1) == 2 * H, Shape, "Bidirectional: dy has ", dy.dim(-1),
                    " features, the concatenated output ", 2 * H);
        df = ops::extract_columns(dy, 0, H);
        db = ops::extract_columns(dy, H, H);
        break;
      }
      case MergeMode::Sum: df = db = dy; break;
      case MergeMode::Mul:
        RECUR_CHECK(yf_.defined(), Value, "Bidirectional: backward() needs a training forward");
        df = ops::mul(dy, yb_);
        db = ops::mul(dy, yf_);
        break;
      case MergeMode::Ave: df = db = halve(dy); break;
    }
  }
  std::vector<Tensor> ds_f, ds_b;
  if (!d_states.empty()) {
    ds_f.assign(d_states.begin(), d_states.begin() + std::ptrdiff_t(ns));
    ds_b.assign(d_states.begin() + std::ptrdiff_t(ns), d_states.end());
  }
  Recurrent::InputGrads gf = fwd_.backward(df, ds_f);
  Recurrent::InputGrads gb = bwd_.backward(db, ds_b);
  Recurrent::InputGrads out;
  out.dx = ops::add(gf.dx, gb.dx);
  out.d_initial_state = gf.d_initial_state;
  out.d_initial_state.insert(out.d_initial_state.end(), gb.d_initial_state.begin(),
                             gb.d_initial_state.end());
  return out;
}

}  // namespace recur

// Recurrent layers over sequences: see recurrent.h for the semantics.
#include "recur/engine/recurrent.h"

#include <cmath>
#include <random>
#include <string>

#include "recur/host/backend.h"
#include "recur/host/ops.h"

namespace recur {

const char* cell_name(CellType cell) {
  switch (cell) {
    case CellType::SimpleRNN: return "SimpleRNN";
    case CellType::LSTM: return "LSTM";
    case CellType::GRU: return "GRU";
  }
  return "?";
}
int cell_gates(CellType cell) { return cell == CellType::LSTM ? 4 : cell == CellType::GRU ? 3 : 1; }
int cell_states(CellType cell) { return cell == CellType::LSTM ? 2 : 1; }

namespace {

Tensor uniform(const Shape& shape, double bound, std::mt19937_64& rng, DType dtype, Device dev) {
  std::uniform_real_distribution<double> d(-bound, bound);
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (double& x : v) x = d(rng);
  if (dtype == DType::f64) return Tensor::from_vector(v, shape, dev);
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), shape, dev);
}

// Row t of a [T, B, ...] tensor as [B, ...].
Tensor at(const Tensor& t, std::int64_t i) {
  Shape s(t.shape().begin() + 1, t.shape().end());
  return t.slice(i, i + 1).reshape(s);
}

void add_into(const Tensor& acc, const Tensor& v) { ops::binary(BinaryOp::Add, acc, v, acc); }

// x [B, H] with row b scaled by v[b] ([B]): through [H, B], where v broadcasts.
Tensor scale_rows(const Tensor& x, const Tensor& v) {
  return ops::transpose01(ops::mul(ops::transpose01(x), v));
}

// Whether the backend runs a whole pass of this layer in one call (the CPU
// does: no synchronisation between steps; the CUDA backend's persistent
// kernels, when enabled, the forward). Forward and backward are asked apart:
// a forward pass in one call saves what the step ops' backward reads, so
// either may loop over the step ops while the other does not.
bool whole_pass(const RecurrentOptions& o, bool recurrent_dropout, Device dev, std::int64_t B,
                bool backward, bool batch_major = false, bool fused_input = false) {
  OpKind op = OpKind::GruSequence;
  switch (o.cell) {
    case CellType::LSTM: op = backward ? OpKind::LstmSequenceBackward : OpKind::LstmSequence; break;
    case CellType::SimpleRNN: op = backward ? OpKind::RnnSequenceBackward : OpKind::RnnSequence; break;
    case CellType::GRU:
      if (o.reset_after)
        op = backward ? OpKind::GruSequenceBackward : OpKind::GruSequence;
      else
        op = backward ? OpKind::GruRbSequenceBackward : OpKind::GruRbSequence;
      break;
  }
  return backend(dev).supports({op, o.dtype, B, o.units, recurrent_dropout, batch_major, fused_input}).ok;
}

// The layout a whole pass's ys (dys) takes: straight in the layer's [B, T, H]
// (flipped in time when the outputs are in input order) where the backend's
// pass can, else time-major, transposed by the layer.
SeqLayout seq_layout(bool batch_major, bool flip) {
  return !batch_major ? SeqLayout::TimeMajor
         : flip       ? SeqLayout::BatchMajorReversed
                      : SeqLayout::BatchMajor;
}

}  // namespace

Recurrent::Recurrent(const RecurrentOptions& o, Device device, std::uint64_t seed)
    : options_(o), device_(device) {
  RECUR_CHECK(o.input_size > 0 && o.units > 0, Value, cell_name(o.cell),
              ": input_size and units must be positive, got ", o.input_size, " and ", o.units);
  RECUR_CHECK(o.dtype == DType::f32 || o.dtype == DType::f64, DType, cell_name(o.cell),
              ": weights must be float32 or float64, not ", dtype_name(o.dtype));
  RECUR_CHECK(o.dropout >= 0 && o.dropout < 1 && o.recurrent_dropout >= 0 &&
                  o.recurrent_dropout < 1, Value, cell_name(o.cell),
              ": dropout rates must be in [0, 1), got ", o.dropout, " and ", o.recurrent_dropout);
  dropout_seed_ = seed ^ 0x9e3779b97f4a7c15ull;
  const std::int64_t G = cell_gates(o.cell) * o.units;
  std::mt19937_64 rng(seed);
  const double bound = 1.0 / std::sqrt(double(o.units));
  w_.w_ih = uniform({G, o.input_size}, bound, rng, o.dtype, device);
  w_.w_hh = uniform({G, o.units}, bound, rng, o.dtype, device);
  if (o.use_bias && o.unit_forget_bias && o.cell == CellType::LSTM) {
    std::vector<double> b(static_cast<std::size_t>(G), 0.0);
    for (std::int64_t j = o.units; j < 2 * o.units; ++j) b[std::size_t(j)] = 1.0;  // f block
    w_.b_ih = o.dtype == DType::f64 ? Tensor::from_vector(b, {G}, device)
                                    : Tensor::from_vector(std::vector<float>(b.begin(), b.end()), {G}, device);
    w_.b_hh = Tensor::zeros({G}, o.dtype, device);
  } else if (o.use_bias) {
    w_.b_ih = uniform({G}, bound, rng, o.dtype, device);
    w_.b_hh = uniform({G}, bound, rng, o.dtype, device);
  }
  g_.w_ih = Tensor::zeros(w_.w_ih.shape(), o.dtype, device);
  g_.w_hh = Tensor::zeros(w_.w_hh.shape(), o.dtype, device);
  if (o.use_bias) {
    g_.b_ih = Tensor::zeros({G}, o.dtype, device);
    g_.b_hh = Tensor::zeros({G}, o.dtype, device);
  }
}

void Recurrent::set_dropout_masks(const Tensor& input_mask, const Tensor& recurrent_mask) {
  fixed_in_mask_ = input_mask.defined() ? input_mask.to(device_) : Tensor();
  fixed_rec_mask_ = recurrent_mask.defined() ? recurrent_mask.to(device_) : Tensor();
}

// Inverted dropout mask: 0 with probability rate, else 1 / (1 - rate). Drawn on
// the host from the layer's seed and the draw count, so runs repeat exactly.
Tensor Recurrent::draw_mask(double rate, const Shape& shape) {
  std::mt19937_64 rng(dropout_seed_ + 0x632be59bd9b4e019ull * ++dropout_draws_);
  std::bernoulli_distribution keep(1.0 - rate);
  std::vector<double> m(static_cast<std::size_t>(shape_numel(shape)));
  for (double& v : m) v = keep(rng) ? 1.0 / (1.0 - rate) : 0.0;
  if (options_.dtype == DType::f64) return Tensor::from_vector(m, shape, device_);
  return Tensor::from_vector(std::vector<float>(m.begin(), m.end()), shape, device_);
}

void Recurrent::zero_grad() {
  for (const Tensor& t : {g_.w_ih, g_.w_hh, g_.b_ih, g_.b_hh})
    if (t.defined()) ops::fill(t, 0.0);
}

Recurrent::Output Recurrent::forward(const Tensor& x, const Tensor& mask,
                                     const std::vector<Tensor>& initial_state, bool training) {
  const RecurrentOptions& o = options_;
  const char* name = cell_name(o.cell);
  RECUR_CHECK(x.defined() && x.ndim() == 3, Shape, name, ": input must be [batch, time, features], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  const std::int64_t B = x.dim(0), T = x.dim(1), H = o.units, G = cell_gates(o.cell) * H;
  RECUR_CHECK(x.dim(2) == o.input_size, Shape, name, ": input has ", x.dim(2),
              " features, the layer expects ", o.input_size);
  RECUR_CHECK(x.dtype() == o.dtype, DType, name, ": input is ", dtype_name(x.dtype()),
              ", the weights ", dtype_name(o.dtype));
  RECUR_CHECK(x.device() == device_, Device, name, ": input is on ", x.device().str(),
              ", the layer on ", device_.str());
  if (mask.defined()) {
    RECUR_CHECK(mask.shape() == (Shape{B, T}), Shape, name, ": mask has shape ",
                shape_str(mask.shape()), ", expected [batch, time] = ", shape_str({B, T}));
    RECUR_CHECK(mask.dtype() == x.dtype() && mask.device() == x.device(), DType, name,
                ": mask must be ", dtype_name(x.dtype()), " on ", x.device().str());
  }
  const int ns = cell_states(o.cell);
  RECUR_CHECK(initial_state.empty() || int(initial_state.size()) == ns, Value, name, ": ",
              initial_state.size(), " initial states given, the cell has ", ns);
  for (const Tensor& s : initial_state) {
    RECUR_CHECK(s.defined() && s.shape() == (Shape{B, H}), Shape, name,
                ": an initial state must be [batch, units] = ", shape_str({B, H}), ", got ",
                s.defined() ? shape_str(s.shape()) : std::string("undefined"));
    RECUR_CHECK(s.dtype() == x.dtype() && s.device() == x.device(), DType, name,
                ": initial states must be ", dtype_name(x.dtype()), " on ", x.device().str());
  }

  std::vector<Tensor> init = initial_state;
  if (o.stateful && init.empty() && !carried_.empty()) {
    RECUR_CHECK(carried_[0].dim(0) == B, Value, name, ": stateful layer got a batch of ", B,
                " but carries states for ", carried_[0].dim(0), "; call reset_states()");
    init = carried_;
  }
  // Dropout masks, one per sequence for the whole batch (training only).
  Tensor in_mask, rec_mask;
  if (training && (o.dropout > 0 || fixed_in_mask_.defined()))
    in_mask = fixed_in_mask_.defined() ? fixed_in_mask_ : draw_mask(o.dropout, {B, o.input_size});
  if (training && (o.recurrent_dropout > 0 || fixed_rec_mask_.defined()))
    rec_mask = fixed_rec_mask_.defined() ? fixed_rec_mask_ : draw_mask(o.recurrent_dropout, {B, H});
  if (in_mask.defined())
    RECUR_CHECK(in_mask.shape() == (Shape{B, o.input_size}), Shape, name, ": input dropout mask is ",
                shape_str(in_mask.shape()), ", expected ", shape_str({B, o.input_size}));
  if (rec_mask.defined())
    RECUR_CHECK(rec_mask.shape() == (Shape{B, H}), Shape, name, ": recurrent dropout mask is ",
                shape_str(rec_mask.shape()), ", expected ", shape_str({B, H}));

  const bool whole = whole_pass(o, rec_mask.defined(), device_, B, false);
  // Inference where the backend's pass projects each step's input itself
  // (the CPU's): no time-major copy of x and no projection of all steps.
  // Training keeps both: the weight gradient reads the time-major input.
  const bool fused_input = whole && !training && !in_mask.defined() &&
                           whole_pass(o, rec_mask.defined(), device_, B, false, false, true);
  // Time-major, in processing order.
  Tensor xt, xproj;
  if (!fused_input) {
    xt = ops::transpose01(x, false, o.go_backwards);
    if (in_mask.defined()) ops::binary(BinaryOp::Mul, xt, in_mask, xt);  // [B, I] over every step
    xproj = ops::matmul(xt.reshape({T * B, o.input_size}), w_.w_ih, false, true);
  }
  const Tensor mt = mask.defined() ? ops::transpose01(mask, false, o.go_backwards) : Tensor();
  const Tensor hproj = Tensor::empty({B, G}, o.dtype, device_);
  const bool flip = o.go_backwards && o.output_in_input_order;
  const bool ys_batch_major =
      whole && o.return_sequences && whole_pass(o, rec_mask.defined(), device_, B, false, true);
  const SeqLayout ys_layout = seq_layout(ys_batch_major, flip);
  const Tensor ys = !o.return_sequences ? Tensor()
                    : ys_batch_major    ? Tensor::empty({B, T, H}, o.dtype, device_)
                                        : Tensor::empty({T, B, H}, o.dtype, device_);

  auto initial = [&](int k) {
    return k < int(init.size()) ? init[k] : Tensor::zeros({B, H}, o.dtype, device_);
  };
  // States: all T + 1 of them when training, else two ping-pong buffers.
  const std::int64_t slots = training ? T + 1 : 2;
  Tensor hs = Tensor::empty({slots, B, H}, o.dtype, device_);
  at(hs, 0).copy_from(initial(0));
  Tensor cs;
  if (o.cell == CellType::LSTM) {
    cs = Tensor::empty({training ? T + 1 : 1, B, H}, o.dtype, device_);
    at(cs, 0).copy_from(initial(1));
  }
  const bool gru_rb = o.cell == CellType::GRU && !o.reset_after;
  // Gate activations: all steps when training; one step's worth for the
  // reset-before GRU, whose two stages pass r and z through them.
  const Tensor gates = o.cell == CellType::SimpleRNN ? Tensor()
                       : training ? Tensor::empty({T, B, 4 * H}, o.dtype, device_)
                       : gru_rb && !whole ? Tensor::empty({1, B, 4 * H}, o.dtype, device_)
                                          : Tensor();
  Tensor rh, hn;  // reset-before GRU scratch: r * h and its product with W_hn
  if (gru_rb) {
    rh = Tensor::empty({B, H}, o.dtype, device_);
    hn = Tensor::empty({B, H}, o.dtype, device_);
  }

  const Tensor h_dropped = rec_mask.defined() ? Tensor::empty({B, H}, o.dtype, device_) : Tensor();
  if (whole) {
    const Tensor xp = fused_input ? Tensor() : xproj.reshape({T, B, G});
    // With fused_input the pass reads x (reversed for go_backwards) and W_ih.
    const Tensor x_in = fused_input ? x : Tensor(), w_in = fused_input ? w_.w_ih : Tensor();
    const bool rev = o.go_backwards;
    switch (o.cell) {
      case CellType::GRU:
        if (gru_rb)
          ops::gru_rb_sequence({xp, w_.w_hh, w_.b_ih, w_.b_hh, mt, hs, ys, gates, rec_mask, ys_layout});
        else
          ops::gru_sequence(
              {xp, w_.w_hh, w_.b_ih, w_.b_hh, mt, hs, ys, gates, rec_mask, ys_layout, x_in, w_in, rev});
        break;
      case CellType::LSTM:
        ops::lstm_sequence(
            {xp, w_.w_hh, w_.b_ih, w_.b_hh, mt, hs, cs, ys, gates, rec_mask, ys_layout, x_in, w_in, rev});
        break;
      case CellType::SimpleRNN:
        ops::rnn_sequence({xp, w_.w_hh, w_.b_ih, w_.b_hh, mt, hs, ys, rec_mask, o.activation, training,
                           ys_layout, x_in, w_in, rev});
        break;
    }
  }
  for (std::int64_t t = 0; t < (whole ? 0 : T); ++t) {
    const Tensor h_prev = at(hs, training ? t : t % 2);
    const Tensor h_next = at(hs, training ? t + 1 : (t + 1) % 2);
    const Tensor xp = xproj.slice(t * B, (t + 1) * B);
    const Tensor m = mt.defined() ? at(mt, t) : Tensor();
    const Tensor y = ys.defined() ? at(ys, t) : Tensor();
    // The state the recurrent matmuls see (recurrent dropout applied).
    const Tensor h_in = rec_mask.defined() ? h_dropped : h_prev;
    if (rec_mask.defined()) ops::binary(BinaryOp::Mul, h_prev, rec_mask, h_dropped);
    if (gru_rb) {
      const Tensor saved = at(gates, training ? t : 0);
      const Tensor hproj_rz = hproj.reshape({B * 3 * H}).slice(0, B * 2 * H).reshape({B, 2 * H});
      ops::gemm(h_in, w_.w_hh.slice(0, 2 * H), hproj_rz, false, true);
      ops::gru_rb_gates({xp, hproj_rz, w_.b_ih, w_.b_hh, h_in, rh, saved});
      ops::gemm(rh, w_.w_hh.slice(2 * H, 3 * H), hn, false, true);
      ops::gru_rb_output({xp, hn, w_.b_ih, w_.b_hh, h_prev, m, saved, h_next, y});
      continue;
    }
    ops::gemm(h_in, w_.w_hh, hproj, false, true);
    const Tensor saved = training && o.cell != CellType::SimpleRNN ? at(gates, t) : Tensor();
    switch (o.cell) {
      case CellType::LSTM:
        // c is updated in place when not training (one cell-state buffer).
        ops::lstm_step({xp, hproj, w_.b_ih, w_.b_hh, at(cs, training ? t : 0), h_prev, m, h_next,
                        at(cs, training ? t + 1 : 0), y, saved});
        break;
      case CellType::GRU:
        ops::gru_step({xp, hproj, w_.b_ih, w_.b_hh, h_prev, m, h_next, y, saved});
        break;
      case CellType::SimpleRNN:
        ops::rnn_step({xp, hproj, w_.b_ih, w_.b_hh, h_prev, m, h_next, y, o.activation});
        break;
    }
  }

  const Tensor h_last = at(hs, training ? T : T % 2);
  const Tensor c_last = o.cell == CellType::LSTM ? at(cs, training ? T : 0) : Tensor();
  Output out;
  // The last output is the last valid step's h; a row without one (fully
  // masked) outputs 0, not its initial state.
  const Tensor row_valid = mask.defined() && !o.return_sequences ? ops::max(mask, 1) : Tensor();
  out.y = o.return_sequences ? (ys_batch_major ? ys : ops::transpose01(ys, flip, false))
          : row_valid.defined() ? scale_rows(h_last, row_valid)
                                : h_last.to(device_);
  if (o.return_state) {
    out.states.push_back(h_last.to(device_));
    if (c_last.defined()) out.states.push_back(c_last.to(device_));
  }
  if (o.stateful) {
    carried_ = {h_last.to(device_)};
    if (c_last.defined()) carried_.push_back(c_last.to(device_));
  }
  saved_ = Saved{};
  if (training) saved_ = Saved{true, T, B, xt, mt, hs, cs, gates, in_mask, rec_mask, row_valid};
  return out;
}

Recurrent::InputGrads Recurrent::backward(const Tensor& dy, const std::vector<Tensor>& d_states,
                                          bool input_grad) {
  const RecurrentOptions& o = options_;
  const char* name = cell_name(o.cell);
  RECUR_CHECK(saved_.valid, Value, name,
              ": backward() needs the activations of a forward(..., training = true)");
  const std::int64_t T = saved_.T, B = saved_.B, H = o.units, I = o.input_size;
  const std::int64_t G = cell_gates(o.cell) * H;
  const DType dt = o.dtype;
  const int ns = cell_states(o.cell);
  RECUR_CHECK(d_states.empty() || int(d_states.size()) == ns, Value, name, ": ", d_states.size(),
              " state gradients given, the cell has ", ns);
  auto check_grad = [&](const Tensor& g, const Shape& want, const char* what) {
    if (!g.defined()) return;
    RECUR_CHECK(g.shape() == want, Shape, name, ": ", what, " has shape ", shape_str(g.shape()),
                ", expected ", shape_str(want));
    RECUR_CHECK(g.dtype() == dt && g.device() == device_, DType, name, ": ", what, " must be ",
                dtype_name(dt), " on ", device_.str());
  };
  check_grad(dy, o.return_sequences ? Shape{B, T, H} : Shape{B, H}, "dy");
  for (const Tensor& g : d_states) check_grad(g, {B, H}, "a state gradient");

  // dL/dh and dL/dc flowing backwards in time.
  Tensor dh = Tensor::zeros({B, H}, dt, device_), dh_other = Tensor::empty({B, H}, dt, device_);
  if (!o.return_sequences && dy.defined())
    add_into(dh, saved_.row_valid.defined() ? scale_rows(dy, saved_.row_valid) : dy);
  if (!d_states.empty() && d_states[0].defined()) add_into(dh, d_states[0]);
  Tensor dc;
  if (o.cell == CellType::LSTM) {
    dc = Tensor::zeros({B, H}, dt, device_);
    if (d_states.size() > 1 && d_states[1].defined()) add_into(dc, d_states[1]);
  }
  const bool flip = o.go_backwards && o.output_in_input_order;
  const Tensor& rec_mask = saved_.rec_mask;
  const bool whole = whole_pass(o, rec_mask.defined(), device_, B, true);
  // dy [B, T, H] as the pass reads it: in place where the backend's pass can
  // read it batch-major, else transposed to [T, B, H] in processing order.
  const bool dys_batch_major = whole && o.return_sequences && dy.defined() &&
                               whole_pass(o, rec_mask.defined(), device_, B, true, true);
  const SeqLayout dys_layout = seq_layout(dys_batch_major, flip);
  const Tensor dys = !o.return_sequences || !dy.defined() ? Tensor()
                     : dys_batch_major                     ? dy
                                                           : ops::transpose01(dy, false, flip);
  const Tensor dh_rec = rec_mask.defined() ? Tensor::empty({B, H}, dt, device_) : Tensor();
  const bool gru_rb = o.cell == CellType::GRU && !o.reset_after;
  const Tensor dgx = Tensor::empty({T * B, G}, dt, device_);
  const Tensor dgh = o.cell == CellType::GRU && !gru_rb ? Tensor::empty({T * B, G}, dt, device_) : dgx;
  // Reset-before GRU: recurrent gradients of the r, z blocks and of n, apart,
  // since they multiply different inputs (h, and r * h).
  Tensor dg_rz, dg_n, drh, dh_in, h_in;
  if (gru_rb) {
    dg_rz = Tensor::empty({T * B, 2 * H}, dt, device_);
    dg_n = Tensor::empty({T * B, H}, dt, device_);
    drh = Tensor::empty({B, H}, dt, device_);
    dh_in = Tensor::empty({B, H}, dt, device_);
    if (rec_mask.defined()) h_in = Tensor::empty({B, H}, dt, device_);
  }

  // The whole pass also sums the gate gradients for the biases.
  const bool bias_sums = whole && o.use_bias && T * B > 0;
  const Tensor db_x = bias_sums ? Tensor::empty({G}, dt, device_) : Tensor();
  const Tensor db_h = bias_sums && o.cell == CellType::GRU ? Tensor::empty({G}, dt, device_) : db_x;
  if (whole) {
    switch (o.cell) {
      case CellType::GRU:
        if (gru_rb)
          ops::gru_rb_sequence_backward({saved_.gates, saved_.h, dys, saved_.mask, w_.w_hh, dh,
                                         dgx.reshape({T, B, G}), dg_rz.reshape({T, B, 2 * H}),
                                         dg_n.reshape({T, B, H}), db_x, db_h, rec_mask, dys_layout});
        else
          ops::gru_sequence_backward({saved_.gates, saved_.h, dys, saved_.mask, w_.w_hh, dh, dgx.reshape({T, B, G}),
                                      dgh.reshape({T, B, G}), db_x, db_h, rec_mask, dys_layout});
        break;
      case CellType::LSTM:
        ops::lstm_sequence_backward({saved_.gates, saved_.c, dys, saved_.mask, w_.w_hh, dh, dc,
                                     dgx.reshape({T, B, G}), db_x, rec_mask, dys_layout});
        break;
      case CellType::SimpleRNN:
        ops::rnn_sequence_backward({saved_.h, dys, saved_.mask, w_.w_hh, dh, dgx.reshape({T, B, G}), db_x,
                                    rec_mask, o.activation, dys_layout});
        break;
    }
  }
  for (std::int64_t t = whole ? -1 : T - 1; t >= 0; --t) {
    const Tensor m = saved_.mask.defined() ? at(saved_.mask, t) : Tensor();
    const Tensor dyt = dys.defined() ? at(dys, t) : Tensor();
    const Tensor gx = dgx.slice(t * B, (t + 1) * B), gh = dgh.slice(t * B, (t + 1) * B);
    if (gru_rb) {
      const Tensor saved = at(saved_.gates, t), h_prev = at(saved_.h, t);
      const Tensor grz = dg_rz.slice(t * B, (t + 1) * B), gn = dg_n.slice(t * B, (t + 1) * B);
      ops::gru_rb_back_n({saved, h_prev, dyt, dh, m, gx, grz, gn, dh_other});
      ops::gemm(gn, w_.w_hh.slice(2 * H, 3 * H), drh);  // dL/d(r * h_in) = dgates_n W_hn
      if (rec_mask.defined()) ops::binary(BinaryOp::Mul, h_prev, rec_mask, h_in);
      ops::gru_rb_back_r({saved, rec_mask.defined() ? h_in : h_prev, drh, m, gx, grz, dh_in});
      ops::gemm(grz, w_.w_hh.slice(0, 2 * H), dh_in, false, false, 1.0, 1.0);
      if (rec_mask.defined()) ops::binary(BinaryOp::Mul, dh_in, rec_mask, dh_in);
      add_into(dh_other, dh_in);
      std::swap(dh, dh_other);
      continue;
    }
    switch (o.cell) {
      case CellType::LSTM:  // dc is updated in place
        ops::lstm_step_backward({at(saved_.gates, t), at(saved_.c, t), at(saved_.c, t + 1), dyt, dh,
                                 dc, m, gx, dh_other, dc});
        break;
      case CellType::GRU:
        ops::gru_step_backward({at(saved_.gates, t), at(saved_.h, t), dyt, dh, m, gx, gh, dh_other});
        break;
      case CellType::SimpleRNN:
        ops::rnn_step_backward({at(saved_.h, t + 1), dyt, dh, m, gx, dh_other, o.activation});
        break;
    }
    // dh_prev += dgates_h W_hh: [B, G] x [G, H] (times the recurrent dropout mask).
    if (rec_mask.defined()) {
      ops::gemm(gh, w_.w_hh, dh_rec);
      ops::binary(BinaryOp::Mul, dh_rec, rec_mask, dh_rec);
      add_into(dh_other, dh_rec);
    } else {
      ops::gemm(gh, w_.w_hh, dh_other, false, false, 1.0, 1.0);
    }
    std::swap(dh, dh_other);
  }

  // Weight gradients over all steps at once.
  const Tensor xs = saved_.x.reshape({T * B, I});
  Tensor hs_prev = saved_.h.slice(0, T).reshape({T * B, H});
  if (rec_mask.defined())  // W_hh saw the dropped states
    hs_prev = ops::mul(saved_.h.slice(0, T), rec_mask).reshape({T * B, H});
  ops::gemm(dgx, xs, g_.w_ih, true, false, 1.0, 1.0);  // [G, T*B] x [T*B, I]
  if (gru_rb) {
    const Tensor rh_all = ops::extract_columns(saved_.gates.reshape({T * B, 4 * H}), 3 * H, H);
    ops::gemm(dg_rz, hs_prev, g_.w_hh.slice(0, 2 * H), true, false, 1.0, 1.0);
    ops::gemm(dg_n, rh_all, g_.w_hh.slice(2 * H, 3 * H), true, false, 1.0, 1.0);
  } else {
    ops::gemm(dgh, hs_prev, g_.w_hh, true, false, 1.0, 1.0);  // [G, T*B] x [T*B, H]
  }
  if (bias_sums) {
    add_into(g_.b_ih, db_x);
    add_into(g_.b_hh, db_h);
  } else if (o.use_bias && T * B > 0) {
    add_into(g_.b_ih, ops::sum(dgx, 0));
    if (gru_rb) {
      add_into(g_.b_hh.slice(0, 2 * H), ops::sum(dg_rz, 0));
      add_into(g_.b_hh.slice(2 * H, 3 * H), ops::sum(dg_n, 0));
    } else {
      add_into(g_.b_hh, ops::sum(dgh, 0));
    }
  }
  InputGrads out;
  if (input_grad) {
    const Tensor dxs = ops::matmul(dgx, w_.w_ih).reshape({T, B, I});  // processing order
    if (saved_.in_mask.defined()) ops::binary(BinaryOp::Mul, dxs, saved_.in_mask, dxs);
    out.dx = ops::transpose01(dxs, o.go_backwards, false);
  }
  out.d_initial_state.push_back(dh);
  if (o.cell == CellType::LSTM) out.d_initial_state.push_back(dc);
  return out;
}

namespace {
// Host copy of a weight as doubles, and back into `like`'s dtype on `device`.
std::vector<double> host_values(const Tensor& t) {
  if (t.dtype() == DType::f64) return t.to_vector<double>();
  const auto f = t.to_vector<float>();
  return {f.begin(), f.end()};
}
Tensor make(const std::vector<double>& v, const Shape& s, DType dt, Device dev) {
  if (dt == DType::f64) return Tensor::from_vector(v, s, dev);
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), s, dev);
}
// Keras gate block of PyTorch block g (an involution: GRU swaps r and z).
int keras_block(CellType cell, int g) { return cell == CellType::GRU && g < 2 ? 1 - g : g; }
}  // namespace

KerasWeights to_keras(CellType cell, const RecurrentWeights& w, bool gru_reset_after) {
  const int G = cell_gates(cell);
  const std::int64_t GH = w.w_ih.dim(0), H = GH / G, I = w.w_ih.dim(1);
  RECUR_CHECK(w.w_hh.shape() == (Shape{GH, H}) && GH % G == 0, Shape, "to_keras: weights of shape ",
              shape_str(w.w_ih.shape()), " and ", shape_str(w.w_hh.shape()), " are not a ",
              cell_name(cell), "'s");
  const DType dt = w.w_ih.dtype();
  const auto wih = host_values(w.w_ih), whh = host_values(w.w_hh);
  std::vector<double> kernel(std::size_t(I * GH)), rec(std::size_t(H * GH));
  for (int g = 0; g < G; ++g)
    for (std::int64_t j = 0; j < H; ++j) {
      const std::int64_t prow = g * H + j, kcol = keras_block(cell, g) * H + j;
      for (std::int64_t i = 0; i < I; ++i) kernel[std::size_t(i * GH + kcol)] = wih[std::size_t(prow * I + i)];
      for (std::int64_t i = 0; i < H; ++i) rec[std::size_t(i * GH + kcol)] = whh[std::size_t(prow * H + i)];
    }
  KerasWeights k;
  k.kernel = make(kernel, {I, GH}, dt, Device::cpu());
  k.recurrent_kernel = make(rec, {H, GH}, dt, Device::cpu());
  if (w.b_ih.defined()) {
    const auto bi = host_values(w.b_ih), bh = host_values(w.b_hh);
    const bool two_rows = cell == CellType::GRU && gru_reset_after;
    std::vector<double> bias(std::size_t(two_rows ? 2 * GH : GH));
    for (int g = 0; g < G; ++g)
      for (std::int64_t j = 0; j < H; ++j) {
        const std::size_t p = std::size_t(g * H + j), q = std::size_t(keras_block(cell, g) * H + j);
        if (two_rows) {
          bias[q] = bi[p];
          bias[std::size_t(GH) + q] = bh[p];
        } else {
          bias[q] = bi[p] + bh[p];
        }
      }
    k.bias = make(bias, two_rows ? Shape{2, GH} : Shape{GH}, dt, Device::cpu());
  }
  return k;
}

RecurrentWeights from_keras(CellType cell, const KerasWeights& k, Device device,
                            bool gru_reset_after) {
  const int G = cell_gates(cell);
  RECUR_CHECK(k.kernel.defined() && k.kernel.ndim() == 2 && k.recurrent_kernel.defined(), Shape,
              "from_keras: kernel must be [input, ", G, " * units]");
  const std::int64_t I = k.kernel.dim(0), GH = k.kernel.dim(1), H = GH / G;
  RECUR_CHECK(GH % G == 0 && k.recurrent_kernel.shape() == (Shape{H, GH}), Shape,
              "from_keras: a ", cell_name(cell), " needs kernel [I, ", G, "H] and recurrent_kernel [H, ",
              G, "H], got ", shape_str(k.kernel.shape()), " and ", shape_str(k.recurrent_kernel.shape()));
  const DType dt = k.kernel.dtype();
  const auto kernel = host_values(k.kernel), rec = host_values(k.recurrent_kernel);
  std::vector<double> wih(std::size_t(GH * I)), whh(std::size_t(GH * H));
  for (int g = 0; g < G; ++g)
    for (std::int64_t j = 0; j < H; ++j) {
      const std::int64_t prow = g * H + j, kcol = keras_block(cell, g) * H + j;
      for (std::int64_t i = 0; i < I; ++i) wih[std::size_t(prow * I + i)] = kernel[std::size_t(i * GH + kcol)];
      for (std::int64_t i = 0; i < H; ++i) whh[std::size_t(prow * H + i)] = rec[std::size_t(i * GH + kcol)];
    }
  RecurrentWeights w;
  w.w_ih = make(wih, {GH, I}, dt, device);
  w.w_hh = make(whh, {GH, H}, dt, device);
  if (k.bias.defined()) {
    const bool two_rows = cell == CellType::GRU && gru_reset_after;
    RECUR_CHECK(k.bias.shape() == (two_rows ? Shape{2, GH} : Shape{GH}), Shape, "from_keras: a ",
                cell_name(cell), " bias must be ", shape_str(two_rows ? Shape{2, GH} : Shape{GH}),
                cell == CellType::GRU ? (two_rows ? " (reset_after=True)" : " (reset_after=False)") : "",
                ", got ", shape_str(k.bias.shape()));
    const auto bias = host_values(k.bias);
    std::vector<double> bi(static_cast<std::size_t>(GH)), bh(static_cast<std::size_t>(GH), 0.0);
    for (int g = 0; g < G; ++g)
      for (std::int64_t j = 0; j < H; ++j) {
        const std::size_t p = std::size_t(g * H + j), q = std::size_t(keras_block(cell, g) * H + j);
        bi[p] = bias[q];
        if (two_rows) bh[p] = bias[std::size_t(GH) + q];
      }
    w.b_ih = make(bi, {GH}, dt, device);
    w.b_hh = make(bh, {GH}, dt, device);
  }
  return w;
}

Tensor lengths_to_mask(const std::vector<std::int64_t>& lengths, std::int64_t T, DType dtype,
                       Device device) {
  RECUR_CHECK(T >= 0, Value, "lengths_to_mask: T = ", T, " is negative");
  std::vector<double> m(lengths.size() * std::size_t(T), 0.0);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    RECUR_CHECK(lengths[b] >= 0 && lengths[b] <= T, Value, "lengths_to_mask: length ", lengths[b],
                " of sequence ", b, " is outside [0, ", T, "]");
    for (std::int64_t t = 0; t < lengths[b]; ++t) m[b * std::size_t(T) + std::size_t(t)] = 1.0;
  }
  const Shape shape{std::int64_t(lengths.size()), T};
  if (dtype == DType::f64) return Tensor::from_vector(m, shape, device);
  RECUR_CHECK(dtype == DType::f32, DType, "lengths_to_mask: mask dtype must be float32 or float64");
  return Tensor::from_vector(std::vector<float>(m.begin(), m.end()), shape, device);
}

}  // namespace recur

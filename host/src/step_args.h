// Turns validated step tensors into the kernels' pointer structs; shared by the
// CPU and CUDA backends so both read the tensors the same way.
#pragma once

#include "recur/host/backend.h"
#include "recur/kernels/rnn_sequence.h"

namespace recur::detail {

template <class T>
const T* opt_ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
T* opt_out(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
kernels::LstmStepArgs<T> lstm_args(const LstmStep& s) {
  kernels::LstmStepArgs<T> a;
  a.B = s.c_prev.dim(0);
  a.H = s.c_prev.dim(1);
  a.xproj = s.xproj.data<T>();
  a.hproj = s.hproj.data<T>();
  a.ld_x = a.ld_h = 4 * a.H;
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.c_prev = s.c_prev.data<T>();
  a.h_prev = opt_ptr<T>(s.h_prev);
  a.mask = opt_ptr<T>(s.mask);
  a.h = s.h.data<T>();
  a.c = s.c.data<T>();
  a.y = opt_out<T>(s.y);
  a.saved = opt_out<T>(s.saved);
  return a;
}

template <class T>
kernels::GruStepArgs<T> gru_args(const GruStep& s) {
  kernels::GruStepArgs<T> a;
  a.B = s.h_prev.dim(0);
  a.H = s.h_prev.dim(1);
  a.xproj = s.xproj.data<T>();
  a.hproj = s.hproj.data<T>();
  a.ld_x = a.ld_h = 3 * a.H;
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.h_prev = s.h_prev.data<T>();
  a.mask = opt_ptr<T>(s.mask);
  a.h = s.h.data<T>();
  a.y = opt_out<T>(s.y);
  a.saved = opt_out<T>(s.saved);
  return a;
}

template <class T>
kernels::RnnStepArgs<T> rnn_args(const RnnStep& s) {
  kernels::RnnStepArgs<T> a;
  a.B = s.h.dim(0);
  a.H = s.h.dim(1);
  a.xproj = s.xproj.data<T>();
  a.hproj = s.hproj.data<T>();
  a.ld_x = a.ld_h = a.H;
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.h_prev = opt_ptr<T>(s.h_prev);
  a.mask = opt_ptr<T>(s.mask);
  a.h = s.h.data<T>();
  a.y = opt_out<T>(s.y);
  return a;
}

template <class T>
kernels::LstmBackArgs<T> lstm_back_args(const LstmStepBackward& s) {
  kernels::LstmBackArgs<T> a;
  a.B = s.c.dim(0);
  a.H = s.c.dim(1);
  a.saved = s.saved.data<T>();
  a.c_prev = s.c_prev.data<T>();
  a.c = s.c.data<T>();
  a.dy = opt_ptr<T>(s.dy);
  a.dh_next = opt_ptr<T>(s.dh_next);
  a.dc_next = opt_ptr<T>(s.dc_next);
  a.mask = opt_ptr<T>(s.mask);
  a.dgates = s.dgates.data<T>();
  a.dh_prev = s.dh_prev.data<T>();
  a.dc_prev = s.dc_prev.data<T>();
  return a;
}

template <class T>
kernels::GruBackArgs<T> gru_back_args(const GruStepBackward& s) {
  kernels::GruBackArgs<T> a;
  a.B = s.h_prev.dim(0);
  a.H = s.h_prev.dim(1);
  a.saved = s.saved.data<T>();
  a.h_prev = s.h_prev.data<T>();
  a.dy = opt_ptr<T>(s.dy);
  a.dh_next = opt_ptr<T>(s.dh_next);
  a.mask = opt_ptr<T>(s.mask);
  a.dgates_x = s.dgates_x.data<T>();
  a.dgates_h = s.dgates_h.data<T>();
  a.dh_prev = s.dh_prev.data<T>();
  return a;
}

template <class T>
kernels::RnnBackArgs<T> rnn_back_args(const RnnStepBackward& s) {
  kernels::RnnBackArgs<T> a;
  a.B = s.h.dim(0);
  a.H = s.h.dim(1);
  a.h = s.h.data<T>();
  a.dy = opt_ptr<T>(s.dy);
  a.dh_next = opt_ptr<T>(s.dh_next);
  a.mask = opt_ptr<T>(s.mask);
  a.dgates = s.dgates.data<T>();
  a.dh_prev = s.dh_prev.data<T>();
  return a;
}

template <class T>
kernels::GruRbGatesArgs<T> gru_rb_gates_args(const GruResetBeforeGates& s) {
  kernels::GruRbGatesArgs<T> a;
  a.B = s.h_in.dim(0);
  a.H = s.h_in.dim(1);
  a.xproj = s.xproj.data<T>();
  a.hproj_rz = s.hproj_rz.data<T>();
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.h_in = s.h_in.data<T>();
  a.rh = s.rh.data<T>();
  a.saved = s.saved.data<T>();
  return a;
}

template <class T>
kernels::GruRbOutArgs<T> gru_rb_out_args(const GruResetBeforeOutput& s) {
  kernels::GruRbOutArgs<T> a;
  a.B = s.h_prev.dim(0);
  a.H = s.h_prev.dim(1);
  a.xproj = s.xproj.data<T>();
  a.hn = s.hn.data<T>();
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.h_prev = s.h_prev.data<T>();
  a.mask = opt_ptr<T>(s.mask);
  a.saved = s.saved.data<T>();
  a.h = s.h.data<T>();
  a.y = opt_out<T>(s.y);
  return a;
}

template <class T>
kernels::GruRbBackNArgs<T> gru_rb_back_n_args(const GruResetBeforeBackN& s) {
  kernels::GruRbBackNArgs<T> a;
  a.B = s.h_prev.dim(0);
  a.H = s.h_prev.dim(1);
  a.saved = s.saved.data<T>();
  a.h_prev = s.h_prev.data<T>();
  a.dy = opt_ptr<T>(s.dy);
  a.dh_next = opt_ptr<T>(s.dh_next);
  a.mask = opt_ptr<T>(s.mask);
  a.dgates_x = s.dgates_x.data<T>();
  a.dgates_rz = s.dgates_rz.data<T>();
  a.dgates_n = s.dgates_n.data<T>();
  a.dh_prev = s.dh_prev.data<T>();
  return a;
}

template <class T>
kernels::GruRbBackRArgs<T> gru_rb_back_r_args(const GruResetBeforeBackR& s) {
  kernels::GruRbBackRArgs<T> a;
  a.B = s.h_in.dim(0);
  a.H = s.h_in.dim(1);
  a.saved = s.saved.data<T>();
  a.h_in = s.h_in.data<T>();
  a.drh = s.drh.data<T>();
  a.mask = opt_ptr<T>(s.mask);
  a.dgates_x = s.dgates_x.data<T>();
  a.dgates_rz = s.dgates_rz.data<T>();
  a.dh_in = s.dh_in.data<T>();
  return a;
}

template <class T>
kernels::LossArgs<T> loss_args(const LossCall& c) {
  kernels::LossArgs<T> a;
  a.rows = c.rows;
  a.cols = c.cols;
  a.pred = c.pred.data<T>();
  a.target = opt_ptr<T>(c.target);
  a.labels = c.labels.defined() ? c.labels.data<std::int32_t>() : nullptr;
  a.weight = opt_ptr<T>(c.weight);
  a.weight_per_row = c.weight_per_row;
  a.delta = T(c.delta);
  a.grad = c.grad.defined() ? c.grad.data<T>() : nullptr;
  return a;
}

// The scalars of one optimizer step, cast to T; grad_sq_sum is left to the
// backend (host or device memory).
template <class T>
kernels::OptimizerArgs<T> optimizer_args(const OptimizerStep& s) {
  kernels::OptimizerArgs<T> a;
  a.n = s.param.numel();
  a.param = s.param.data<T>();
  a.grad = s.grad.data<T>();
  a.slot0 = s.slot0.defined() ? s.slot0.data<T>() : nullptr;
  a.slot1 = s.slot1.defined() ? s.slot1.data<T>() : nullptr;
  a.slot2 = s.slot2.defined() ? s.slot2.data<T>() : nullptr;
  a.lr = T(s.lr);
  a.momentum = T(s.momentum);
  a.nesterov = s.nesterov;
  a.rho = T(s.rho);
  a.centered = s.centered;
  a.beta1 = T(s.beta1);
  a.beta2 = T(s.beta2);
  a.alpha = T(s.alpha);
  a.epsilon = T(s.epsilon);
  a.weight_decay = T(s.weight_decay);
  a.grad_sq_sum = s.grad_sq_sum.defined() ? s.grad_sq_sum.data<double>() : nullptr;
  a.clipnorm = T(s.clipnorm);
  a.clipvalue = T(s.clipvalue);
  return a;
}

// Whole passes. The scratch buffers (hproj, h_work, dh_work, sum_work) are the
// backend's to provide.
// A whole pass's ys (or dys) in `layout` (backend.h's SeqLayout) as the
// kernels' base pointer and strides: step t's row b at base[t step + b row].
template <class T>
void seq_strides(SeqLayout layout, std::int64_t steps, std::int64_t B, std::int64_t H, T*& base,
                 std::int64_t& step, std::int64_t& row) {
  switch (layout) {
    case SeqLayout::TimeMajor: step = B * H, row = H; return;
    case SeqLayout::BatchMajor: step = H, row = steps * H; return;
    case SeqLayout::BatchMajorReversed:
      if (base && steps > 0) base += (steps - 1) * H;
      step = -H, row = steps * H;
      return;
  }
}

template <class T>
kernels::GruSequenceArgs<T> gru_sequence_args(const GruSequence& s) {
  kernels::GruSequenceArgs<T> a;
  a.T = s.x.defined() ? s.x.dim(1) : s.xproj.dim(0);
  a.B = s.x.defined() ? s.x.dim(0) : s.xproj.dim(1);
  a.H = s.w_hh.dim(1);
  a.xproj = opt_ptr<T>(s.xproj);
  a.x = opt_ptr<T>(s.x);
  a.w_ih = opt_ptr<T>(s.w_ih);
  a.I = s.x.defined() ? s.x.dim(2) : 0;
  a.x_reversed = s.x_reversed;
  a.w_hh = s.w_hh.data<T>();
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.mask = opt_ptr<T>(s.mask);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  a.hs = s.hs.data<T>();
  a.all_states = s.saved.defined();
  a.ys = opt_out<T>(s.ys);
  seq_strides(s.ys_layout, a.T, a.B, a.H, a.ys, a.ys_step, a.ys_row);
  a.saved = opt_out<T>(s.saved);
  return a;
}

template <class T>
kernels::LstmSequenceArgs<T> lstm_sequence_args(const LstmSequence& s) {
  kernels::LstmSequenceArgs<T> a;
  a.T = s.x.defined() ? s.x.dim(1) : s.xproj.dim(0);
  a.B = s.x.defined() ? s.x.dim(0) : s.xproj.dim(1);
  a.H = s.w_hh.dim(1);
  a.xproj = opt_ptr<T>(s.xproj);
  a.x = opt_ptr<T>(s.x);
  a.w_ih = opt_ptr<T>(s.w_ih);
  a.I = s.x.defined() ? s.x.dim(2) : 0;
  a.x_reversed = s.x_reversed;
  a.w_hh = s.w_hh.data<T>();
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.mask = opt_ptr<T>(s.mask);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  a.hs = s.hs.data<T>();
  a.cs = s.cs.data<T>();
  a.all_states = s.saved.defined();
  a.ys = opt_out<T>(s.ys);
  seq_strides(s.ys_layout, a.T, a.B, a.H, a.ys, a.ys_step, a.ys_row);
  a.saved = opt_out<T>(s.saved);
  return a;
}

template <class T>
kernels::GruSequenceBackArgs<T> gru_sequence_back_args(const GruSequenceBackward& s) {
  kernels::GruSequenceBackArgs<T> a;
  a.T = s.saved.dim(0);
  a.B = s.saved.dim(1);
  a.H = s.w_hh.dim(1);
  a.saved = s.saved.data<T>();
  a.hs = s.hs.data<T>();
  a.dys = opt_ptr<T>(s.dys);
  seq_strides(s.dys_layout, a.T, a.B, a.H, a.dys, a.dys_step, a.dys_row);
  a.mask = opt_ptr<T>(s.mask);
  a.w_hh = s.w_hh.data<T>();
  a.dh = s.dh.data<T>();
  a.dgates_x = s.dgates_x.data<T>();
  a.dgates_h = s.dgates_h.data<T>();
  a.db_x = opt_out<T>(s.db_ih);
  a.db_h = opt_out<T>(s.db_hh);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  return a;
}

template <class T>
kernels::LstmSequenceBackArgs<T> lstm_sequence_back_args(const LstmSequenceBackward& s) {
  kernels::LstmSequenceBackArgs<T> a;
  a.T = s.saved.dim(0);
  a.B = s.saved.dim(1);
  a.H = s.w_hh.dim(1);
  a.saved = s.saved.data<T>();
  a.cs = s.cs.data<T>();
  a.dys = opt_ptr<T>(s.dys);
  seq_strides(s.dys_layout, a.T, a.B, a.H, a.dys, a.dys_step, a.dys_row);
  a.mask = opt_ptr<T>(s.mask);
  a.w_hh = s.w_hh.data<T>();
  a.dh = s.dh.data<T>();
  a.dc = s.dc.data<T>();
  a.dgates = s.dgates.data<T>();
  a.db = opt_out<T>(s.db);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  return a;
}

template <class T>
kernels::RnnSequenceArgs<T> rnn_sequence_args(const RnnSequence& s) {
  kernels::RnnSequenceArgs<T> a;
  a.T = s.x.defined() ? s.x.dim(1) : s.xproj.dim(0);
  a.B = s.x.defined() ? s.x.dim(0) : s.xproj.dim(1);
  a.H = s.w_hh.dim(1);
  a.activation = s.activation;
  a.xproj = opt_ptr<T>(s.xproj);
  a.x = opt_ptr<T>(s.x);
  a.w_ih = opt_ptr<T>(s.w_ih);
  a.I = s.x.defined() ? s.x.dim(2) : 0;
  a.x_reversed = s.x_reversed;
  a.w_hh = s.w_hh.data<T>();
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.mask = opt_ptr<T>(s.mask);
  a.hs = s.hs.data<T>();
  a.all_states = s.all_states;
  a.ys = opt_out<T>(s.ys);
  seq_strides(s.ys_layout, a.T, a.B, a.H, a.ys, a.ys_step, a.ys_row);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  return a;
}

template <class T>
kernels::RnnSequenceBackArgs<T> rnn_sequence_back_args(const RnnSequenceBackward& s) {
  kernels::RnnSequenceBackArgs<T> a;
  a.T = s.dgates.dim(0);
  a.B = s.dgates.dim(1);
  a.H = s.w_hh.dim(1);
  a.activation = s.activation;
  a.hs = s.hs.data<T>();
  a.dys = opt_ptr<T>(s.dys);
  seq_strides(s.dys_layout, a.T, a.B, a.H, a.dys, a.dys_step, a.dys_row);
  a.mask = opt_ptr<T>(s.mask);
  a.w_hh = s.w_hh.data<T>();
  a.dh = s.dh.data<T>();
  a.dgates = s.dgates.data<T>();
  a.db = opt_out<T>(s.db);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  return a;
}

template <class T>
kernels::GruRbSequenceArgs<T> gru_rb_sequence_args(const GruRbSequence& s) {
  kernels::GruRbSequenceArgs<T> a;
  a.T = s.xproj.dim(0);
  a.B = s.xproj.dim(1);
  a.H = s.w_hh.dim(1);
  a.xproj = s.xproj.data<T>();
  a.w_hh = s.w_hh.data<T>();
  a.b_ih = opt_ptr<T>(s.b_ih);
  a.b_hh = opt_ptr<T>(s.b_hh);
  a.mask = opt_ptr<T>(s.mask);
  a.hs = s.hs.data<T>();
  a.all_states = s.saved.defined();
  a.ys = opt_out<T>(s.ys);
  seq_strides(s.ys_layout, a.T, a.B, a.H, a.ys, a.ys_step, a.ys_row);
  a.saved = opt_out<T>(s.saved);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  return a;
}

template <class T>
kernels::GruRbSequenceBackArgs<T> gru_rb_sequence_back_args(const GruRbSequenceBackward& s) {
  kernels::GruRbSequenceBackArgs<T> a;
  a.T = s.saved.dim(0);
  a.B = s.saved.dim(1);
  a.H = s.w_hh.dim(1);
  a.saved = s.saved.data<T>();
  a.hs = s.hs.data<T>();
  a.dys = opt_ptr<T>(s.dys);
  seq_strides(s.dys_layout, a.T, a.B, a.H, a.dys, a.dys_step, a.dys_row);
  a.mask = opt_ptr<T>(s.mask);
  a.w_hh = s.w_hh.data<T>();
  a.dh = s.dh.data<T>();
  a.dgates_x = s.dgates_x.data<T>();
  a.dgates_rz = s.dgates_rz.data<T>();
  a.dgates_n = s.dgates_n.data<T>();
  a.db_x = opt_out<T>(s.db_ih);
  a.db_h = opt_out<T>(s.db_hh);
  a.rec_mask = opt_ptr<T>(s.rec_mask);
  return a;
}

}  // namespace recur::detail

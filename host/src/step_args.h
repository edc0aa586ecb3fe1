// Turns validated step tensors into the kernels' pointer structs; shared by the
// CPU and CUDA backends so both read the tensors the same way.
#pragma once

#include "recur/host/backend.h"

namespace recur::detail {

template <class T>
const T* opt_ptr(const Tensor& t) {
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
  a.h = s.h.data<T>();
  a.c = s.c.data<T>();
  a.saved = s.saved.defined() ? s.saved.data<T>() : nullptr;
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
  a.h = s.h.data<T>();
  a.saved = s.saved.defined() ? s.saved.data<T>() : nullptr;
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
  a.h = s.h.data<T>();
  return a;
}

}  // namespace recur::detail

// recur::ops: argument checking, then dispatch to the device's backend.
// Every message names the op, the argument and what was expected.
#include "recur/host/ops.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <initializer_list>
#include <string>

namespace recur::ops {
namespace {

struct Arg {
  const char* name;
  const Tensor& t;
};

void require_defined(const char* op, std::initializer_list<Arg> args) {
  for (const Arg& a : args)
    RECUR_CHECK(a.t.defined(), Value, op, ": '", a.name, "' is an undefined tensor");
}

// All defined tensors among args share the first one's device and dtype.
void require_same_place(const char* op, std::initializer_list<Arg> args) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    if (!a.t.defined()) continue;
    if (!first) {
      first = &a;
      continue;
    }
    RECUR_CHECK(a.t.device() == first->t.device(), Device, op, ": '", first->name, "' is on ",
                first->t.device().str(), " but '", a.name, "' is on ", a.t.device().str(),
                "; move tensors explicitly with Tensor::to()");
    RECUR_CHECK(a.t.dtype() == first->t.dtype(), DType, op, ": '", first->name, "' is ",
                dtype_name(first->t.dtype()), " but '", a.name, "' is ", dtype_name(a.t.dtype()));
  }
}

void require_shape(const char* op, const Arg& a, const Shape& want) {
  RECUR_CHECK(a.t.shape() == want, Shape, op, ": '", a.name, "' has shape ",
              shape_str(a.t.shape()), ", expected ", shape_str(want));
}

void require_optional_shape(const char* op, const Arg& a, const Shape& want) {
  if (a.t.defined()) require_shape(op, a, want);
}

bool overlap(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* pa = static_cast<const char*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

bool same_memory(const Tensor& a, const Tensor& b) {
  return a.raw_data() == b.raw_data() && a.nbytes() == b.nbytes();
}

// An output may not overlap an input unless `exact_ok` and they are the very
// same memory (in-place pointwise update).
void require_no_alias(const char* op, const Arg& out, const Arg& in, bool exact_ok = false) {
  if (!overlap(out.t, in.t)) return;
  RECUR_CHECK(exact_ok && same_memory(out.t, in.t), Value, op, ": output '", out.name,
              "' overlaps input '", in.name, "'");
}

Backend& dispatch_backend(const char* op, const Tensor& any, OpQuery q) {
  Backend& b = backend(any.device());
  Support s = b.supports(q);
  RECUR_CHECK(s.ok, Unsupported, op, " on ", any.device().str(), ": ", s.reason);
  return b;
}

void require_int_dim(const char* op, const char* what, std::int64_t v) {
  RECUR_CHECK(v <= INT_MAX, Value, op, ": ", what, " = ", v,
              " exceeds the 2^31-1 a BLAS call can take");
}

}  // namespace

void fill(const Tensor& y, double value) {
  require_defined("fill", {{"y", y}});
  if (y.numel() == 0) return;
  dispatch_backend("fill", y, {OpKind::Fill, y.dtype()}).fill(y, value);
}

void gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a, bool trans_b,
          double alpha, double beta) {
  const char* op = "gemm";
  require_defined(op, {{"a", a}, {"b", b}, {"c", c}});
  require_same_place(op, {{"a", a}, {"b", b}, {"c", c}});
  for (const Arg& x : {Arg{"a", a}, Arg{"b", b}, Arg{"c", c}})
    RECUR_CHECK(x.t.ndim() == 2 || x.t.ndim() == 3, Shape, op, ": '", x.name, "' has shape ",
                shape_str(x.t.shape()), "; gemm takes 2-D or batched 3-D tensors");
  const std::int64_t m = trans_a ? a.dim(-1) : a.dim(-2);
  const std::int64_t k = trans_a ? a.dim(-2) : a.dim(-1);
  const std::int64_t kb = trans_b ? b.dim(-1) : b.dim(-2);
  const std::int64_t n = trans_b ? b.dim(-2) : b.dim(-1);
  RECUR_CHECK(k == kb, Shape, op, ": inner dimensions differ: op(a) is ", m, "x", k,
              " (a ", shape_str(a.shape()), trans_a ? " transposed" : "", ") but op(b) is ", kb,
              "x", n, " (b ", shape_str(b.shape()), trans_b ? " transposed" : "", ")");
  RECUR_CHECK(c.dim(-2) == m && c.dim(-1) == n, Shape, op, ": 'c' has shape ",
              shape_str(c.shape()), " but op(a) op(b) is ", m, "x", n);
  const std::int64_t batch = c.ndim() == 3 ? c.dim(0) : 1;
  for (const Arg& x : {Arg{"a", a}, Arg{"b", b}}) {
    RECUR_CHECK(x.t.ndim() == 2 || c.ndim() == 3, Shape, op, ": '", x.name,
                "' is batched but 'c' is not");
    RECUR_CHECK(x.t.ndim() == 2 || x.t.dim(0) == batch, Shape, op, ": '", x.name, "' has batch ",
                x.t.dim(0), " but 'c' has batch ", batch);
  }
  require_no_alias(op, {"c", c}, {"a", a});
  require_no_alias(op, {"c", c}, {"b", b});
  require_int_dim(op, "M", m);
  require_int_dim(op, "N", n);
  require_int_dim(op, "K", k);
  require_int_dim(op, "batch", batch);
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {
    // No products: c = beta * c. BLAS libraries disagree on this corner.
    if (beta == 0.0) return fill(c, 0.0);
    Tensor scale = Tensor::full({c.numel()}, beta, c.dtype(), c.device());
    Tensor flat = c.reshape({c.numel()});
    return binary(BinaryOp::Mul, flat, scale, flat);
  }
  GemmCall g;
  g.a = a;
  g.b = b;
  g.c = c;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.alpha = alpha;
  g.beta = beta;
  g.m = m;
  g.n = n;
  g.k = k;
  g.batch = batch;
  g.lda = a.dim(-1);
  g.ldb = b.dim(-1);
  g.ldc = n;
  g.stride_a = a.ndim() == 3 ? m * k : 0;
  g.stride_b = b.ndim() == 3 ? k * n : 0;
  g.stride_c = m * n;
  dispatch_backend(op, c, {OpKind::Gemm, c.dtype(), batch, 0}).gemm(g);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  require_defined("matmul", {{"a", a}, {"b", b}});
  RECUR_CHECK(a.ndim() >= 2 && b.ndim() >= 2, Shape, "matmul: needs 2-D or 3-D operands, got ",
              shape_str(a.shape()), " and ", shape_str(b.shape()));
  const std::int64_t m = trans_a ? a.dim(-1) : a.dim(-2);
  const std::int64_t n = trans_b ? b.dim(-2) : b.dim(-1);
  Shape out{m, n};
  if (a.ndim() == 3 || b.ndim() == 3) out.insert(out.begin(), a.ndim() == 3 ? a.dim(0) : b.dim(0));
  Tensor c = Tensor::empty(out, a.dtype(), a.device());
  gemm(a, b, c, trans_a, trans_b);
  return c;
}

void binary(BinaryOp bop, const Tensor& a, const Tensor& b, const Tensor& y) {
  const char* op = op_name(bop);
  require_defined(op, {{"a", a}, {"b", b}, {"y", y}});
  require_same_place(op, {{"a", a}, {"b", b}, {"y", y}});
  require_shape(op, {"y", y}, a.shape());
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  const bool suffix = bs.size() <= as.size() &&
                      std::equal(bs.begin(), bs.end(), as.end() - std::ptrdiff_t(bs.size()));
  RECUR_CHECK(suffix, Shape, op, ": 'b' has shape ", shape_str(bs), ", which is neither 'a''s shape ",
              shape_str(as), " nor a suffix of it");
  require_no_alias(op, {"y", y}, {"a", a}, true);
  require_no_alias(op, {"y", y}, {"b", b}, b.numel() == a.numel());
  if (a.numel() == 0) return;
  dispatch_backend(op, a, {OpKind::Binary, a.dtype()}).binary(bop, a, b, y);
}

Tensor add(const Tensor& a, const Tensor& b) {
  require_defined("add", {{"a", a}});
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  binary(BinaryOp::Add, a, b, y);
  return y;
}
Tensor sub(const Tensor& a, const Tensor& b) {
  require_defined("sub", {{"a", a}});
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  binary(BinaryOp::Sub, a, b, y);
  return y;
}
Tensor mul(const Tensor& a, const Tensor& b) {
  require_defined("mul", {{"a", a}});
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  binary(BinaryOp::Mul, a, b, y);
  return y;
}

void unary(UnaryOp uop, const Tensor& x, const Tensor& y) {
  const char* op = op_name(uop);
  require_defined(op, {{"x", x}, {"y", y}});
  require_same_place(op, {{"x", x}, {"y", y}});
  require_shape(op, {"y", y}, x.shape());
  require_no_alias(op, {"y", y}, {"x", x}, true);
  if (x.numel() == 0) return;
  dispatch_backend(op, x, {OpKind::Unary, x.dtype()}).unary(uop, x, y);
}

namespace {
Tensor unary_new(UnaryOp op, const Tensor& x) {
  require_defined(op_name(op), {{"x", x}});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  unary(op, x, y);
  return y;
}

Tensor reduce_view(ReduceOp rop, const Tensor& x, std::int64_t outer, std::int64_t n,
                   std::int64_t inner, Shape out_shape) {
  const char* op = op_name(rop);
  RECUR_CHECK(n > 0 || rop == ReduceOp::Sum, Value, op, ": reducing an empty dimension of ",
              shape_str(x.shape()), " has no value");
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  if (y.numel() == 0) return y;
  dispatch_backend(op, x, {OpKind::Reduce, x.dtype()}).reduce(rop, x, outer, n, inner, y);
  return y;
}
}  // namespace

Tensor sigmoid(const Tensor& x) { return unary_new(UnaryOp::Sigmoid, x); }
Tensor tanh(const Tensor& x) { return unary_new(UnaryOp::Tanh, x); }
Tensor relu(const Tensor& x) { return unary_new(UnaryOp::Relu, x); }

Tensor reduce(ReduceOp rop, const Tensor& x, int axis, bool keepdim) {
  const char* op = op_name(rop);
  require_defined(op, {{"x", x}});
  const int nd = x.ndim();
  RECUR_CHECK(nd >= 1 && axis >= -nd && axis < nd, Shape, op, ": axis ", axis,
              " out of range for shape ", shape_str(x.shape()));
  if (axis < 0) axis += nd;
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= x.dim(i);
  for (int i = axis + 1; i < nd; ++i) inner *= x.dim(i);
  Shape out = x.shape();
  if (keepdim)
    out[axis] = 1;
  else
    out.erase(out.begin() + axis);
  return reduce_view(rop, x, outer, x.dim(axis), inner, out);
}

Tensor reduce_all(ReduceOp rop, const Tensor& x) {
  require_defined(op_name(rop), {{"x", x}});
  return reduce_view(rop, x, 1, x.numel(), 1, {1});
}

namespace {
// The optional per-row mask of a step: [B], and the previous state it needs.
void check_step_mask(const char* op, const Tensor& mask, const Tensor& h_prev, std::int64_t B,
                     std::int64_t H) {
  if (!mask.defined()) return;
  require_shape(op, {"mask", mask}, {B});
  RECUR_CHECK(h_prev.defined(), Value, op, ": a mask needs 'h_prev' (padded rows keep it)");
}

// Every output must stay clear of every input, except the listed exact
// in-place pairs (each element is read before the same thread writes it).
void check_outputs(const char* op, std::initializer_list<Arg> outs, std::initializer_list<Arg> ins,
                   std::initializer_list<std::pair<const char*, const char*>> in_place = {}) {
  for (const Arg& o : outs) {
    for (const Arg& i : ins) {
      bool ok = false;
      for (const auto& [on, in] : in_place)
        ok = ok || (std::string(on) == o.name && std::string(in) == i.name);
      require_no_alias(op, o, i, ok);
    }
    for (const Arg& o2 : outs)
      if (&o != &o2 && o.t.defined() && o2.t.defined())
        RECUR_CHECK(!overlap(o.t, o2.t), Value, op, ": outputs '", o.name, "' and '", o2.name,
                    "' overlap");
  }
}
}  // namespace

void copy_columns(const Tensor& src, const Tensor& dst, std::int64_t offset) {
  const char* op = "copy_columns";
  require_defined(op, {{"src", src}, {"dst", dst}});
  require_same_place(op, {{"src", src}, {"dst", dst}});
  RECUR_CHECK(src.ndim() >= 1 && dst.ndim() >= 1, Shape, op, ": needs at least 1-D tensors");
  const std::int64_t w = src.dim(-1), W = dst.dim(-1);
  const std::int64_t rows = W ? dst.numel() / W : 0;
  RECUR_CHECK(offset >= 0 && offset + w <= W, Shape, op, ": columns [", offset, ", ", offset + w,
              ") do not fit in ", W);
  RECUR_CHECK(src.numel() == rows * w, Shape, op, ": 'src' ", shape_str(src.shape()), " has ",
              w ? src.numel() / w : 0, " rows, 'dst' ", shape_str(dst.shape()), " has ", rows);
  require_no_alias(op, {"dst", dst}, {"src", src});
  if (rows == 0 || w == 0) return;
  const std::size_t es = dtype_size(dst.dtype());
  dispatch_backend(op, dst, {OpKind::Copy, dst.dtype()})
      .copy2d(static_cast<char*>(dst.raw_data()) + offset * es, W * es, src.raw_data(), w * es,
              w * es, std::size_t(rows));
}

Tensor extract_columns(const Tensor& src, std::int64_t offset, std::int64_t width) {
  const char* op = "extract_columns";
  require_defined(op, {{"src", src}});
  RECUR_CHECK(src.ndim() >= 1, Shape, op, ": needs at least a 1-D tensor");
  const std::int64_t W = src.dim(-1);
  RECUR_CHECK(offset >= 0 && width >= 0 && offset + width <= W, Shape, op, ": columns [", offset,
              ", ", offset + width, ") do not fit in ", W);
  Shape out = src.shape();
  out.back() = width;
  Tensor y = Tensor::empty(out, src.dtype(), src.device());
  const std::int64_t rows = W ? src.numel() / W : 0;
  if (rows == 0 || width == 0) return y;
  const std::size_t es = dtype_size(src.dtype());
  dispatch_backend(op, src, {OpKind::Copy, src.dtype()})
      .copy2d(y.raw_data(), width * es, static_cast<const char*>(src.raw_data()) + offset * es,
              W * es, width * es, std::size_t(rows));
  return y;
}

Tensor transpose01(const Tensor& x, bool reverse0, bool reverse1) {
  const char* op = "transpose01";
  require_defined(op, {{"x", x}});
  RECUR_CHECK(x.ndim() >= 2, Shape, op, ": needs at least 2 dimensions, got ", shape_str(x.shape()));
  Shape out = x.shape();
  std::swap(out[0], out[1]);
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  if (x.numel() == 0) return y;
  const Tensor x3 = x.reshape({x.dim(0), x.dim(1), -1});
  dispatch_backend(op, x, {OpKind::Transpose01, x.dtype()})
      .transpose01(x3, reverse0, reverse1, y.reshape({out[0], out[1], -1}));
  return y;
}

void lstm_step(const LstmStep& s) {
  const char* op = "lstm_step";
  require_defined(op, {{"xproj", s.xproj}, {"hproj", s.hproj}, {"c_prev", s.c_prev}, {"h", s.h},
                       {"c", s.c}});
  require_same_place(op, {{"xproj", s.xproj}, {"hproj", s.hproj}, {"b_ih", s.b_ih},
                          {"b_hh", s.b_hh}, {"c_prev", s.c_prev}, {"h_prev", s.h_prev},
                          {"mask", s.mask}, {"h", s.h}, {"c", s.c}, {"y", s.y}, {"saved", s.saved}});
  RECUR_CHECK(s.c_prev.ndim() == 2, Shape, op, ": 'c_prev' must be [B, H], got ",
              shape_str(s.c_prev.shape()));
  const std::int64_t B = s.c_prev.dim(0), H = s.c_prev.dim(1);
  require_shape(op, {"xproj", s.xproj}, {B, 4 * H});
  require_shape(op, {"hproj", s.hproj}, {B, 4 * H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {4 * H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {4 * H});
  require_optional_shape(op, {"h_prev", s.h_prev}, {B, H});
  require_shape(op, {"h", s.h}, {B, H});
  require_shape(op, {"c", s.c}, {B, H});
  require_optional_shape(op, {"y", s.y}, {B, H});
  require_optional_shape(op, {"saved", s.saved}, {B, 4 * H});
  check_step_mask(op, s.mask, s.h_prev, B, H);
  check_outputs(op, {{"h", s.h}, {"c", s.c}, {"y", s.y}, {"saved", s.saved}},
                {{"xproj", s.xproj}, {"hproj", s.hproj}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh},
                 {"c_prev", s.c_prev}, {"h_prev", s.h_prev}, {"mask", s.mask}},
                {{"c", "c_prev"}, {"h", "h_prev"}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h, {OpKind::LstmStep, s.h.dtype(), B, H}).lstm_step(s);
}

void gru_step(const GruStep& s) {
  const char* op = "gru_step";
  require_defined(op, {{"xproj", s.xproj}, {"hproj", s.hproj}, {"h_prev", s.h_prev}, {"h", s.h}});
  require_same_place(op, {{"xproj", s.xproj}, {"hproj", s.hproj}, {"b_ih", s.b_ih},
                          {"b_hh", s.b_hh}, {"h_prev", s.h_prev}, {"mask", s.mask}, {"h", s.h},
                          {"y", s.y}, {"saved", s.saved}});
  RECUR_CHECK(s.h_prev.ndim() == 2, Shape, op, ": 'h_prev' must be [B, H], got ",
              shape_str(s.h_prev.shape()));
  const std::int64_t B = s.h_prev.dim(0), H = s.h_prev.dim(1);
  require_shape(op, {"xproj", s.xproj}, {B, 3 * H});
  require_shape(op, {"hproj", s.hproj}, {B, 3 * H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {3 * H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {3 * H});
  require_shape(op, {"h", s.h}, {B, H});
  require_optional_shape(op, {"y", s.y}, {B, H});
  require_optional_shape(op, {"saved", s.saved}, {B, 4 * H});
  check_step_mask(op, s.mask, s.h_prev, B, H);
  check_outputs(op, {{"h", s.h}, {"y", s.y}, {"saved", s.saved}},
                {{"xproj", s.xproj}, {"hproj", s.hproj}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh},
                 {"h_prev", s.h_prev}, {"mask", s.mask}},
                {{"h", "h_prev"}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h, {OpKind::GruStep, s.h.dtype(), B, H}).gru_step(s);
}

void rnn_step(const RnnStep& s) {
  const char* op = "rnn_step";
  require_defined(op, {{"xproj", s.xproj}, {"hproj", s.hproj}, {"h", s.h}});
  require_same_place(op, {{"xproj", s.xproj}, {"hproj", s.hproj}, {"b_ih", s.b_ih},
                          {"b_hh", s.b_hh}, {"h_prev", s.h_prev}, {"mask", s.mask}, {"h", s.h},
                          {"y", s.y}});
  RECUR_CHECK(s.h.ndim() == 2, Shape, op, ": 'h' must be [B, H], got ", shape_str(s.h.shape()));
  const std::int64_t B = s.h.dim(0), H = s.h.dim(1);
  require_shape(op, {"xproj", s.xproj}, {B, H});
  require_shape(op, {"hproj", s.hproj}, {B, H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {H});
  require_optional_shape(op, {"h_prev", s.h_prev}, {B, H});
  require_optional_shape(op, {"y", s.y}, {B, H});
  check_step_mask(op, s.mask, s.h_prev, B, H);
  // Each element reads only its own xproj/hproj/h_prev entry, so h may overwrite them.
  check_outputs(op, {{"h", s.h}, {"y", s.y}},
                {{"xproj", s.xproj}, {"hproj", s.hproj}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh},
                 {"h_prev", s.h_prev}, {"mask", s.mask}},
                {{"h", "xproj"}, {"h", "hproj"}, {"h", "h_prev"}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h, {OpKind::RnnStep, s.h.dtype(), B, H}).rnn_step(s);
}

void lstm_step_backward(const LstmStepBackward& s) {
  const char* op = "lstm_step_backward";
  require_defined(op, {{"saved", s.saved}, {"c_prev", s.c_prev}, {"c", s.c}, {"dgates", s.dgates},
                       {"dh_prev", s.dh_prev}, {"dc_prev", s.dc_prev}});
  require_same_place(op, {{"saved", s.saved}, {"c_prev", s.c_prev}, {"c", s.c}, {"dy", s.dy},
                          {"dh_next", s.dh_next}, {"dc_next", s.dc_next}, {"mask", s.mask},
                          {"dgates", s.dgates}, {"dh_prev", s.dh_prev}, {"dc_prev", s.dc_prev}});
  RECUR_CHECK(s.c.ndim() == 2, Shape, op, ": 'c' must be [B, H], got ", shape_str(s.c.shape()));
  const std::int64_t B = s.c.dim(0), H = s.c.dim(1);
  require_shape(op, {"saved", s.saved}, {B, 4 * H});
  require_shape(op, {"c_prev", s.c_prev}, {B, H});
  for (const Arg& a : {Arg{"dy", s.dy}, Arg{"dh_next", s.dh_next}, Arg{"dc_next", s.dc_next}})
    require_optional_shape(op, a, {B, H});
  require_optional_shape(op, {"mask", s.mask}, {B});
  require_shape(op, {"dgates", s.dgates}, {B, 4 * H});
  require_shape(op, {"dh_prev", s.dh_prev}, {B, H});
  require_shape(op, {"dc_prev", s.dc_prev}, {B, H});
  check_outputs(op, {{"dgates", s.dgates}, {"dh_prev", s.dh_prev}, {"dc_prev", s.dc_prev}},
                {{"saved", s.saved}, {"c_prev", s.c_prev}, {"c", s.c}, {"dy", s.dy},
                 {"dh_next", s.dh_next}, {"dc_next", s.dc_next}, {"mask", s.mask}},
                {{"dh_prev", "dh_next"}, {"dc_prev", "dc_next"}});
  if (B * H == 0) return;
  dispatch_backend(op, s.c, {OpKind::LstmStepBackward, s.c.dtype(), B, H}).lstm_step_backward(s);
}

void gru_step_backward(const GruStepBackward& s) {
  const char* op = "gru_step_backward";
  require_defined(op, {{"saved", s.saved}, {"h_prev", s.h_prev}, {"dgates_x", s.dgates_x},
                       {"dgates_h", s.dgates_h}, {"dh_prev", s.dh_prev}});
  require_same_place(op, {{"saved", s.saved}, {"h_prev", s.h_prev}, {"dy", s.dy},
                          {"dh_next", s.dh_next}, {"mask", s.mask}, {"dgates_x", s.dgates_x},
                          {"dgates_h", s.dgates_h}, {"dh_prev", s.dh_prev}});
  RECUR_CHECK(s.h_prev.ndim() == 2, Shape, op, ": 'h_prev' must be [B, H], got ",
              shape_str(s.h_prev.shape()));
  const std::int64_t B = s.h_prev.dim(0), H = s.h_prev.dim(1);
  require_shape(op, {"saved", s.saved}, {B, 4 * H});
  require_optional_shape(op, {"dy", s.dy}, {B, H});
  require_optional_shape(op, {"dh_next", s.dh_next}, {B, H});
  require_optional_shape(op, {"mask", s.mask}, {B});
  require_shape(op, {"dgates_x", s.dgates_x}, {B, 3 * H});
  require_shape(op, {"dgates_h", s.dgates_h}, {B, 3 * H});
  require_shape(op, {"dh_prev", s.dh_prev}, {B, H});
  check_outputs(op, {{"dgates_x", s.dgates_x}, {"dgates_h", s.dgates_h}, {"dh_prev", s.dh_prev}},
                {{"saved", s.saved}, {"h_prev", s.h_prev}, {"dy", s.dy}, {"dh_next", s.dh_next},
                 {"mask", s.mask}},
                {{"dh_prev", "dh_next"}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h_prev, {OpKind::GruStepBackward, s.h_prev.dtype(), B, H}).gru_step_backward(s);
}

namespace {
// Shapes shared by the whole-pass ops: xproj or saved [T, B, *] gives T and B,
// w_hh [G*H, H] gives H.
struct SeqDims {
  std::int64_t T, B, H;
};
SeqDims seq_dims(const char* op, const char* name, const Tensor& steps, const Tensor& w_hh, int G) {
  RECUR_CHECK(steps.ndim() == 3, Shape, op, ": '", name, "' must be [T, B, ...], got ",
              shape_str(steps.shape()));
  RECUR_CHECK(w_hh.ndim() == 2 && w_hh.dim(0) == G * w_hh.dim(1), Shape, op,
              ": 'w_hh' must be [", G, "H, H], got ", shape_str(w_hh.shape()));
  return {steps.dim(0), steps.dim(1), w_hh.dim(1)};
}
// The forward passes' input: xproj [T, B, G H], or (CPU) the input itself,
// x [B, T, I], with w_ih [G H, I]; exactly one of the two.
SeqDims seq_input_dims(const char* op, const Tensor& xproj, const Tensor& x, const Tensor& w_ih,
                       const Tensor& w_hh, int G) {
  RECUR_CHECK(xproj.defined() != x.defined(), Value, op,
              ": give one of 'xproj' and 'x' (the input, with 'w_ih'), not ",
              xproj.defined() ? "both" : "neither");
  if (xproj.defined()) {
    const SeqDims d = seq_dims(op, "xproj", xproj, w_hh, G);
    require_shape(op, {"xproj", xproj}, {d.T, d.B, G * d.H});
    return d;
  }
  RECUR_CHECK(w_ih.defined(), Value, op, ": 'x' needs 'w_ih'");
  const SeqDims bt = seq_dims(op, "x", x, w_hh, G);  // x is [B, T, I]
  const SeqDims d{bt.B, bt.T, bt.H};
  require_shape(op, {"w_ih", w_ih}, {G * d.H, x.dim(2)});
  return d;
}
}  // namespace

namespace {
// ys / dys's shape in a SeqLayout (backend.h).
Shape seq_shape(SeqLayout layout, std::int64_t T, std::int64_t B, std::int64_t H) {
  return layout == SeqLayout::TimeMajor ? Shape{T, B, H} : Shape{B, T, H};
}
}  // namespace

void gru_sequence(const GruSequence& s) {
  const char* op = "gru_sequence";
  require_defined(op, {{"w_hh", s.w_hh}, {"hs", s.hs}});
  require_same_place(op, {{"xproj", s.xproj}, {"x", s.x}, {"w_ih", s.w_ih}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih},
                          {"b_hh", s.b_hh},
                          {"mask", s.mask}, {"hs", s.hs}, {"ys", s.ys}, {"saved", s.saved},
                          {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_input_dims(op, s.xproj, s.x, s.w_ih, s.w_hh, 3);
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {3 * H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {3 * H});
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"hs", s.hs}, {s.saved.defined() ? T + 1 : 2, B, H});
  require_optional_shape(op, {"ys", s.ys}, seq_shape(s.ys_layout, T, B, H));
  require_optional_shape(op, {"saved", s.saved}, {T, B, 4 * H});
  check_outputs(op, {{"hs", s.hs}, {"ys", s.ys}, {"saved", s.saved}},
                {{"xproj", s.xproj}, {"x", s.x}, {"w_ih", s.w_ih}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih},
                 {"b_hh", s.b_hh},
                 {"mask", s.mask}, {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.hs, {OpKind::GruSequence, s.hs.dtype(), B, H, s.rec_mask.defined(),
                            s.ys_layout != SeqLayout::TimeMajor, s.x.defined()})
      .gru_sequence(s);
}

void gru_sequence_backward(const GruSequenceBackward& s) {
  const char* op = "gru_sequence_backward";
  require_defined(op, {{"saved", s.saved}, {"hs", s.hs}, {"w_hh", s.w_hh}, {"dh", s.dh},
                       {"dgates_x", s.dgates_x}, {"dgates_h", s.dgates_h}});
  require_same_place(op, {{"saved", s.saved}, {"hs", s.hs}, {"dys", s.dys}, {"mask", s.mask},
                          {"w_hh", s.w_hh}, {"dh", s.dh}, {"dgates_x", s.dgates_x},
                          {"dgates_h", s.dgates_h}, {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_dims(op, "saved", s.saved, s.w_hh, 3);
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  require_shape(op, {"saved", s.saved}, {T, B, 4 * H});
  require_shape(op, {"hs", s.hs}, {T + 1, B, H});
  require_optional_shape(op, {"dys", s.dys}, seq_shape(s.dys_layout, T, B, H));
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"dh", s.dh}, {B, H});
  require_shape(op, {"dgates_x", s.dgates_x}, {T, B, 3 * H});
  require_shape(op, {"dgates_h", s.dgates_h}, {T, B, 3 * H});
  RECUR_CHECK(s.db_ih.defined() == s.db_hh.defined(), Value, op, ": give both 'db_ih' and 'db_hh' or neither");
  require_optional_shape(op, {"db_ih", s.db_ih}, {3 * H});
  require_optional_shape(op, {"db_hh", s.db_hh}, {3 * H});
  require_same_place(op, {{"dh", s.dh}, {"db_ih", s.db_ih}, {"db_hh", s.db_hh}});
  check_outputs(op, {{"dh", s.dh}, {"dgates_x", s.dgates_x}, {"dgates_h", s.dgates_h}, {"db_ih", s.db_ih},
                     {"db_hh", s.db_hh}},
                {{"saved", s.saved}, {"hs", s.hs}, {"dys", s.dys}, {"mask", s.mask}, {"w_hh", s.w_hh},
                 {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.dh, {OpKind::GruSequenceBackward, s.dh.dtype(), B, H, s.rec_mask.defined(),
                            s.dys_layout != SeqLayout::TimeMajor})
      .gru_sequence_backward(s);
}

void lstm_sequence(const LstmSequence& s) {
  const char* op = "lstm_sequence";
  require_defined(op, {{"w_hh", s.w_hh}, {"hs", s.hs}, {"cs", s.cs}});
  require_same_place(op, {{"xproj", s.xproj}, {"x", s.x}, {"w_ih", s.w_ih}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih},
                          {"b_hh", s.b_hh},
                          {"mask", s.mask}, {"hs", s.hs}, {"cs", s.cs}, {"ys", s.ys},
                          {"saved", s.saved}, {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_input_dims(op, s.xproj, s.x, s.w_ih, s.w_hh, 4);
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {4 * H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {4 * H});
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  const bool all = s.saved.defined();
  require_shape(op, {"hs", s.hs}, {all ? T + 1 : 2, B, H});
  require_shape(op, {"cs", s.cs}, {all ? T + 1 : 1, B, H});
  require_optional_shape(op, {"ys", s.ys}, seq_shape(s.ys_layout, T, B, H));
  require_optional_shape(op, {"saved", s.saved}, {T, B, 4 * H});
  check_outputs(op, {{"hs", s.hs}, {"cs", s.cs}, {"ys", s.ys}, {"saved", s.saved}},
                {{"xproj", s.xproj}, {"x", s.x}, {"w_ih", s.w_ih}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih},
                 {"b_hh", s.b_hh},
                 {"mask", s.mask}, {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.hs, {OpKind::LstmSequence, s.hs.dtype(), B, H, s.rec_mask.defined(),
                            s.ys_layout != SeqLayout::TimeMajor, s.x.defined()})
      .lstm_sequence(s);
}

void lstm_sequence_backward(const LstmSequenceBackward& s) {
  const char* op = "lstm_sequence_backward";
  require_defined(op, {{"saved", s.saved}, {"cs", s.cs}, {"w_hh", s.w_hh}, {"dh", s.dh},
                       {"dc", s.dc}, {"dgates", s.dgates}});
  require_same_place(op, {{"saved", s.saved}, {"cs", s.cs}, {"dys", s.dys}, {"mask", s.mask},
                          {"w_hh", s.w_hh}, {"dh", s.dh}, {"dc", s.dc}, {"dgates", s.dgates},
                          {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_dims(op, "saved", s.saved, s.w_hh, 4);
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  require_shape(op, {"saved", s.saved}, {T, B, 4 * H});
  require_shape(op, {"cs", s.cs}, {T + 1, B, H});
  require_optional_shape(op, {"dys", s.dys}, seq_shape(s.dys_layout, T, B, H));
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"dh", s.dh}, {B, H});
  require_shape(op, {"dc", s.dc}, {B, H});
  require_shape(op, {"dgates", s.dgates}, {T, B, 4 * H});
  require_optional_shape(op, {"db", s.db}, {4 * H});
  require_same_place(op, {{"dh", s.dh}, {"db", s.db}});
  check_outputs(op, {{"dh", s.dh}, {"dc", s.dc}, {"dgates", s.dgates}, {"db", s.db}},
                {{"saved", s.saved}, {"cs", s.cs}, {"dys", s.dys}, {"mask", s.mask}, {"w_hh", s.w_hh},
                 {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.dh, {OpKind::LstmSequenceBackward, s.dh.dtype(), B, H, s.rec_mask.defined(),
                            s.dys_layout != SeqLayout::TimeMajor})
      .lstm_sequence_backward(s);
}

void rnn_sequence(const RnnSequence& s) {
  const char* op = "rnn_sequence";
  require_defined(op, {{"w_hh", s.w_hh}, {"hs", s.hs}});
  require_same_place(op, {{"xproj", s.xproj}, {"x", s.x}, {"w_ih", s.w_ih}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih},
                          {"b_hh", s.b_hh},
                          {"mask", s.mask}, {"hs", s.hs}, {"ys", s.ys}, {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_input_dims(op, s.xproj, s.x, s.w_ih, s.w_hh, 1);
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {H});
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"hs", s.hs}, {s.all_states ? T + 1 : 2, B, H});
  require_optional_shape(op, {"ys", s.ys}, seq_shape(s.ys_layout, T, B, H));
  check_outputs(op, {{"hs", s.hs}, {"ys", s.ys}},
                {{"xproj", s.xproj}, {"x", s.x}, {"w_ih", s.w_ih}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih},
                 {"b_hh", s.b_hh},
                 {"mask", s.mask}, {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.hs, {OpKind::RnnSequence, s.hs.dtype(), B, H, s.rec_mask.defined(),
                            s.ys_layout != SeqLayout::TimeMajor, s.x.defined()})
      .rnn_sequence(s);
}

void rnn_sequence_backward(const RnnSequenceBackward& s) {
  const char* op = "rnn_sequence_backward";
  require_defined(op, {{"hs", s.hs}, {"w_hh", s.w_hh}, {"dh", s.dh}, {"dgates", s.dgates}});
  require_same_place(op, {{"hs", s.hs}, {"dys", s.dys}, {"mask", s.mask}, {"w_hh", s.w_hh}, {"dh", s.dh},
                          {"dgates", s.dgates}, {"db", s.db}, {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_dims(op, "dgates", s.dgates, s.w_hh, 1);
  require_shape(op, {"dgates", s.dgates}, {T, B, H});
  require_shape(op, {"hs", s.hs}, {T + 1, B, H});
  require_optional_shape(op, {"dys", s.dys}, seq_shape(s.dys_layout, T, B, H));
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"dh", s.dh}, {B, H});
  require_optional_shape(op, {"db", s.db}, {H});
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  check_outputs(op, {{"dh", s.dh}, {"dgates", s.dgates}, {"db", s.db}},
                {{"hs", s.hs}, {"dys", s.dys}, {"mask", s.mask}, {"w_hh", s.w_hh}, {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.dh, {OpKind::RnnSequenceBackward, s.dh.dtype(), B, H, s.rec_mask.defined(),
                            s.dys_layout != SeqLayout::TimeMajor})
      .rnn_sequence_backward(s);
}

void gru_rb_sequence(const GruRbSequence& s) {
  const char* op = "gru_rb_sequence";
  require_defined(op, {{"xproj", s.xproj}, {"w_hh", s.w_hh}, {"hs", s.hs}});
  require_same_place(op, {{"xproj", s.xproj}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh},
                          {"mask", s.mask}, {"hs", s.hs}, {"ys", s.ys}, {"saved", s.saved},
                          {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_dims(op, "xproj", s.xproj, s.w_hh, 3);
  require_shape(op, {"xproj", s.xproj}, {T, B, 3 * H});
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  require_optional_shape(op, {"b_ih", s.b_ih}, {3 * H});
  require_optional_shape(op, {"b_hh", s.b_hh}, {3 * H});
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"hs", s.hs}, {s.saved.defined() ? T + 1 : 2, B, H});
  require_optional_shape(op, {"ys", s.ys}, seq_shape(s.ys_layout, T, B, H));
  require_optional_shape(op, {"saved", s.saved}, {T, B, 4 * H});
  check_outputs(op, {{"hs", s.hs}, {"ys", s.ys}, {"saved", s.saved}},
                {{"xproj", s.xproj}, {"w_hh", s.w_hh}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh},
                 {"mask", s.mask}, {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.hs, {OpKind::GruRbSequence, s.hs.dtype(), B, H, s.rec_mask.defined(),
                            s.ys_layout != SeqLayout::TimeMajor})
      .gru_rb_sequence(s);
}

void gru_rb_sequence_backward(const GruRbSequenceBackward& s) {
  const char* op = "gru_rb_sequence_backward";
  require_defined(op, {{"saved", s.saved}, {"hs", s.hs}, {"w_hh", s.w_hh}, {"dh", s.dh}, {"dgates_x", s.dgates_x},
                       {"dgates_rz", s.dgates_rz}, {"dgates_n", s.dgates_n}});
  require_same_place(op, {{"saved", s.saved}, {"hs", s.hs}, {"dys", s.dys}, {"mask", s.mask}, {"w_hh", s.w_hh},
                          {"dh", s.dh}, {"dgates_x", s.dgates_x}, {"dgates_rz", s.dgates_rz},
                          {"dgates_n", s.dgates_n}, {"db_ih", s.db_ih}, {"db_hh", s.db_hh},
                          {"rec_mask", s.rec_mask}});
  const auto [T, B, H] = seq_dims(op, "saved", s.saved, s.w_hh, 3);
  require_shape(op, {"saved", s.saved}, {T, B, 4 * H});
  require_shape(op, {"hs", s.hs}, {T + 1, B, H});
  require_optional_shape(op, {"dys", s.dys}, seq_shape(s.dys_layout, T, B, H));
  require_optional_shape(op, {"mask", s.mask}, {T, B});
  require_shape(op, {"dh", s.dh}, {B, H});
  require_shape(op, {"dgates_x", s.dgates_x}, {T, B, 3 * H});
  require_shape(op, {"dgates_rz", s.dgates_rz}, {T, B, 2 * H});
  require_shape(op, {"dgates_n", s.dgates_n}, {T, B, H});
  RECUR_CHECK(s.db_ih.defined() == s.db_hh.defined(), Value, op, ": give both 'db_ih' and 'db_hh' or neither");
  require_optional_shape(op, {"db_ih", s.db_ih}, {3 * H});
  require_optional_shape(op, {"db_hh", s.db_hh}, {3 * H});
  require_optional_shape(op, {"rec_mask", s.rec_mask}, {B, H});
  check_outputs(op, {{"dh", s.dh}, {"dgates_x", s.dgates_x}, {"dgates_rz", s.dgates_rz}, {"dgates_n", s.dgates_n},
                     {"db_ih", s.db_ih}, {"db_hh", s.db_hh}},
                {{"saved", s.saved}, {"hs", s.hs}, {"dys", s.dys}, {"mask", s.mask}, {"w_hh", s.w_hh},
                 {"rec_mask", s.rec_mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.dh, {OpKind::GruRbSequenceBackward, s.dh.dtype(), B, H, s.rec_mask.defined(),
                            s.dys_layout != SeqLayout::TimeMajor})
      .gru_rb_sequence_backward(s);
}

void rnn_step_backward(const RnnStepBackward& s) {
  const char* op = "rnn_step_backward";
  require_defined(op, {{"h", s.h}, {"dgates", s.dgates}, {"dh_prev", s.dh_prev}});
  require_same_place(op, {{"h", s.h}, {"dy", s.dy}, {"dh_next", s.dh_next}, {"mask", s.mask},
                          {"dgates", s.dgates}, {"dh_prev", s.dh_prev}});
  RECUR_CHECK(s.h.ndim() == 2, Shape, op, ": 'h' must be [B, H], got ", shape_str(s.h.shape()));
  const std::int64_t B = s.h.dim(0), H = s.h.dim(1);
  require_optional_shape(op, {"dy", s.dy}, {B, H});
  require_optional_shape(op, {"dh_next", s.dh_next}, {B, H});
  require_optional_shape(op, {"mask", s.mask}, {B});
  require_shape(op, {"dgates", s.dgates}, {B, H});
  require_shape(op, {"dh_prev", s.dh_prev}, {B, H});
  check_outputs(op, {{"dgates", s.dgates}, {"dh_prev", s.dh_prev}},
                {{"h", s.h}, {"dy", s.dy}, {"dh_next", s.dh_next}, {"mask", s.mask}},
                {{"dh_prev", "dh_next"}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h, {OpKind::RnnStepBackward, s.h.dtype(), B, H}).rnn_step_backward(s);
}

namespace {
// Shared checks of the GRU reset-before stages: every listed tensor is on one
// device with one dtype and has its shape; outputs overlap no input.
void check_stage(const char* op, std::initializer_list<Arg> required, std::initializer_list<Arg> optional,
                 std::initializer_list<std::pair<Arg, Shape>> shapes, std::initializer_list<Arg> outs,
                 std::initializer_list<Arg> ins) {
  require_defined(op, required);
  for (const Arg& a : required)
    for (const Arg& b : optional) require_same_place(op, {a, b});
  require_same_place(op, required);
  for (const auto& [a, s] : shapes) require_optional_shape(op, a, s);
  check_outputs(op, outs, ins);
}
}  // namespace

void gru_rb_gates(const GruResetBeforeGates& s) {
  const char* op = "gru_rb_gates";
  require_defined(op, {{"h_in", s.h_in}});
  RECUR_CHECK(s.h_in.ndim() == 2, Shape, op, ": 'h_in' must be [B, H], got ", shape_str(s.h_in.shape()));
  const std::int64_t B = s.h_in.dim(0), H = s.h_in.dim(-1);
  check_stage(op, {{"xproj", s.xproj}, {"hproj_rz", s.hproj_rz}, {"h_in", s.h_in}, {"rh", s.rh}, {"saved", s.saved}},
              {{"b_ih", s.b_ih}, {"b_hh", s.b_hh}},
              {{{"xproj", s.xproj}, {B, 3 * H}}, {{"hproj_rz", s.hproj_rz}, {B, 2 * H}}, {{"b_ih", s.b_ih}, {3 * H}},
               {{"b_hh", s.b_hh}, {3 * H}}, {{"h_in", s.h_in}, {B, H}}, {{"rh", s.rh}, {B, H}}, {{"saved", s.saved}, {B, 4 * H}}},
              {{"rh", s.rh}, {"saved", s.saved}},
              {{"xproj", s.xproj}, {"hproj_rz", s.hproj_rz}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh}, {"h_in", s.h_in}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h_in, {OpKind::GruResetBefore, s.h_in.dtype(), B, H}).gru_rb_gates(s);
}

void gru_rb_output(const GruResetBeforeOutput& s) {
  const char* op = "gru_rb_output";
  require_defined(op, {{"h_prev", s.h_prev}});
  RECUR_CHECK(s.h_prev.ndim() == 2, Shape, op, ": 'h_prev' must be [B, H], got ", shape_str(s.h_prev.shape()));
  const std::int64_t B = s.h_prev.dim(0), H = s.h_prev.dim(-1);
  check_stage(op, {{"xproj", s.xproj}, {"hn", s.hn}, {"h_prev", s.h_prev}, {"saved", s.saved}, {"h", s.h}},
              {{"b_ih", s.b_ih}, {"b_hh", s.b_hh}, {"mask", s.mask}, {"y", s.y}},
              {{{"xproj", s.xproj}, {B, 3 * H}}, {{"hn", s.hn}, {B, H}}, {{"b_ih", s.b_ih}, {3 * H}},
               {{"b_hh", s.b_hh}, {3 * H}}, {{"h_prev", s.h_prev}, {B, H}}, {{"mask", s.mask}, {B}},
               {{"saved", s.saved}, {B, 4 * H}}, {{"h", s.h}, {B, H}}, {{"y", s.y}, {B, H}}},
              {{"h", s.h}, {"y", s.y}},
              {{"xproj", s.xproj}, {"hn", s.hn}, {"b_ih", s.b_ih}, {"b_hh", s.b_hh}, {"h_prev", s.h_prev},
               {"mask", s.mask}, {"saved", s.saved}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h, {OpKind::GruResetBefore, s.h.dtype(), B, H}).gru_rb_output(s);
}

void gru_rb_back_n(const GruResetBeforeBackN& s) {
  const char* op = "gru_rb_back_n";
  require_defined(op, {{"h_prev", s.h_prev}});
  RECUR_CHECK(s.h_prev.ndim() == 2, Shape, op, ": 'h_prev' must be [B, H], got ", shape_str(s.h_prev.shape()));
  const std::int64_t B = s.h_prev.dim(0), H = s.h_prev.dim(-1);
  check_stage(op, {{"saved", s.saved}, {"h_prev", s.h_prev}, {"dgates_x", s.dgates_x}, {"dgates_rz", s.dgates_rz},
                   {"dgates_n", s.dgates_n}, {"dh_prev", s.dh_prev}},
              {{"dy", s.dy}, {"dh_next", s.dh_next}, {"mask", s.mask}},
              {{{"saved", s.saved}, {B, 4 * H}}, {{"h_prev", s.h_prev}, {B, H}}, {{"dy", s.dy}, {B, H}},
               {{"dh_next", s.dh_next}, {B, H}}, {{"mask", s.mask}, {B}}, {{"dgates_x", s.dgates_x}, {B, 3 * H}},
               {{"dgates_rz", s.dgates_rz}, {B, 2 * H}}, {{"dgates_n", s.dgates_n}, {B, H}}, {{"dh_prev", s.dh_prev}, {B, H}}},
              {{"dgates_x", s.dgates_x}, {"dgates_rz", s.dgates_rz}, {"dgates_n", s.dgates_n}, {"dh_prev", s.dh_prev}},
              {{"saved", s.saved}, {"h_prev", s.h_prev}, {"dy", s.dy}, {"dh_next", s.dh_next}, {"mask", s.mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h_prev, {OpKind::GruResetBefore, s.h_prev.dtype(), B, H}).gru_rb_back_n(s);
}

void gru_rb_back_r(const GruResetBeforeBackR& s) {
  const char* op = "gru_rb_back_r";
  require_defined(op, {{"h_in", s.h_in}});
  RECUR_CHECK(s.h_in.ndim() == 2, Shape, op, ": 'h_in' must be [B, H], got ", shape_str(s.h_in.shape()));
  const std::int64_t B = s.h_in.dim(0), H = s.h_in.dim(-1);
  check_stage(op, {{"saved", s.saved}, {"h_in", s.h_in}, {"drh", s.drh}, {"dgates_x", s.dgates_x},
                   {"dgates_rz", s.dgates_rz}, {"dh_in", s.dh_in}},
              {{"mask", s.mask}},
              {{{"saved", s.saved}, {B, 4 * H}}, {{"h_in", s.h_in}, {B, H}}, {{"drh", s.drh}, {B, H}},
               {{"mask", s.mask}, {B}}, {{"dgates_x", s.dgates_x}, {B, 3 * H}}, {{"dgates_rz", s.dgates_rz}, {B, 2 * H}},
               {{"dh_in", s.dh_in}, {B, H}}},
              {{"dgates_x", s.dgates_x}, {"dgates_rz", s.dgates_rz}, {"dh_in", s.dh_in}},
              {{"saved", s.saved}, {"h_in", s.h_in}, {"drh", s.drh}, {"mask", s.mask}});
  if (B * H == 0) return;
  dispatch_backend(op, s.h_in, {OpKind::GruResetBefore, s.h_in.dtype(), B, H}).gru_rb_back_r(s);
}

}  // namespace recur::ops

// ---- training -----------------------------------------------------------------
namespace recur::ops {
namespace {

bool is_float(DType t) { return t == DType::f32 || t == DType::f64; }

Tensor run_loss(const char* op, LossKind kind, const Tensor& pred, const Tensor& target,
                const Tensor& grad, const Tensor& weight, double delta) {
  require_defined(op, {{"pred", pred}, {"target", target}});
  require_same_place(op, {{"pred", pred}, {"grad", grad}, {"weight", weight}});
  RECUR_CHECK(is_float(pred.dtype()), DType, op, ": 'pred' is ", dtype_name(pred.dtype()),
              ", expected float32 or float64");
  RECUR_CHECK(pred.ndim() >= 1, Shape, op, ": 'pred' must have at least one dimension (the last "
              "is the feature or class axis), got ", shape_str(pred.shape()));
  RECUR_CHECK(target.device() == pred.device(), Device, op, ": 'pred' is on ",
              pred.device().str(), " but 'target' is on ", target.device().str());
  const Shape& ps = pred.shape();
  const Shape row_shape(ps.begin(), ps.end() - 1);
  const bool sparse = kernels::is_sparse(kind);
  if (sparse) {
    RECUR_CHECK(target.dtype() == DType::i32, DType, op, ": ", loss_name(kind),
                " takes int32 class indices as 'target', got ", dtype_name(target.dtype()));
    require_shape(op, {"target", target}, row_shape);
  } else {
    RECUR_CHECK(target.dtype() == pred.dtype(), DType, op, ": 'pred' is ",
                dtype_name(pred.dtype()), " but 'target' is ", dtype_name(target.dtype()));
    require_shape(op, {"target", target}, ps);
  }
  bool per_row = false;
  if (weight.defined()) {
    per_row = weight.shape() == row_shape;
    RECUR_CHECK(per_row || (!sparse && weight.shape() == ps), Shape, op, ": 'weight' has shape ",
                shape_str(weight.shape()), ", expected ", shape_str(row_shape), " (per row)",
                sparse ? "" : " or ", sparse ? "" : shape_str(ps), sparse ? "" : " (per element)");
  }
  if (grad.defined()) {
    require_shape(op, {"grad", grad}, ps);
    require_no_alias(op, {"grad", grad}, {"pred", pred});
    require_no_alias(op, {"grad", grad}, {"target", target});
    require_no_alias(op, {"grad", grad}, {"weight", weight});
  }
  RECUR_CHECK(kind != LossKind::Huber || delta > 0, Value, op, ": huber delta must be > 0, got ",
              delta);
  LossCall c;
  c.kind = kind;
  c.pred = pred;
  (sparse ? c.labels : c.target) = target;
  c.weight = weight;
  c.grad = grad;
  c.cols = pred.dim(-1);
  c.rows = c.cols ? pred.numel() / c.cols : 0;
  c.weight_per_row = per_row;
  c.delta = delta;
  c.loss = Tensor::empty({1}, pred.dtype(), pred.device());
  if (pred.numel() == 0) {  // nothing counted: loss 0, as an all-masked batch
    fill(c.loss, 0.0);
    return c.loss;
  }
  dispatch_backend(op, pred, {OpKind::Loss, pred.dtype(), c.rows, c.cols}).loss(c);
  return c.loss;
}

}  // namespace

Tensor loss(LossKind kind, const Tensor& pred, const Tensor& target, const Tensor& grad,
            const Tensor& weight, double huber_delta) {
  const char* op = "loss";
  RECUR_CHECK(kernels::has_gradient(kind), Value, op, ": ", loss_name(kind),
              " has no gradient; compute it with ops::metric");
  RECUR_CHECK(grad.defined(), Value, op, ": 'grad' is an undefined tensor; pass pred's shape "
              "for d(loss)/d(pred), or use ops::metric for the value alone");
  return run_loss(op, kind, pred, target, grad, weight, huber_delta);
}

Tensor metric(LossKind kind, const Tensor& pred, const Tensor& target, const Tensor& weight) {
  return run_loss("metric", kind, pred, target, Tensor(), weight, 1.0);
}

std::unique_ptr<HostRead> read_async(const std::vector<Tensor>& tensors) {
  const char* op = "read_async";
  RECUR_CHECK(!tensors.empty(), Value, op, ": no tensors");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    RECUR_CHECK(t.defined(), Value, op, ": tensor ", i, " is undefined");
    RECUR_CHECK(t.device() == tensors[0].device(), Device, op, ": tensor ", i, " is on ", t.device().str(),
                ", tensor 0 on ", tensors[0].device().str());
    RECUR_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64 || t.dtype() == DType::i32, DType, op,
                ": tensor ", i, " is ", dtype_name(t.dtype()), "; float32, float64 or int32 expected");
  }
  return backend(tensors[0].device()).read_async(tensors);
}

Tensor sum_squares(const Tensor& x) {
  const char* op = "sum_squares";
  require_defined(op, {{"x", x}});
  RECUR_CHECK(is_float(x.dtype()), DType, op, ": 'x' is ", dtype_name(x.dtype()),
              ", expected float32 or float64");
  Tensor out = Tensor::empty({1}, DType::f64, x.device());
  if (x.numel() == 0) {
    // fill() of float64 runs only on the CPU backend; write the zero directly.
    const double zero = 0.0;
    backend(x.device()).copy_bytes(out.raw_data(), x.device(), &zero, Device::cpu(), sizeof zero);
    return out;
  }
  dispatch_backend(op, x, {OpKind::SumSquares, x.dtype()}).sum_squares(x, out);
  return out;
}

void clip_gradients(const Tensor& g, const Tensor& sq_sum, double clipnorm, double clipvalue) {
  const char* op = "clip_gradients";
  require_defined(op, {{"g", g}});
  RECUR_CHECK(is_float(g.dtype()), DType, op, ": 'g' is ", dtype_name(g.dtype()),
              ", expected float32 or float64");
  RECUR_CHECK(clipnorm >= 0 && clipvalue >= 0, Value, op, ": clipnorm (", clipnorm,
              ") and clipvalue (", clipvalue, ") must be >= 0 (0: off)");
  RECUR_CHECK(clipnorm == 0 || sq_sum.defined(), Value, op,
              ": clipnorm > 0 needs 'sq_sum' (ops::sum_squares of the whole buffer)");
  if (sq_sum.defined()) {
    RECUR_CHECK(sq_sum.device() == g.device(), Device, op, ": 'g' is on ", g.device().str(),
                " but 'sq_sum' is on ", sq_sum.device().str());
    RECUR_CHECK(sq_sum.dtype() == DType::f64, DType, op, ": 'sq_sum' must be float64, got ",
                dtype_name(sq_sum.dtype()));
    require_shape(op, {"sq_sum", sq_sum}, {1});
  }
  if (g.numel() == 0 || (clipnorm == 0 && clipvalue == 0)) return;
  dispatch_backend(op, g, {OpKind::Clip, g.dtype()})
      .clip(g, clipnorm > 0 ? sq_sum : Tensor(), clipnorm, clipvalue);
}

Tensor clip_by_global_norm(const Tensor& g, double clipnorm) {
  RECUR_CHECK(clipnorm > 0, Value, "clip_by_global_norm: clipnorm must be > 0, got ", clipnorm);
  Tensor sq = sum_squares(g);
  clip_gradients(g, sq, clipnorm, 0.0);
  return sq;
}

void clip_by_value(const Tensor& g, double clipvalue) {
  RECUR_CHECK(clipvalue > 0, Value, "clip_by_value: clipvalue must be > 0, got ", clipvalue);
  clip_gradients(g, Tensor(), 0.0, clipvalue);
}

void optimizer_step(const OptimizerStep& s) {
  const char* op = "optimizer_step";
  require_defined(op, {{"param", s.param}, {"grad", s.grad}});
  require_same_place(op, {{"param", s.param}, {"grad", s.grad}, {"slot0", s.slot0},
                          {"slot1", s.slot1}, {"slot2", s.slot2}});
  RECUR_CHECK(is_float(s.param.dtype()), DType, op, ": 'param' is ", dtype_name(s.param.dtype()),
              ", expected float32 or float64");
  RECUR_CHECK(s.param.ndim() == 1, Shape, op, ": 'param' must be a flat [n] buffer, got ",
              shape_str(s.param.shape()));
  const Shape flat{s.param.numel()};
  require_shape(op, {"grad", s.grad}, flat);
  const bool sgd_m = s.kind == OptimizerKind::SGD && s.momentum != 0;
  const bool rms = s.kind == OptimizerKind::RMSprop, adam = s.kind == OptimizerKind::Adam;
  const bool need[3] = {sgd_m || rms || adam, (rms && s.momentum > 0) || adam, rms && s.centered};
  const Arg slots[3] = {{"slot0", s.slot0}, {"slot1", s.slot1}, {"slot2", s.slot2}};
  for (int k = 0; k < 3; ++k) {
    if (need[k]) {
      RECUR_CHECK(slots[k].t.defined(), Value, op, ": this ", k == 0 ? "kind" : "configuration",
                  " needs '", slots[k].name, "' (a [n] state buffer)");
      require_shape(op, slots[k], flat);
    }
  }
  const Arg all[5] = {{"param", s.param}, {"grad", s.grad}, slots[0], slots[1], slots[2]};
  for (int i = 0; i < 5; ++i)
    for (int j = i + 1; j < 5; ++j) {
      RECUR_CHECK(!overlap(all[i].t, all[j].t), Value, op, ": '", all[i].name, "' overlaps '",
                  all[j].name, "'");
    }
  RECUR_CHECK(std::isfinite(s.lr) && s.lr >= 0, Value, op, ": learning rate ", s.lr,
              " must be finite and >= 0");
  RECUR_CHECK(s.epsilon >= 0 && s.weight_decay >= 0 && s.clipnorm >= 0 && s.clipvalue >= 0,
              Value, op, ": epsilon, weight_decay, clipnorm and clipvalue must be >= 0");
  RECUR_CHECK(!(s.clipnorm > 0 && s.clipvalue > 0), Value, op,
              ": set at most one of clipnorm and clipvalue (as Keras)");
  RECUR_CHECK(s.clipnorm == 0 || s.grad_sq_sum.defined(), Value, op,
              ": clipnorm > 0 needs 'grad_sq_sum' (ops::sum_squares of the gradient buffer)");
  if (s.grad_sq_sum.defined()) {
    RECUR_CHECK(s.grad_sq_sum.device() == s.param.device() && s.grad_sq_sum.dtype() == DType::f64,
                Value, op, ": 'grad_sq_sum' must be a [1] float64 tensor on ",
                s.param.device().str());
    require_shape(op, {"grad_sq_sum", s.grad_sq_sum}, {1});
  }
  if (s.param.numel() == 0) return;
  OptimizerStep call = s;
  if (s.clipnorm == 0) call.grad_sq_sum = Tensor();
  dispatch_backend(op, s.param, {OpKind::OptimizerStep, s.param.dtype()}).optimizer_step(call);
}


// ---- pooling over time, embedding, activations, dropout ------------------------
namespace {

void require_rank(const char* op, const Arg& a, std::int64_t rank, const char* layout) {
  RECUR_CHECK(a.t.ndim() == rank, Shape, op, ": '", a.name, "' has shape ", shape_str(a.t.shape()),
              ", expected ", layout);
}

void require_float(const char* op, const Arg& a) {
  RECUR_CHECK(a.t.dtype() == DType::f32 || a.t.dtype() == DType::f64, DType, op, ": '", a.name,
              "' is ", dtype_name(a.t.dtype()), ", expected float32 or float64");
}

void require_ids(const char* op, const Tensor& ids) {
  RECUR_CHECK(ids.dtype() == DType::i32, DType, op, ": 'ids' is ", dtype_name(ids.dtype()),
              ", expected int32");
}

kernels::PoolGeometry pool_geometry(const char* op, std::int64_t B, std::int64_t T, std::int64_t C,
                                    const Pool1dOptions& o) {
  kernels::PoolGeometry g;
  g.B = B;
  g.T = T;
  g.C = C;
  g.pool = o.pool_size;
  g.stride = o.strides == 0 ? o.pool_size : o.strides;
  g.out = pool1d_output_length(T, o);
  if (o.padding == PoolPadding::Same) {
    const std::int64_t total = std::max<std::int64_t>((g.out - 1) * g.stride + g.pool - T, 0);
    g.pad = total / 2;
  }
  RECUR_CHECK(T <= INT_MAX, Value, op, ": T = ", T, " exceeds the int32 range of argmax");
  return g;
}

}  // namespace

std::int64_t pool1d_output_length(std::int64_t T, const Pool1dOptions& o) {
  const char* op = "pool1d";
  RECUR_CHECK(o.pool_size >= 1, Value, op, ": pool_size = ", o.pool_size, ", expected >= 1");
  RECUR_CHECK(o.strides >= 0, Value, op, ": strides = ", o.strides,
              ", expected >= 1 (or 0 for pool_size)");
  const std::int64_t s = o.strides == 0 ? o.pool_size : o.strides;
  if (o.padding == PoolPadding::Same) return (T + s - 1) / s;
  RECUR_CHECK(T >= o.pool_size, Shape, op, ": T = ", T, " is shorter than pool_size = ",
              o.pool_size, " with padding 'valid'");
  return (T - o.pool_size) / s + 1;
}

PoolResult pool1d_forward(const Tensor& x, const Pool1dOptions& o, const Tensor& mask) {
  const char* op = "pool1d_forward";
  require_defined(op, {{"x", x}});
  require_same_place(op, {{"x", x}, {"mask", mask}});
  require_rank(op, {"x", x}, 3, "[B, T, C]");
  require_float(op, {"x", x});
  const std::int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2);
  require_optional_shape(op, {"mask", mask}, {B, T});
  Pool1dCall c;
  c.kind = o.kind;
  c.geometry = pool_geometry(op, B, T, C, o);
  c.x = x;
  c.mask = mask;
  c.y = Tensor::empty({B, c.geometry.out, C}, x.dtype(), x.device());
  if (o.kind == PoolKind::Max) c.argmax = Tensor::empty({B, c.geometry.out, C}, DType::i32, x.device());
  if (c.y.numel() > 0) dispatch_backend(op, x, {OpKind::Pool1d, x.dtype(), B, C}).pool1d(c);
  return {c.y, c.argmax};
}

Tensor pool1d_backward(const Tensor& dy, std::int64_t T, const Pool1dOptions& o, const Tensor& mask,
                       const Tensor& argmax) {
  const char* op = "pool1d_backward";
  require_defined(op, {{"dy", dy}});
  require_same_place(op, {{"dy", dy}, {"mask", mask}});
  require_rank(op, {"dy", dy}, 3, "[B, out, C]");
  require_float(op, {"dy", dy});
  RECUR_CHECK(T >= 0, Value, op, ": T = ", T, ", expected >= 0");
  const std::int64_t B = dy.dim(0), C = dy.dim(2);
  Pool1dCall c;
  c.kind = o.kind;
  c.geometry = pool_geometry(op, B, T, C, o);
  require_shape(op, {"dy", dy}, {B, c.geometry.out, C});
  require_optional_shape(op, {"mask", mask}, {B, T});
  if (o.kind == PoolKind::Max) {
    RECUR_CHECK(argmax.defined(), Value, op,
                ": max pooling needs 'argmax' from pool1d_forward");
    RECUR_CHECK(argmax.device() == dy.device(), Device, op, ": 'dy' is on ", dy.device().str(),
                " but 'argmax' is on ", argmax.device().str());
    RECUR_CHECK(argmax.dtype() == DType::i32, DType, op, ": 'argmax' is ",
                dtype_name(argmax.dtype()), ", expected int32");
    require_shape(op, {"argmax", argmax}, dy.shape());
    c.argmax = argmax;
  }
  c.dy = dy;
  c.mask = mask;
  c.dx = Tensor::empty({B, T, C}, dy.dtype(), dy.device());
  if (c.dx.numel() > 0)
    dispatch_backend(op, dy, {OpKind::Pool1d, dy.dtype(), B, C}).pool1d_backward(c);
  return c.dx;
}

PoolResult global_pool1d_forward(PoolKind kind, const Tensor& x, const Tensor& mask) {
  const char* op = "global_pool1d_forward";
  require_defined(op, {{"x", x}});
  require_rank(op, {"x", x}, 3, "[B, T, C]");
  RECUR_CHECK(x.dim(1) >= 1, Shape, op, ": 'x' has shape ", shape_str(x.shape()),
              "; pooling over T needs T >= 1");
  // One window of the whole sequence.
  PoolResult r = pool1d_forward(x, {kind, x.dim(1), 1, PoolPadding::Valid}, mask);
  const Shape s{x.dim(0), x.dim(2)};
  return {r.y.reshape(s), r.argmax.defined() ? r.argmax.reshape(s) : Tensor()};
}

Tensor global_pool1d_backward(PoolKind kind, const Tensor& dy, std::int64_t T, const Tensor& mask,
                              const Tensor& argmax) {
  const char* op = "global_pool1d_backward";
  require_defined(op, {{"dy", dy}});
  require_rank(op, {"dy", dy}, 2, "[B, C]");
  RECUR_CHECK(T >= 1, Value, op, ": T = ", T, "; pooling over T needs T >= 1");
  const Shape s{dy.dim(0), 1, dy.dim(1)};
  Tensor am;
  if (argmax.defined()) {
    require_shape(op, {"argmax", argmax}, dy.shape());
    am = argmax.reshape(s);
  }
  return pool1d_backward(dy.reshape(s), T, {kind, T, 1, PoolPadding::Valid}, mask, am);
}

Tensor embedding_forward(const Tensor& weights, const Tensor& ids) {
  const char* op = "embedding_forward";
  require_defined(op, {{"weights", weights}, {"ids", ids}});
  require_rank(op, {"weights", weights}, 2, "[V, D]");
  require_float(op, {"weights", weights});
  require_ids(op, ids);
  RECUR_CHECK(ids.device() == weights.device(), Device, op, ": 'weights' is on ",
              weights.device().str(), " but 'ids' is on ", ids.device().str());
  Shape out = ids.shape();
  out.push_back(weights.dim(1));
  Tensor y = Tensor::empty(out, weights.dtype(), weights.device());
  if (y.numel() > 0)
    dispatch_backend(op, weights, {OpKind::Embedding, weights.dtype(), ids.numel(), weights.dim(1)})
        .embedding(weights, ids, y);
  return y;
}

void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dweights) {
  const char* op = "embedding_backward";
  require_defined(op, {{"ids", ids}, {"dy", dy}, {"dweights", dweights}});
  require_same_place(op, {{"dy", dy}, {"dweights", dweights}});
  require_rank(op, {"dweights", dweights}, 2, "[V, D]");
  require_float(op, {"dweights", dweights});
  require_ids(op, ids);
  RECUR_CHECK(ids.device() == dy.device(), Device, op, ": 'dy' is on ", dy.device().str(),
              " but 'ids' is on ", ids.device().str());
  Shape want = ids.shape();
  want.push_back(dweights.dim(1));
  require_shape(op, {"dy", dy}, want);
  require_no_alias(op, {"dweights", dweights}, {"dy", dy});
  require_no_alias(op, {"dweights", dweights}, {"ids", ids});
  if (dy.numel() == 0) return;
  dispatch_backend(op, dy, {OpKind::Embedding, dy.dtype(), ids.numel(), dweights.dim(1)})
      .embedding_backward(ids, dy, dweights);
}

Tensor embedding_mask(const Tensor& ids, DType dtype) {
  const char* op = "embedding_mask";
  require_defined(op, {{"ids", ids}});
  require_ids(op, ids);
  RECUR_CHECK(dtype == DType::f32 || dtype == DType::f64, DType, op, ": mask dtype ",
              dtype_name(dtype), ", expected float32 or float64");
  Tensor m = Tensor::empty(ids.shape(), dtype, ids.device());
  if (m.numel() > 0)
    dispatch_backend(op, ids, {OpKind::Embedding, dtype, ids.numel(), 0}).embedding_mask(ids, m);
  return m;
}

Tensor activation_forward(Activation act, const Tensor& x) {
  const char* op = "activation_forward";
  require_defined(op, {{"x", x}});
  require_float(op, {"x", x});
  RECUR_CHECK(x.ndim() >= 1, Shape, op, ": 'x' is a scalar; ", activation_name(act),
              " needs at least one axis");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return y;
  const std::int64_t cols = act == Activation::Softmax ? x.dim(-1) : x.numel();
  dispatch_backend(op, x, {OpKind::Activation, x.dtype(), x.numel() / cols, cols})
      .activation(act, x, y, cols);
  return y;
}

Tensor softmax(const Tensor& x) { return activation_forward(Activation::Softmax, x); }

Tensor activation_backward(Activation act, const Tensor& y, const Tensor& dy) {
  const char* op = "activation_backward";
  require_defined(op, {{"y", y}, {"dy", dy}});
  require_same_place(op, {{"y", y}, {"dy", dy}});
  require_float(op, {"y", y});
  require_shape(op, {"dy", dy}, y.shape());
  RECUR_CHECK(y.ndim() >= 1, Shape, op, ": 'y' is a scalar; ", activation_name(act),
              " needs at least one axis");
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  if (y.numel() == 0) return dx;
  const std::int64_t cols = act == Activation::Softmax ? y.dim(-1) : y.numel();
  dispatch_backend(op, y, {OpKind::Activation, y.dtype(), y.numel() / cols, cols})
      .activation_backward(act, y, dy, dx, cols);
  return dx;
}

DropoutResult dropout_forward(const Tensor& x, double rate, std::uint64_t seed, bool training) {
  const char* op = "dropout_forward";
  require_defined(op, {{"x", x}});
  require_float(op, {"x", x});
  RECUR_CHECK(rate >= 0.0 && rate < 1.0, Value, op, ": rate = ", rate, ", expected in [0, 1)");
  DropoutResult r{Tensor::empty(x.shape(), x.dtype(), x.device()),
                  Tensor::empty(x.shape(), x.dtype(), x.device())};
  if (x.numel() == 0) return r;
  if (!training) {
    r.y.copy_from(x);
    fill(r.mask, 1.0);
    return r;
  }
  dispatch_backend(op, x, {OpKind::Dropout, x.dtype(), x.numel(), 0}).dropout(x, rate, seed, r.y, r.mask);
  return r;
}

Tensor dropout_backward(const Tensor& dy, const Tensor& mask) {
  const char* op = "dropout_backward";
  require_defined(op, {{"dy", dy}, {"mask", mask}});
  require_same_place(op, {{"dy", dy}, {"mask", mask}});
  require_shape(op, {"mask", mask}, dy.shape());
  return mul(dy, mask);
}

}  // namespace recur::ops

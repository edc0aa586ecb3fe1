// 1D convolution composed from recur's op set: im2col / col2im kernels
// (Backend) and batched GEMMs. See recur/host/conv1d.h.
#include "recur/host/conv1d.h"

#include "recur/host/backend.h"
#include "recur/host/ops.h"

namespace recur {

const char* conv1d_padding_name(Conv1dPadding p) {
  switch (p) {
    case Conv1dPadding::Valid: return "valid";
    case Conv1dPadding::Same: return "same";
    case Conv1dPadding::Causal: return "causal";
  }
  return "?";
}

Conv1dShape conv1d_shape(std::int64_t T, const Conv1dOptions& o) {
  RECUR_CHECK(o.kernel_size >= 1 && o.stride >= 1 && o.dilation >= 1 && o.groups >= 1, Value,
              "conv1d: kernel_size, strides, dilation_rate and groups must be >= 1, got ",
              o.kernel_size, ", ", o.stride, ", ", o.dilation, ", ", o.groups);
  RECUR_CHECK(T >= 0, Shape, "conv1d: negative length ", T);
  const std::int64_t span = o.dilation * (o.kernel_size - 1) + 1;
  Conv1dShape s;
  switch (o.padding) {
    case Conv1dPadding::Valid:
      RECUR_CHECK(T >= span, Shape, "conv1d: input of ", T, " steps is shorter than the kernel's span ",
                  span, " (kernel_size ", o.kernel_size, ", dilation ", o.dilation,
                  ") with padding 'valid'");
      s.T_out = (T - span) / o.stride + 1;
      break;
    case Conv1dPadding::Same: {
      s.T_out = (T + o.stride - 1) / o.stride;
      const std::int64_t total = std::max<std::int64_t>((s.T_out - 1) * o.stride + span - T, 0);
      s.pad_left = total / 2;
      break;
    }
    case Conv1dPadding::Causal:
      s.pad_left = span - 1;
      s.T_out = T == 0 ? 0 : (T - 1) / o.stride + 1;
      break;
  }
  return s;
}

namespace ops {
namespace {

kernels::Conv1dGeometry geometry(const Tensor& x, const Tensor& w, const Conv1dOptions& o) {
  const char* op = "conv1d";
  RECUR_CHECK(x.defined() && x.ndim() == 3, Shape, op, ": input must be [batch, time, channels], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  RECUR_CHECK(w.defined() && w.ndim() == 3, Shape, op,
              ": weights must be [filters, channels / groups, kernel_size], got ",
              w.defined() ? shape_str(w.shape()) : std::string("an undefined tensor"));
  RECUR_CHECK(x.device() == w.device(), Device, op, ": input on ", x.device().str(), ", weights on ",
              w.device().str());
  RECUR_CHECK(x.dtype() == w.dtype(), DType, op, ": input is ", dtype_name(x.dtype()), ", weights ",
              dtype_name(w.dtype()));
  const std::int64_t C = x.dim(2), F = w.dim(0);
  RECUR_CHECK(C % o.groups == 0 && F % o.groups == 0, Shape, op, ": ", C, " channels and ", F,
              " filters must both divide into ", o.groups, " groups");
  RECUR_CHECK(w.dim(1) == C / o.groups && w.dim(2) == o.kernel_size, Shape, op, ": weights ",
              shape_str(w.shape()), " do not fit ", C, " input channels, ", o.groups,
              " groups and kernel_size ", o.kernel_size, "; expected ",
              shape_str({F, C / o.groups, o.kernel_size}));
  const Conv1dShape s = conv1d_shape(x.dim(1), o);
  kernels::Conv1dGeometry g;
  g.B = x.dim(0);
  g.T = x.dim(1);
  g.C = C;
  g.T_out = s.T_out;
  g.K = o.kernel_size;
  g.stride = o.stride;
  g.dilation = o.dilation;
  g.pad_left = s.pad_left;
  g.groups = o.groups;
  return g;
}

Backend& conv_backend(const Tensor& x) {
  Backend& b = backend(x.device());
  const Support s = b.supports({OpKind::Conv1d, x.dtype()});
  RECUR_CHECK(s.ok, Unsupported, "conv1d on ", x.device().str(), ": ", s.reason);
  return b;
}

}  // namespace

Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv1dOptions& o, Tensor* cols_out) {
  const kernels::Conv1dGeometry g = geometry(x, w, o);
  const std::int64_t F = w.dim(0), G = g.groups, R = g.rows();
  if (b.defined())
    RECUR_CHECK(b.shape() == (Shape{F}), Shape, "conv1d: bias must be [", F, "], got ", shape_str(b.shape()));
  Backend& be = conv_backend(x);
  if (G == 1 && R > 0) {
    // The backend's direct convolution where it has one for this shape; the
    // backward then builds the columns it needs for dw itself.
    Tensor y = Tensor::empty({g.B, g.T_out, F}, x.dtype(), x.device());
    if (be.conv1d_direct(g, x, w, b, y)) {
      if (cols_out) *cols_out = Tensor();
      return y;
    }
  }
  const Tensor cols = Tensor::empty({G, R, g.cols_per_group()}, x.dtype(), x.device());
  if (cols.numel()) be.im2col1d(g, x, cols);
  const Tensor yg = Tensor::empty({G, R, F / G}, x.dtype(), x.device());
  gemm(cols, w.reshape({G, F / G, g.cols_per_group()}), yg, false, true);
  Tensor y = (G == 1 ? yg : transpose01(yg)).reshape({g.B, g.T_out, F});
  if (b.defined()) binary(BinaryOp::Add, y, b, y);
  if (cols_out) *cols_out = cols;
  return y;
}

Conv1dGrads conv1d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv1dOptions& o,
                            const Tensor& cols_in, bool input_grad) {
  const kernels::Conv1dGeometry g = geometry(x, w, o);
  const std::int64_t F = w.dim(0), G = g.groups, R = g.rows(), CgK = g.cols_per_group();
  RECUR_CHECK(dy.defined() && dy.shape() == (Shape{g.B, g.T_out, F}), Shape, "conv1d_backward: dy must be ",
              shape_str({g.B, g.T_out, F}), ", got ", dy.defined() ? shape_str(dy.shape()) : std::string("undefined"));
  Backend& be = conv_backend(x);
  if (cols_in.defined())
    RECUR_CHECK(cols_in.shape() == (Shape{G, R, CgK}), Shape, "conv1d_backward: cols ",
                shape_str(cols_in.shape()), " do not come from this input");
  // dy per group: [G, R, F/G].
  const Tensor dyg = G == 1 ? dy.reshape({1, R, F}) : transpose01(dy.reshape({R, G, F / G}));
  Conv1dGrads out;
  out.db = sum(dy.reshape({R, F}), 0);
  out.dw = Tensor::empty(w.shape(), x.dtype(), x.device());
  // Without the forward's columns, the backend's direct weight gradient
  // where it has one for this shape; else the columns and one GEMM.
  if (cols_in.defined() || G != 1 || !be.conv1d_direct_backward_weights(g, x, dy, out.dw)) {
    Tensor cols = cols_in;
    if (!cols.defined()) {
      cols = Tensor::empty({G, R, CgK}, x.dtype(), x.device());
      if (cols.numel()) be.im2col1d(g, x, cols);
    }
    gemm(dyg, cols, out.dw.reshape({G, F / G, CgK}), true, false);  // [F/G, R] x [R, CgK] per group
  }
  if (!input_grad) return out;
  out.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.dx.numel() && G == 1 && be.conv1d_direct_backward_data(g, dy, w, out.dx)) return out;
  const Tensor dcols = Tensor::empty({G, R, CgK}, x.dtype(), x.device());
  gemm(dyg, w.reshape({G, F / G, CgK}), dcols);  // [R, F/G] x [F/G, CgK] per group
  if (out.dx.numel()) be.col2im1d(g, dcols, out.dx);
  return out;
}

}  // namespace ops
}  // namespace recur

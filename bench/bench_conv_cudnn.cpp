// bench_conv_cudnn: recur's Conv1D (ops::conv1d / ops::conv1d_backward:
// im2col + one batched cuBLAS GEMM, see recur/host/conv1d.h) against cuDNN 9's
// convolution on one GPU, in one process, on the same inputs and weights.
//
// For each shape (batch B, steps T, channels C -> filters F, kernel K, stride,
// dilation, groups, padding):
//  - recur: ops::conv1d (forward, keeping the im2col buffer as the Conv1D layer
//    does in training) and ops::conv1d_backward on that buffer (dx, dw, db);
//  - cuDNN: the 1D convolution as a 2D one with H = 1 and W = T. Tensors NHWC
//    ([B, 1, T, C] is recur's [B, T, C] as it lies in memory, so recur could
//    call cuDNN on its own buffers), filter NHWC ([F, 1, K, C/groups]: recur's
//    [F, C/groups, K] transposed once on the host, outside the timing).
//    cudnnFindConvolution{Forward,BackwardData,BackwardFilter}AlgorithmEx pick
//    each direction's fastest algorithm; the row names it. Should no NHWC
//    algorithm take a direction, that direction runs NCHW instead, on inputs
//    transposed outside the timing (the row's algorithm then starts "NCHW:",
//    and the transposes recur would need are not counted).
//    Backward = BackwardData + BackwardFilter + BackwardBias (recur's backward
//    computes db too).
//  - FP32 on both sides, no TF32: recur's cuBLAS runs CUBLAS_DEFAULT_MATH;
//    cuDNN's descriptor is CUDNN_FMA_MATH, results that Find reports with
//    tensor-op math are refused, and NVIDIA_TF32_OVERRIDE=0 is set before any
//    CUDA call as a second guard.
//  - Padding: cuDNN pads symmetrically. recur's left padding p_l and right
//    padding p_r become max(p_l, p_r) on both sides; cuDNN then computes a few
//    extra output steps (causal: dilation (K - 1) at the end), which the
//    cross-check drops and whose dy is zero. A Keras 'same' padding with
//    p_r > p_l and a stride that does not divide p_r - p_l has no such
//    mapping and is reported as not measured.
// Cross-check before timing: cuDNN's y, dx, dw and db against recur's; the row
// gives max over elements of |cudnn - recur| / (|recur| + 1e-3 max|recur|);
// above 1e-3 a MISMATCH line goes to stderr.
// Method: random inputs in [-1, 1], the same buffers every repeat (a training
// step reads what the previous layer just wrote), 3 warm-ups, the median of
// --repeats (default 50, at least 10) CUDA-event timings on recur's stream,
// which cuDNN's handle uses too.
//
// Output: CSV on stdout, two rows per shape (forward, backward), '#' lines for
// context:
//   device,shape,direction,recur_us,cudnn_us,cudnn_algo,ratio,max_rel_err
// ratio = recur_us / cudnn_us: above 1, cuDNN is faster. The backward row's
// cudnn_algo gives the data / filter / bias parts and their times.
//   bench_conv_cudnn [--repeats N] [--layout auto|nhwc|nchw]
//                    [--shape B,T,C,F,K[,stride[,dilation[,groups[,valid|same|causal]]]] ...]
// Without a CUDA device it prints "no CUDA device: <why>" and exits 0.
// Not yet run on a GPU (written in a session without one).
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/recur.h"

namespace {
using namespace recur;

#define CK(call)                                                                              \
  do {                                                                                        \
    cudaError_t e_ = (call);                                                                  \
    if (e_ != cudaSuccess) RECUR_THROW(Cuda, #call, ": ", cudaGetErrorString(e_));           \
  } while (0)
#define CKDNN(call)                                                                           \
  do {                                                                                        \
    cudnnStatus_t s_ = (call);                                                                \
    if (s_ != CUDNN_STATUS_SUCCESS) RECUR_THROW(Cudnn, #call, ": ", cudnnGetErrorString(s_)); \
  } while (0)

constexpr int kWarmups = 3;
constexpr std::size_t kMaxWorkspace = std::size_t(1) << 30;  // 1 GiB for cuDNN's search
constexpr double kTolerance = 1e-3;

struct ConvShape {
  std::string name;
  std::int64_t B = 0, T = 0, C = 0, F = 0, K = 1;
  std::int64_t stride = 1, dilation = 1, groups = 1;
  Conv1dPadding padding = Conv1dPadding::Valid;

  Conv1dOptions options() const {
    Conv1dOptions o;
    o.kernel_size = K;
    o.stride = stride;
    o.dilation = dilation;
    o.groups = groups;
    o.padding = padding;
    return o;
  }
  // No commas: one CSV field.
  std::string str() const {
    std::ostringstream s;
    if (!name.empty()) s << name << " ";
    s << "B" << B << " T" << T << " C" << C << "->F" << F << " k" << K;
    if (stride != 1) s << " s" << stride;
    if (dilation != 1) s << " d" << dilation;
    if (groups != 1) s << " g" << groups;
    s << " " << conv1d_padding_name(padding);
    return s.str();
  }
};

ConvShape parse_shape(const std::string& spec) {
  std::stringstream ss(spec);
  std::string part;
  std::vector<std::string> parts;
  while (std::getline(ss, part, ',')) parts.push_back(part);
  RECUR_CHECK(parts.size() >= 5 && parts.size() <= 9, Value, "bad --shape '", spec,
              "': expected B,T,C,F,K[,stride[,dilation[,groups[,valid|same|causal]]]]");
  std::vector<std::int64_t> v;
  for (std::size_t i = 0; i < std::min<std::size_t>(parts.size(), 8); ++i) {
    char* end = nullptr;
    const long long x = std::strtoll(parts[i].c_str(), &end, 10);
    RECUR_CHECK(end && *end == '\0' && !parts[i].empty() && x >= 1, Value, "bad --shape '", spec,
                "': '", parts[i], "' is not a positive integer");
    v.push_back(x);
  }
  ConvShape s;
  s.B = v[0], s.T = v[1], s.C = v[2], s.F = v[3], s.K = v[4];
  if (v.size() > 5) s.stride = v[5];
  if (v.size() > 6) s.dilation = v[6];
  if (v.size() > 7) s.groups = v[7];
  if (parts.size() == 9) {
    const std::string& p = parts[8];
    RECUR_CHECK(p == "valid" || p == "same" || p == "causal", Value, "bad --shape '", spec,
                "': padding must be valid, same or causal");
    s.padding = p == "valid" ? Conv1dPadding::Valid : p == "same" ? Conv1dPadding::Same : Conv1dPadding::Causal;
  }
  return s;
}

// The shapes of issue 4: the Jena conv model's three Conv1D layers, the Keras
// book's IMDB conv model's two, and two larger ones (plain; dilated causal).
std::vector<ConvShape> default_shapes() {
  auto make = [](const char* name, std::int64_t B, std::int64_t T, std::int64_t C, std::int64_t F,
                 std::int64_t K, std::int64_t dilation = 1, Conv1dPadding p = Conv1dPadding::Valid) {
    ConvShape s;
    s.name = name;
    s.B = B, s.T = T, s.C = C, s.F = F, s.K = K, s.dilation = dilation, s.padding = p;
    return s;
  };
  return {make("jena_conv1", 128, 240, 6, 32, 5),
          make("jena_conv2", 128, 78, 32, 32, 5),
          make("jena_conv3", 128, 24, 32, 32, 5),
          make("imdb_conv1", 32, 500, 128, 32, 7),
          make("imdb_conv2", 32, 98, 32, 32, 7),
          make("large", 64, 1000, 256, 256, 3),
          make("large_causal_d2", 64, 1000, 256, 256, 3, 2, Conv1dPadding::Causal)};
}

// ---- timing -------------------------------------------------------------------

// Median microseconds of `repeats` runs of f on `stream` after kWarmups runs
// (bench_util.h's CUDA-event timer; the same buffers every run).
double time_us(cudaStream_t stream, int repeats, const std::function<void()>& f) {
  return bench::cuda_median_us(stream, kWarmups, repeats, [&](int) { f(); });
}

// ---- host-side data -----------------------------------------------------------

std::vector<float> random_vector(std::int64_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// Row-major [A, M, N] -> [A, N, M].
std::vector<float> swap_last2(const std::vector<float>& v, std::int64_t A, std::int64_t M, std::int64_t N) {
  std::vector<float> out(v.size());
  for (std::int64_t a = 0; a < A; ++a)
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n)
        out[std::size_t((a * N + n) * M + m)] = v[std::size_t((a * M + m) * N + n)];
  return out;
}

// max_i |got_i - ref_i| / (|ref_i| + 1e-3 max_j |ref_j|); infinite when a
// value is not finite.
double max_rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  RECUR_CHECK(got.size() == ref.size(), Internal, "cross-check: ", got.size(), " values against ", ref.size());
  double scale = 0, m = 0;
  for (float r : ref) scale = std::max(scale, std::abs(double(r)));
  const double floor = 1e-3 * scale + 1e-30;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::abs(double(got[i]) - double(ref[i])) / (std::abs(double(ref[i])) + floor);
    if (!std::isfinite(e)) return INFINITY;
    m = std::max(m, e);
  }
  return m;
}

// ---- cuDNN ----------------------------------------------------------------------

enum class Layout { NHWC, NCHW };
const char* layout_name(Layout l) { return l == Layout::NHWC ? "NHWC" : "NCHW"; }

const char* algo_name(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* algo_name(cudnnConvolutionBwdDataAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* algo_name(cudnnConvolutionBwdFilterAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "ALGO_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "FFT_TILING";
    default: return "?";
  }
}
const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor-op-conversion";
    case CUDNN_FMA_MATH: return "fma";
    default: return "?";
  }
}

// The choice Find made for one direction.
struct Choice {
  bool found = false;
  std::string algo;  // "ALGO_1", with ":nondet" and ":<math>" when they apply
  int index = 0;     // the cudnn*Algo_t value
  std::size_t memory = 0;
  std::string tried;  // every result Find returned, for the log
};

// The fastest successful result in Find's list (sorted by time) whose math is
// FP32 FMA: CUDNN_FMA_MATH as asked, or CUDNN_DEFAULT_MATH, which some cuDNN
// versions report for FMA kernels (a TF32 one would show in max_rel_err).
// `status` is the search's own: a search that failed as a whole leaves its
// direction without a choice, and the other directions go on.
template <class Perf>
Choice choose(cudnnStatus_t status, const Perf* perf, int n) {
  Choice c;
  if (status != CUDNN_STATUS_SUCCESS) {
    c.tried = std::string("Find failed: ") + cudnnGetErrorString(status);
    return c;
  }
  std::ostringstream tried;
  for (int i = 0; i < n; ++i) {
    const Perf& p = perf[i];
    tried << (i ? " " : "") << algo_name(p.algo) << ":" << cudnnGetErrorString(p.status) << ":"
          << math_name(p.mathType);
    if (p.status == CUDNN_STATUS_SUCCESS) tried << ":" << p.time << "ms";
    const bool fp32 = p.mathType == CUDNN_FMA_MATH || p.mathType == CUDNN_DEFAULT_MATH;
    if (c.found || p.status != CUDNN_STATUS_SUCCESS || !fp32) continue;
    c.found = true;
    c.index = int(p.algo);
    c.memory = p.memory;
    c.algo = algo_name(p.algo);
    if (p.determinism == CUDNN_NON_DETERMINISTIC) c.algo += ":nondet";
    if (p.mathType != CUDNN_FMA_MATH) c.algo += std::string(":") + math_name(p.mathType);
  }
  c.tried = tried.str();
  return c;
}

// Symmetric padding for cuDNN and the first of its output steps that is
// recur's step 0 (see the header comment).
struct CudnnPadding {
  std::int64_t pad = 0, offset = 0;
  bool ok = true;
};
CudnnPadding cudnn_padding(const ConvShape& s) {
  const Conv1dShape r = conv1d_shape(s.T, s.options());
  const std::int64_t span = s.dilation * (s.K - 1) + 1;
  const std::int64_t pad_right = std::max<std::int64_t>(0, (r.T_out - 1) * s.stride + span - s.T - r.pad_left);
  CudnnPadding p;
  p.pad = std::max(r.pad_left, pad_right);
  const std::int64_t shift = p.pad - r.pad_left;
  p.ok = shift % s.stride == 0;
  p.offset = shift / s.stride;
  return p;
}

int to_int(std::int64_t v, const char* what) {
  RECUR_CHECK(v >= 0 && v <= INT_MAX, Value, what, " ", v, " does not fit cuDNN's int");
  return int(v);
}

// cuDNN's descriptors for one convolution; destroyed with their owner, also
// when its constructor throws half-way.
struct Descriptors {
  cudnnTensorDescriptor_t xd{}, yd{}, bd{};
  cudnnFilterDescriptor_t wd{};
  cudnnConvolutionDescriptor_t cd{};
  Descriptors() = default;
  ~Descriptors() {
    if (cd) cudnnDestroyConvolutionDescriptor(cd);
    if (wd) cudnnDestroyFilterDescriptor(wd);
    if (bd) cudnnDestroyTensorDescriptor(bd);
    if (yd) cudnnDestroyTensorDescriptor(yd);
    if (xd) cudnnDestroyTensorDescriptor(xd);
  }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
};

// One cuDNN convolution in a layout, its buffers, and the algorithms Find chose.
struct CudnnConv {
  cudnnHandle_t handle;
  Layout layout;
  ConvShape s;
  std::int64_t T_out = 0, Tc = 0, offset = 0;
  Descriptors desc;
  cudnnTensorDescriptor_t &xd = desc.xd, &yd = desc.yd, &bd = desc.bd;
  cudnnFilterDescriptor_t& wd = desc.wd;
  cudnnConvolutionDescriptor_t& cd = desc.cd;
  Tensor x, w, y, dy, dx, dw, db, ws;
  std::size_t ws_bytes = 0;
  Choice fwd, bwd_data, bwd_filter;
  bool bias_ok = false;

  CudnnConv(cudnnHandle_t h, Layout l, const ConvShape& shape, Device dev) : handle(h), layout(l), s(shape) {
    const CudnnPadding p = cudnn_padding(s);
    RECUR_CHECK(p.ok, Unsupported, "cuDNN pads symmetrically; the left/right padding of ", s.str(),
                " differs by a step count the stride does not divide");
    T_out = conv1d_shape(s.T, s.options()).T_out;
    offset = p.offset;
    const cudnnTensorFormat_t fmt = l == Layout::NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    CKDNN(cudnnCreateTensorDescriptor(&xd));
    CKDNN(cudnnCreateTensorDescriptor(&yd));
    CKDNN(cudnnCreateTensorDescriptor(&bd));
    CKDNN(cudnnCreateFilterDescriptor(&wd));
    CKDNN(cudnnCreateConvolutionDescriptor(&cd));
    CKDNN(cudnnSetTensor4dDescriptor(xd, fmt, CUDNN_DATA_FLOAT, to_int(s.B, "batch"), to_int(s.C, "channels"),
                                     1, to_int(s.T, "steps")));
    CKDNN(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, fmt, to_int(s.F, "filters"),
                                     to_int(s.C / s.groups, "channels per group"), 1, to_int(s.K, "kernel")));
    CKDNN(cudnnSetConvolution2dDescriptor(cd, 0, to_int(p.pad, "padding"), 1, to_int(s.stride, "stride"), 1,
                                          to_int(s.dilation, "dilation"), CUDNN_CROSS_CORRELATION,
                                          CUDNN_DATA_FLOAT));
    CKDNN(cudnnSetConvolutionGroupCount(cd, to_int(s.groups, "groups")));
    CKDNN(cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH));
    int n = 0, c = 0, hh = 0, ww = 0;
    CKDNN(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &c, &hh, &ww));
    RECUR_CHECK(n == s.B && c == s.F && hh == 1 && ww >= offset + T_out, Internal, "cuDNN's output for ",
                s.str(), " is [", n, ", ", c, ", ", hh, ", ", ww, "], expected [", s.B, ", ", s.F, ", 1, >= ",
                offset + T_out, "]");
    Tc = ww;
    CKDNN(cudnnSetTensor4dDescriptor(yd, fmt, CUDNN_DATA_FLOAT, n, c, 1, ww));
    CKDNN(cudnnSetTensor4dDescriptor(bd, fmt, CUDNN_DATA_FLOAT, 1, c, 1, 1));
    y = Tensor::empty({s.B * s.F * Tc}, DType::f32, dev);
    dx = Tensor::empty({s.B * s.T * s.C}, DType::f32, dev);
    dw = Tensor::empty({s.F * (s.C / s.groups) * s.K}, DType::f32, dev);
    db = Tensor::empty({s.F}, DType::f32, dev);
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // recur's host data ([B, T, C], [F, C/groups, K], [B, T_out, F]) in this
  // layout, dy placed at cuDNN's output steps offset .. offset + T_out - 1.
  void load(const std::vector<float>& xv, const std::vector<float>& wv, const std::vector<float>& dyv,
            Device dev) {
    const std::int64_t Cg = s.C / s.groups;
    std::vector<float> dyc(std::size_t(s.B * Tc * s.F), 0.f);
    for (std::int64_t b = 0; b < s.B; ++b)
      std::copy(dyv.begin() + b * T_out * s.F, dyv.begin() + (b + 1) * T_out * s.F,
                dyc.begin() + (b * Tc + offset) * s.F);
    if (layout == Layout::NHWC) {
      x = Tensor::from_vector(xv, {s.B * s.T * s.C}, dev);
      w = Tensor::from_vector(swap_last2(wv, s.F, Cg, s.K), {s.F * Cg * s.K}, dev);
      dy = Tensor::from_vector(dyc, {s.B * Tc * s.F}, dev);
    } else {
      x = Tensor::from_vector(swap_last2(xv, s.B, s.T, s.C), {s.B * s.T * s.C}, dev);
      w = Tensor::from_vector(wv, {s.F * Cg * s.K}, dev);
      dy = Tensor::from_vector(swap_last2(dyc, s.B, Tc, s.F), {s.B * Tc * s.F}, dev);
    }
  }

  // Runs the three searches with a workspace as large as any algorithm asks
  // for (at most kMaxWorkspace), then keeps the one the choices need.
  void find(Device dev) {
    std::size_t need = 0, sz = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a)
      if (cudnnGetConvolutionForwardWorkspaceSize(handle, xd, wd, cd, yd, cudnnConvolutionFwdAlgo_t(a), &sz) ==
          CUDNN_STATUS_SUCCESS)
        need = std::max(need, sz);
    for (int a = 0; a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT; ++a)
      if (cudnnGetConvolutionBackwardDataWorkspaceSize(handle, wd, yd, cd, xd, cudnnConvolutionBwdDataAlgo_t(a),
                                                       &sz) == CUDNN_STATUS_SUCCESS)
        need = std::max(need, sz);
    for (int a = 0; a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT; ++a)
      if (cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, xd, yd, cd, wd,
                                                         cudnnConvolutionBwdFilterAlgo_t(a), &sz) ==
          CUDNN_STATUS_SUCCESS)
        need = std::max(need, sz);
    need = std::min(need, kMaxWorkspace);
    Tensor search = Tensor::empty({std::int64_t(need / 4) + 1}, DType::f32, dev);
    backend(dev).synchronize();  // the inputs are on the device

    int n = 0;
    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnStatus_t st = cudnnFindConvolutionForwardAlgorithmEx(
        handle, xd, x.raw_data(), wd, w.raw_data(), cd, yd, y.raw_data(), CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n,
        fp, search.raw_data(), need);
    fwd = choose(st, fp, n);
    cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    st = cudnnFindConvolutionBackwardDataAlgorithmEx(handle, wd, w.raw_data(), yd, dy.raw_data(), cd, xd,
                                                     dx.raw_data(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, dp,
                                                     search.raw_data(), need);
    bwd_data = choose(st, dp, n);
    cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    st = cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, xd, x.raw_data(), yd, dy.raw_data(), cd, wd,
                                                       dw.raw_data(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
                                                       wp, search.raw_data(), need);
    bwd_filter = choose(st, wp, n);
    // A failed search may leave an error on the stream's work: wait for it here.
    CK(cudaDeviceSynchronize());

    ws_bytes = std::max({fwd.found ? fwd.memory : 0, bwd_data.found ? bwd_data.memory : 0,
                         bwd_filter.found ? bwd_filter.memory : 0});
    search = Tensor();
    ws = Tensor::empty({std::int64_t(ws_bytes / 4) + 1}, DType::f32, dev);

    // Bias gradient: not every layout takes it; try once.
    const float one = 1.f, zero = 0.f;
    bias_ok = cudnnConvolutionBackwardBias(handle, &one, yd, dy.raw_data(), &zero, bd, db.raw_data()) ==
              CUDNN_STATUS_SUCCESS;
  }

  void forward() {
    const float one = 1.f, zero = 0.f;
    CKDNN(cudnnConvolutionForward(handle, &one, xd, x.raw_data(), wd, w.raw_data(), cd,
                                  cudnnConvolutionFwdAlgo_t(fwd.index), ws.raw_data(), ws_bytes, &zero, yd,
                                  y.raw_data()));
  }
  void backward_data() {
    const float one = 1.f, zero = 0.f;
    CKDNN(cudnnConvolutionBackwardData(handle, &one, wd, w.raw_data(), yd, dy.raw_data(), cd,
                                       cudnnConvolutionBwdDataAlgo_t(bwd_data.index), ws.raw_data(), ws_bytes,
                                       &zero, xd, dx.raw_data()));
  }
  void backward_filter() {
    const float one = 1.f, zero = 0.f;
    CKDNN(cudnnConvolutionBackwardFilter(handle, &one, xd, x.raw_data(), yd, dy.raw_data(), cd,
                                         cudnnConvolutionBwdFilterAlgo_t(bwd_filter.index), ws.raw_data(),
                                         ws_bytes, &zero, wd, dw.raw_data()));
  }
  void backward_bias() {
    const float one = 1.f, zero = 0.f;
    CKDNN(cudnnConvolutionBackwardBias(handle, &one, yd, dy.raw_data(), &zero, bd, db.raw_data()));
  }

  // Results in recur's layouts: y [B, T_out, F], dx [B, T, C], dw [F, C/groups, K].
  std::vector<float> y_host() const {
    std::vector<float> v = y.to_vector<float>();
    if (layout == Layout::NCHW) v = swap_last2(v, s.B, s.F, Tc);
    std::vector<float> out(std::size_t(s.B * T_out * s.F));
    for (std::int64_t b = 0; b < s.B; ++b)
      std::copy(v.begin() + (b * Tc + offset) * s.F, v.begin() + (b * Tc + offset + T_out) * s.F,
                out.begin() + b * T_out * s.F);
    return out;
  }
  std::vector<float> dx_host() const {
    std::vector<float> v = dx.to_vector<float>();
    return layout == Layout::NCHW ? swap_last2(v, s.B, s.C, s.T) : v;
  }
  std::vector<float> dw_host() const {
    std::vector<float> v = dw.to_vector<float>();
    return layout == Layout::NHWC ? swap_last2(v, s.F, s.K, s.C / s.groups) : v;
  }
};

// ---- one shape ------------------------------------------------------------------

struct Options {
  int repeats = 50;
  bool nhwc = true, nchw = true;  // which layouts may be used (both: NCHW only as a fallback)
};

std::string fmt_us(double us) {
  if (!std::isfinite(us)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", us);
  return buf;
}

void run(const ConvShape& s, const Options& opt, cudnnHandle_t handle, const std::string& device) {
  const Device dev = Device::cuda(0);
  auto* stream = static_cast<cudaStream_t>(backend(dev).native_stream());
  const Conv1dOptions o = s.options();
  const std::int64_t T_out = conv1d_shape(s.T, o).T_out;
  std::mt19937_64 rng(20240404);
  const std::vector<float> xv = random_vector(s.B * s.T * s.C, rng);
  const std::vector<float> wv = random_vector(s.F * (s.C / s.groups) * s.K, rng);
  const std::vector<float> dyv = random_vector(s.B * T_out * s.F, rng);

  // recur.
  const Tensor x = Tensor::from_vector(xv, {s.B, s.T, s.C}, dev);
  const Tensor w = Tensor::from_vector(wv, {s.F, s.C / s.groups, s.K}, dev);
  const Tensor dy = Tensor::from_vector(dyv, {s.B, T_out, s.F}, dev);
  Tensor cols;
  const Tensor y_ref = ops::conv1d(x, w, Tensor(), o, &cols);
  const ops::Conv1dGrads g_ref = ops::conv1d_backward(x, w, dy, o, cols);
  const std::vector<float> y_ref_h = y_ref.to_vector<float>(), dx_ref_h = g_ref.dx.to_vector<float>(),
                           dw_ref_h = g_ref.dw.to_vector<float>(), db_ref_h = g_ref.db.to_vector<float>();
  const double recur_fwd = time_us(stream, opt.repeats, [&] {
    Tensor c;
    ops::conv1d(x, w, Tensor(), o, &c);
  });
  const double recur_bwd = time_us(stream, opt.repeats, [&] { ops::conv1d_backward(x, w, dy, o, cols); });

  // cuDNN, per direction in the first layout that has an algorithm for it.
  struct Result {
    double us = NAN, data_us = NAN, filter_us = NAN, bias_us = NAN;
    std::string algo = "none";
    double err = NAN;
  } fwd, bwd;
  CKDNN(cudnnSetStream(handle, stream));
  std::vector<Layout> layouts;
  if (opt.nhwc) layouts.push_back(Layout::NHWC);
  if (opt.nchw) layouts.push_back(Layout::NCHW);
  for (Layout l : layouts) {
    if (!std::isnan(fwd.us) && !std::isnan(bwd.us)) break;
    try {
      CudnnConv conv(handle, l, s, dev);
      conv.load(xv, wv, dyv, dev);
      conv.find(dev);
      const std::string prefix = l == Layout::NHWC ? "" : std::string(layout_name(l)) + ":";
      std::printf("# %s %s find: forward [%s] backward-data [%s] backward-filter [%s]%s\n", s.str().c_str(),
                  layout_name(l), conv.fwd.tried.c_str(), conv.bwd_data.tried.c_str(),
                  conv.bwd_filter.tried.c_str(), conv.bias_ok ? "" : "; BackwardBias refused");
      if (std::isnan(fwd.us) && conv.fwd.found) {
        conv.forward();
        CK(cudaStreamSynchronize(stream));
        fwd.err = max_rel_err(conv.y_host(), y_ref_h);
        fwd.us = time_us(stream, opt.repeats, [&] { conv.forward(); });
        fwd.algo = prefix + conv.fwd.algo;
      }
      if (std::isnan(bwd.us) && conv.bwd_data.found && conv.bwd_filter.found) {
        conv.backward_data();
        conv.backward_filter();
        if (conv.bias_ok) conv.backward_bias();
        CK(cudaStreamSynchronize(stream));
        bwd.err = std::max(max_rel_err(conv.dx_host(), dx_ref_h), max_rel_err(conv.dw_host(), dw_ref_h));
        if (conv.bias_ok) bwd.err = std::max(bwd.err, max_rel_err(conv.db.to_vector<float>(), db_ref_h));
        bwd.us = time_us(stream, opt.repeats, [&] {
          conv.backward_data();
          conv.backward_filter();
          if (conv.bias_ok) conv.backward_bias();
        });
        bwd.data_us = time_us(stream, opt.repeats, [&] { conv.backward_data(); });
        bwd.filter_us = time_us(stream, opt.repeats, [&] { conv.backward_filter(); });
        if (conv.bias_ok) bwd.bias_us = time_us(stream, opt.repeats, [&] { conv.backward_bias(); });
        bwd.algo = prefix + "data=" + conv.bwd_data.algo + " " + fmt_us(bwd.data_us) + "us / filter=" +
                   conv.bwd_filter.algo + " " + fmt_us(bwd.filter_us) + "us / " +
                   (conv.bias_ok ? "bias " + fmt_us(bwd.bias_us) + "us" : std::string("no bias grad"));
      }
    } catch (const Error& e) {
      std::printf("# %s %s: not measured: %s\n", s.str().c_str(), layout_name(l), e.message().c_str());
    }
  }

  const Result* rs[2] = {&fwd, &bwd};
  const double recur_us[2] = {recur_fwd, recur_bwd};
  for (int d = 0; d < 2; ++d) {
    const Result& r = *rs[d];
    if (r.err > kTolerance)
      std::fprintf(stderr, "# MISMATCH %s %s: cuDNN against recur, max rel err %.3g\n", s.str().c_str(),
                   d ? "backward" : "forward", r.err);
    std::printf("%s,%s,%s,%s,%s,%s,%.3g,%.3g\n", device.c_str(), s.str().c_str(), d ? "backward" : "forward",
                fmt_us(recur_us[d]).c_str(), fmt_us(r.us).c_str(), r.algo.c_str(), recur_us[d] / r.us, r.err);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // No TF32 anywhere (cuBLAS and cuDNN read this when they start): recur's
  // FP32 against cuDNN's FP32.
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  try {
    Options opt;
    std::vector<ConvShape> shapes;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) {
        opt.repeats = std::max(10, std::atoi(argv[++i]));
      } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
        shapes.push_back(parse_shape(argv[++i]));
      } else if (!std::strcmp(argv[i], "--layout") && i + 1 < argc) {
        const std::string l = argv[++i];
        if (l == "nhwc") opt.nchw = false;
        else if (l == "nchw") opt.nhwc = false;
        else if (l != "auto") {
          std::fprintf(stderr, "bench_conv_cudnn: --layout must be auto, nhwc or nchw\n");
          return 2;
        }
      } else {
        std::fprintf(stderr,
                     "usage: bench_conv_cudnn [--repeats N>=10] [--layout auto|nhwc|nchw]\n"
                     "       [--shape B,T,C,F,K[,stride[,dilation[,groups[,valid|same|causal]]]] ...]\n");
        return 2;
      }
    }
    if (cuda_device_count() == 0) {
      std::printf("# bench_conv_cudnn: no CUDA device: %s; nothing measured\n", cuda_unavailable_reason().c_str());
      return 0;
    }
    if (shapes.empty()) shapes = default_shapes();
    const SystemInfo info = system_info();
    const GpuInfo& gpu = info.gpus.at(0);
    cudnnHandle_t handle;
    CKDNN(cudnnCreate(&handle));
    std::printf("# bench_conv_cudnn: %s (cc %d.%d), driver %d, runtime %d, cuDNN %zu; %d warm-ups, median of %d "
                "CUDA-event timings; ratio = recur_us / cudnn_us (> 1: cuDNN faster)\n",
                gpu.name.c_str(), gpu.cc_major, gpu.cc_minor, info.cuda_driver_version, info.cuda_runtime_version,
                cudnnGetVersion(), kWarmups, opt.repeats);
    std::printf("device,shape,direction,recur_us,cudnn_us,cudnn_algo,ratio,max_rel_err\n");
    int failed = 0;
    for (const ConvShape& s : shapes) {
      try {
        run(s, opt, handle, gpu.name);
      } catch (const Error& e) {
        ++failed;
        std::printf("# %s: failed: %s\n", s.str().c_str(), e.what());
      }
    }
    cudnnDestroy(handle);
    return failed ? 1 : 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

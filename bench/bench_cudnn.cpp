// bench_cudnn: recur's recurrent layers against cuDNN 9's RNN on one GPU, in
// one process, on the same weights and inputs.
//
// For each configuration (cell, hidden H, batch B, steps T, input I, masked):
//  - recur: the Recurrent layer on cuda:0, two ways: with RECUR_PERSISTENT=0
//    (recur_standard_us_per_step: the per-step GEMM + pointwise kernels) and
//    with RECUR_PERSISTENT=1 (recur_us_per_step: the persistent kernel where
//    the planner allows it, docs/persistent.md; recur_algo says which ran:
//    standard, persistent, or persistent-failed when it threw). A '#' line
//    gives the persistent forward's error against the standard one;
//  - cuDNN: cudnnRNNForward / cudnnRNNBackwardData_v8 /
//    cudnnRNNBackwardWeights_v8 with every algorithm (STANDARD, PERSIST_STATIC,
//    PERSIST_STATIC_SMALL_H, PERSIST_DYNAMIC) in each data layout:
//    batch_major (BATCH_MAJOR_UNPACKED: recur's own [B, T, I], padded, per-row
//    lengths in recur's row order), seq_major (SEQ_MAJOR_UNPACKED: [T, B, I],
//    padded, per-row lengths; masked configurations only, since with equal
//    lengths its bytes are packed's) and packed (SEQ_MAJOR_PACKED, as PyTorch's
//    pack_padded_sequence makes it: rows sorted longest first, x, dy and the
//    initial states permuted to that order, at each step only the rows still
//    running; maxSeqLength the longest length, which cuDNN requires of the
//    packed layout; outputs, final states and their gradients permuted back
//    for the cross-check). Every layout's data is made outside the timing, so
//    the copies recur would need to call cuDNN that way are not counted. A
//    variant cuDNN refuses for the shape (NOT_SUPPORTED, BAD_PARAM) is listed
//    as unsupported in cudnn_variants and its error goes to stderr; it never
//    gets a time. Each accepted variant is cross-checked and screened with as
//    many runs as recur gets (kWarmups, then the median of --repeats;
//    cudnn_variants lists those times, us per step).
//  - Timing: per mode, recur's two paths and the fastest screened variant of
//    each layout run interleaved: one run of each per round, the order rotated
//    every round, --repeats rounds after the warm-ups, the median of each (a
//    '#' line lists them all). The row's cuDNN figure is the best of those
//    layouts (for a masked batch: the best of the padded and the packed runs),
//    and cudnn_algo names it.
//  - Precision: FP32 on both sides, no TF32 (cuDNN: CUDNN_FMA_MATH; recur's
//    cuBLAS runs CUBLAS_DEFAULT_MATH; NVIDIA_TF32_OVERRIDE=0 is set before any
//    CUDA call as a second guard). bf16/fp16 are not measured: recur's
//    recurrent layers take float32 or float64 only (cuDNN would take both).
// Cross-check before timing, every variant: recur's weights are copied into
// cuDNN's weight space (PyTorch's gate order is cuDNN's), and on the same
// inputs cuDNN's y and final states (inference), dx, the initial states'
// gradients and the weight gradients (training: forward, backward data,
// backward weights) are compared with recur's, in recur's row order. err_y
// and err_grad are the largest ||cudnn - recur|| / ||recur|| over the
// variants (err_y: over y, h_T and c_T; err_grad: over dx, dh_0, dc_0, dW_ih,
// dW_hh, db_ih, db_hh); padded steps
// are left out; NaN counts as infinite. Above 1e-3 a MISMATCH line goes to
// stderr and the row is still printed.
// Method: inputs and output gradients drawn N(0, 0.5^2) on the device (cuRAND;
// without it, U(-1, 1) on the host; never zeros), kRotations sets rotated between runs, and before every timed
// run (outside the timing) a write of twice the L2's size, so that no run finds
// its inputs in the L2; kWarmups untimed runs, then the median of --repeats
// (>= 20) CUDA-event timings on recur's stream, which cuDNN's handle uses too.
// Masked configurations: a random length in [1, T] per row, in no order (only
// cuDNN's packed layout sorts them, on its own copy), a [B, T] mask for recur,
// and random initial states (so that the cross-check sees the packed layout's
// permutation of them); unmasked ones start from zeros (recur gets none).
// Derived figures: FLOPs = 2 * valid_steps * G * H * (I + H) for a forward
// pass (the two matrix products; valid_steps = the sum of the lengths), 3x
// that for training. Bytes = the fewest a pass must move, in FP32: forward
// reads x, the weights and the initial states and writes y and the final
// states; training also reads dy and writes dx and the weight gradients.
// TFLOP/s and GB/s are those over each side's time.
// ratio_recur_cudnn = recur_us_per_step / cudnn_us_per_step: above 1, cuDNN
// is faster.
//
// Output: CSV on stdout (kCsvHeader; '#' lines for context, skipped and failed
// configurations), one row per configuration and mode (forward = inference,
// train = forward + backward data + backward weights).
//   bench_cudnn [--quick] [--repeats N] [--budget-s S] [--config lstm|gru,H,B,T,I[,masked] ...]
// Without --config: the Jena shape (GRU, H 32, B 128, T 240, I 14), masked
// variable-length batches, the published reference shape (LSTM, H 768, B 16,
// T 1024, I 768), then the sweep (LSTM and GRU; H 32..1024; B 1, 8, 32..256,
// and 16 at H 512 and 1024; T 240 and 1000; I = H) from the cheapest
// configuration up. --quick: the Jena and masked ones only. --budget-s: start
// no configuration predicted to end after S seconds from the start (the
// prediction scales a cost model by what the configurations so far actually
// took); the skipped ones are listed.
// Without a CUDA device it prints "# bench_cudnn: no GPU found: <why>" and exits 0.
// An earlier version ran once on an H100 (2026-12-05, commit bc79d97); the
// variable-length packed and seq_major paths, the permuted initial states, the
// interleaved timing and the new shapes have not run on a GPU yet (written in
// sessions without one).
#include <cuda_runtime_api.h>
#include <cudnn.h>
#ifdef RECUR_BENCH_CURAND
#include <curand.h>
#endif

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/kernels/persistent_cost.h"
#include "recur/recur.h"

namespace {
using namespace recur;

#define CK(call) RECUR_BENCH_CUDA_CHECK(call)
#define CKDNN(call)                                                                           \
  do {                                                                                        \
    cudnnStatus_t s_ = (call);                                                                \
    if (s_ != CUDNN_STATUS_SUCCESS) RECUR_THROW(Cudnn, #call, ": ", cudnnGetErrorString(s_)); \
  } while (0)
#ifdef RECUR_BENCH_CURAND
#define CKRAND(call)                                                                          \
  do {                                                                                        \
    curandStatus_t s_ = (call);                                                               \
    if (s_ != CURAND_STATUS_SUCCESS) RECUR_THROW(Cuda, #call, ": cuRAND status ", int(s_));  \
  } while (0)
#else
using curandGenerator_t = std::uint64_t;  // the host fallback's state
#endif

// The CSV header; tests/plot_bench_test.py reads it from this file to check
// that its fixture (tests/data/bench_cudnn_fixture.csv) has the same columns.
constexpr const char* kCsvHeader =
    "device,driver,cuda_driver,cuda_runtime,cudnn,cell,H,B,T,I,masked,valid_steps,mode,dtype,"
    "recur_algo,recur_us_per_step,recur_standard_us_per_step,cudnn_algo,cudnn_us_per_step,"
    "ratio_recur_cudnn,recur_tflops,cudnn_tflops,recur_gbs,cudnn_gbs,err_y,err_grad,cudnn_variants,"
    "recur_regime,floor_us_per_step,recur_over_floor,cudnn_over_floor";

constexpr int kRotations = 4;
constexpr int kWarmups = 3;
constexpr double kTolerance = 1e-3;

struct Config {
  CellType cell;
  std::int64_t H, B, T, I;
  bool masked = false;
  std::string str() const {
    std::ostringstream s;
    s << (cell == CellType::LSTM ? "lstm" : "gru") << "," << H << "," << B << "," << T << "," << I
      << (masked ? ",masked" : "");
    return s.str();
  }
};

int gates(const Config& c) { return c.cell == CellType::LSTM ? 4 : 3; }

// cuDNN data layouts tried: batch-major padded (recur's own [B, T, I]),
// sequence-major padded ([T, B, I]; masked configurations only: with equal
// lengths its bytes are the packed layout's), and sequence-major packed
// (PyTorch's packed sequences, rows sorted longest first).
int layouts_tried(const Config& c) { return c.masked ? 3 : 2; }

// Relative cost of a configuration, for ordering the sweep and predicting its
// time under --budget-s: a per-step latency plus the arithmetic at a modest
// FP32 rate, for forward and training. Per mode: every cuDNN variant is
// cross-checked (about two runs) and, where cuDNN accepts it (assumed: half of
// the 4 algorithms x the layouts), screened with as many runs as recur gets;
// then recur (standard and persistent) and the fastest variant of each layout
// run interleaved, again warm-ups plus `repeats` runs each; a cuDNN plan build
// or two. Only ratios between configurations matter; the scale is learnt while
// running.
double cost_model(const Config& c, int repeats) {
  const double step_flops = 2.0 * double(c.B) * gates(c) * double(c.H) * double(c.H + c.I);
  const double fwd = double(c.T) * (10e-6 + step_flops / 20e12);
  const int L = layouts_tried(c), variants = 4 * L;
  const double timed = double(variants / 2 + 2 + L) * (kWarmups + repeats) + 2.0 * variants;
  return timed * (fwd + 3 * fwd) + 0.5;
}

// ---- device data ----------------------------------------------------------------

// A tensor of random values, never all zeros: N(0, 0.5^2) drawn on the device
// with cuRAND (which draws normals in pairs: an odd count's last element is
// set from the host), or, without cuRAND, U(-1, 1) drawn on the host
// (splitmix64) and copied.
Tensor device_random(curandGenerator_t& gen, const Shape& shape, Device dev, cudaStream_t s) {
  Tensor t = Tensor::empty(shape, DType::f32, dev);
  const std::int64_t n = shape_numel(shape);
#ifdef RECUR_BENCH_CURAND
  const std::int64_t even = n & ~std::int64_t(1);
  if (even > 0) CKRAND(curandGenerateNormal(gen, t.data<float>(), std::size_t(even), 0.f, 0.5f));
  if (n != even) {
    static const float last = 0.25f;
    CK(cudaMemcpyAsync(t.data<float>() + even, &last, sizeof(float), cudaMemcpyHostToDevice, s));
  }
#else
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) {
    std::uint64_t z = (gen += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    x = float(double(z >> 11) * 0x1.0p-53 * 2.0 - 1.0);
  }
  CK(cudaMemcpyAsync(t.raw_data(), v.data(), sizeof(float) * v.size(), cudaMemcpyHostToDevice, s));
  CK(cudaStreamSynchronize(s));  // v goes out of scope
#endif
  return t;
}

// Layout conversions, all on the stream, all outside the timing.
// Rows of n floats: gather dst[j] = src[order[j]], or scatter dst[order[j]] = src[j].
void permute_rows(const float* src, float* dst, const std::vector<int>& order, std::size_t n, bool scatter,
                  cudaStream_t s) {
  for (std::size_t j = 0; j < order.size(); ++j) {
    const std::size_t from = scatter ? j : std::size_t(order[j]), to = scatter ? std::size_t(order[j]) : j;
    CK(cudaMemcpyAsync(dst + to * n, src + from * n, sizeof(float) * n, cudaMemcpyDeviceToDevice, s));
  }
}

// Batch-major [B, T, F] to sequence-major [T, B, F] (to_seq) or back: one 2D copy per step.
void transpose_bt(const float* src, float* dst, std::int64_t B, std::int64_t T, std::int64_t F, bool to_seq,
                  cudaStream_t s) {
  const std::size_t row = sizeof(float) * F, bm_pitch = row * T, sm_pitch = row;
  for (std::int64_t t = 0; t < T; ++t) {
    if (to_seq)
      CK(cudaMemcpy2DAsync(dst + t * B * F, sm_pitch, src + t * F, bm_pitch, row, std::size_t(B),
                           cudaMemcpyDeviceToDevice, s));
    else
      CK(cudaMemcpy2DAsync(dst + t * F, bm_pitch, src + t * B * F, sm_pitch, row, std::size_t(B),
                           cudaMemcpyDeviceToDevice, s));
  }
}

// Sequence-major packed copy of batch-major x [B, T, F] whose rows are sorted
// longest first: at step t, the rows still running (batch_sizes[t]) one after
// another, nothing for the padding. One 2D copy per step.
void pack(const float* bm, float* packed, const std::vector<int>& batch_sizes, std::int64_t T, std::int64_t F,
          cudaStream_t s) {
  std::size_t off = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    const int n = batch_sizes[std::size_t(t)];
    if (n == 0) break;
    CK(cudaMemcpy2DAsync(packed + off, sizeof(float) * F, bm + t * F, sizeof(float) * T * F, sizeof(float) * F,
                         std::size_t(n), cudaMemcpyDeviceToDevice, s));
    off += std::size_t(n) * F;
  }
}

// The reverse, into a zeroed batch-major [B, T, F] (rows still sorted).
void unpack(const float* packed, float* bm, const std::vector<int>& batch_sizes, std::int64_t B, std::int64_t T,
            std::int64_t F, cudaStream_t s) {
  CK(cudaMemsetAsync(bm, 0, sizeof(float) * B * T * F, s));
  std::size_t off = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    const int n = batch_sizes[std::size_t(t)];
    if (n == 0) break;
    CK(cudaMemcpy2DAsync(bm + t * F, sizeof(float) * T * F, packed + off, sizeof(float) * F, sizeof(float) * F,
                         std::size_t(n), cudaMemcpyDeviceToDevice, s));
    off += std::size_t(n) * F;
  }
}

// ||a - b|| / ||b|| over the positions where keep (when given) is set; NaN: inf.
double rel_err(const std::vector<float>& a, const std::vector<float>& b, const std::vector<char>* keep = nullptr) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (keep && !(*keep)[i]) continue;
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    const double d = double(a[i]) - b[i];
    num += d * d;
    den += double(b[i]) * b[i];
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// ---- cuDNN ----------------------------------------------------------------------

const char* algo_name(cudnnRNNAlgo_t a) {
  switch (a) {
    case CUDNN_RNN_ALGO_STANDARD: return "STANDARD";
    case CUDNN_RNN_ALGO_PERSIST_STATIC: return "PERSIST_STATIC";
    case CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H: return "PERSIST_STATIC_SMALL_H";
    case CUDNN_RNN_ALGO_PERSIST_DYNAMIC: return "PERSIST_DYNAMIC";
    default: return "?";
  }
}

// CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, _SEQ_MAJOR_UNPACKED and _SEQ_MAJOR_PACKED.
enum class Layout { BatchMajor, SeqMajor, SeqMajorPacked };
const char* layout_name(Layout l) {
  return l == Layout::BatchMajor ? "batch_major" : l == Layout::SeqMajor ? "seq_major" : "packed";
}

// One cuDNN RNN set up for an algorithm and a data layout; throws (caught by
// the caller) when cuDNN does not support them for the shape.
struct CudnnRnn {
  cudnnHandle_t handle{};
  cudnnRNNDescriptor_t rnn{};
  cudnnDropoutDescriptor_t dropout{};
  cudnnRNNDataDescriptor_t xd{}, yd{};
  cudnnTensorDescriptor_t hd{}, cd{};
  Tensor dropout_states, weights, dweights, work, reserve, seq_lengths;
  std::size_t wsize = 0, work_size = 0, reserve_size = 0;

  CudnnRnn(cudnnHandle_t h, cudnnRNNAlgo_t algo, Layout layout, const Config& c, const std::vector<int>& lengths,
           Device dev)
      : handle(h) {
    CKDNN(cudnnCreateRNNDescriptor(&rnn));
    CKDNN(cudnnCreateDropoutDescriptor(&dropout));
    CKDNN(cudnnCreateRNNDataDescriptor(&xd));
    CKDNN(cudnnCreateRNNDataDescriptor(&yd));
    CKDNN(cudnnCreateTensorDescriptor(&hd));
    CKDNN(cudnnCreateTensorDescriptor(&cd));
    std::size_t ds = 0;
    CKDNN(cudnnDropoutGetStatesSize(handle, &ds));
    dropout_states = Tensor::empty({std::int64_t(ds / 4) + 1}, DType::f32, dev);
    CKDNN(cudnnSetDropoutDescriptor(dropout, handle, 0.f, dropout_states.raw_data(), ds, 0));
    // cuDNN's rules for an RNN data descriptor (cudnnSetRNNDataDescriptor,
    // cudnn_adv library reference): in the packed layout the lengths must be
    // sorted longest first and maxSeqLength must be the longest of them (the
    // H100 run of 2026-12-05 passed T where the longest random length was
    // shorter, 239 of 240 and 988 of 1000: CUDNN_STATUS_BAD_PARAM); the
    // padding fill applies to unpacked outputs only, and the unpacked
    // layouts need CUDNN_RNN_PADDED_IO_ENABLED.
    const bool packed = layout == Layout::SeqMajorPacked;
    if (packed)
      RECUR_CHECK(std::is_sorted(lengths.begin(), lengths.end(), std::greater<int>()), Value,
                  "packed layout: lengths not sorted longest first");
    const int max_len = packed ? *std::max_element(lengths.begin(), lengths.end()) : int(c.T);
    CKDNN(cudnnSetRNNDescriptor_v8(rnn, algo, c.cell == CellType::LSTM ? CUDNN_LSTM : CUDNN_GRU,
                                   CUDNN_RNN_DOUBLE_BIAS, CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
                                   CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, int(c.I), int(c.H),
                                   int(c.H), 1, dropout,
                                   packed ? CUDNN_RNN_PADDED_IO_DISABLED : CUDNN_RNN_PADDED_IO_ENABLED));
    if (algo == CUDNN_RNN_ALGO_PERSIST_DYNAMIC) CKDNN(cudnnBuildRNNDynamic(handle, rnn, int(c.B)));
    const cudnnRNNDataLayout_t dl = packed                        ? CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED
                                    : layout == Layout::SeqMajor ? CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED
                                                                 : CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED;
    float fill = 0.f;
    void* fillp = packed ? nullptr : &fill;
    CKDNN(cudnnSetRNNDataDescriptor(xd, CUDNN_DATA_FLOAT, dl, max_len, int(c.B), int(c.I), lengths.data(), fillp));
    CKDNN(cudnnSetRNNDataDescriptor(yd, CUDNN_DATA_FLOAT, dl, max_len, int(c.B), int(c.H), lengths.data(), fillp));
    const int dims[3] = {1, int(c.B), int(c.H)}, strides[3] = {int(c.B * c.H), int(c.H), 1};
    CKDNN(cudnnSetTensorNdDescriptor(hd, CUDNN_DATA_FLOAT, 3, dims, strides));
    CKDNN(cudnnSetTensorNdDescriptor(cd, CUDNN_DATA_FLOAT, 3, dims, strides));
    CKDNN(cudnnGetRNNWeightSpaceSize(handle, rnn, &wsize));
    weights = Tensor::empty({std::int64_t(wsize / 4) + 1}, DType::f32, dev);
    dweights = Tensor::zeros({std::int64_t(wsize / 4) + 1}, DType::f32, dev);
    CKDNN(cudnnGetRNNTempSpaceSizes(handle, rnn, CUDNN_FWD_MODE_TRAINING, xd, &work_size, &reserve_size));
    work = Tensor::empty({std::int64_t(work_size / 4) + 1}, DType::f32, dev);
    reserve = Tensor::empty({std::int64_t(reserve_size / 4) + 1}, DType::f32, dev);
    seq_lengths = Tensor::from_vector(std::vector<std::int32_t>(lengths.begin(), lengths.end()), {c.B}, dev);
  }
  ~CudnnRnn() {
    cudnnDestroyTensorDescriptor(cd);
    cudnnDestroyTensorDescriptor(hd);
    cudnnDestroyRNNDataDescriptor(yd);
    cudnnDestroyRNNDataDescriptor(xd);
    cudnnDestroyDropoutDescriptor(dropout);
    cudnnDestroyRNNDescriptor(rnn);
  }
  CudnnRnn(const CudnnRnn&) = delete;
  CudnnRnn& operator=(const CudnnRnn&) = delete;

  // Calls f(id, is_recurrent, gate, matrix, bias) for each of the 2G linear
  // layers of `space` (weights or dweights): cuDNN's per-gate pointers.
  void each_param(const Config& c, void* space, const std::function<void(bool, int, float*, float*)>& f) {
    const int G = gates(c);
    cudnnTensorDescriptor_t md, bd;
    CKDNN(cudnnCreateTensorDescriptor(&md));
    CKDNN(cudnnCreateTensorDescriptor(&bd));
    try {
      for (int id = 0; id < 2 * G; ++id) {
        void* m = nullptr;
        void* b = nullptr;
        CKDNN(cudnnGetRNNWeightParams(handle, rnn, 0, wsize, space, id, md, &m, bd, &b));
        f(id >= G, id % G, static_cast<float*>(m), static_cast<float*>(b));
      }
    } catch (...) {
      cudnnDestroyTensorDescriptor(md);
      cudnnDestroyTensorDescriptor(bd);
      throw;
    }
    cudnnDestroyTensorDescriptor(md);
    cudnnDestroyTensorDescriptor(bd);
  }

  // Copies recur's weights (PyTorch layout, gate order = cuDNN's) in.
  void load(const RecurrentWeights& w, const Config& c, cudaStream_t s) {
    each_param(c, weights.raw_data(), [&](bool rec, int g, float* m, float* b) {
      const Tensor& W = rec ? w.w_hh : w.w_ih;
      const Tensor& bias = rec ? w.b_hh : w.b_ih;
      const std::int64_t cols = rec ? c.H : c.I;
      CK(cudaMemcpyAsync(m, W.data<float>() + g * c.H * cols, sizeof(float) * c.H * cols,
                         cudaMemcpyDeviceToDevice, s));
      CK(cudaMemcpyAsync(b, bias.data<float>() + g * c.H, sizeof(float) * c.H, cudaMemcpyDeviceToDevice, s));
    });
  }

  // The weight gradients in recur's layout: dw_ih, dw_hh, db_ih, db_hh on the host.
  std::vector<std::vector<float>> grads(const Config& c, cudaStream_t s) {
    const int G = gates(c);
    std::vector<std::vector<float>> g = {std::vector<float>(std::size_t(G * c.H * c.I)),
                                         std::vector<float>(std::size_t(G * c.H * c.H)),
                                         std::vector<float>(std::size_t(G * c.H)),
                                         std::vector<float>(std::size_t(G * c.H))};
    each_param(c, dweights.raw_data(), [&](bool rec, int gate, float* m, float* b) {
      const std::int64_t cols = rec ? c.H : c.I;
      CK(cudaMemcpyAsync(g[rec ? 1 : 0].data() + gate * c.H * cols, m, sizeof(float) * c.H * cols,
                         cudaMemcpyDeviceToHost, s));
      CK(cudaMemcpyAsync(g[rec ? 3 : 2].data() + gate * c.H, b, sizeof(float) * c.H, cudaMemcpyDeviceToHost, s));
    });
    CK(cudaStreamSynchronize(s));
    return g;
  }

  void forward(cudnnForwardMode_t mode, const float* x, float* y, const Tensor& hx, const Tensor& cx,
               const Tensor& hy, const Tensor& cy) {
    CKDNN(cudnnRNNForward(handle, rnn, mode, seq_lengths.data<std::int32_t>(), xd, x, yd, y, hd, hx.raw_data(),
                          hy.raw_data(), cd, cx.defined() ? cx.raw_data() : nullptr,
                          cy.defined() ? cy.raw_data() : nullptr, wsize, weights.raw_data(), work_size,
                          work.raw_data(), reserve_size, reserve.raw_data()));
  }

  void backward(const float* x, const float* y, const float* dy, float* dx, const Tensor& hx, const Tensor& cx,
                const Tensor& dhx, const Tensor& dcx) {
    CKDNN(cudnnRNNBackwardData_v8(handle, rnn, seq_lengths.data<std::int32_t>(), yd, y, dy, xd, dx, hd,
                                  hx.raw_data(), nullptr, dhx.raw_data(), cd,
                                  cx.defined() ? cx.raw_data() : nullptr, nullptr,
                                  dcx.defined() ? dcx.raw_data() : nullptr, wsize, weights.raw_data(), work_size,
                                  work.raw_data(), reserve_size, reserve.raw_data()));
    CKDNN(cudnnRNNBackwardWeights_v8(handle, rnn, CUDNN_WGRAD_MODE_ADD, seq_lengths.data<std::int32_t>(), xd, x,
                                     hd, hx.raw_data(), yd, y, wsize, dweights.raw_data(), work_size,
                                     work.raw_data(), reserve_size, reserve.raw_data()));
  }
};

// ---- one configuration -----------------------------------------------------------

struct Env {
  cudnnHandle_t handle{};
  curandGenerator_t gen{};
  cudaStream_t stream{};
  Tensor flush;  // 2x the L2, written before each timed run
  std::string device_columns;
  kernels::DeviceLimits limits;  // the GPU's, for the regime and its floor
  int repeats = 20;
};

std::string fmt(double v, const char* f = "%.3f") {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : "inf";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// One contender of an interleaved timing: setup() runs before each of its runs,
// outside the timing (recur's RECUR_PERSISTENT switch); run(k) is its k-th run.
struct Contender {
  std::string name;
  std::function<void()> setup;
  std::function<void(int)> run;
};

// Median microseconds of each contender, timed interleaved: every contender's
// warm-ups, then `rounds` rounds in which each runs once, the order rotated by
// one each round so that none always runs first or after the same one. Every
// run is preceded by setup() and before(k) (an L2 flush) outside the timing,
// and timed alone between CUDA events on the stream (it waits for its end),
// so runs never overlap and slow drifts of the clocks hit all contenders alike.
std::vector<double> interleaved_median_us(cudaStream_t s, int warmups, int rounds, const std::vector<Contender>& cs,
                                          const std::function<void(int)>& before) {
  const std::size_t n = cs.size();
  std::vector<int> runs(n, 0);
  for (std::size_t i = 0; i < n; ++i)
    for (int w = 0; w < warmups; ++w) {
      if (cs[i].setup) cs[i].setup();
      cs[i].run(runs[i]++);
    }
  CK(cudaStreamSynchronize(s));
  bench::CudaEvents ev;
  std::vector<std::vector<double>> t(n);
  for (int r = 0; r < rounds; ++r)
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t i = (j + std::size_t(r)) % n;
      if (cs[i].setup) cs[i].setup();
      before(runs[i]);
      CK(cudaEventRecord(ev.a, s));
      cs[i].run(runs[i]++);
      CK(cudaEventRecord(ev.b, s));
      CK(cudaEventSynchronize(ev.b));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, ev.a, ev.b));
      t[i].push_back(1000.0 * ms);
    }
  std::vector<double> med;
  for (std::vector<double>& v : t) med.push_back(bench::median(std::move(v)));
  return med;
}

void run(const Config& c, Env& env) {
  const Device dev = Device::cuda(0);
  const bool lstm = c.cell == CellType::LSTM;
  const cudaStream_t s = env.stream;
  std::mt19937_64 rng(1234);
  RecurrentOptions o;
  o.cell = c.cell;
  o.input_size = c.I;
  o.units = c.H;
  o.return_sequences = true;
  o.return_state = true;
  Recurrent layer(o, dev, 99);

  // Lengths in recur's row order (masked: a random one per row, unsorted:
  // recur's mask takes any order).
  std::vector<int> lengths(std::size_t(c.B), int(c.T));
  if (c.masked) {
    std::uniform_int_distribution<int> len(1, int(c.T));
    for (int& l : lengths) l = len(rng);
  }
  // cuDNN's packed layout needs the rows longest first: sort them as PyTorch's
  // pack_padded_sequence(enforce_sorted=False) does (its sorted_indices; ties
  // here keep recur's order). order[j]: recur's row that is sorted row j;
  // batch_sizes[t]: rows with a step t (PyTorch's batch_sizes).
  std::vector<int> order(std::size_t(c.B));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return lengths[std::size_t(a)] > lengths[std::size_t(b)]; });
  std::vector<int> sorted_lengths(std::size_t(c.B));
  for (std::size_t j = 0; j < order.size(); ++j) sorted_lengths[j] = lengths[std::size_t(order[j])];
  std::vector<int> batch_sizes(std::size_t(c.T), 0);
  std::int64_t valid_steps = 0;
  for (int l : lengths) {
    valid_steps += l;
    for (int t = 0; t < l; ++t) ++batch_sizes[std::size_t(t)];
  }
  std::vector<char> keep_y(std::size_t(c.B * c.T * c.H)), keep_x(std::size_t(c.B * c.T * c.I));
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t t = 0; t < c.T; ++t) {
      const char k = t < lengths[std::size_t(b)];
      std::fill_n(keep_y.begin() + (b * c.T + t) * c.H, c.H, k);
      std::fill_n(keep_x.begin() + (b * c.T + t) * c.I, c.I, k);
    }
  const Tensor mask = c.masked ? lengths_to_mask(std::vector<std::int64_t>(lengths.begin(), lengths.end()), c.T,
                                                 DType::f32, dev)
                               : Tensor();

  // kRotations sets of inputs x [B, T, I] and output gradients dy [B, T, H].
  std::vector<Tensor> xv, dyv;
  for (int r = 0; r < kRotations; ++r) {
    xv.push_back(device_random(env.gen, {c.B, c.T, c.I}, dev, s));
    dyv.push_back(device_random(env.gen, {c.B, c.T, c.H}, dev, s));
  }
  // Initial states [B, H] (cuDNN's [1, B, H]): random for masked batches, so
  // that the cross-check sees the packed layout's row permutation of them
  // (recur gets them too); zeros otherwise (recur gets none, as the Jena model).
  const Tensor h0 = c.masked ? device_random(env.gen, {c.B, c.H}, dev, s) : Tensor::zeros({c.B, c.H}, DType::f32, dev);
  const Tensor c0 = !lstm      ? Tensor()
                    : c.masked ? device_random(env.gen, {c.B, c.H}, dev, s)
                               : Tensor::zeros({c.B, c.H}, DType::f32, dev);
  std::vector<Tensor> init;
  if (c.masked) {
    init.push_back(h0);
    if (lstm) init.push_back(c0);
  }
  CK(cudaStreamSynchronize(s));

  // cuDNN's outputs in its layouts (flat, large enough for any), their copies
  // in recur's layout for the cross-check, and a scratch buffer.
  const std::int64_t F = std::max(c.H, c.I);
  const Tensor y = Tensor::empty({c.B * c.T * c.H}, DType::f32, dev);
  const Tensor dx = Tensor::empty({c.B * c.T * c.I}, DType::f32, dev);
  const Tensor y_r = Tensor::empty({c.B * c.T * c.H}, DType::f32, dev);
  const Tensor dx_r = Tensor::empty({c.B * c.T * c.I}, DType::f32, dev);
  const Tensor scratch = Tensor::empty({c.B * c.T * F}, DType::f32, dev);
  const Tensor hy = Tensor::empty({c.B * c.H}, DType::f32, dev);
  const Tensor cy = lstm ? Tensor::empty({c.B * c.H}, DType::f32, dev) : Tensor();
  const Tensor dhx = Tensor::empty({c.B * c.H}, DType::f32, dev);
  const Tensor dcx = lstm ? Tensor::empty({c.B * c.H}, DType::f32, dev) : Tensor();
  const Tensor st_r = Tensor::empty({c.B * c.H}, DType::f32, dev);

  // recur's reference results on rotation 0: y and the final states
  // (inference), dx, the initial states' gradients and the weight gradients.
  std::vector<float> ref_y;
  std::vector<std::vector<float>> ref_states, ref_dstates;
  {
    const Recurrent::Output out = layer.forward(xv[0], mask, init);
    ref_y = out.y.to_vector<float>();
    for (const Tensor& t : out.states) ref_states.push_back(t.to_vector<float>());
  }
  layer.zero_grad();
  layer.forward(xv[0], mask, init, true);
  std::vector<float> ref_dx;
  {
    const Recurrent::InputGrads ig = layer.backward(dyv[0]);
    ref_dx = ig.dx.to_vector<float>();
    for (const Tensor& t : ig.d_initial_state) ref_dstates.push_back(t.to_vector<float>());
  }
  const std::vector<std::vector<float>> ref_g = {
      layer.grads().w_ih.to_vector<float>(), layer.grads().w_hh.to_vector<float>(),
      layer.grads().b_ih.to_vector<float>(), layer.grads().b_hh.to_vector<float>()};

  auto flush = [&](int r) { CK(cudaMemsetAsync(env.flush.raw_data(), r & 0xff, env.flush.nbytes(), s)); };

  // recur: the standard path (RECUR_PERSISTENT=0: per-step GEMM + pointwise
  // kernels) and the persistent one (RECUR_PERSISTENT=1, where the planner
  // allows it); the backend reads the variable at every decision. The
  // persistent forward is checked against the standard one first.
  std::string recur_algo = "standard";
  bool persistent = false;
  const OpKind seq_op = lstm ? OpKind::LstmSequence : OpKind::GruSequence;
  if (backend(dev).supports({seq_op, DType::f32, c.B, c.H}).ok) {
    ::setenv("RECUR_PERSISTENT", "1", 1);
    try {
      const double perr = rel_err(layer.forward(xv[0], mask, init).y.to_vector<float>(), ref_y);
      std::printf("# %s: persistent forward against the standard path: relative L2 error %.3g\n", c.str().c_str(),
                  perr);
      persistent = true;
      recur_algo = "persistent";
    } catch (const Error& e) {
      std::fprintf(stderr, "# %s: persistent path failed: %s\n", c.str().c_str(), e.message().c_str());
      (void)cudaGetLastError();
      recur_algo = "persistent-failed";
    }
    ::unsetenv("RECUR_PERSISTENT");
  }
  auto recur_contender = [&](bool pers, int m) {
    Contender k;
    k.name = pers ? "recur-persistent" : "recur-standard";
    k.setup = [pers] { ::setenv("RECUR_PERSISTENT", pers ? "1" : "0", 1); };
    k.run = [&, m](int r) {
      const std::size_t i = std::size_t(r % kRotations);
      if (m) {
        layer.forward(xv[i], mask, init, true);
        layer.backward(dyv[i]);
      } else {
        layer.forward(xv[i], mask, init);
      }
    };
    return k;
  };

  CKDNN(cudnnSetStream(env.handle, s));
  // cuDNN's data in each layout tried, made from recur's outside the timing
  // (so the copies recur would need to call cuDNN that way are not counted):
  //  - batch_major (BATCH_MAJOR_UNPACKED, padded): recur's own x, dy, initial
  //    states and per-row lengths, in recur's row order;
  //  - seq_major (SEQ_MAJOR_UNPACKED, padded, masked configurations only):
  //    the same transposed to [T, B, *], recur's row order;
  //  - packed (SEQ_MAJOR_PACKED): as PyTorch packs, the rows sorted longest
  //    first (x, dy and the initial states gathered by `order`), then at each
  //    step t only the batch_sizes[t] rows still running, nothing for the
  //    padding; the outputs and the final states are scattered back to
  //    recur's order for the cross-check.
  struct LayoutData {
    Layout layout;
    std::vector<int> lengths;   // cuDNN's seqLengthArray, this layout's row order
    std::vector<Tensor> x, dy;  // kRotations sets
    Tensor hx, cx;              // initial states, this layout's row order
  };
  std::vector<LayoutData> data;
  for (Layout l : {Layout::BatchMajor, Layout::SeqMajor, Layout::SeqMajorPacked}) {
    if (l == Layout::SeqMajor && !c.masked) continue;
    LayoutData d{l, l == Layout::SeqMajorPacked ? sorted_lengths : lengths, {}, {}, h0, c0};
    if (l == Layout::BatchMajor) {
      d.x = xv;
      d.dy = dyv;
    } else {
      auto convert = [&](const Tensor& src, std::int64_t feat) {
        if (l == Layout::SeqMajor) {
          Tensor t = Tensor::empty({c.T * c.B * feat}, DType::f32, dev);
          transpose_bt(src.data<float>(), t.data<float>(), c.B, c.T, feat, true, s);
          return t;
        }
        Tensor t = Tensor::empty({valid_steps * feat}, DType::f32, dev);
        permute_rows(src.data<float>(), scratch.data<float>(), order, std::size_t(c.T * feat), false, s);
        pack(scratch.data<float>(), t.data<float>(), batch_sizes, c.T, feat, s);
        return t;
      };
      for (int r = 0; r < kRotations; ++r) {
        d.x.push_back(convert(xv[std::size_t(r)], c.I));
        d.dy.push_back(convert(dyv[std::size_t(r)], c.H));
      }
      if (l == Layout::SeqMajorPacked) {
        auto gather = [&](const Tensor& st) {
          if (!st.defined()) return Tensor();
          Tensor t = Tensor::empty({c.B, c.H}, DType::f32, dev);
          permute_rows(st.data<float>(), t.data<float>(), order, std::size_t(c.H), false, s);
          return t;
        };
        d.hx = gather(h0);
        d.cx = gather(c0);
      }
    }
    data.push_back(std::move(d));
  }
  CK(cudaStreamSynchronize(s));
  // cuDNN's results back in recur's layout: a sequence (y or dx, feat
  // features) into [B, T, feat], final states or their gradients into [B, H].
  auto seq_to_recur = [&](const LayoutData& d, const Tensor& src, const Tensor& dst, std::int64_t feat) {
    switch (d.layout) {
      case Layout::BatchMajor:
        CK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), sizeof(float) * c.B * c.T * feat,
                           cudaMemcpyDeviceToDevice, s));
        break;
      case Layout::SeqMajor: transpose_bt(src.data<float>(), dst.data<float>(), c.B, c.T, feat, false, s); break;
      case Layout::SeqMajorPacked:
        unpack(src.data<float>(), scratch.data<float>(), batch_sizes, c.B, c.T, feat, s);
        permute_rows(scratch.data<float>(), dst.data<float>(), order, std::size_t(c.T * feat), true, s);
        break;
    }
    CK(cudaStreamSynchronize(s));
    return dst.to_vector<float>();
  };
  auto states_to_recur = [&](const LayoutData& d, const Tensor& src) {
    if (d.layout == Layout::SeqMajorPacked)
      permute_rows(src.data<float>(), st_r.data<float>(), order, std::size_t(c.H), true, s);
    else
      CK(cudaMemcpyAsync(st_r.raw_data(), src.raw_data(), sizeof(float) * c.B * c.H, cudaMemcpyDeviceToDevice, s));
    CK(cudaStreamSynchronize(s));
    return st_r.to_vector<float>();
  };
  // One run of a cuDNN variant in mode m (0 forward, 1 train) on rotation r.
  auto cudnn_run = [&](CudnnRnn& rnn, const LayoutData& d, int m) {
    return [&, m, pr = &rnn, pd = &d](int r) {
      const std::size_t k = std::size_t(r % kRotations);
      pr->forward(m ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE, pd->x[k].data<float>(), y.data<float>(),
                  pd->hx, pd->cx, hy, cy);
      if (m)
        pr->backward(pd->x[k].data<float>(), y.data<float>(), pd->dy[k].data<float>(), dx.data<float>(), pd->hx,
                     pd->cx, dhx, dcx);
    };
  };

  struct Variant {
    cudnnRNNAlgo_t algo;
    std::size_t layout;  // index into data
  };
  std::vector<Variant> all;
  for (std::size_t li = 0; li < data.size(); ++li)
    for (cudnnRNNAlgo_t algo : {CUDNN_RNN_ALGO_STANDARD, CUDNN_RNN_ALGO_PERSIST_STATIC,
                                CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H, CUDNN_RNN_ALGO_PERSIST_DYNAMIC})
      all.push_back({algo, li});
  auto variant_name = [&](const Variant& v) {
    return std::string(algo_name(v.algo)) + "/" + layout_name(data[v.layout].layout);
  };

  // Every variant: cross-check, then screened with as many runs as recur gets
  // (kWarmups, then the median of --repeats), to find each mode's fastest
  // variant of each layout.
  std::vector<double> screened[2] = {std::vector<double>(data.size(), INFINITY),
                                     std::vector<double>(data.size(), INFINITY)};
  std::vector<int> best_variant[2] = {std::vector<int>(data.size(), -1), std::vector<int>(data.size(), -1)};
  double err_y = 0, err_g = 0;
  int checked = 0;
  std::string variants[2];
  for (std::size_t v = 0; v < all.size(); ++v) {
    const LayoutData& d = data[all[v].layout];
    const std::string name = variant_name(all[v]);
    std::string entry[2];
    try {
      CudnnRnn rnn(env.handle, all[v].algo, d.layout, c, d.lengths, dev);
      rnn.load(layer.weights(), c, s);
      // Cross-check on rotation 0: y and the final states, then dx, the
      // initial states' gradients and the weight gradients.
      rnn.forward(CUDNN_FWD_MODE_INFERENCE, d.x[0].data<float>(), y.data<float>(), d.hx, d.cx, hy, cy);
      double ey = rel_err(seq_to_recur(d, y, y_r, c.H), ref_y, &keep_y);
      if (ref_states.size() >= 1) ey = std::max(ey, rel_err(states_to_recur(d, hy), ref_states[0]));
      if (lstm && ref_states.size() >= 2) ey = std::max(ey, rel_err(states_to_recur(d, cy), ref_states[1]));
      CK(cudaMemsetAsync(rnn.dweights.raw_data(), 0, rnn.dweights.nbytes(), s));
      rnn.forward(CUDNN_FWD_MODE_TRAINING, d.x[0].data<float>(), y.data<float>(), d.hx, d.cx, hy, cy);
      rnn.backward(d.x[0].data<float>(), y.data<float>(), d.dy[0].data<float>(), dx.data<float>(), d.hx, d.cx, dhx,
                   dcx);
      double eg = rel_err(seq_to_recur(d, dx, dx_r, c.I), ref_dx, &keep_x);
      if (ref_dstates.size() >= 1) eg = std::max(eg, rel_err(states_to_recur(d, dhx), ref_dstates[0]));
      if (lstm && ref_dstates.size() >= 2) eg = std::max(eg, rel_err(states_to_recur(d, dcx), ref_dstates[1]));
      const auto g = rnn.grads(c, s);
      for (std::size_t k = 0; k < g.size(); ++k) eg = std::max(eg, rel_err(g[k], ref_g[k]));
      err_y = std::max(err_y, ey);
      err_g = std::max(err_g, eg);
      ++checked;
      if (!(ey <= kTolerance && eg <= kTolerance))
        std::fprintf(stderr, "# MISMATCH %s %s: cuDNN against recur, rel err y %.3g, gradients %.3g\n",
                     c.str().c_str(), name.c_str(), ey, eg);
      double us[2];
      for (int m = 0; m < 2; ++m) us[m] = bench::cuda_median_us(s, kWarmups, env.repeats, cudnn_run(rnn, d, m), flush);
      for (int m = 0; m < 2; ++m) {
        entry[m] = fmt(us[m] / double(c.T));
        if (us[m] < screened[m][all[v].layout]) screened[m][all[v].layout] = us[m], best_variant[m][all[v].layout] = int(v);
      }
    } catch (const Error& e) {
      // Refused by cuDNN for this shape and layout (NOT_SUPPORTED, BAD_PARAM):
      // listed as unsupported, never as a time.
      entry[0] = entry[1] = "unsupported";
      std::fprintf(stderr, "# %s %s: not measured: %s\n", c.str().c_str(), name.c_str(), e.message().c_str());
      // A failed launch can leave an error behind; clear it so the next variant starts clean.
      (void)cudaGetLastError();
    }
    for (int m = 0; m < 2; ++m) variants[m] += (variants[m].empty() ? "" : ";") + name + "=" + entry[m];
  }

  // Each mode: recur (standard, and persistent where it ran) and the fastest
  // screened cuDNN variant of each layout, timed interleaved. The row's cuDNN
  // figure is the best of those layouts (for masked batches: the best of the
  // padded and the packed runs); a '#' line lists them all.
  double best[2] = {INFINITY, INFINITY}, recur_us[2] = {NAN, NAN}, standard_us[2] = {NAN, NAN};
  std::string best_name[2] = {"none", "none"}, algo_of[2];
  for (int m = 0; m < 2; ++m) {
    std::vector<std::unique_ptr<CudnnRnn>> rnns;
    std::vector<int> vid;
    std::vector<Contender> cs;
    for (std::size_t li = 0; li < data.size(); ++li) {
      const int v = best_variant[m][li];
      if (v < 0) continue;
      const Variant& var = all[std::size_t(v)];
      rnns.push_back(std::make_unique<CudnnRnn>(env.handle, var.algo, data[li].layout, c, data[li].lengths, dev));
      rnns.back()->load(layer.weights(), c, s);
      vid.push_back(v);
      cs.push_back({variant_name(var), {}, cudnn_run(*rnns.back(), data[li], m)});
    }
    const std::size_t ncudnn = cs.size();
    cs.push_back(recur_contender(false, m));
    if (persistent) cs.push_back(recur_contender(true, m));
    std::vector<double> med;
    try {
      med = interleaved_median_us(s, kWarmups, env.repeats, cs, flush);
    } catch (const Error& e) {
      ::unsetenv("RECUR_PERSISTENT");
      if (!persistent) throw;
      // The persistent path threw while timed: time the rest without it.
      std::fprintf(stderr, "# %s: persistent path failed while timed: %s\n", c.str().c_str(), e.message().c_str());
      (void)cudaGetLastError();
      CK(cudaStreamSynchronize(s));
      persistent = false;
      recur_algo = "persistent-failed";
      cs.pop_back();
      med = interleaved_median_us(s, kWarmups, env.repeats, cs, flush);
    }
    ::unsetenv("RECUR_PERSISTENT");
    std::ostringstream line;
    line << "# " << c.str() << " " << (m ? "train" : "forward") << ", interleaved, us per step:";
    for (std::size_t i = 0; i < cs.size(); ++i) line << " " << cs[i].name << "=" << fmt(med[i] / double(c.T));
    std::printf("%s\n", line.str().c_str());
    for (std::size_t i = 0; i < ncudnn; ++i)
      if (med[i] < best[m]) best[m] = med[i], best_name[m] = variant_name(all[std::size_t(vid[i])]);
    standard_us[m] = med[ncudnn];
    recur_us[m] = persistent ? med[ncudnn + 1] : recur_algo == "persistent-failed" ? NAN : standard_us[m];
    algo_of[m] = recur_algo;  // a failure while timing training leaves the forward row's figure standing
  }
  layer.release_saved();

  const double G = gates(c), H = double(c.H), I = double(c.I), B = double(c.B), T = double(c.T);
  const double fwd_flops = 2.0 * double(valid_steps) * G * H * (I + H);
  const double wbytes = 4 * G * H * (I + H + 2);  // matrices and both biases
  const double sbytes = 4 * B * H * (lstm ? 4 : 2);  // initial and final states
  const double fwd_bytes = 4 * double(valid_steps) * (I + H) + wbytes + sbytes;
  const double train_bytes = fwd_bytes + 4 * double(valid_steps) * (H + I) + wbytes;
  // The regime recur's planner gives this shape on this GPU (as the CUDA
  // backend plans: no cluster kernel yet) and that regime's latency floor
  // (recur/kernels/persistent_cost.h, docs/persistent.md).
  kernels::DeviceLimits no_clusters = env.limits;
  no_clusters.max_cluster_size = 1;
  const kernels::RnnCellKind kind = lstm ? kernels::RnnCellKind::LSTM : kernels::RnnCellKind::GRU;
  const kernels::PersistentPlan plan = kernels::plan_persistent({kind, c.H, c.B, DType::f32}, no_clusters);
  const kernels::LatencyFloorModel floor_model = kernels::LatencyFloorModel::h100_sxm();
  for (int m = 0; m < 2; ++m) {
    const double flops = m ? 3 * fwd_flops : fwd_flops, bytes = m ? train_bytes : fwd_bytes;
    const kernels::PersistentRegime regime =
        algo_of[m] == "persistent" ? plan.regime : kernels::PersistentRegime::Standard;
    kernels::PersistentQuery fq{kind, c.H, c.B, DType::f32, /*backward*/ m == 1};
    const double floor_us = kernels::step_floor_us(fq, regime, env.limits, floor_model, c.I);
    const double r = recur_us[m], p = std::isfinite(best[m]) ? best[m] : NAN;  // NaN: no cuDNN variant ran
    std::ostringstream row;
    row << env.device_columns << "," << (lstm ? "lstm" : "gru") << "," << c.H << "," << c.B << "," << c.T << ","
        << c.I << "," << int(c.masked) << "," << valid_steps << "," << (m ? "train" : "forward") << ",f32,"
        << algo_of[m] << "," << fmt(r / T) << "," << fmt(standard_us[m] / T) << "," << best_name[m] << ","
        << fmt(p / T) << "," << fmt(r / p, "%.4g") << "," << fmt(flops / (r * 1e6), "%.4g") << ","
        << fmt(flops / (p * 1e6), "%.4g") << "," << fmt(bytes / (r * 1e3), "%.4g") << ","
        << fmt(bytes / (p * 1e3), "%.4g") << "," << fmt(checked ? err_y : NAN, "%.3g") << ","
        << fmt(checked ? err_g : NAN, "%.3g") << "," << variants[m] << ","
        << kernels::persistent_regime_name(regime) << "," << fmt(floor_us) << ","
        << fmt(r / T / floor_us, "%.4g") << "," << fmt(p / T / floor_us, "%.4g");
    std::printf("%s\n", row.str().c_str());
  }
  std::fflush(stdout);
}

Config parse(const std::string& s) {
  std::stringstream ss(s);
  std::string cell, part;
  std::getline(ss, cell, ',');
  std::vector<std::int64_t> v;
  bool masked = false;
  while (std::getline(ss, part, ',')) {
    if (part == "masked") masked = true;
    else v.push_back(std::stoll(part));
  }
  RECUR_CHECK(v.size() == 4 && (cell == "lstm" || cell == "gru") && v[0] > 0 && v[1] > 0 && v[2] > 0 && v[3] > 0,
              Value, "bad --config '", s, "': expected lstm|gru,H,B,T,I[,masked]");
  return {cell == "lstm" ? CellType::LSTM : CellType::GRU, v[0], v[1], v[2], v[3], masked};
}

// The installed kernel driver's version (e.g. 580.159.04), from
// /proc/driver/nvidia/version; "unknown" where that file is missing.
std::string kernel_driver_version() {
  std::ifstream f("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(f, line)) return "unknown";
  std::istringstream ss(line);
  std::string word, last;
  while (ss >> word) {
    if (!word.empty() && std::isdigit(static_cast<unsigned char>(word[0])) && word.find('.') != std::string::npos)
      return word;
    last = word;
  }
  return "unknown";
}

std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string cudnn_version_str(std::size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}

}  // namespace

int main(int argc, char** argv) {
  // No TF32 anywhere (cuBLAS and cuDNN read this when they start).
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  try {
    int repeats = 20;
    double budget_s = 0;
    bool quick = false;
    std::vector<Config> configs;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--quick")) quick = true;
      else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(20, std::atoi(argv[++i]));
      else if (!std::strcmp(argv[i], "--budget-s") && i + 1 < argc) budget_s = std::max(0.0, std::atof(argv[++i]));
      else if (!std::strcmp(argv[i], "--config") && i + 1 < argc) configs.push_back(parse(argv[++i]));
      else {
        std::fprintf(stderr,
                     "usage: bench_cudnn [--quick] [--repeats N>=20] [--budget-s S] "
                     "[--config lstm|gru,H,B,T,I[,masked] ...]\n");
        return 2;
      }
    }
    if (cuda_device_count() == 0) {
      std::printf("# bench_cudnn: no GPU found: %s; nothing measured\n", cuda_unavailable_reason().c_str());
      return 0;
    }
    if (configs.empty()) {
      configs.push_back({CellType::GRU, 32, 128, 240, 14});         // the Jena forecaster
      configs.push_back({CellType::GRU, 32, 128, 240, 14, true});   // masked, variable lengths
      configs.push_back({CellType::LSTM, 256, 64, 1000, 256, true});
      if (!quick) {
        // The published reference shape (cuDNN's LSTM H 768, B 16, T 1024 in
        // fp16 on an H100; here in FP32), ahead of the sweep.
        configs.push_back({CellType::LSTM, 768, 16, 1024, 768});
        std::vector<Config> sweep;
        for (CellType cell : {CellType::LSTM, CellType::GRU})
          for (std::int64_t H : {32, 64, 128, 256, 512, 1024})
            for (std::int64_t B : {1, 8, 16, 32, 64, 128, 256})
              for (std::int64_t T : {240, 1000})
                if (B != 16 || H >= 512) sweep.push_back({cell, H, B, T, H});  // B 16: H 512 and 1024 only
        std::stable_sort(sweep.begin(), sweep.end(), [repeats](const Config& a, const Config& b) {
          return cost_model(a, repeats) < cost_model(b, repeats);
        });
        configs.insert(configs.end(), sweep.begin(), sweep.end());
      }
    }
    const SystemInfo info = system_info();
    const GpuInfo& g = info.gpus.at(0);
    std::string name = g.name;
    std::replace(name.begin(), name.end(), ',', ' ');
    Env env;
    env.repeats = repeats;
    env.limits = g.limits;
    env.device_columns = name + "," + kernel_driver_version() + "," + cuda_version(info.cuda_driver_version) + "," +
                         cuda_version(info.cuda_runtime_version) + "," + cudnn_version_str(cudnnGetVersion());
    const Device dev = Device::cuda(0);
    env.stream = static_cast<cudaStream_t>(backend(dev).native_stream());
    const std::size_t l2 = g.l2_bytes ? g.l2_bytes : std::size_t(64) << 20;
    env.flush = Tensor::empty({std::int64_t(2 * l2 / 4)}, DType::f32, dev);
    CKDNN(cudnnCreate(&env.handle));
#ifdef RECUR_BENCH_CURAND
    CKRAND(curandCreateGenerator(&env.gen, CURAND_RNG_PSEUDO_DEFAULT));
    CKRAND(curandSetPseudoRandomGeneratorSeed(env.gen, 1234));
    CKRAND(curandSetStream(env.gen, env.stream));
#else
    env.gen = 1234;
#endif
    std::printf("# bench_cudnn: %s (cc %d.%d, %d SMs, L2 %zu MB), driver %s, CUDA driver %s, runtime %s, cuDNN %s\n",
                g.name.c_str(), g.cc_major, g.cc_minor, g.sm_count, l2 >> 20, kernel_driver_version().c_str(),
                cuda_version(info.cuda_driver_version).c_str(), cuda_version(info.cuda_runtime_version).c_str(),
                cudnn_version_str(cudnnGetVersion()).c_str());
    std::printf("# FP32 both sides, no TF32; %d warm-ups, median of %d CUDA-event timings, %d input sets rotated "
                "and %zu MB written before each timed run; every cuDNN variant screened with as many runs, then "
                "recur and each layout's fastest variant timed interleaved (one run each per round, the order "
                "rotated); ratio_recur_cudnn = recur / cuDNN time (> 1: cuDNN faster); bf16/fp16 not measured "
                "(recur's recurrent layers are float32/float64 only)\n",
                kWarmups, repeats, kRotations, (2 * l2) >> 20);
    std::printf("%s\n", kCsvHeader);
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    double spent_model = 0, spent_s = 0;
    int failed = 0, skipped = 0;
    for (const Config& c : configs) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // Until something has run, assume the cost model is right; then scale it by what it missed.
      const double scale = spent_model > 0 ? std::max(1.0, spent_s / spent_model) : 1.0;
      if (budget_s > 0 && elapsed + scale * cost_model(c, repeats) > budget_s) {
        ++skipped;
        std::printf("# skipped (--budget-s %.0f, %.0f s spent, predicted %.1f s): %s\n", budget_s, elapsed,
                    scale * cost_model(c, repeats), c.str().c_str());
        continue;
      }
      const auto c0 = std::chrono::steady_clock::now();
      try {
        run(c, env);
      } catch (const Error& e) {
        ++failed;
        std::printf("# failed: %s: %s\n", c.str().c_str(), e.what());
        (void)cudaGetLastError();
      }
      spent_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      spent_model += cost_model(c, repeats);
    }
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("# done: %zu configurations, %d failed, %d skipped for the budget, %.1f s\n", configs.size(),
                failed, skipped, total);
#ifdef RECUR_BENCH_CURAND
    curandDestroyGenerator(env.gen);
#endif
    cudnnDestroy(env.handle);
    return failed ? 1 : 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

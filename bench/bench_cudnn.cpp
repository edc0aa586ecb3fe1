// bench_cudnn: recur's recurrent layers against cuDNN 9's RNN on one GPU, in
// one process, on the same weights and inputs.
//
// For each configuration (cell, hidden H, batch B, steps T, input I, masked):
//  - recur: the Recurrent layer on cuda:0, twice: with RECUR_PERSISTENT=0
//    (recur_standard: the per-step GEMM + pointwise kernels) and with
//    RECUR_PERSISTENT=1 (recur: the persistent kernel where the planner
//    allows it, docs/persistent.md; recur_path says which ran, and
//    persistent_vs_standard_err how far apart their outputs are). The
//    persistent forward has never run on a GPU: if it throws, the row says
//    persistent-failed and the standard columns still come out;
//  - cuDNN: cudnnRNNForward / cudnnRNNBackwardData_v8 /
//    cudnnRNNBackwardWeights_v8 with every algorithm that accepts the shape
//    (STANDARD, PERSIST_STATIC, PERSIST_STATIC_SMALL_H, PERSIST_DYNAMIC); the
//    best is reported with its name. FP32 with CUDNN_FMA_MATH: true float32 on
//    both sides, no TF32.
// recur's weights are copied into cuDNN's weight space (same gate order and
// layout) and both outputs are compared before timing: max_rel_err in the row.
// Method: random inputs, 3 warm-ups, median of --repeats (>= 20) CUDA-event
// timings, 4 input buffers rotated so that L2 does not keep them.
// Masked configurations give each row a random length in [1, T] (cuDNN: padded
// I/O with per-sequence lengths).
//
// Output: CSV on stdout, one row per configuration and mode (forward =
// inference, train = forward + backward data + backward weights).
//   bench_cudnn [--quick] [--repeats N] [--config lstm|gru,H,B,T,I[,masked] ...]
// Not yet run on a GPU (no GPU in the session that wrote it). The full sweep
// (2 cells x 6 H x 6 B x 2 T) may need trimming to fit the suite's 10 minutes.
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

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

struct Config {
  CellType cell;
  std::int64_t H, B, T, I;
  bool masked = false;
};

constexpr int kRotations = 4;

// Median milliseconds of `repeats` runs of f on `stream`, timed with events.
double time_ms(cudaStream_t stream, int repeats, const std::function<void(int)>& f) {
  for (int w = 0; w < 3; ++w) f(w % kRotations);
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    CK(cudaEventRecord(a, stream));
    f(r % kRotations);
    CK(cudaEventRecord(b, stream));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// Device buffer owned by a recur tensor (recur's allocator, recur's device).
Tensor device_random(const Shape& s, std::mt19937_64& rng, Device dev) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(s)));
  for (float& x : v) x = d(rng);
  return Tensor::from_vector(v, s, dev);
}

const char* algo_name(cudnnRNNAlgo_t a) {
  switch (a) {
    case CUDNN_RNN_ALGO_STANDARD: return "STANDARD";
    case CUDNN_RNN_ALGO_PERSIST_STATIC: return "PERSIST_STATIC";
    case CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H: return "PERSIST_STATIC_SMALL_H";
    case CUDNN_RNN_ALGO_PERSIST_DYNAMIC: return "PERSIST_DYNAMIC";
    default: return "?";
  }
}

// One cuDNN RNN set up for an algorithm; throws (caught by the caller) when
// cuDNN does not support the algorithm for the shape.
struct CudnnRnn {
  cudnnHandle_t handle{};
  cudnnRNNDescriptor_t rnn{};
  cudnnDropoutDescriptor_t dropout{};
  cudnnRNNDataDescriptor_t xd{}, yd{};
  cudnnTensorDescriptor_t hd{}, cd{};
  Tensor dropout_states, weights, dweights, work, reserve, seq_lengths;
  std::size_t wsize = 0, work_size = 0, reserve_size = 0;

  CudnnRnn(cudnnHandle_t h, cudnnRNNAlgo_t algo, const Config& c, const std::vector<int>& lengths,
           Device dev)
      : handle(h) {
    CKDNN(cudnnCreateRNNDescriptor(&rnn));
    CKDNN(cudnnCreateDropoutDescriptor(&dropout));
    std::size_t ds = 0;
    CKDNN(cudnnDropoutGetStatesSize(handle, &ds));
    dropout_states = Tensor::empty({std::int64_t(ds) + 1}, DType::f32, dev);
    CKDNN(cudnnSetDropoutDescriptor(dropout, handle, 0.f, dropout_states.raw_data(), ds, 0));
    CKDNN(cudnnSetRNNDescriptor_v8(rnn, algo, c.cell == CellType::LSTM ? CUDNN_LSTM : CUDNN_GRU,
                                   CUDNN_RNN_DOUBLE_BIAS, CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
                                   CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, int(c.I),
                                   int(c.H), int(c.H), 1, dropout, CUDNN_RNN_PADDED_IO_ENABLED));
    if (algo == CUDNN_RNN_ALGO_PERSIST_DYNAMIC) CKDNN(cudnnBuildRNNDynamic(handle, rnn, int(c.B)));
    CKDNN(cudnnCreateRNNDataDescriptor(&xd));
    CKDNN(cudnnCreateRNNDataDescriptor(&yd));
    float fill = 0.f;
    CKDNN(cudnnSetRNNDataDescriptor(xd, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED,
                                    int(c.T), int(c.B), int(c.I), lengths.data(), &fill));
    CKDNN(cudnnSetRNNDataDescriptor(yd, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED,
                                    int(c.T), int(c.B), int(c.H), lengths.data(), &fill));
    const int dims[3] = {1, int(c.B), int(c.H)}, strides[3] = {int(c.B * c.H), int(c.H), 1};
    CKDNN(cudnnCreateTensorDescriptor(&hd));
    CKDNN(cudnnCreateTensorDescriptor(&cd));
    CKDNN(cudnnSetTensorNdDescriptor(hd, CUDNN_DATA_FLOAT, 3, dims, strides));
    CKDNN(cudnnSetTensorNdDescriptor(cd, CUDNN_DATA_FLOAT, 3, dims, strides));
    CKDNN(cudnnGetRNNWeightSpaceSize(handle, rnn, &wsize));
    weights = Tensor::empty({std::int64_t(wsize / 4) + 1}, DType::f32, dev);
    dweights = Tensor::zeros({std::int64_t(wsize / 4) + 1}, DType::f32, dev);
    CKDNN(cudnnGetRNNTempSpaceSizes(handle, rnn, CUDNN_FWD_MODE_TRAINING, xd, &work_size, &reserve_size));
    work = Tensor::empty({std::int64_t(work_size / 4) + 1}, DType::f32, dev);
    reserve = Tensor::empty({std::int64_t(reserve_size / 4) + 1}, DType::f32, dev);
    seq_lengths = Tensor::from_vector(std::vector<std::int32_t>(lengths.begin(), lengths.end()),
                                      {c.B}, dev);
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

  // Copies recur's weights (PyTorch layout, gate order = cuDNN's) in.
  void load(const RecurrentWeights& w, const Config& c) {
    const int G = c.cell == CellType::LSTM ? 4 : 3;
    cudnnTensorDescriptor_t md, bd;
    CKDNN(cudnnCreateTensorDescriptor(&md));
    CKDNN(cudnnCreateTensorDescriptor(&bd));
    for (int id = 0; id < 2 * G; ++id) {
      void* m = nullptr;
      void* b = nullptr;
      CKDNN(cudnnGetRNNWeightParams(handle, rnn, 0, wsize, weights.raw_data(), id, md, &m, bd, &b));
      const bool rec = id >= G;
      const int g = id % G;
      const Tensor& W = rec ? w.w_hh : w.w_ih;
      const Tensor& bias = rec ? w.b_hh : w.b_ih;
      const std::int64_t cols = rec ? c.H : c.I;
      CK(cudaMemcpy(m, static_cast<const float*>(W.raw_data()) + g * c.H * cols,
                    sizeof(float) * c.H * cols, cudaMemcpyDeviceToDevice));
      CK(cudaMemcpy(b, static_cast<const float*>(bias.raw_data()) + g * c.H, sizeof(float) * c.H,
                    cudaMemcpyDeviceToDevice));
    }
    cudnnDestroyTensorDescriptor(md);
    cudnnDestroyTensorDescriptor(bd);
  }

  void forward(cudnnForwardMode_t mode, const Tensor& x, const Tensor& y, const Tensor& hx,
               const Tensor& cx, const Tensor& hy, const Tensor& cy) {
    CKDNN(cudnnRNNForward(handle, rnn, mode, seq_lengths.data<std::int32_t>(), xd, x.raw_data(), yd,
                          y.raw_data(), hd, hx.raw_data(), hy.raw_data(), cd,
                          cx.defined() ? cx.raw_data() : nullptr, cy.defined() ? cy.raw_data() : nullptr,
                          wsize, weights.raw_data(), work_size, work.raw_data(), reserve_size,
                          reserve.raw_data()));
  }

  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& dx,
                const Tensor& hx, const Tensor& cx, const Tensor& dhx, const Tensor& dcx) {
    CKDNN(cudnnRNNBackwardData_v8(handle, rnn, seq_lengths.data<std::int32_t>(), yd, y.raw_data(),
                                  dy.raw_data(), xd, dx.raw_data(), hd, hx.raw_data(), nullptr,
                                  dhx.raw_data(), cd, cx.defined() ? cx.raw_data() : nullptr, nullptr,
                                  dcx.defined() ? dcx.raw_data() : nullptr, wsize, weights.raw_data(),
                                  work_size, work.raw_data(), reserve_size, reserve.raw_data()));
    CKDNN(cudnnRNNBackwardWeights_v8(handle, rnn, CUDNN_WGRAD_MODE_ADD, seq_lengths.data<std::int32_t>(),
                                     xd, x.raw_data(), hd, hx.raw_data(), yd, y.raw_data(), wsize,
                                     dweights.raw_data(), work_size, work.raw_data(), reserve_size,
                                     reserve.raw_data()));
  }
};

double max_rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  double m = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    m = std::max(m, std::abs(double(x[i]) - y[i]) / (std::abs(double(y[i])) + 1e-3));
  return m;
}

Config parse(const std::string& s) {
  std::stringstream ss(s);
  std::string cell, part;
  std::getline(ss, cell, ',');
  std::vector<std::int64_t> v;
  while (std::getline(ss, part, ',')) v.push_back(part == "masked" ? -1 : std::stoll(part));
  RECUR_CHECK((v.size() == 4 || v.size() == 5) && (cell == "lstm" || cell == "gru"), Value,
              "bad --config '", s, "': expected lstm|gru,H,B,T,I[,masked]");
  return {cell == "lstm" ? CellType::LSTM : CellType::GRU, v[0], v[1], v[2], v[3], v.size() == 5};
}

void run(const Config& c, int repeats, cudnnHandle_t handle, const std::string& device_columns) {
  const Device dev = Device::cuda(0);
  std::mt19937_64 rng(1234);
  RecurrentOptions o;
  o.cell = c.cell;
  o.input_size = c.I;
  o.units = c.H;
  o.return_sequences = true;
  o.return_state = true;
  Recurrent layer(o, dev, 99);
  std::vector<int> lengths(std::size_t(c.B), int(c.T));
  if (c.masked) {
    std::uniform_int_distribution<int> len(1, int(c.T));
    for (int& l : lengths) l = len(rng);
  }
  const Tensor mask = c.masked ? lengths_to_mask(std::vector<std::int64_t>(lengths.begin(), lengths.end()),
                                                 c.T, DType::f32, dev)
                               : Tensor();
  std::vector<Tensor> xs, dys;
  for (int r = 0; r < kRotations; ++r) {
    xs.push_back(device_random({c.B, c.T, c.I}, rng, dev));
    dys.push_back(device_random({c.B, c.T, c.H}, rng, dev));
  }
  const bool lstm = c.cell == CellType::LSTM;
  const Tensor h0 = Tensor::zeros({1, c.B, c.H}, DType::f32, dev);
  const Tensor c0 = lstm ? Tensor::zeros({1, c.B, c.H}, DType::f32, dev) : Tensor();
  const Tensor y = Tensor::empty({c.B, c.T, c.H}, DType::f32, dev);
  const Tensor hy = Tensor::empty({1, c.B, c.H}, DType::f32, dev), cy = lstm ? Tensor::empty({1, c.B, c.H}, DType::f32, dev) : Tensor();
  const Tensor dx = Tensor::empty({c.B, c.T, c.I}, DType::f32, dev);
  const Tensor dhx = Tensor::empty({1, c.B, c.H}, DType::f32, dev), dcx = lstm ? Tensor::empty({1, c.B, c.H}, DType::f32, dev) : Tensor();

  auto* rstream = static_cast<cudaStream_t>(backend(dev).native_stream());
  auto time_fwd = [&] { return time_ms(rstream, repeats, [&](int k) { layer.forward(xs[k], mask); }); };
  auto time_train = [&] {
    return time_ms(rstream, repeats, [&](int k) {
      layer.forward(xs[k], mask, {}, true);
      layer.backward(dys[k]);
    });
  };
  // The standard path, then the persistent one (the backend reads
  // RECUR_PERSISTENT at every decision).
  ::setenv("RECUR_PERSISTENT", "0", 1);
  const double std_fwd = time_fwd(), std_train = time_train();
  const Tensor ref = layer.forward(xs[0], mask).y;
  ::setenv("RECUR_PERSISTENT", "1", 1);
  const OpKind seq_op = c.cell == CellType::LSTM ? OpKind::LstmSequence : OpKind::GruSequence;
  std::string path = backend(dev).supports({seq_op, DType::f32, c.B, c.H}).ok ? "persistent" : "standard";
  double recur_fwd = std_fwd, recur_train = std_train, perr = 0;
  if (path == "persistent") {
    try {
      recur_fwd = time_fwd();
      recur_train = time_train();
      perr = max_rel_err(layer.forward(xs[0], mask).y, ref);
    } catch (const Error& e) {
      std::fprintf(stderr, "# persistent %s H %lld B %lld T %lld failed: %s\n",
                   c.cell == CellType::LSTM ? "lstm" : "gru", (long long)c.H, (long long)c.B,
                   (long long)c.T, e.message().c_str());
      path = "persistent-failed";
      recur_fwd = recur_train = perr = NAN;
    }
  }
  ::unsetenv("RECUR_PERSISTENT");

  cudaStream_t cstream;
  CK(cudaStreamCreateWithFlags(&cstream, cudaStreamNonBlocking));
  CKDNN(cudnnSetStream(handle, cstream));
  double best_fwd = 1e300, best_train = 1e300, err = -1;
  std::string fwd_algo = "none", train_algo = "none";
  for (cudnnRNNAlgo_t algo : {CUDNN_RNN_ALGO_STANDARD, CUDNN_RNN_ALGO_PERSIST_STATIC,
                              CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H, CUDNN_RNN_ALGO_PERSIST_DYNAMIC}) {
    try {
      CudnnRnn rnn(handle, algo, c, lengths, dev);
      rnn.load(layer.weights(), c);
      backend(dev).synchronize();  // recur's weights and inputs are ready
      rnn.forward(CUDNN_FWD_MODE_INFERENCE, xs[0], y, h0, c0, hy, cy);
      CK(cudaStreamSynchronize(cstream));
      const double e = max_rel_err(y, ref);
      err = std::max(err, e);
      if (e > 1e-3)
        std::fprintf(stderr, "# MISMATCH %s %s H %lld B %lld T %lld: recur vs cuDNN max rel err %.3g\n",
                     lstm ? "lstm" : "gru", algo_name(algo), (long long)c.H, (long long)c.B,
                     (long long)c.T, e);
      const double f = time_ms(cstream, repeats, [&](int k) {
        rnn.forward(CUDNN_FWD_MODE_INFERENCE, xs[k], y, h0, c0, hy, cy);
      });
      const double t = time_ms(cstream, repeats, [&](int k) {
        rnn.forward(CUDNN_FWD_MODE_TRAINING, xs[k], y, h0, c0, hy, cy);
        rnn.backward(xs[k], y, dys[k], dx, h0, c0, dhx, dcx);
      });
      if (f < best_fwd) best_fwd = f, fwd_algo = algo_name(algo);
      if (t < best_train) best_train = t, train_algo = algo_name(algo);
    } catch (const Error& e) {
      std::fprintf(stderr, "# %s %s H %lld B %lld T %lld: %s\n", lstm ? "lstm" : "gru", algo_name(algo),
                   (long long)c.H, (long long)c.B, (long long)c.T, e.message().c_str());
    }
  }
  CK(cudaStreamDestroy(cstream));
  const double flops = 2.0 * double(c.T * c.B) * (lstm ? 4 : 3) * double(c.H) * double(c.I + c.H);
  for (int m = 0; m < 2; ++m) {
    const double r = m ? recur_train : recur_fwd, p = m ? best_train : best_fwd;
    const double rs = m ? std_train : std_fwd;
    const double f = m ? 3 * flops : flops;
    std::printf("%s,%s,%lld,%lld,%lld,%lld,%d,%s,%.3f,%.3f,%.3f,%s,%.3f,%.2f,%.3g,%s,%.3g\n",
                device_columns.c_str(), lstm ? "lstm" : "gru", (long long)c.H, (long long)c.B,
                (long long)c.T, (long long)c.I, int(c.masked), m ? "train" : "forward",
                1000 * r / double(c.T), 1000 * rs / double(c.T),
                p < 1e299 ? 1000 * p / double(c.T) : NAN, (m ? train_algo : fwd_algo).c_str(),
                p < 1e299 ? p / r : NAN, f / (r * 1e9), err, path.c_str(), perr);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int repeats = 20;
    bool quick = false;
    std::vector<Config> configs;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--quick")) quick = true;
      else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(20, std::atoi(argv[++i]));
      else if (!std::strcmp(argv[i], "--config") && i + 1 < argc) configs.push_back(parse(argv[++i]));
      else {
        std::fprintf(stderr, "usage: bench_cudnn [--quick] [--repeats N>=20] [--config lstm|gru,H,B,T,I[,masked]]\n");
        return 2;
      }
    }
    if (cuda_device_count() == 0) {
      std::printf("# bench_cudnn: no GPU found (%s); nothing measured\n", cuda_unavailable_reason().c_str());
      return 0;
    }
    if (configs.empty()) {
      configs.push_back({CellType::GRU, 32, 128, 240, 14});        // the Jena forecaster
      configs.push_back({CellType::GRU, 32, 128, 240, 14, true});  // masked, variable lengths
      if (!quick)
        for (CellType cell : {CellType::LSTM, CellType::GRU})
          for (std::int64_t H : {32, 64, 128, 256, 512, 1024})
            for (std::int64_t B : {1, 8, 32, 64, 128, 256})
              for (std::int64_t T : {240, 1000}) configs.push_back({cell, H, B, T, H});
    }
    const SystemInfo info = system_info();
    const GpuInfo& g = info.gpus.at(0);
    std::ostringstream dc;
    dc << g.name << "," << info.cuda_driver_version << "," << info.cuda_runtime_version << ","
       << info.cudnn_version;
    cudnnHandle_t handle;
    CKDNN(cudnnCreate(&handle));
    std::printf("device,driver,cuda,cudnn,cell,H,B,T,I,masked,mode,recur_us_per_step,"
                "recur_standard_us_per_step,cudnn_best_us_per_step,cudnn_algo,speedup_vs_cudnn,"
                "recur_tflops,max_rel_err,recur_path,persistent_vs_standard_err\n");
    for (const Config& c : configs) run(c, repeats, handle, dc.str());
    cudnnDestroy(handle);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

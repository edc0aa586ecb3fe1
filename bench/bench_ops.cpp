// bench_ops: times recur's op set on every device present and prints one CSV
// row per (device, op, shape): median microseconds over repeats (after a
// warm-up, synchronised), and the achieved GFLOP/s or GB/s. Inputs are random,
// never zeros. The peer comparisons (cuDNN, PyTorch) live in the RNN benchmark
// suite; this is the foundation's per-op view.
//   bench_ops [--repeats N] [--device cpu|cuda:N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/recur.h"

namespace {
using namespace recur;

Tensor random_tensor(const Shape& shape, Device dev, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  for (float& x : v) x = d(rng);
  return Tensor::from_vector(v, shape, dev);
}

bool wanted(const char* op);

double median_us(Device dev, int repeats, const std::function<void()>& f) {
  return 1e+06 * bench::median_seconds(dev, repeats, f);
}

std::string g_only;  // --only: run the rows whose op name contains it

bool wanted(const char* op) { return g_only.empty() || std::string(op).find(g_only) != std::string::npos; }

void row(Device dev, const char* op, const std::string& config, double us, double flops, double bytes) {
  std::printf("%s,%s,%s,%.2f,%.2f,%.2f\n", dev.str().c_str(), op, config.c_str(), us,
              flops / us / 1e3, bytes / us / 1e3);
}

void run(Device dev, int repeats) {
  std::mt19937_64 rng(12345);
  // GEMMs of the recurrent layers: all-steps input projection and per-step
  // recurrent product, for the Jena GRU/LSTM shapes and a mid-size layer.
  struct G { std::int64_t m, n, k; const char* what; };
  if (wanted("gemm")) for (G g : {G{240 * 128, 3 * 32, 14, "gru32_input_proj"}, G{128, 3 * 32, 32, "gru32_recurrent"},
              G{128, 4 * 256, 256, "lstm256_recurrent"}, G{1024, 1024, 1024, "square1024"}}) {
    Tensor a = random_tensor({g.m, g.k}, dev, rng), b = random_tensor({g.n, g.k}, dev, rng);
    Tensor c = Tensor::empty({g.m, g.n}, DType::f32, dev);
    const double us = median_us(dev, repeats, [&] { ops::gemm(a, b, c, false, true); });
    row(dev, "gemm", std::string(g.what) + " " + std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k),
        us, 2.0 * g.m * g.n * g.k, 4.0 * (g.m * g.k + g.k * g.n + g.m * g.n));
  }
  if (g_only.empty()) for (std::int64_t n : {std::int64_t(1) << 16, std::int64_t(1) << 24}) {
    Tensor x = random_tensor({n}, dev, rng), y = Tensor::empty({n}, DType::f32, dev);
    row(dev, "sigmoid", "n " + std::to_string(n), median_us(dev, repeats, [&] { ops::unary(UnaryOp::Sigmoid, x, y); }), 0, 8.0 * n);
    row(dev, "add", "n " + std::to_string(n), median_us(dev, repeats, [&] { ops::binary(BinaryOp::Add, x, x, y); }), 0, 12.0 * n);
    row(dev, "sum", "n " + std::to_string(n), median_us(dev, repeats, [&] { ops::reduce_all(ReduceOp::Sum, x); }), 0, 4.0 * n);
  }
  if (g_only.empty()) for (auto [B, H] : {std::pair<std::int64_t, std::int64_t>{128, 32}, {64, 256}, {256, 1024}}) {
    LstmStep s;
    s.xproj = random_tensor({B, 4 * H}, dev, rng);
    s.hproj = random_tensor({B, 4 * H}, dev, rng);
    s.b_ih = random_tensor({4 * H}, dev, rng);
    s.b_hh = random_tensor({4 * H}, dev, rng);
    s.c_prev = random_tensor({B, H}, dev, rng);
    s.h = Tensor::empty({B, H}, DType::f32, dev);
    s.c = Tensor::empty({B, H}, DType::f32, dev);
    s.saved = Tensor::empty({B, 4 * H}, DType::f32, dev);
    const double bytes = 4.0 * (B * 4 * H * 3 + B * H * 3);
    row(dev, "lstm_step", "B " + std::to_string(B) + " H " + std::to_string(H),
        median_us(dev, repeats, [&] { ops::lstm_step(s); }), 0, bytes);
  }
  // Training: the fused Adam step over one flat buffer (the book
  // model, 386,438 parameters, and a 16M-parameter one), with and without
  // clipping by global norm; fused losses over a batch of sequences.
  if (g_only.empty()) for (std::int64_t n : {std::int64_t(386438), std::int64_t(1) << 24}) {
    ParameterStore store(dev);
    store.declare("all", {n});
    store.allocate();
    Tensor(store.grads()).copy_from(random_tensor({store.buffer_numel()}, dev, rng));
    for (double clip : {0.0, 1.0}) {
      OptimizerConfig cfg = OptimizerConfig::adam();
      cfg.global_clipnorm = clip;
      Optimizer opt(cfg, store);
      row(dev, clip > 0 ? "adam_step_clipnorm" : "adam_step", "n " + std::to_string(n),
          median_us(dev, repeats, [&] { opt.step(); }), 0, 4.0 * 7 * double(n) + (clip > 0 ? 4.0 * n : 0));
    }
  }
  if (g_only.empty()) {
    const std::int64_t B = 128, T = 100, C = 32;
    Tensor logits = random_tensor({B, T, C}, dev, rng), grad = Tensor::empty({B, T, C}, DType::f32, dev);
    Tensor labels = Tensor::zeros({B, T}, DType::i32, dev), mask = Tensor::full({B, T}, 1.0, DType::f32, dev);
    row(dev, "sparse_cce_masked", "B 128 T 100 C 32",
        median_us(dev, repeats, [&] { ops::loss(LossKind::SparseCategoricalCrossentropy, logits, labels, grad, mask); }),
        0, 4.0 * (2 * B * T * C + 2 * B * T));
    Tensor target = random_tensor({B, T, C}, dev, rng);
    row(dev, "mse", "B 128 T 100 C 32",
        median_us(dev, repeats, [&] { ops::loss(LossKind::MeanSquaredError, logits, target, grad); }),
        0, 4.0 * 3 * B * T * C);
  }
  // The Jena conv model's layers (bench_train --model conv, B 128, T 240, 6
  // features): Conv1D(32, 5) on 6, then 32 channels, the MaxPooling1D(3)
  // between them; forward, and backward with and without the input gradient.
  if (wanted("conv1d") || wanted("pool1d")) {
    struct L { std::int64_t T, C; const char* what; };
    for (L l : {L{240, 6, "conv1 T 240 C 6"}, L{240, 14, "conv1 T 240 C 14"}, L{78, 32, "conv2 T 78 C 32"},
                L{24, 32, "conv3 T 24 C 32"}}) {
      const std::int64_t B = 128, F = 32, K = 5, To = l.T - K + 1;
      Tensor x = random_tensor({B, l.T, l.C}, dev, rng), w = random_tensor({F, l.C, K}, dev, rng);
      Tensor b = random_tensor({F}, dev, rng), dy = random_tensor({B, To, F}, dev, rng);
      Conv1dOptions o;
      o.kernel_size = K;
      const double flops = 2.0 * B * To * F * l.C * K;
      if (wanted("conv1d")) {
        row(dev, "conv1d_forward", l.what, median_us(dev, repeats, [&] { ops::conv1d(x, w, b, o); }), flops, 0);
        Tensor cols;
        ops::conv1d(x, w, b, o, &cols);
        row(dev, "conv1d_backward", std::string(l.what) + " dx dw db",
            median_us(dev, repeats, [&] { ops::conv1d_backward(x, w, dy, o, cols, true); }), 2 * flops, 0);
        row(dev, "conv1d_backward", std::string(l.what) + " dw db",
            median_us(dev, repeats, [&] { ops::conv1d_backward(x, w, dy, o, cols, false); }), flops, 0);
      }
      if (wanted("pool1d")) {
        Tensor y = random_tensor({B, To, F}, dev, rng);
        ops::Pool1dOptions po;
        po.pool_size = 3;
        ops::PoolResult r = ops::pool1d_forward(y, po);
        row(dev, "pool1d_forward", std::string("max 3 T ") + std::to_string(To) + " C 32",
            median_us(dev, repeats, [&] { ops::pool1d_forward(y, po); }), 0, 4.0 * B * To * F);
        Tensor dp = random_tensor(r.y.shape(), dev, rng);
        row(dev, "pool1d_backward", std::string("max 3 T ") + std::to_string(To) + " C 32",
            median_us(dev, repeats, [&] { ops::pool1d_backward(dp, To, po, {}, r.argmax); }), 0, 4.0 * B * To * F);
      }
    }
  }
  if (wanted("rnn")) {
    const std::int64_t T = 240, B = 128, I = 14, H = 32;
    Tensor x = random_tensor({B, T, I}, dev, rng);
    for (CellType cell : {CellType::LSTM, CellType::GRU}) {
      RecurrentOptions o;
      o.cell = cell;
      o.input_size = I;
      o.units = H;
      Recurrent layer(o, dev, 7);
      const double flops = 2.0 * T * B * cell_gates(cell) * H * (I + H);
      const std::string cfg = std::string(cell_name(cell)) + " T 240 B 128 I 14 H 32";
      row(dev, "rnn_forward", cfg + " inference (us per batch)",
          median_us(dev, std::max(3, repeats / 10), [&] { layer.forward(x); }), flops, 0);
      row(dev, "rnn_train", cfg + " forward+backward (us per batch)",
          median_us(dev, std::max(3, repeats / 10), [&] {
            layer.forward(x, {}, {}, true);
            layer.backward(Tensor::full({B, H}, 1.0, DType::f32, dev));
          }),
          3 * flops, 0);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  int repeats = 50;
  std::vector<Device> devices{Device::cpu()};
  for (int i = 0; i < cuda_device_count(); ++i) devices.push_back(Device::cuda(i));
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) devices = {Device::parse(argv[++i])};
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_ops [--repeats N] [--device D] [--only OP]\n");
      return 2;
    }
  }
  try {
    std::printf("# %s", format_system_info(system_info()).c_str());
    if (cuda_device_count() == 0) std::printf("# no GPU found: %s\n", cuda_unavailable_reason().c_str());
    std::printf("device,op,config,us,gflops,gbps\n");
    for (Device d : devices) run(d, repeats);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

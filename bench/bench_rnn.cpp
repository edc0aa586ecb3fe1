// bench_rnn: recur's recurrent layers, timed. One CSV row per configuration
// and mode: forward (inference) and forward + backward (training: the weight
// gradients, as for a first layer, whose input is data and needs no gradient;
// PyTorch's side in rnn_cpu_vs_pytorch.py has an input without requires_grad,
// so both skip dx), median of repeats after a warm-up, synchronised; random
// inputs and weights (never zeros).
//   bench_rnn --device cpu|cuda:N [--repeats N] [--mode forward|train|both]
//             [--config CELL,H,B,T,I ...]
//   bench_rnn --device cpu|cuda:N --serve     (one timed call per stdin request: serve() says how)
// CELL is lstm or gru. Without --config: a default sweep. The peer side lives
// in bench/rnn_cpu_vs_pytorch.py (PyTorch in the same run) and, for GPUs, the
// cuDNN benchmark of the benchmark-suite issue.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/recur.h"

namespace {
using namespace recur;

struct Config {
  CellType cell;
  std::int64_t H, B, T, I;
};

double median_ms(Device dev, int repeats, const std::function<void()>& f) {
  return 1000 * bench::median_seconds(dev, repeats, f);
}

Config parse(const std::string& s) {
  std::stringstream ss(s);
  std::string cell, part;
  std::getline(ss, cell, ',');
  std::vector<std::int64_t> v;
  while (std::getline(ss, part, ',')) v.push_back(std::stoll(part));
  RECUR_CHECK(v.size() == 4 && (cell == "lstm" || cell == "gru"), Value, "bad --config '", s,
              "': expected lstm|gru,H,B,T,I");
  return {cell == "lstm" ? CellType::LSTM : CellType::GRU, v[0], v[1], v[2], v[3]};
}

// One configuration's layer and inputs (random, never zeros), built once.
struct Case {
  Recurrent layer;
  Tensor x, dy;
  Case(const Config& c, Device dev, std::mt19937_64& rng)
      : layer(options(c), dev, 7), dy(Tensor::full({c.B, c.T, c.H}, 1.0, DType::f32, dev)) {
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    std::vector<float> xs(static_cast<std::size_t>(c.B * c.T * c.I));
    for (float& v : xs) v = d(rng);
    x = Tensor::from_vector(xs, {c.B, c.T, c.I}, dev);
  }
  static RecurrentOptions options(const Config& c) {
    RecurrentOptions o;
    o.cell = c.cell;
    o.input_size = c.I;
    o.units = c.H;
    o.return_sequences = true;
    return o;
  }
  void forward() { layer.forward(x); }
  // The weight gradients; no dx (as for a model's first layer, and as the
  // PyTorch side, whose input has no requires_grad).
  void train() {
    layer.forward(x, {}, {}, true);
    layer.backward(dy, {}, false);
  }
};

// --serve: one timed call per request, so that a harness can alternate
// single calls with its peer's (calls milliseconds apart see the same
// machine; blocks of calls seconds apart do not, on a shared VM). Requests
// on stdin, one per line: "CELL,H,B,T,I forward|train"; the reply, one
// line: the call's milliseconds (synchronised), or "error: ..." for a bad
// request. A configuration's layer is built at its first request (time that
// first call as a warm-up). EOF or "quit" ends.
int serve(Device dev) {
  std::map<std::string, std::unique_ptr<Case>> cases;
  std::mt19937_64 rng(42);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "quit") break;
    std::istringstream in(line);
    std::string config, mode;
    in >> config >> mode;
    try {
      RECUR_CHECK(mode == "forward" || mode == "train", Value, "bad request '", line,
                  "': expected CELL,H,B,T,I forward|train");
      auto& c = cases[config];
      if (!c) c = std::make_unique<Case>(parse(config), dev, rng);
      backend(dev).synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      if (mode == "forward") c->forward();
      else c->train();
      backend(dev).synchronize();
      std::printf("%.4f\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    } catch (const Error& e) {
      cases.erase(config);
      std::printf("error: %s\n", e.what());
    }
    std::fflush(stdout);
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    Device dev = default_device();
    int repeats = 5;
    bool want_fwd = true, want_train = true, serving = false;
    std::vector<Config> configs;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--device") && i + 1 < argc) dev = Device::parse(argv[++i]);
      else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
      else if (!std::strcmp(argv[i], "--config") && i + 1 < argc) configs.push_back(parse(argv[++i]));
      else if (!std::strcmp(argv[i], "--serve")) serving = true;
      else if (!std::strcmp(argv[i], "--mode") && i + 1 < argc &&
               (!std::strcmp(argv[i + 1], "forward") || !std::strcmp(argv[i + 1], "train") ||
                !std::strcmp(argv[i + 1], "both"))) {
        ++i;
        want_fwd = std::strcmp(argv[i], "train") != 0;
        want_train = std::strcmp(argv[i], "forward") != 0;
      } else {
        std::fprintf(stderr,
                     "usage: bench_rnn [--device D] [--repeats N] [--mode forward|train|both] "
                     "[--config lstm|gru,H,B,T,I ...]\n       bench_rnn [--device D] --serve\n");
        return 2;
      }
    }
    if (configs.empty())
      for (CellType c : {CellType::GRU, CellType::LSTM})
        for (std::int64_t H : {32, 128, 256})
          for (std::int64_t B : {1, 32, 128}) configs.push_back({c, H, B, 240, H});
    require_device(dev);
    if (serving) return serve(dev);
    std::printf("engine,device,cell,H,B,T,I,mode,ms,us_per_step,samples_per_s\n");
    std::mt19937_64 rng(42);
    for (const Config& c : configs) {
      Case k(c, dev, rng);
      std::vector<std::pair<const char*, double>> rows;
      if (want_fwd) rows.emplace_back("forward", median_ms(dev, repeats, [&] { k.forward(); }));
      if (want_train) rows.emplace_back("train", median_ms(dev, repeats, [&] { k.train(); }));
      for (auto [mode, ms] : rows)
        std::printf("recur,%s,%s,%lld,%lld,%lld,%lld,%s,%.3f,%.2f,%.1f\n", dev.str().c_str(),
                    c.cell == CellType::LSTM ? "lstm" : "gru", (long long)c.H, (long long)c.B,
                    (long long)c.T, (long long)c.I, mode, ms, 1000.0 * ms / double(c.T),
                    1000.0 * double(c.B) / ms);
      std::fflush(stdout);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

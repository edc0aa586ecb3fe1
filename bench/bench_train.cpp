// bench_train: training throughput of a whole model (forward, loss, backward,
// optimizer step: Sequential::train_on_batch), in samples per second. The
// models are the Jena forecasters of Deep Learning with Python, built with
// recur's layers and compiled as the book does (RMSprop 1e-3, MAE):
//   gru    GRU(32) -> Dense(1)
//   lstm   LSTM(32) -> Dense(1)
//   dense  Flatten -> Dense(32, relu) -> Dense(1)
//   conv   Conv1D(32, 5, relu) -> MaxPooling1D(3) -> Conv1D(32, 5, relu) ->
//          MaxPooling1D(3) -> Conv1D(32, 5, relu) -> GlobalMaxPooling1D -> Dense(1)
//   conv-gru Conv1D(32, 5, relu) -> MaxPooling1D(3) -> Conv1D(32, 5, relu) -> GRU(32)
//          -> Dense(1): the forecast zoo's conv-gru without its dropout (0.1 and
//          recurrent 0.5), which PyTorch's nn.GRU has no equivalent of
// The data is one fixed random batch x [batch, time, features] ~ U(-1, 1) and
// targets y [batch] ~ U(-1, 1), trained on for --warmup steps untimed and then
// --steps steps timed one by one. Prints one CSV row (with a header): the total
// samples/s over the timed steps, the median step time and the fastest (on a
// shared machine, the closest to an idle one). The peer in
// PyTorch is bench/train_vs_pytorch.py, which runs this binary.
//   bench_train --model gru|lstm|dense|conv|conv-gru [--batch 128] [--time 240]
//               [--features 6] [--steps 20] [--warmup 3] [--threads N]
//               [--device cpu] [--no-header]
//   bench_train ... --serve   (one timed step per stdin request, a model name per line)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "recur/kernels/cpu.h"
#include "recur/recur.h"

namespace {
using namespace recur;

std::unique_ptr<Sequential> make_model(const std::string& name) {
  auto m = std::make_unique<Sequential>(name);
  if (name == "gru") {
    m->add(GRU(32)).add(std::make_shared<Dense>(1));
  } else if (name == "lstm") {
    m->add(LSTM(32)).add(std::make_shared<Dense>(1));
  } else if (name == "dense") {
    m->add(std::make_shared<Flatten>())
        .add(std::make_shared<Dense>(32, Activation::Relu))
        .add(std::make_shared<Dense>(1));
  } else if (name == "conv") {
    m->add(std::make_shared<Conv1D>(32, 5, Activation::Relu))
        .add(MaxPooling1D(3))
        .add(std::make_shared<Conv1D>(32, 5, Activation::Relu))
        .add(MaxPooling1D(3))
        .add(std::make_shared<Conv1D>(32, 5, Activation::Relu))
        .add(std::make_shared<GlobalPooling1D>(PoolKind::Max))
        .add(std::make_shared<Dense>(1));
  } else if (name == "conv-gru") {
    m->add(std::make_shared<Conv1D>(32, 5, Activation::Relu))
        .add(MaxPooling1D(3))
        .add(std::make_shared<Conv1D>(32, 5, Activation::Relu))
        .add(GRU(32))
        .add(std::make_shared<Dense>(1));
  } else {
    RECUR_CHECK(false, Value, "unknown model '", name, "': expected gru, lstm, dense, conv or conv-gru");
  }
  return m;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_train: samples/s of train_on_batch for the Jena models"};
  std::string model = "gru", device = "cpu";
  std::int64_t batch = 128, time = 240, features = 6;
  int steps = 20, warmup = 3, threads = 0;
  bool no_header = false;
  app.add_option("--model", model, "gru, lstm, dense, conv or conv-gru")->capture_default_str();
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--time", time, "time steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--features", features, "input features")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", steps, "timed training steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (OpenMP and OpenBLAS); 0: the default")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", device, "cpu or cuda:N")->capture_default_str();
  app.add_flag("--no-header", no_header, "omit the CSV header");
  bool serving = false;
  app.add_flag("--serve", serving,
               "one timed step per stdin request (a model name per line; the reply: the step's ms, "
               "or 'error: ...'); each model built at its first request, with --batch, --time and "
               "--features; EOF or 'quit' ends. For harnesses that alternate single steps with a peer's");
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0) kernels::cpu::set_num_threads(threads);
    const Device dev = Device::parse(device);
    require_device(dev);
    // A model with fixed random data (never zeros), compiled as Keras's defaults.
    struct Job {
      std::unique_ptr<Sequential> m;
      Tensor x, y;
    };
    auto make_job = [&](const std::string& name) {
      Job j;
      j.m = make_model(name);
      j.m->build({time, features}, dev, DType::f32, 1);
      j.m->compile({OptimizerConfig::rmsprop(1e-3), LossKind::MeanAbsoluteError, {}});
      std::mt19937_64 rng(42);
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      std::vector<float> xs(static_cast<std::size_t>(batch * time * features));
      std::vector<float> ys(static_cast<std::size_t>(batch));
      for (float& v : xs) v = u(rng);
      for (float& v : ys) v = u(rng);
      j.x = Tensor::from_vector(xs, {batch, time, features}, dev);
      j.y = Tensor::from_vector(ys, {batch}, dev);
      return j;
    };
    if (serving) {
      std::map<std::string, Job> jobs;
      std::string line;
      while (std::getline(std::cin, line) && line != "quit") {
        try {
          auto it = jobs.find(line);
          if (it == jobs.end()) it = jobs.emplace(line, make_job(line)).first;
          const auto t0 = std::chrono::steady_clock::now();
          it->second.m->train_on_batch(it->second.x, it->second.y);  // reads the loss: synced
          std::printf("%.4f\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        } catch (const Error& e) {
          std::printf("error: %s\n", e.what());
        }
        std::fflush(stdout);
      }
      return 0;
    }
    Job job = make_job(model);
    auto& m = job.m;
    const Tensor& x = job.x;
    const Tensor& y = job.y;
    double loss = 0;
    for (int s = 0; s < warmup; ++s) loss = m->train_on_batch(x, y).loss;  // reads the loss: synced
    std::vector<double> t;
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      loss = m->train_on_batch(x, y).loss;
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    double total = 0;
    for (double v : t) total += v;
    const double fastest = *std::min_element(t.begin(), t.end());
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    if (!no_header)
      std::printf("engine,model,device,batch,time,features,threads,params,steps,warmup,"
                  "seconds,median_step_ms,min_step_ms,samples_per_s,last_loss\n");
    std::printf("recur,%s,%s,%lld,%lld,%lld,%d,%lld,%d,%d,%.4f,%.3f,%.3f,%.1f,%.6f\n", model.c_str(),
                dev.str().c_str(), (long long)batch, (long long)time, (long long)features,
                dev.is_cpu() ? kernels::cpu::num_threads() : 0, (long long)m->count_params(), steps,
                warmup, total, 1000 * t[t.size() / 2], 1000 * fastest, double(batch) * steps / total, loss);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

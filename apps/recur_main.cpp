// The `recur` command line.
//   recur devices             what recur finds: CPU/BLAS, GPUs, versions
//   recur lstm [options]      a small LSTM forward on the default device
//   recur forecast ...        the Jena temperature forecaster (forecast.h)
//   (input [batch, steps, features], as Keras)
// --device D (cpu, cuda, cuda:N) overrides the default device (as does
// RECUR_DEVICE).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

#include "forecast.h"
#include "recur/recur.h"

namespace {

int run_devices() {
  std::cout << recur::format_system_info(recur::system_info());
  return 0;
}

struct LstmOptions {
  std::int64_t steps = 240, batch = 128, input = 6, hidden = 32;
  std::uint64_t seed = 1;
  int repeats = 3;
  bool check = false;
};

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (std::abs(double(b[i])) + 1e-6));
  return worst;
}

int run_lstm(const LstmOptions& o) {
  using namespace recur;
  const Device dev = default_device();
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> xs(std::size_t(o.steps * o.batch * o.input));
  for (float& v : xs) v = dist(rng);
  const Tensor x = Tensor::from_vector(xs, {o.batch, o.steps, o.input}, dev);
  RecurrentOptions ro;
  ro.cell = CellType::LSTM;
  ro.input_size = o.input;
  ro.units = o.hidden;
  ro.return_sequences = true;
  ro.return_state = true;
  Recurrent lstm(ro, dev, o.seed + 1);

  std::printf("recur %s: LSTM forward on %s (%s)\n", RECUR_VERSION_STRING, dev.str().c_str(),
              backend(dev).describe().c_str());
  std::printf("T=%lld steps, B=%lld, input %lld, hidden %lld, float32, seed %llu\n",
              (long long)o.steps, (long long)o.batch, (long long)o.input, (long long)o.hidden,
              (unsigned long long)o.seed);
  Recurrent::Output out = lstm.forward(x);  // warm-up: allocations, cuBLAS heuristics
  backend(dev).synchronize();
  double best_ms = 1e300;
  for (int r = 0; r < o.repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    out = lstm.forward(x);
    backend(dev).synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const std::vector<float> h = out.states[0].to_vector<float>();
  double sum = 0, sum_abs = 0;
  for (float v : h) {
    sum += v;
    sum_abs += std::abs(v);
  }
  std::printf("output y %s, h_n %s; sum(h_n) = %.6f, mean |h_n| = %.6f\n",
              shape_str(out.y.shape()).c_str(), shape_str(out.states[0].shape()).c_str(), sum,
              h.empty() ? 0.0 : sum_abs / double(h.size()));
  std::printf("time: %.3f ms per forward pass, %.2f us per step (best of %d)\n", best_ms,
              1000.0 * best_ms / double(o.steps ? o.steps : 1), o.repeats);
  if (o.check && !dev.is_cpu()) {
    Recurrent cpu(ro, Device::cpu(), o.seed + 1);  // same seed: same weights
    const Recurrent::Output ref = cpu.forward(x.to(Device::cpu()));
    const double d = max_rel_diff(h, ref.states[0].to_vector<float>());
    std::printf("check against the CPU backend: max relative difference of h_n = %.3g (%s)\n", d,
                d <= 1e-4 ? "ok" : "MISMATCH");
    if (d > 1e-4) return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"recur: recurrent and convolutional sequence models on NVIDIA GPUs and the CPU"};
  app.require_subcommand(1);
  app.fallthrough();  // global options such as --device also work after the subcommand
  std::string device;
  app.add_option("--device", device, "device to run on: cpu, cuda or cuda:N (default: "
                                     "RECUR_DEVICE, else the first GPU, else cpu)")
      ->envname("RECUR_DEVICE");

  app.add_subcommand("devices", "show the CPU, BLAS, GPUs and versions recur finds");

  LstmOptions lo;
  CLI::App* lstm = app.add_subcommand("lstm", "run a small LSTM forward pass and time it");
  lstm->add_option("--steps,-T", lo.steps, "time steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  lstm->add_option("--batch,-B", lo.batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  lstm->add_option("--input,-I", lo.input, "input features")->check(CLI::PositiveNumber)->capture_default_str();
  lstm->add_option("--hidden,-H", lo.hidden, "hidden size")->check(CLI::PositiveNumber)->capture_default_str();
  lstm->add_option("--seed", lo.seed, "random seed for inputs and weights")->capture_default_str();
  lstm->add_option("--repeats", lo.repeats, "timed repetitions")->check(CLI::PositiveNumber)->capture_default_str();
  lstm->add_flag("--check", lo.check, "on a GPU, compare the result with the CPU backend");

  recur::app::ForecastOptions fo;
  CLI::App* forecast = recur::app::add_forecast_command(app, fo);

  CLI11_PARSE(app, argc, argv);
  try {
    if (!device.empty()) recur::set_default_device(recur::Device::parse(device));
    if (app.got_subcommand("devices")) return run_devices();
    if (app.got_subcommand("lstm")) return run_lstm(lo);
    if (app.got_subcommand("forecast")) return recur::app::run_forecast(*forecast, fo);
  } catch (const recur::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "recur: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

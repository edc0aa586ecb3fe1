// The `recur` command line.
//   recur devices             what recur finds: CPU/BLAS, GPUs, versions
//   recur lstm [options]      a small LSTM forward on the default device
//   recur forecast ...        the Jena temperature forecaster (forecast.h)
//   recur text ...            a character-level text generator (text.h)
//   recur imdb ...            IMDB review sentiment (imdb.h)
//   (input [batch, steps, features], as Keras)
// --device D (cpu, cuda, cuda:N) overrides the default device (as does
// RECUR_DEVICE).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <string>

#include "forecast.h"
#include "text.h"
#include "imdb.h"
#include "recur/common/log.h"
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

// A message as the terminal may show it: control bytes and bytes that are not
// UTF-8 (a binary file read as CSV) as \xNN, and a very long message (a whole
// binary "line") cut in the middle.
std::string printable(const std::string& text) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  auto hex = [&](unsigned char c) {
    static const char* digits = "0123456789abcdef";
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 15];
  };
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) {
      out += char(c);
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence of 2 to 4 bytes passes unchanged.
    const std::size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = len > 0 && c >= 0xc2 && c <= 0xf4 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok) {
      out.append(text, i, len);
      i += len;
    } else {
      hex(c);
      ++i;
    }
  }
  constexpr std::size_t kMax = 1200;
  if (out.size() > kMax)
    out = out.substr(0, 900) + " ... (" + std::to_string(out.size() - 1100) + " characters cut) ... " +
          out.substr(out.size() - 200);
  return out;
}

// What the user reads: the problem; with RECUR_LOG=debug also the failing
// statement and recur's source location.
std::string user_message(const recur::Error& e) {
  if (recur::log_enabled(recur::LogLevel::Debug)) return e.what();
  return std::string("recur: ") + recur::error_kind_name(e.kind()) + ": " + e.message();
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
  using recur::app::int_range;
  lstm->add_option("--steps,-T", lo.steps, "time steps")->check(int_range(0, 1000000))->capture_default_str();
  lstm->add_option("--batch,-B", lo.batch, "batch size")->check(int_range(1, 1000000))->capture_default_str();
  lstm->add_option("--input,-I", lo.input, "input features")->check(int_range(1, 1000000))->capture_default_str();
  lstm->add_option("--hidden,-H", lo.hidden, "hidden size")->check(int_range(1, 1000000))->capture_default_str();
  lstm->add_option("--seed", lo.seed, "random seed for inputs and weights")->capture_default_str();
  lstm->add_option("--repeats", lo.repeats, "timed repetitions")->check(int_range(1, 1000000))->capture_default_str();
  lstm->add_flag("--check", lo.check, "on a GPU, compare the result with the CPU backend");

  recur::app::ForecastOptions fo;
  CLI::App* forecast = recur::app::add_forecast_command(app, fo);
  recur::app::TextOptions to;
  CLI::App* text = recur::app::add_text_command(app, to);
  recur::app::ImdbOptions io;
  CLI::App* imdb = recur::app::add_imdb_command(app, io);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::ostringstream out, err;
    const int rc = app.exit(e, out, err);
    std::cout << printable(out.str());
    std::cerr << printable(err.str());
    return rc;
  }
  // Launched as one of several ranks (mpirun -np N recur ...; docs/distributed.md):
  // rank 0 alone prints; an error names its rank and ends the whole job.
  const recur::LaunchInfo launch = recur::launch_info();
  const std::string who = launch.size > 1 ? "rank " + std::to_string(launch.rank) + ": " : "";
  if (launch.size > 1 && launch.rank != 0) std::cout.rdbuf(nullptr);
  auto fail = [&](const std::string& message) {
    std::cerr << (who.empty() ? message : message.substr(0, 7) + who + message.substr(7)) << std::endl;
    if (launch.size > 1) recur::abort_job(1);
    return 1;
  };
  struct Finalize {
    ~Finalize() { recur::finalize_distributed(); }
  } finalize;
  try {
    if (!device.empty()) recur::set_default_device(recur::Device::parse(device));
    if (app.got_subcommand("devices")) return run_devices();
    if (app.got_subcommand("lstm")) return run_lstm(lo);
    if (app.got_subcommand("forecast")) return recur::app::run_forecast(*forecast, fo);
    if (app.got_subcommand("text")) return recur::app::run_text(*text, to);
    if (app.got_subcommand("imdb")) return recur::app::run_imdb(*imdb, io);
  } catch (const recur::Error& e) {
    return fail(printable(user_message(e)));
  } catch (const std::exception& e) {
    return fail("recur: " + printable(e.what()));
  }
  return 0;
}

// Attention over recurrent states (engine/attention.h), on one device, as CSV:
//  1. forward + backward of AttentionPooling and HierarchicalAttention (chunks
//     of 100) on [B, T, D] with a mask, dot and additive scores;
//  2. a training step (train_on_batch) of the Jena forecaster's shape (B 128,
//     T 240, 6 features) for GRU 32 -> Dense 1 against GRU 32 (sequences) ->
//     pooling -> Dense 1, to show what attention adds to a step.
// Times are medians of repeats after a warm-up, device synchronised: wall
// milliseconds, and the calling thread's CPU milliseconds (meaningful on the
// CPU with OMP_NUM_THREADS=1, where it is robust to other load on the machine).
//
//   bench_attention [--device cpu|cuda:0] [--repeats N]
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/recur.h"

using namespace recur;

namespace {

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Wall and thread-CPU medians of f, in milliseconds.
std::pair<double, double> time_ms(Device dev, int repeats, const std::function<void()>& f) {
  std::vector<double> cpu;
  const double wall = bench::median_seconds(dev, repeats, [&] {
    const double c0 = thread_cpu_seconds();
    f();
    cpu.push_back(thread_cpu_seconds() - c0);
  });
  return {wall * 1e3, bench::median(cpu) * 1e3};
}

}  // namespace

int main(int argc, char** argv) {
  Device dev = Device::cpu();
  int repeats = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--device") == 0) dev = Device::parse(argv[i + 1]);
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::atoi(argv[i + 1]);
  }
  const std::int64_t B = 8, D = 32;
  std::printf("device,layer,score,B,T,D,wall_ms_forward_backward,thread_cpu_ms\n");
  for (std::int64_t T : {1000, 10000}) {
    std::mt19937 g(1);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> xv(std::size_t(B * T * D));
    for (float& e : xv) e = u(g);
    // Row b keeps its first T - b T / 16 steps.
    std::vector<float> mv(std::size_t(B * T), 1.f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = T - b * T / 16; t < T; ++t) mv[std::size_t(b * T + t)] = 0;
    const Tensor x = Tensor::from_vector(xv, {B, T, D}, dev), m = Tensor::from_vector(mv, {B, T}, dev);
    const Tensor dy = Tensor::full({B, D}, 1.0, DType::f32, dev);
    for (int kind = 0; kind < 4; ++kind) {
      AttentionPoolingOptions o;
      o.score = kind % 2 ? AttentionScore::Additive : AttentionScore::Dot;
      LayerPtr l = kind < 2 ? LayerPtr(std::make_shared<AttentionPooling>(o))
                            : LayerPtr(std::make_shared<HierarchicalAttention>(100, o));
      ParameterStore store(dev, DType::f32);
      l->build({kAnyDim, D}, DType::f32);
      l->declare(store);
      store.allocate();
      l->bind(store);
      l->initialize(1);
      const auto [wall, cpu] = time_ms(dev, repeats, [&] {
        l->forward(x, m, true);
        l->backward(dy);
      });
      std::printf("%s,%s,%s,%lld,%lld,%lld,%.3f,%.3f\n", dev.str().c_str(), l->type(),
                  attention_score_name(o.score), (long long)B, (long long)T, (long long)D, wall, cpu);
    }
  }

  // 2. Training steps of the forecaster's shape.
  const std::int64_t N = 128, T = 240, F = 6;
  std::mt19937 g(2);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> xv(static_cast<std::size_t>(N * T * F)), yv(static_cast<std::size_t>(N));
  for (float& e : xv) e = u(g);
  for (float& e : yv) e = u(g);
  const Tensor x = Tensor::from_vector(xv, {N, T, F}, dev), y = Tensor::from_vector(yv, {N, 1}, dev);
  std::printf("device,model,B,T,features,wall_ms_train_step,thread_cpu_ms\n");
  const char* names[] = {"GRU 32", "GRU 32 seq + GlobalAveragePooling1D", "GRU 32 seq + AttentionPooling(dot, last)",
                         "GRU 32 seq + AttentionPooling(additive, last)",
                         "GRU 32 seq + HierarchicalAttention(24, additive, last)"};
  for (int kind = 0; kind < 5; ++kind) {
    Sequential model;
    AttentionPoolingOptions o;
    o.query = AttentionQuery::Last;
    o.score = kind == 2 ? AttentionScore::Dot : AttentionScore::Additive;
    if (kind == 0) model.add(GRU(32));
    if (kind > 0) model.add(GRU(32, true));
    if (kind == 1) model.add(std::make_shared<GlobalPooling1D>(PoolKind::Average));
    if (kind == 2 || kind == 3) model.add(std::make_shared<AttentionPooling>(o));
    if (kind == 4) model.add(std::make_shared<HierarchicalAttention>(24, o));
    model.add(std::make_shared<Dense>(1));
    model.build({kAnyDim, F}, dev, DType::f32, 1);
    model.compile({OptimizerConfig::rmsprop(1e-3), LossKind::MeanAbsoluteError, {}});
    const auto [wall, cpu] = time_ms(dev, repeats, [&] { model.train_on_batch(x, y); });
    std::printf("%s,%s,%lld,%lld,%lld,%.3f,%.3f\n", dev.str().c_str(), names[kind], (long long)N, (long long)T,
                (long long)F, wall, cpu);
  }
  return 0;
}

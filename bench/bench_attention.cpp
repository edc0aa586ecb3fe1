// Attention over recurrent states (engine/attention.h): forward + backward of
// AttentionPooling and HierarchicalAttention (chunks of 100) on [B, T, D]
// with a mask, dot and additive scores, on one device. One CSV row per case:
// device, layer, score, B, T, D, median milliseconds of a training forward and
// its backward (median of repeats after a warm-up, device synchronised).
//
//   bench_attention [--device cpu|cuda:0] [--repeats N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/recur.h"

using namespace recur;

int main(int argc, char** argv) {
  Device dev = Device::cpu();
  int repeats = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--device") == 0) dev = Device::parse(argv[i + 1]);
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::atoi(argv[i + 1]);
  }
  const std::int64_t B = 8, D = 32;
  std::printf("device,layer,score,B,T,D,ms_forward_backward\n");
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
      const double s = bench::median_seconds(dev, repeats, [&] {
        l->forward(x, m, true);
        l->backward(dy);
      });
      std::printf("%s,%s,%s,%lld,%lld,%lld,%.3f\n", dev.str().c_str(), l->type(), attention_score_name(o.score),
                  (long long)B, (long long)T, (long long)D, s * 1e3);
    }
  }
  return 0;
}

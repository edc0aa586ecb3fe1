// recur's half of the recur -> PyTorch safetensors check (CTest:
// safetensors.recur_writes, then safetensors.pytorch_reads_recur). Writes
// OUTDIR/recur_<module>.safetensors for an LSTM, a GRU, a Linear, a grouped
// and dilated Conv1d and an Embedding: random parameters under PyTorch's
// names ("0.weight_ih_l0", ...), a random input, and recur's output for it,
// in the layout of tests/golden/torch_*.safetensors. Then
// `scripts/make_safetensors_golden.py --check` loads each file into the
// PyTorch module with load_state_dict(strict=True) and compares outputs.
#include <sys/stat.h>

#include <cstdio>
#include <random>

#include "safetensors_modules.h"

namespace recur::test {
namespace {

std::mt19937_64 gen(20240605);

Tensor uniform(const Shape& shape, float bound) {
  std::uniform_real_distribution<float> d(-bound, bound);
  std::vector<float> v(std::size_t(shape_numel(shape)));
  for (float& x : v) x = d(gen);
  return Tensor::from_vector(v, shape, Device::cpu());
}

void export_module(const std::string& dir, const std::string& file, const std::string& cls,
                   const std::string& args, NamedTensors params, const Tensor& x) {
  const std::map<std::string, std::string> meta = {{"module", cls}, {"module.args", args},
                                                    {"producer", "recur tests/safetensors_export"}};
  const Tensor y = module_forward(meta, params, x);
  params.emplace_back("input", x);
  params.emplace_back("output", y);
  const std::string path = dir + "/" + file;
  save_safetensors(path, params, meta);
  std::printf("wrote %s: %s, output %s\n", path.c_str(), cls.c_str(), shape_str(y.shape()).c_str());
}

void run(const std::string& dir) {
  const std::int64_t I = 5, H = 7, B = 3, T = 6;
  for (const char* cell : {"LSTM", "GRU"}) {
    const std::int64_t G = std::string(cell) == "LSTM" ? 4 : 3;
    export_module(dir, std::string("recur_") + (G == 4 ? "lstm" : "gru") + ".safetensors", cell,
                  R"({"input_size": 5, "hidden_size": 7, "batch_first": true})",
                  {{"0.weight_ih_l0", uniform({G * H, I}, 0.4f)},
                   {"0.weight_hh_l0", uniform({G * H, H}, 0.4f)},
                   {"0.bias_ih_l0", uniform({G * H}, 0.4f)},
                   {"0.bias_hh_l0", uniform({G * H}, 0.4f)}},
                  uniform({B, T, I}, 1.f));
  }
  export_module(dir, "recur_linear.safetensors", "Linear",
                R"({"in_features": 6, "out_features": 3})",
                {{"0.weight", uniform({3, 6}, 0.4f)}, {"0.bias", uniform({3}, 0.4f)}},
                uniform({4, 6}, 1.f));
  // Grouped and dilated, so the [filters, channels / groups, kernel] layout matters.
  export_module(dir, "recur_conv1d.safetensors", "Conv1d",
                R"({"in_channels": 4, "out_channels": 6, "kernel_size": 3, "dilation": 2, "groups": 2})",
                {{"0.weight", uniform({6, 2, 3}, 0.4f)}, {"0.bias", uniform({6}, 0.4f)}},
                uniform({2, 9, 4}, 1.f));
  std::vector<std::int32_t> ids(12);
  std::uniform_int_distribution<std::int32_t> id(0, 11);
  for (auto& v : ids) v = id(gen);
  export_module(dir, "recur_embedding.safetensors", "Embedding",
                R"({"num_embeddings": 12, "embedding_dim": 5})", {{"0.weight", uniform({12, 5}, 1.f)}},
                Tensor::from_vector(ids, {3, 4}, Device::cpu()));
}

}  // namespace
}  // namespace recur::test

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  ::mkdir(argv[1], 0777);  // may exist already; save_safetensors reports what fails
  try {
    recur::test::run(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

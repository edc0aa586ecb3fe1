// Uses the installed recur the way the README shows.
#include <recur/recur.h>

#include <cmath>
#include <cstdio>

int main() {
  using namespace recur;
  const Device cpu = Device::cpu();
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}, cpu);
  Tensor b = Tensor::from_vector<float>({1, 0, 0, 1, 1, 1}, {3, 2}, cpu);
  const std::vector<float> c = ops::matmul(a, b).to_vector<float>();  // [[4, 5], [10, 11]]
  RecurrentOptions o;
  o.cell = CellType::GRU;
  o.input_size = 3;
  o.units = 4;
  Recurrent gru(o, cpu, 7);
  const Recurrent::Output out = gru.forward(Tensor::full({2, 5, 3}, 0.5, DType::f32, cpu));
  const bool ok = c == std::vector<float>{4, 5, 10, 11} && out.y.shape() == Shape{2, 4} &&
                  std::isfinite(out.y.to_vector<float>()[0]);
  std::printf("recur %s: %s\n", RECUR_VERSION_STRING, ok ? "consumer ok" : "consumer FAILED");
  return ok ? 0 : 1;
}

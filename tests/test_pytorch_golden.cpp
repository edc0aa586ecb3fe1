// recur's recurrent layers against PyTorch: nn.LSTM / nn.GRU / nn.RNN weights
// loaded into recur (the layouts are the same), forward outputs and every
// gradient compared with PyTorch's float64 results (tests/golden/README.md).
// float64 on the CPU must agree to 1e-10: the same mathematics. float32 on
// every backend to a relative error of 1e-5.
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <fstream>
#include <memory>
#include <variant>

#include "test_util.h"

namespace recur::test {
namespace {

using nlohmann::json;

const json& golden() {
  static const json doc = [] {
    const std::string path = RECUR_GOLDEN_DIR "/pytorch_rnn.json.gz";
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open " + path);
    std::string text;
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, std::size_t(n));
    gzclose(f);
    return json::parse(text);
  }();
  return doc;
}

Tensor tensor_of(const json& v, const Shape& s, DType dt, Device dev) {
  const std::vector<double> d = v.get<std::vector<double>>();
  if (dt == DType::f64) return Tensor::from_vector(d, s, dev);
  return Tensor::from_vector(std::vector<float>(d.begin(), d.end()), s, dev);
}

std::vector<double> values(const Tensor& t) {
  return t.dtype() == DType::f64 ? t.to_vector<double>() : widen(t.to_vector<float>());
}

// |got - want| <= rtol (|want| + 0.01 max|want|) everywhere, NaN failing.
::testing::AssertionResult matches(const Tensor& got, const std::vector<double>& want, double rtol) {
  double mx = 0;
  for (double w : want) mx = std::max(mx, std::abs(w));
  const auto g = values(got);
  if (g.size() != want.size()) return ::testing::AssertionFailure() << "size " << g.size() << " vs " << want.size();
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - want[i]) <= rtol * (std::abs(want[i]) + 0.01 * mx)))
      return ::testing::AssertionFailure() << "element " << i << ": got " << g[i] << ", PyTorch " << want[i]
                                           << " (rtol " << rtol << ")";
  return ::testing::AssertionSuccess();
}

// Rows [k * B * H, (k + 1) * B * H) of a [L*D, B, H] PyTorch state tensor.
std::vector<double> state_slice(const json& v, std::int64_t k, std::int64_t B, std::int64_t H) {
  const auto all = v.get<std::vector<double>>();
  return {all.begin() + k * B * H, all.begin() + (k + 1) * B * H};
}

using Layer = std::variant<std::unique_ptr<Recurrent>, std::unique_ptr<Bidirectional>>;

void load(Recurrent& r, const json& params, const std::string& suffix, DType dt) {
  auto set = [&](const Tensor& dst, const std::string& name) {
    dst.copy_from(tensor_of(params.at(name + suffix), dst.shape(), dt, dst.device()));
  };
  set(r.weights().w_ih, "weight_ih");
  set(r.weights().w_hh, "weight_hh");
  set(r.weights().b_ih, "bias_ih");
  set(r.weights().b_hh, "bias_hh");
}

void check_grads(Recurrent& r, const json& grads, const std::string& suffix, double rtol) {
  EXPECT_TRUE(matches(r.grads().w_ih, grads.at("weight_ih" + suffix).get<std::vector<double>>(), rtol)) << "weight_ih" << suffix;
  EXPECT_TRUE(matches(r.grads().w_hh, grads.at("weight_hh" + suffix).get<std::vector<double>>(), rtol)) << "weight_hh" << suffix;
  EXPECT_TRUE(matches(r.grads().b_ih, grads.at("bias_ih" + suffix).get<std::vector<double>>(), rtol)) << "bias_ih" << suffix;
  EXPECT_TRUE(matches(r.grads().b_hh, grads.at("bias_hh" + suffix).get<std::vector<double>>(), rtol)) << "bias_hh" << suffix;
}

void run_case(const json& c, Device dev, DType dt, double rtol) {
  const std::string kind = c.at("cell");
  const int L = c.at("layers");
  const bool bi = c.at("bidirectional");
  const std::int64_t B = c.at("B"), T = c.at("T"), I = c.at("I"), H = c.at("H");
  const int D = bi ? 2 : 1;
  const CellType cell = kind == "LSTM" ? CellType::LSTM : kind == "GRU" ? CellType::GRU : CellType::SimpleRNN;
  const bool lstm = cell == CellType::LSTM;
  SCOPED_TRACE(kind + " layers " + std::to_string(L) + (bi ? " bidirectional" : "") +
               (c.at("lengths").is_null() ? "" : " packed") + " on " + dev.str() + " " +
               std::string(dtype_name(dt)));
  const Tensor mask = c.at("lengths").is_null()
                          ? Tensor()
                          : lengths_to_mask(c.at("lengths").get<std::vector<std::int64_t>>(), T, dt, dev);
  auto state = [&](const char* key, int k) {
    return tensor_of(json(state_slice(c.at(key), k, B, H)), {B, H}, dt, dev);
  };

  std::vector<Layer> layers;
  std::vector<Tensor> inputs;
  Tensor x = tensor_of(c.at("x"), {B, T, I}, dt, dev);
  Tensor h = x;
  std::vector<Tensor> h_n, c_n;
  for (int l = 0; l < L; ++l) {
    RecurrentOptions o;
    o.cell = cell;
    o.input_size = l == 0 ? I : D * H;
    o.units = H;
    o.return_sequences = true;
    o.return_state = true;
    o.dtype = dt;
    const std::string sfx = "_l" + std::to_string(l);
    std::vector<Tensor> init;
    for (int d = 0; d < D; ++d) {
      init.push_back(state("h0", l * D + d));
      if (lstm) init.push_back(state("c0", l * D + d));
    }
    inputs.push_back(h);
    Recurrent::Output out;
    if (bi) {
      auto layer = std::make_unique<Bidirectional>(o, MergeMode::Concat, dev, 1);
      load(layer->forward_layer(), c.at("params"), sfx, dt);
      load(layer->backward_layer(), c.at("params"), sfx + "_reverse", dt);
      out = layer->forward(h, mask, init, true);
      layers.emplace_back(std::move(layer));
    } else {
      auto layer = std::make_unique<Recurrent>(o, dev, 1);
      load(*layer, c.at("params"), sfx, dt);
      out = layer->forward(h, mask, init, true);
      layers.emplace_back(std::move(layer));
    }
    h = out.y;
    for (std::size_t k = 0; k < out.states.size(); ++k) (lstm && k % 2 ? c_n : h_n).push_back(out.states[k]);
  }
  EXPECT_TRUE(matches(h, c.at("y").get<std::vector<double>>(), rtol)) << "y";
  for (int k = 0; k < L * D; ++k) {
    EXPECT_TRUE(matches(h_n[std::size_t(k)], state_slice(c.at("h_n"), k, B, H), rtol)) << "h_n " << k;
    if (lstm) {
      EXPECT_TRUE(matches(c_n[std::size_t(k)], state_slice(c.at("c_n"), k, B, H), rtol)) << "c_n " << k;
    }
  }

  // Backward, last layer first: dy = R, then each layer's dx; state gradients S.
  Tensor dy = tensor_of(c.at("R"), {B, T, D * H}, dt, dev);
  for (int l = L - 1; l >= 0; --l) {
    std::vector<Tensor> ds;
    for (int d = 0; d < D; ++d) {
      ds.push_back(state("S", l * D + d));
      if (lstm) ds.push_back(state("Sc", l * D + d));
    }
    const std::string sfx = "_l" + std::to_string(l);
    Recurrent::InputGrads g;
    if (bi) {
      auto& layer = *std::get<std::unique_ptr<Bidirectional>>(layers[std::size_t(l)]);
      g = layer.backward(dy, ds);
      check_grads(layer.forward_layer(), c.at("grads"), sfx, rtol);
      check_grads(layer.backward_layer(), c.at("grads"), sfx + "_reverse", rtol);
    } else {
      auto& layer = *std::get<std::unique_ptr<Recurrent>>(layers[std::size_t(l)]);
      g = layer.backward(dy, ds);
      check_grads(layer, c.at("grads"), sfx, rtol);
    }
    for (int d = 0; d < D; ++d) {
      const std::size_t k = std::size_t(d * (lstm ? 2 : 1));
      EXPECT_TRUE(matches(g.d_initial_state[k], state_slice(c.at("dh0"), l * D + d, B, H), rtol)) << "dh0 layer " << l;
      if (lstm) {
        EXPECT_TRUE(matches(g.d_initial_state[k + 1], state_slice(c.at("dc0"), l * D + d, B, H), rtol)) << "dc0 layer " << l;
      }
    }
    dy = g.dx;
  }
  EXPECT_TRUE(matches(dy, c.at("dx").get<std::vector<double>>(), rtol)) << "dx";
}

TEST(PyTorchGolden, CpuFloat64Exact) {
  for (const json& c : golden().at("cases")) run_case(c, Device::cpu(), DType::f64, 1e-10);
}
TEST(PyTorchGolden, CpuFloat32) {
  for (const json& c : golden().at("cases")) run_case(c, Device::cpu(), DType::f32, 1e-5);
}
TEST(PyTorchGoldenCUDA, Float32) {
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  for (const json& c : golden().at("cases")) run_case(c, Device::cuda(0), DType::f32, 1e-5);
}

}  // namespace
}  // namespace recur::test

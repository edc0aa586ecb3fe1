// recur's forward pass for the PyTorch modules of the safetensors interop
// files (scripts/make_safetensors_golden.py, docs/checkpoints.md): the
// metadata names the module ("module": nn.LSTM, nn.GRU, nn.Linear, nn.Conv1d
// or nn.Embedding; "module.args": its constructor's keyword arguments as
// JSON), its parameters are the tensors "0.<PyTorch name>", in PyTorch's
// layouts, and the input is in recur's layout. Shared by test_safetensors.cpp
// (PyTorch's files into recur) and safetensors_export.cpp (recur's files for
// PyTorch), so both directions run the same recur code.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "recur/recur.h"

namespace recur::test {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The parameter "0.<name>" of `params`, on `device`, with exactly the shape
// `shape` (copy_from alone would accept any layout of the right size).
inline Tensor module_param(const NamedTensors& params, const std::string& name, const Shape& shape,
                           Device device) {
  for (const auto& [n, t] : params)
    if (n == "0." + name) {
      RECUR_CHECK(t.shape() == shape, Shape, "parameter 0.", name, " has shape ",
                  shape_str(t.shape()), ", the module needs ", shape_str(shape));
      return t.to(device);
    }
  RECUR_THROW(Value, "no parameter 0.", name);
}

// y = the module's forward on x (on x's device); outputs in recur's layout:
// [B, T, H] (LSTM, GRU: return_sequences), [B, out] (Linear), [B, T_out, F]
// (Conv1d), [B, T, D] (Embedding, x int32 ids).
inline Tensor module_forward(const std::map<std::string, std::string>& metadata,
                             const NamedTensors& params, const Tensor& x) {
  const std::string cls = metadata.at("module");
  const nlohmann::json args = nlohmann::json::parse(metadata.at("module.args"));
  const Device dev = x.device();
  if (cls == "LSTM" || cls == "GRU") {
    RecurrentOptions o;
    o.cell = cls == "LSTM" ? CellType::LSTM : CellType::GRU;
    o.input_size = args.at("input_size").get<std::int64_t>();
    o.units = args.at("hidden_size").get<std::int64_t>();
    o.return_sequences = true;
    const std::int64_t G = cell_gates(o.cell), H = o.units;
    Recurrent r(o, dev, /*seed*/ 0);
    r.weights().w_ih.copy_from(module_param(params, "weight_ih_l0", {G * H, o.input_size}, dev));
    r.weights().w_hh.copy_from(module_param(params, "weight_hh_l0", {G * H, H}, dev));
    r.weights().b_ih.copy_from(module_param(params, "bias_ih_l0", {G * H}, dev));
    r.weights().b_hh.copy_from(module_param(params, "bias_hh_l0", {G * H}, dev));
    return r.forward(x).y;
  }
  if (cls == "Linear") {
    const std::int64_t in = args.at("in_features"), out = args.at("out_features");
    const Tensor y = ops::matmul(x, module_param(params, "weight", {out, in}, dev), false, true);
    return ops::add(y, module_param(params, "bias", {out}, dev));
  }
  if (cls == "Conv1d") {
    Conv1dOptions o;
    o.kernel_size = args.at("kernel_size");
    o.stride = args.value("stride", 1);
    o.dilation = args.value("dilation", 1);
    o.groups = args.value("groups", 1);
    RECUR_CHECK(args.value("padding", 0) == 0, Value, "only Conv1d padding=0 (Keras's valid)");
    const std::int64_t C = args.at("in_channels"), F = args.at("out_channels");
    return ops::conv1d(x, module_param(params, "weight", {F, C / o.groups, o.kernel_size}, dev),
                       module_param(params, "bias", {F}, dev), o);
  }
  if (cls == "Embedding") {
    const std::int64_t V = args.at("num_embeddings"), D = args.at("embedding_dim");
    return ops::embedding_forward(module_param(params, "weight", {V, D}, dev), x);
  }
  RECUR_THROW(Value, "unknown module '", cls, "'");
}

}  // namespace recur::test

// A model described in JSON, the file the command line reads (`--config
// FILE`) and what a checkpoint keeps beside the weights. Writing a model's
// config and reading it back gives the same layers, names, options and
// inputs; building both with one seed gives identical parameters.
//
// A Sequential model ("class" absent or "Sequential"):
//   {
//     "format": "recur.model/1",
//     "name": "gru",
//     "input_shape": [null, 14],        // null: any length (Keras's None)
//     "dtype": "float32",
//     "layers": [
//       {"type": "GRU", "units": 32, "dropout": 0.2, "recurrent_dropout": 0.2},
//       {"type": "Dense", "units": 1}
//     ],
//     "compile": {"optimizer": {"name": "rmsprop", "learning_rate": 0.001},
//                 "loss": "mae", "metrics": ["mae"]}      // optional
//   }
//
// A functional model ("class": "Functional"; functional.h): its inputs, its
// layers in topological order, each with "inbound", the names of the inputs
// or layers it is applied to (a merge layer takes two or more), and the
// names of its outputs. Layer names are required and unique here.
//
//   {
//     "format": "recur.model/1", "class": "Functional", "name": "two_towers",
//     "inputs": [{"name": "series", "shape": [null, 14]}, {"name": "static", "shape": [4]}],
//     "layers": [
//       {"type": "GRU", "name": "gru", "units": 32, "inbound": ["series"]},
//       {"type": "Dense", "name": "dense", "units": 8, "inbound": ["static"]},
//       {"type": "Concatenate", "name": "concatenate", "inbound": ["gru", "dense"]},
//       {"type": "Dense", "name": "out", "units": 1, "inbound": ["concatenate"]}
//     ],
//     "outputs": ["out"]
//   }
//
// Layer types and keys (Keras's names and defaults; "name" optional on each
// in a Sequential config):
//   Dense: units, activation, use_bias          Activation: activation
//   Flatten                                     Dropout: rate
//   Embedding: input_dim, output_dim, mask_zero, input_length
//   Conv1D: filters, kernel_size, strides, padding (valid|same|causal),
//           dilation_rate, groups, activation, use_bias
//   MaxPooling1D / AveragePooling1D: pool_size, strides, padding (valid|same)
//   GlobalMaxPooling1D / GlobalAveragePooling1D
//   LSTM / GRU / SimpleRNN: units, activation (SimpleRNN), use_bias,
//           return_sequences, go_backwards, stateful, dropout,
//           recurrent_dropout, unit_forget_bias (LSTM, default true),
//           reset_after (GRU, default true)
//   Bidirectional: layer (an LSTM/GRU/SimpleRNN object), merge_mode
//           (concat|sum|mul|ave)
//   Concatenate / Add / Multiply / Average (functional configs only)
//   Attention: use_scale (false), score_mode (dot|concat); AdditiveAttention:
//           use_scale (true) (functional configs only: inbound [query, value(, key)])
//   AttentionPooling: score_mode (dot|additive), query (learned|last), use_scale (true)
//   HierarchicalAttention: chunk_size, and AttentionPooling's keys (attention.h)
// Optimizers: sgd (learning_rate, momentum, nesterov), rmsprop (learning_rate,
// rho, momentum, epsilon, centered), adam / adamw (learning_rate, beta_1,
// beta_2, epsilon, weight_decay), each with global_clipnorm and clipvalue.
// An unknown type or key is an error naming it, so a typo never passes silently.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "recur/engine/functional.h"
#include "recur/engine/model.h"

namespace recur {

struct ModelConfig {
  // Exactly one is set: `model` for a Sequential config, `functional` for a
  // functional one. Neither is built.
  std::unique_ptr<Sequential> model;
  std::unique_ptr<Model> functional;
  Shape input_shape;  // a Sequential's input, without the batch axis
  DType dtype = DType::f32;
  std::optional<CompileOptions> compile;
};

// Parses a config; `source` names it in errors (a file name).
ModelConfig model_config_from_json(const std::string& text, const std::string& source = "config");
ModelConfig read_model_config(const std::string& path);
// The config of a built model (input shapes and dtype from its build), with
// its compile options when compiled.
std::string model_config_to_json(const Sequential& model);
std::string model_config_to_json(const Model& model);

}  // namespace recur

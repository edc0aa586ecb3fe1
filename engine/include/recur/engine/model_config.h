// A Sequential model described in JSON, the file the command line reads
// (`--config FILE`) and what a checkpoint keeps beside the weights. Writing a
// model's config and reading it back gives the same layers, names, options and
// input; building both with one seed gives identical parameters.
//
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
// Layer types and keys (Keras's names and defaults; "name" optional on each):
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
// Optimizers: sgd (learning_rate, momentum, nesterov), rmsprop (learning_rate,
// rho, momentum, epsilon, centered), adam / adamw (learning_rate, beta_1,
// beta_2, epsilon, weight_decay), each with global_clipnorm and clipvalue.
// An unknown type or key is an error naming it, so a typo never passes silently.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "recur/engine/model.h"

namespace recur {

struct ModelConfig {
  std::unique_ptr<Sequential> model;  // not built
  Shape input_shape;                  // without the batch axis
  DType dtype = DType::f32;
  std::optional<CompileOptions> compile;
};

// Parses a config; `source` names it in errors (a file name).
ModelConfig model_config_from_json(const std::string& text, const std::string& source = "config");
ModelConfig read_model_config(const std::string& path);
// The config of a built model (input shape and dtype from its build), with its
// compile options when compiled.
std::string model_config_to_json(const Sequential& model);

}  // namespace recur

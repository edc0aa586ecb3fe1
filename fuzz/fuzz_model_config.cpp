// The model-config JSON reader: any text gives a model config or a recur::Error
// (never a JSON library exception, a crash or a hang).
#include <string>

#include "recur/common/error.h"
#include "recur/engine/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const recur::ModelConfig c = recur::model_config_from_json(text, "fuzz");
    (void)c;
  } catch (const recur::Error&) {
  }
  return 0;
}

// The safetensors loader: any bytes give tensors or a recur::Error, and what
// loads saves and loads again to the same header.
#include "fuzz_util.h"
#include "recur/common/error.h"
#include "recur/engine/checkpoint.h"
#include "recur/host/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = recur::fuzz::write_input(data, size, ".safetensors");
  try {
    (void)recur::read_safetensors_header(path);
    (void)recur::read_checkpoint_info(path);
    const recur::SafetensorsFile f = recur::load_safetensors(path);
    recur::save_safetensors(path + ".out", f.tensors, f.metadata);
    const recur::SafetensorsFile g = recur::load_safetensors(path + ".out");
    if (g.tensors.size() != f.tensors.size()) __builtin_trap();
  } catch (const recur::Error&) {
  }
  return 0;
}

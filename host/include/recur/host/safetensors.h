// Checkpoint files in the safetensors format (https://huggingface.co/docs/safetensors),
// the format PyTorch's and Hugging Face's tools read and write. Layout, tensor
// names and layouts: docs/checkpoints.md.
//
// File: 8 bytes little-endian N, then N bytes of JSON header
//   {"__metadata__": {"key": "value", ...},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// (recur pads it with spaces so the data starts at a multiple of 8), then the
// data section: each tensor's bytes, row-major, little-endian, at
// [begin, end) relative to the start of the data section. The tensors cover
// the data section exactly: no gaps, no overlaps, nothing after the last.
// dtypes: F32, F64, BF16, I32 (recur's DTypes); others (F16, I64, ...) are
// refused with a DTypeError naming the tensor.
//
// Integrity: safetensors has no checksum, so save_safetensors stores the CRC32
// of the data section in the metadata as "recur.crc32" (8 hex digits), and
// load_safetensors verifies it when present (files written by other tools
// have none and load without it).
//
// Writes are atomic: the file is written to "<path>.tmp.<pid>.<n>" in the same
// directory, flushed to disk (fsync), then renamed over `path`. A failed save
// removes its temporary file and leaves whatever was at `path` untouched.
// Loads validate the whole header against the file's size before reading any
// data, and return either every tensor or none: a truncated, corrupted or
// inconsistent file is an IOError that names the path and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "recur/host/device.h"
#include "recur/host/tensor.h"

namespace recur {

// The metadata key recur stores the data section's CRC32 under.
inline constexpr const char* kSafetensorsCrcKey = "recur.crc32";

struct SafetensorsFile {
  // In file order (ascending data offsets): the order save_safetensors was given.
  std::vector<std::pair<std::string, Tensor>> tensors;
  // "__metadata__", including "recur.crc32" when recur wrote the file.
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, or nullptr.
  const Tensor* find(const std::string& name) const;
  // The tensor called `name`; ValueError naming it when there is none.
  const Tensor& at(const std::string& name) const;
};

// One tensor as the header describes it.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the data section
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // ascending data offsets
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;  // file offset of the data section: 8 + N
  std::uint64_t file_size = 0;
};

// Writes `tensors` (any devices, any recur dtype; names unique, non-empty and
// not "__metadata__") and `metadata` to `path`, atomically. recur sets
// "recur.crc32" itself (a value given for it is replaced). Throws ValueError
// for bad names or undefined tensors (before anything is written) and IOError
// naming the path when the file cannot be written.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The atomic write save_safetensors uses, for any file: `parts` (or `text`)
// go to "<path>.tmp.<pid>.<n>" in the same directory, which is flushed to disk
// (fsync) and renamed over `path`; then the directory is flushed. A failure
// removes the temporary file, leaves `path` as it was, and throws IOError
// naming the path and the operating system's reason.
void write_file_atomically(const std::string& path,
                           const std::vector<std::pair<const void*, std::uint64_t>>& parts);
void write_file_atomically(const std::string& path, const std::string& text);

// Reads and validates the header alone (names, dtypes, shapes, offsets
// against the file's size); reads no tensor data, so it checks no CRC.
SafetensorsHeader read_safetensors_header(const std::string& path);

// Loads every tensor onto `device`, after validating the header and, when the
// file has "recur.crc32", the data's checksum. Throws IOError (missing,
// unreadable, truncated, malformed, corrupted file) or DTypeError (a dtype
// recur does not hold), naming the path, and the tensor where there is one.
SafetensorsFile load_safetensors(const std::string& path, Device device = Device::cpu());

}  // namespace recur

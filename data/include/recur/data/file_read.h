#pragma once
// Whole-file reading for the data readers: plain or gzip, told apart by the
// gzip magic bytes (zlib's gzread passes plain files through unchanged).
#include <string>

namespace recur::data {

// The whole of `path`, decompressed when it is gzip; *gzip (when given) says
// which it was. IOError naming the file when it cannot be opened or read, or
// when a gzip stream is corrupt or truncated.
std::string read_file(const std::string& path, bool* gzip = nullptr);

}  // namespace recur::data

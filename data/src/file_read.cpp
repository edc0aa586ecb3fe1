// Whole-file reading, plain or gzip (zlib).
#include "recur/data/file_read.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "recur/common/error.h"

namespace recur::data {

std::string read_file(const std::string& path, bool* gzip) {
  // fopen first: a clear message when the file is missing or is a directory, and the magic bytes.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) RECUR_THROW(IO, "cannot open '", path, "': ", std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  const std::size_t got = std::fread(magic, 1, 2, f);
  std::fclose(f);
  const bool is_gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (gzip != nullptr) *gzip = is_gzip;

  errno = 0;
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr)
    RECUR_THROW(IO, "cannot open '", path, "': ", errno ? std::strerror(errno) : "zlib could not allocate its state");
  gzbuffer(gz, 1 << 16);
  std::string text;
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  if (!ec) text.reserve(std::size_t(bytes) * (is_gzip ? 4 : 1) + 1);  // text compresses ~3-4x
  constexpr unsigned kChunk = 1 << 16;
  const std::unique_ptr<char[]> chunk(new char[kChunk]);  // not zero-filled
  for (;;) {
    const int n = gzread(gz, chunk.get(), kChunk);
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(gz, &code);
      gzclose(gz);
      RECUR_THROW(IO, "cannot read '", path, "': ", msg);
    }
    if (n == 0) break;
    text.append(chunk.get(), std::size_t(n));
  }
  // gzread reports a truncated stream only through gzerror (Z_BUF_ERROR).
  int code = Z_OK;
  const std::string msg = gzerror(gz, &code);
  gzclose(gz);
  if (code != Z_OK) RECUR_THROW(IO, "'", path, "' is a corrupt or truncated gzip file: ", msg);
  return text;
}

}  // namespace recur::data

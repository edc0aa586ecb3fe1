// safetensors files: header validation, atomic writes, CRC32 of the data
// section (format and guarantees: recur/host/safetensors.h, docs/checkpoints.md).
// POSIX file calls, because an atomic write needs fsync and rename.
#include "recur/host/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <system_error>
#include <thread>

namespace recur {

// The format stores little-endian values; recur copies tensor bytes as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace {

using ordered_json = nlohmann::ordered_json;

// The reference implementation's limit: a larger length is a corrupted file.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
  }
  return "?";
}

// False for a name the format defines but recur has no DType for; IOError for
// a name the format does not define.
bool parse_dtype(const std::string& path, const std::string& tensor, const std::string& s,
                 DType* out) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
    if (s == safetensors_dtype(t)) {
      *out = t;
      return true;
    }
  }
  static const char* const kOthers[] = {"BOOL", "U8",  "I8",  "I16", "U16",     "F16",
                                        "U32",  "I64", "U64", "F8_E5M2", "F8_E4M3"};
  for (const char* o : kOthers)
    if (s == o) return false;
  RECUR_THROW(IO, path, ": tensor '", tensor, "' has unknown dtype '", s,
              "' (safetensors dtypes: F32, F64, BF16, F16, I64, I32, ...)");
}

// An open file descriptor, closed on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Reads exactly n bytes at `offset`; false when the file ends first.
bool read_at(int fd, void* buf, std::uint64_t n, std::uint64_t offset, int* err) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const std::size_t chunk = std::size_t(std::min<std::uint64_t>(n, 1u << 30));
    const ssize_t r = ::pread(fd, p, chunk, off_t(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      *err = r < 0 ? errno : 0;
      return false;
    }
    p += r;
    n -= std::uint64_t(r);
    offset += std::uint64_t(r);
  }
  return true;
}

void write_all(int fd, const void* buf, std::uint64_t n, const std::string& tmp) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const std::size_t chunk = std::size_t(std::min<std::uint64_t>(n, 1u << 30));
    const ssize_t w = ::write(fd, p, chunk);
    if (w < 0 && errno == EINTR) continue;
    RECUR_CHECK(w > 0, IO, "cannot write '", tmp, "': ", errno_text(w < 0 ? errno : EIO));
    p += w;
    n -= std::uint64_t(w);
  }
}

uLong crc_update(uLong crc, const void* data, std::uint64_t n) {
  const Bytef* p = static_cast<const Bytef*>(data);
  while (n > 0) {
    const uInt chunk = uInt(std::min<std::uint64_t>(n, 1u << 30));
    crc = ::crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return crc;
}

std::string crc_hex(uLong crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return buf;
}

// The stored CRC: exactly 8 hex digits.
std::uint32_t parse_crc(const std::string& path, const std::string& text) {
  const bool ok = text.size() == 8 && std::all_of(text.begin(), text.end(), [](char c) {
                    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                  });
  RECUR_CHECK(ok, IO, path, ": corrupted: metadata ", kSafetensorsCrcKey, " is '", text,
              "', not 8 hex digits");
  return std::uint32_t(std::stoul(text, nullptr, 16));
}

std::string bytes_str(std::uint64_t begin, std::uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// One header entry, checked on its own: fields, dtype, shape, and a byte range
// whose length fits the shape.
SafetensorsEntry parse_entry(const std::string& path, const std::string& name,
                             const ordered_json& v) {
  const std::string where = path + ": tensor '" + name + "'";
  RECUR_CHECK(v.is_object(), IO, where, ": header entry is not a JSON object");
  for (const auto& field : v.items())
    RECUR_CHECK(field.key() == "dtype" || field.key() == "shape" || field.key() == "data_offsets",
                IO, where, ": unexpected field '", field.key(),
                "' (an entry has dtype, shape and data_offsets)");
  RECUR_CHECK(v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), IO, where,
              ": header entry lacks dtype, shape or data_offsets");

  SafetensorsEntry e;
  e.name = name;
  const ordered_json& dtype = v.at("dtype");
  RECUR_CHECK(dtype.is_string(), IO, where, ": dtype is not a string");
  const std::string dt = dtype.get<std::string>();
  RECUR_CHECK(parse_dtype(path, name, dt, &e.dtype), DType, where, " has dtype ", dt,
              ", which recur cannot hold (it holds F32, F64, BF16 and I32); convert it before "
              "saving, e.g. with tensor.float() or tensor.int() in PyTorch");

  const ordered_json& shape = v.at("shape");
  RECUR_CHECK(shape.is_array(), IO, where, ": shape is not an array");
  std::uint64_t numel = 1;
  for (const auto& d : shape) {
    RECUR_CHECK(d.is_number_unsigned() &&
                    d.get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<std::int64_t>::max()),
                IO, where, ": shape ", shape.dump(), " has an entry that is not a non-negative integer");
    const std::uint64_t n = d.get<std::uint64_t>();
    e.shape.push_back(std::int64_t(n));
    RECUR_CHECK(!__builtin_mul_overflow(numel, n, &numel), IO, where, ": shape ", shape.dump(),
                " has more elements than 2^64");
  }
  std::uint64_t bytes = 0;
  RECUR_CHECK(!__builtin_mul_overflow(numel, std::uint64_t(dtype_size(e.dtype)), &bytes) &&
                  numel <= std::uint64_t(std::numeric_limits<std::int64_t>::max()),
              IO, where, ": shape ", shape.dump(), " is too large");

  const ordered_json& offsets = v.at("data_offsets");
  RECUR_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                  offsets[1].is_number_unsigned(),
              IO, where, ": data_offsets ", offsets.dump(), " is not [begin, end]");
  e.begin = offsets[0].get<std::uint64_t>();
  e.end = offsets[1].get<std::uint64_t>();
  RECUR_CHECK(e.begin <= e.end, IO, where, ": data_offsets ", offsets.dump(), " end before they begin");
  RECUR_CHECK(e.end - e.begin == bytes, IO, where, ": data_offsets ", offsets.dump(), " span ",
              e.end - e.begin, " bytes, but shape ", shape_str(e.shape), " of ", dt, " needs ", bytes);
  return e;
}

// Reads and checks the whole header of the open file: everything but the data's CRC.
SafetensorsHeader parse_header(const std::string& path, int fd) {
  struct stat st {};
  RECUR_CHECK(::fstat(fd, &st) == 0, IO, path, ": cannot stat: ", errno_text(errno));
  RECUR_CHECK(S_ISREG(st.st_mode), IO, path, ": not a regular file");
  SafetensorsHeader h;
  h.file_size = std::uint64_t(st.st_size);
  const std::uint64_t size = h.file_size;
  RECUR_CHECK(size >= 8, IO, path, ": truncated: the file has ", size,
              " bytes, fewer than the 8-byte header length a safetensors file starts with");

  int err = 0;
  unsigned char len[8];
  RECUR_CHECK(read_at(fd, len, 8, 0, &err), IO, path, ": cannot read: ",
              err ? errno_text(err) : "the file shrank while being read");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  RECUR_CHECK(n <= kMaxHeaderBytes, IO, path, ": corrupted: the header length is ", n,
              " bytes, more than the 100 MB a safetensors header may have");
  RECUR_CHECK(n <= size - 8, IO, path, ": truncated: the header length is ", n,
              " bytes, but only ", size - 8, " bytes follow it");
  h.data_start = 8 + n;

  std::string text(std::size_t(n), '\0');
  RECUR_CHECK(read_at(fd, text.data(), n, 8, &err), IO, path, ": cannot read: ",
              err ? errno_text(err) : "the file shrank while being read");

  // nlohmann keeps the last of two equal keys; the callback sees every key, so
  // a duplicate is caught (per object: the metadata's keys are a separate set).
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  const auto on_event = [&](int, ordered_json::parse_event_t event, ordered_json& parsed) {
    if (event == ordered_json::parse_event_t::object_start) keys.emplace_back();
    if (event == ordered_json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == ordered_json::parse_event_t::key && !keys.empty() &&
        !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  ordered_json doc;
  try {
    doc = ordered_json::parse(text, on_event);
  } catch (const ordered_json::exception& e) {
    RECUR_THROW(IO, path, ": corrupted: the header is not valid JSON (", e.what(), ")");
  }
  RECUR_CHECK(duplicate.empty(), IO, path, ": corrupted: the header names '", duplicate,
              "' twice");
  RECUR_CHECK(doc.is_object(), IO, path, ": corrupted: the header is not a JSON object");

  for (const auto& item : doc.items()) {
    if (item.key() == "__metadata__") {
      RECUR_CHECK(item.value().is_object(), IO, path, ": __metadata__ is not a JSON object");
      for (const auto& m : item.value().items()) {
        RECUR_CHECK(m.value().is_string(), IO, path, ": metadata '", m.key(),
                    "' is not a string (safetensors metadata maps strings to strings)");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
    } else {
      h.entries.push_back(parse_entry(path, item.key(), item.value()));
    }
  }
  if (auto it = h.metadata.find(kSafetensorsCrcKey); it != h.metadata.end())
    parse_crc(path, it->second);

  // The byte ranges must tile the data section: sorted, each starts where the
  // previous ended, the last ends at the end of the file.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t pos = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : h.entries) {
    RECUR_CHECK(e.begin >= pos, IO, path, ": corrupted: tensors '", prev ? prev->name : "", "' (bytes ",
                prev ? bytes_str(prev->begin, prev->end) : "", ") and '", e.name, "' (bytes ",
                bytes_str(e.begin, e.end), ") overlap in the data section");
    RECUR_CHECK(e.begin == pos, IO, path, ": corrupted: bytes ", bytes_str(pos, e.begin),
                " of the data section, before tensor '", e.name,
                "', belong to no tensor (the format allows no gaps)");
    pos = e.end;
    prev = &e;
  }
  const std::uint64_t data_size = size - h.data_start;
  RECUR_CHECK(pos <= data_size, IO, path, ": truncated: the header says the data ends at byte ",
              h.data_start + pos, ", but the file has ", size, " bytes");
  RECUR_CHECK(pos == data_size, IO, path, ": corrupted: ", data_size - pos,
              " bytes of trailing data after the last tensor (the header accounts for ",
              h.data_start + pos, " of the file's ", size, " bytes)");
  return h;
}

int open_for_reading(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  RECUR_CHECK(fd >= 0, IO, path, ": cannot open: ", errno_text(errno));
  return fd;
}

std::atomic<unsigned> temp_counter{0};

}  // namespace

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  const Tensor* t = find(name);
  RECUR_CHECK(t != nullptr, Value, "no tensor named '", name, "' in the file (it has ",
              tensors.size(), " tensors)");
  return *t;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  Fd fd(open_for_reading(path));
  return parse_header(path, fd.fd);
}

SafetensorsFile load_safetensors(const std::string& path, Device device) {
  require_device(device);
  Fd fd(open_for_reading(path));
  const SafetensorsHeader h = parse_header(path, fd.fd);

  // Read into host tensors in file order, so the CRC runs over the data
  // section in order; nothing is returned unless all of it checks out.
  SafetensorsFile out;
  out.metadata = h.metadata;
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (const SafetensorsEntry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::cpu());
    int err = 0;
    if (t.nbytes() > 0)
      RECUR_CHECK(read_at(fd.fd, t.raw_data(), t.nbytes(), h.data_start + e.begin, &err), IO, path,
                  ": cannot read tensor '", e.name, "': ",
                  err ? errno_text(err) : "the file shrank while being read");
    crc = crc_update(crc, t.raw_data(), t.nbytes());
    out.tensors.emplace_back(e.name, std::move(t));
  }
  if (auto it = h.metadata.find(kSafetensorsCrcKey); it != h.metadata.end()) {
    const std::uint32_t want = parse_crc(path, it->second);
    RECUR_CHECK(std::uint32_t(crc) == want, IO, path, ": data corrupted: CRC32 mismatch (",
                kSafetensorsCrcKey, " says ", it->second, ", the data's is ", crc_hex(crc), ")");
  }
  if (!device.is_cpu())
    for (auto& entry : out.tensors) entry.second = entry.second.to(device);
  return out;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  RECUR_CHECK(!path.empty(), Value, "save_safetensors: empty path");
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    RECUR_CHECK(!name.empty(), Value, path, ": a tensor has an empty name");
    RECUR_CHECK(name != "__metadata__", Value, path,
                ": '__metadata__' is reserved by the format, not a tensor name");
    RECUR_CHECK(names.insert(name).second, Value, path, ": tensor name '", name, "' given twice");
    RECUR_CHECK(t.defined(), Value, path, ": tensor '", name, "' is undefined");
  }

  // Host copies (CPU tensors are used as they are), the CRC, then the header.
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (const auto& entry : tensors) {
    const Tensor& t = entry.second;
    host.push_back(t.device().is_cpu() ? t : t.to(Device::cpu()));
    crc = crc_update(crc, host.back().raw_data(), host.back().nbytes());
  }
  ordered_json header = ordered_json::object();
  ordered_json meta = ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  meta[kSafetensorsCrcKey] = crc_hex(crc);
  header["__metadata__"] = std::move(meta);
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = host[i];
    header[tensors[i].first] = {{"dtype", safetensors_dtype(t.dtype())},
                                {"shape", t.shape()},
                                {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const ordered_json::exception& e) {
    RECUR_THROW(Value, path, ": a tensor name or metadata string is not valid UTF-8 (", e.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(std::uint64_t(text.size()) >> (8 * i));

  std::vector<std::pair<const void*, std::uint64_t>> parts{{len, 8}, {text.data(), text.size()}};
  for (const Tensor& t : host) parts.emplace_back(t.raw_data(), t.nbytes());
  write_file_atomically(path, parts);
}

void write_file_atomically(const std::string& path,
                           const std::vector<std::pair<const void*, std::uint64_t>>& parts) {
  RECUR_CHECK(!path.empty(), Value, "write_file_atomically: empty path");
  // Temporary file in the same directory (rename is atomic only within a file system).
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(temp_counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  RECUR_CHECK(fd >= 0, IO, path, ": cannot create the temporary file '", tmp, "': ", errno_text(errno));
  try {
    // Fault injection for the crash-safety test (tests/forecast_run_dir_test.sh):
    // RECUR_TEST_PAUSE_IN_WRITE_MS=N holds every write here for N ms after its
    // first part (a checkpoint's header), the file half-written, so that a
    // SIGKILL sent then lands inside the write.
    const char* pause = std::getenv("RECUR_TEST_PAUSE_IN_WRITE_MS");
    for (std::size_t i = 0; i < parts.size(); ++i) {
      write_all(fd, parts[i].first, parts[i].second, tmp);
      if (pause && i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::atol(pause)));
    }
    RECUR_CHECK(::fsync(fd) == 0, IO, path, ": cannot flush '", tmp, "' to disk: ", errno_text(errno));
    const int rc = ::close(fd);
    fd = -1;
    RECUR_CHECK(rc == 0, IO, path, ": cannot close '", tmp, "': ", errno_text(errno));
    RECUR_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, IO, path, ": cannot rename '", tmp,
                "' to it: ", errno_text(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
  const std::string::size_type slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, {{text.data(), text.size()}});
}

}  // namespace recur

// safetensors checkpoint files (recur/host/safetensors.h): round trips of
// every dtype and odd shapes, atomic writes, refusal of truncated, corrupted
// and inconsistent files with messages that name the problem, and PyTorch
// interop: files written by PyTorch (tests/golden/torch_*.safetensors, from
// scripts/make_safetensors_golden.py) load into recur's layers, which compute
// PyTorch's outputs from them. (The other direction, recur's files into
// PyTorch, is the CTest test safetensors.pytorch_reads_recur.)
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "safetensors_modules.h"
#include "test_util.h"

namespace recur::test {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed with everything in it afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "recur_safetensors_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  // Names of the files in it, sorted.
  std::vector<std::string> files() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.insert(e.path().filename().string());
    return {names.begin(), names.end()};
  }

 private:
  std::string path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// A safetensors file by hand: length, header padded to 8, data.
std::string raw_file(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((std::uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not in: " << text;
}

// The message of the recur::Error that f throws (an empty string, and a
// failure, when it throws none or something else).
template <class F>
std::string error_of(F&& f, ErrorKind kind = ErrorKind::IO) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(error_kind_name(e.kind()), std::string(error_kind_name(kind))) << e.what();
    return e.message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a recur::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

std::string load_error(const std::string& path) {
  return error_of([&] { load_safetensors(path); });
}

std::string bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  return std::string(static_cast<const char*>(h.raw_data()), h.nbytes());
}

// Covers every dtype recur holds and the odd shapes: 0-d, empty, zero inside.
NamedTensors sample_tensors() {
  Tensor bf16 = Tensor::empty({3}, DType::bf16, Device::cpu());
  const std::uint16_t bf16_bits[3] = {0x3f80, 0xc000, 0x7fc0};  // 1, -2, NaN
  std::memcpy(bf16.raw_data(), bf16_bits, sizeof bf16_bits);
  return {
      {"0.weight", Tensor::from_vector(std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 1e-30f, -7.f}, {2, 3}, Device::cpu())},
      {"0.bias", Tensor::from_vector(std::vector<float>{0.5f, -0.5f}, {2}, Device::cpu())},
      {"scalar", Tensor::from_vector(std::vector<double>{3.141592653589793}, {}, Device::cpu())},
      {"ids", Tensor::from_vector(std::vector<std::int32_t>{0, -1, 2147483647, 42}, {2, 2}, Device::cpu())},
      {"empty", Tensor::empty({0}, DType::f32, Device::cpu())},
      {"hollow", Tensor::empty({3, 0, 2}, DType::f64, Device::cpu())},
      {"half", bf16},
  };
}

// ---- round trips ----------------------------------------------------------------

TEST(SafetensorsRoundTrip, EveryDTypeAndShapeWithMetadata) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const NamedTensors in = sample_tensors();
  save_safetensors(path, in, {{"format", "pt"}, {"epoch", "3"}});
  const SafetensorsFile out = load_safetensors(path);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto& [name, t] = out.tensors[i];
    EXPECT_EQ(name, in[i].first) << "file order is the order saved";
    EXPECT_EQ(t.dtype(), in[i].second.dtype()) << name;
    EXPECT_EQ(t.shape(), in[i].second.shape()) << name;
    EXPECT_TRUE(t.device().is_cpu()) << name;
    EXPECT_EQ(bytes_of(t), bytes_of(in[i].second)) << name;
  }
  EXPECT_EQ(out.metadata.at("format"), "pt");
  EXPECT_EQ(out.metadata.at("epoch"), "3");
  EXPECT_EQ(out.metadata.at(kSafetensorsCrcKey).size(), 8u);
  EXPECT_EQ(out.metadata.size(), 3u);
  EXPECT_EQ(out.at("scalar").to_vector<double>(), std::vector<double>{3.141592653589793});
  EXPECT_EQ(out.find("missing"), nullptr);
  EXPECT_TRUE(contains(error_of([&] { out.at("missing"); }, ErrorKind::Value), "'missing'"));
}

TEST(SafetensorsRoundTrip, HeaderIsAlignedAndDescribesTheData) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  const NamedTensors in = sample_tensors();
  for (const char* meta : {"", "x", "xy", "xyz", "abcdefg"}) {  // header lengths mod 8 vary
    save_safetensors(path, in, {{"k", meta}});
    const std::string bytes = read_bytes(path);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[std::size_t(i)]);
    EXPECT_EQ(n % 8, 0u) << "data must start 8-byte aligned";
    EXPECT_EQ(bytes[8], '{');
    const SafetensorsHeader h = read_safetensors_header(path);
    EXPECT_EQ(h.data_start, 8 + n);
    EXPECT_EQ(h.file_size, bytes.size());
    ASSERT_EQ(h.entries.size(), in.size());
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
      EXPECT_EQ(h.entries[i].name, in[i].first);
      EXPECT_EQ(h.entries[i].begin, offset);
      EXPECT_EQ(h.entries[i].end - h.entries[i].begin, in[i].second.nbytes());
      offset = h.entries[i].end;
    }
    EXPECT_EQ(h.data_start + offset, bytes.size());
  }
  // The JSON names the dtypes as the format does.
  const std::string text = read_bytes(path);
  for (const char* s : {"\"F32\"", "\"F64\"", "\"I32\"", "\"BF16\"", "\"__metadata__\""})
    EXPECT_TRUE(contains(text, s));
}

TEST(SafetensorsRoundTrip, ViewsSaveTheirOwnElements) {
  TempDir dir;
  const Tensor all = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2}, Device::cpu());
  save_safetensors(dir.file("v.safetensors"), {{"rows", all.slice(1, 3)}, {"flat", all.reshape({6})}});
  const SafetensorsFile f = load_safetensors(dir.file("v.safetensors"));
  EXPECT_EQ(f.at("rows").to_vector<float>(), (std::vector<float>{3, 4, 5, 6}));
  EXPECT_EQ(f.at("rows").shape(), (Shape{2, 2}));
  EXPECT_EQ(f.at("flat").to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(SafetensorsRoundTrip, NoTensorsAndCallerCrcReplaced) {
  TempDir dir;
  save_safetensors(dir.file("e.safetensors"), {}, {{kSafetensorsCrcKey, "ffffffff"}});
  const SafetensorsFile f = load_safetensors(dir.file("e.safetensors"));
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_EQ(f.metadata.at(kSafetensorsCrcKey), "00000000");  // CRC32 of no bytes
}

// Optimizer::state() under "optimizer." beside the parameters (docs/checkpoints.md).
TEST(SafetensorsRoundTrip, OptimizerStateWithPrefix) {
  TempDir dir;
  auto make = [](ParameterStore& p) {
    p.declare("0.weight", {2, 3});
    p.declare("0.bias", {2});
    p.allocate();
  };
  ParameterStore params(Device::cpu());
  make(params);
  Optimizer adam(OptimizerConfig::adam(0.01), params);
  for (std::size_t i = 0; i < params.size(); ++i) ops::fill(params.grad(i), 0.25);
  adam.step();
  adam.step();
  NamedTensors tensors;
  for (std::size_t i = 0; i < params.size(); ++i) tensors.emplace_back(params.name(i), params.value(i));
  for (const auto& [name, t] : adam.state()) tensors.emplace_back("optimizer." + name, t);
  save_safetensors(dir.file("ckpt.safetensors"), tensors);

  const SafetensorsFile f = load_safetensors(dir.file("ckpt.safetensors"));
  ParameterStore params2(Device::cpu());
  make(params2);
  Optimizer adam2(OptimizerConfig::adam(0.01), params2);
  NamedTensors state;
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind("optimizer.", 0) == 0)
      state.emplace_back(name.substr(10), t);
    else
      params2.value(name).copy_from(t);
  }
  adam2.load_state(state);
  EXPECT_EQ(adam2.iterations(), 2);
  for (std::size_t i = 2; i < state.size(); ++i)
    EXPECT_EQ(bytes_of(adam2.state()[i].second), bytes_of(adam.state()[i].second)) << state[i].first;
  EXPECT_EQ(bytes_of(params2.values()), bytes_of(params.values()));
}

// ---- atomic writes ----------------------------------------------------------------

TEST(SafetensorsAtomic, MissingDirectoryIsAClearErrorAndLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/m.safetensors");
  const std::string msg = error_of([&] { save_safetensors(path, sample_tensors()); });
  EXPECT_TRUE(contains(msg, path));
  EXPECT_TRUE(contains(msg, "cannot create the temporary file"));
  EXPECT_TRUE(contains(msg, "No such file or directory"));
  EXPECT_TRUE(dir.files().empty());
}

TEST(SafetensorsAtomic, ReplacesAnExistingFileAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  save_safetensors(path, {{"only", Tensor::full({4}, 2.0, DType::f32, Device::cpu())}});
  const SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.at("only").to_vector<float>(), std::vector<float>(4, 2.f));
  EXPECT_EQ(dir.files(), std::vector<std::string>{"m.safetensors"});
}

TEST(SafetensorsAtomic, RefusedTensorListLeavesTheOldFileByteIdentical) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  const std::string before = read_bytes(path);
  const Tensor t = Tensor::zeros({2}, DType::f32, Device::cpu());
  EXPECT_TRUE(contains(error_of([&] { save_safetensors(path, {{"a", t}, {"b", t}, {"a", t}}); },
                                ErrorKind::Value),
                       "tensor name 'a' given twice"));
  EXPECT_TRUE(contains(error_of([&] { save_safetensors(path, {{"a", t}, {"u", Tensor()}}); },
                                ErrorKind::Value),
                       "tensor 'u' is undefined"));
  EXPECT_TRUE(contains(error_of([&] { save_safetensors(path, {{"__metadata__", t}}); }, ErrorKind::Value),
                       "reserved"));
  EXPECT_TRUE(contains(error_of([&] { save_safetensors(path, {{"", t}}); }, ErrorKind::Value),
                       "empty name"));
  EXPECT_TRUE(contains(error_of([&] { save_safetensors(path, {{"bad\xff", t}}); }, ErrorKind::Value),
                       "UTF-8"));
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.files(), std::vector<std::string>{"m.safetensors"});
}

// The write succeeds but the rename cannot (the path is a directory): the
// temporary file goes, the directory stays.
TEST(SafetensorsAtomic, FailedRenameRemovesTheTemporaryFile) {
  TempDir dir;
  const std::string path = dir.file("taken");
  fs::create_directory(path);
  write_bytes(path + "/inside", "keep");
  const std::string msg = error_of([&] { save_safetensors(path, sample_tensors()); });
  EXPECT_TRUE(contains(msg, "cannot rename"));
  EXPECT_TRUE(contains(msg, path));
  EXPECT_EQ(dir.files(), std::vector<std::string>{"taken"});
  EXPECT_EQ(read_bytes(path + "/inside"), "keep");
}

TEST(SafetensorsAtomic, ReadOnlyDirectory) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: a read-only directory is still writable";
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  const std::string before = read_bytes(path);
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_TRUE(contains(error_of([&] { save_safetensors(path, {}); }), "Permission denied"));
  fs::permissions(dir.path(), fs::perms::owner_all);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.files(), std::vector<std::string>{"m.safetensors"});
}

// ---- truncated, corrupted, inconsistent files --------------------------------------

TEST(SafetensorsCorrupt, EveryTruncationIsRefused) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors"), bad = dir.file("bad.safetensors");
  save_safetensors(good, sample_tensors());
  const std::string bytes = read_bytes(good);
  const std::uint64_t data_start = read_safetensors_header(good).data_start;
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    write_bytes(bad, bytes.substr(0, len));
    const std::string msg = load_error(bad);
    EXPECT_TRUE(contains(msg, bad)) << "length " << len;
    EXPECT_TRUE(contains(msg, "truncated")) << "length " << len;
    if (len >= data_start) {
      EXPECT_TRUE(contains(msg, "truncated: the header says the data ends at byte " +
                                    std::to_string(bytes.size()) + ", but the file has " +
                                    std::to_string(len) + " bytes"));
    }
  }
}

TEST(SafetensorsCorrupt, FlippedDataByteFailsTheCrc) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  std::string bytes = read_bytes(path);
  bytes[bytes.size() - 3] ^= 0x10;
  write_bytes(path, bytes);
  EXPECT_TRUE(contains(load_error(path), "data corrupted: CRC32 mismatch"));
  EXPECT_NO_THROW(read_safetensors_header(path));  // the header alone is fine
}

TEST(SafetensorsCorrupt, FlippedHeaderBytes) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  const std::string bytes = read_bytes(path);
  std::string b = bytes;
  b[8] = '[';  // the opening brace
  write_bytes(path, b);
  EXPECT_TRUE(contains(load_error(path), "the header is not valid JSON"));
  b = bytes;
  const std::size_t at = b.find("\"data_offsets\":[0,24]");
  ASSERT_NE(at, std::string::npos);
  b[at + 18] = '3';  // [0,34]: 0.weight's range no longer fits its shape
  write_bytes(path, b);
  EXPECT_TRUE(contains(load_error(path), "tensor '0.weight': data_offsets [0,34] span 34 bytes, but shape [2, 3] of F32 needs 24"));
}

// Any single flipped byte anywhere: a clean load (a name or metadata changed
// into another valid one) or a recur::Error; never a crash or another exception.
TEST(SafetensorsCorrupt, EverySingleByteFlipIsHandled) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors"), bad = dir.file("bad.safetensors");
  save_safetensors(good, sample_tensors(), {{"note", "hello"}});
  const std::string bytes = read_bytes(good);
  int refused = 0, loaded = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i)
    for (unsigned char mask : {0x01, 0x80}) {
      std::string b = bytes;
      b[i] = char(b[i] ^ mask);
      write_bytes(bad, b);
      try {
        load_safetensors(bad);
        ++loaded;
      } catch (const Error& e) {
        ++refused;
        EXPECT_TRUE(contains(e.message(), bad));
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << ": not a recur::Error: " << e.what();
      }
    }
  EXPECT_GT(refused, loaded);
}

TEST(SafetensorsCorrupt, DTypes) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_bytes(path, raw_file(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_TRUE(contains(load_error(path), "tensor 'w' has unknown dtype 'F33'"));
  write_bytes(path, raw_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0')));
  const std::string msg = error_of([&] { load_safetensors(path); }, ErrorKind::DType);
  EXPECT_TRUE(contains(msg, "tensor 'w' has dtype F16, which recur cannot hold"));
  EXPECT_TRUE(contains(msg, path));
  write_bytes(path, raw_file(R"({"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_TRUE(contains(error_of([&] { load_safetensors(path); }, ErrorKind::DType), "dtype I64"));
  write_bytes(path, raw_file(R"({"w":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_TRUE(contains(load_error(path), "dtype is not a string"));
}

TEST(SafetensorsCorrupt, OffsetsMustTileTheData) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_bytes(path, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                             std::string(12, '\0')));
  EXPECT_TRUE(contains(load_error(path), "tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap"));
  write_bytes(path, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                             std::string(20, '\0')));
  EXPECT_TRUE(contains(load_error(path), "bytes [8, 12) of the data section, before tensor 'b', belong to no tensor"));
  write_bytes(path, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, '\0')));
  EXPECT_TRUE(contains(load_error(path), "bytes [0, 4) of the data section"));
  // Out of order in the header is allowed: only the ranges matter.
  write_bytes(path, raw_file(R"({"b":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},)"
                             R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                             std::string(12, '\0')));
  const SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].first, "a");
  EXPECT_EQ(f.tensors[1].second.dtype(), DType::i32);
}

TEST(SafetensorsCorrupt, TrailingGarbage) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  const std::string bytes = read_bytes(path);
  write_bytes(path, bytes + "junk");
  EXPECT_TRUE(contains(load_error(path), "4 bytes of trailing data after the last tensor (the header accounts for " +
                                             std::to_string(bytes.size()) + " of the file's " +
                                             std::to_string(bytes.size() + 4) + " bytes)"));
}

TEST(SafetensorsCorrupt, HeaderLength) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, sample_tensors());
  std::string bytes = read_bytes(path);
  const std::uint64_t size = bytes.size();
  for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = char(((size - 7) >> (8 * i)) & 0xff);
  write_bytes(path, bytes);
  EXPECT_TRUE(contains(load_error(path), "truncated: the header length is " + std::to_string(size - 7) +
                                             " bytes, but only " + std::to_string(size - 8) + " bytes follow it"));
  bytes[5] = 1;  // 2^40 + ...
  write_bytes(path, bytes);
  EXPECT_TRUE(contains(load_error(path), "more than the 100 MB a safetensors header may have"));
}

TEST(SafetensorsCorrupt, MalformedHeaders) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  const std::string w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data(8, '\0');
  const std::pair<std::string, std::string> cases[] = {
      {"[1, 2]", "the header is not a JSON object"},
      {"{" + w + "," + w + "}", "the header names 'w' twice"},
      {R"({"__metadata__":{"a":"1","a":"2"},)" + w + "}", "the header names 'a' twice"},
      {R"({"__metadata__":{"a":1},)" + w + "}", "metadata 'a' is not a string"},
      {R"({"__metadata__":[],)" + w + "}", "__metadata__ is not a JSON object"},
      {R"({"__metadata__":{"recur.crc32":"xyz"},)" + w + "}", "recur.crc32 is 'xyz', not 8 hex digits"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "shape [-2] has an entry that is not a non-negative integer"},
      {R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", "not a non-negative integer"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967295],"data_offsets":[0,8]}})", "is too large"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "end before they begin"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "is not [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[2]}})", "lacks dtype, shape or data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", "unexpected field 'extra'"},
      {R"({"w":[1]})", "tensor 'w': header entry is not a JSON object"},
      {std::string("{\"w\0\":1}", 9), "not valid JSON"},
  };
  for (const auto& [header, want] : cases) {
    write_bytes(path, raw_file(header, data));
    EXPECT_TRUE(contains(load_error(path), want)) << header;
  }
}

TEST(SafetensorsCorrupt, NotAFile) {
  TempDir dir;
  const std::string missing = dir.file("missing.safetensors");
  const std::string msg = load_error(missing);
  EXPECT_TRUE(contains(msg, missing));
  EXPECT_TRUE(contains(msg, "cannot open: No such file or directory"));
  EXPECT_TRUE(contains(load_error(dir.path()), "not a regular file"));
}

// ---- PyTorch's files into recur ---------------------------------------------------

// |got - want| <= rtol (|want| + 0.01 max|want|), NaN failing.
void expect_matches(const Tensor& got, const Tensor& want, double rtol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = got.to_vector<float>(), w = want.to_vector<float>();
  double mx = 0;
  for (float v : w) mx = std::max(mx, double(std::abs(v)));
  std::vector<double> scale(w.size(), 0.01 * mx);
  EXPECT_TRUE(close_to(g, widen(w), scale, rtol)) << what;
}

// Loads tests/golden/torch_<name>.safetensors and runs recur's layer on it.
void check_golden(const std::string& name, const std::vector<std::string>& params, Device dev) {
  const std::string path = std::string(RECUR_GOLDEN_DIR) + "/torch_" + name + ".safetensors";
  const SafetensorsFile f = load_safetensors(path, dev);
  EXPECT_EQ(f.metadata.count(kSafetensorsCrcKey), 0u) << "PyTorch's files have no recur CRC";
  std::vector<std::string> names;
  for (const auto& [n, t] : f.tensors) {
    names.push_back(n);
    EXPECT_EQ(t.device(), dev);
  }
  std::vector<std::string> want;
  for (const auto& p : params) want.push_back("0." + p);
  want.push_back("input");
  want.push_back("output");
  EXPECT_EQ(names, want) << "PyTorch's state_dict names, under the layer name 0";
  const Tensor y = module_forward(f.metadata, f.tensors, f.at("input"));
  expect_matches(y, f.at("output"), 1e-5, path);
}

const std::vector<std::string> kRnnParams = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};

TEST(SafetensorsPyTorch, Lstm) { check_golden("lstm", kRnnParams, Device::cpu()); }
TEST(SafetensorsPyTorch, Gru) { check_golden("gru", kRnnParams, Device::cpu()); }
TEST(SafetensorsPyTorch, Linear) { check_golden("linear", {"weight", "bias"}, Device::cpu()); }
TEST(SafetensorsPyTorch, Conv1d) { check_golden("conv1d", {"weight", "bias"}, Device::cpu()); }
TEST(SafetensorsPyTorch, Embedding) {
  check_golden("embedding", {"weight"}, Device::cpu());
  const SafetensorsFile f = load_safetensors(std::string(RECUR_GOLDEN_DIR) + "/torch_embedding.safetensors");
  EXPECT_EQ(f.at("input").dtype(), DType::i32);
}

// Layouts: the shapes PyTorch wrote are the ones docs/checkpoints.md gives.
TEST(SafetensorsPyTorch, HeaderShapes) {
  const SafetensorsHeader h = read_safetensors_header(std::string(RECUR_GOLDEN_DIR) + "/torch_lstm.safetensors");
  std::map<std::string, Shape> shapes;
  for (const auto& e : h.entries) shapes[e.name] = e.shape;
  EXPECT_EQ(shapes["0.weight_ih_l0"], (Shape{16, 3}));  // [4H, I], gates i, f, g, o
  EXPECT_EQ(shapes["0.weight_hh_l0"], (Shape{16, 4}));  // [4H, H]
  EXPECT_EQ(shapes["0.bias_ih_l0"], (Shape{16}));
  EXPECT_EQ(shapes["input"], (Shape{2, 5, 3}));
  const SafetensorsHeader c = read_safetensors_header(std::string(RECUR_GOLDEN_DIR) + "/torch_conv1d.safetensors");
  EXPECT_EQ(c.entries[0].name, "0.weight");
  EXPECT_EQ(c.entries[0].shape, (Shape{5, 3, 3}));  // [filters, in_channels / groups, kernel]
}

// ---- GPU ------------------------------------------------------------------------------

TEST(SafetensorsCUDA, LoadOntoAndSaveFromTheGpu) {
  const Device gpu = Device::cuda(0);
  RECUR_SKIP_IF_UNAVAILABLE(gpu);
  check_golden("lstm", kRnnParams, gpu);
  check_golden("conv1d", {"weight", "bias"}, gpu);
  TempDir dir;
  NamedTensors on_gpu;
  for (const auto& [n, t] : sample_tensors()) on_gpu.emplace_back(n, t.to(gpu));
  save_safetensors(dir.file("g.safetensors"), on_gpu);
  const SafetensorsFile f = load_safetensors(dir.file("g.safetensors"));
  ASSERT_EQ(f.tensors.size(), on_gpu.size());
  for (std::size_t i = 0; i < on_gpu.size(); ++i)
    EXPECT_EQ(bytes_of(f.tensors[i].second), bytes_of(on_gpu[i].second)) << on_gpu[i].first;
}

}  // namespace
}  // namespace recur::test

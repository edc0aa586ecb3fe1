// Character-level text: see recur/data/char_text.h.
#include "recur/data/char_text.h"
#include "recur/data/file_read.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "recur/common/error.h"

namespace recur::chartext {

using json = nlohmann::json;

std::string read_text(const std::string& path) {
  const std::string text = recur::data::read_file(path);
  RECUR_CHECK(!text.empty(), IO, "'", path, "' holds no text");
  const std::size_t nul = text.find('\0');
  RECUR_CHECK(nul == std::string::npos, Value, "'", path, "' is not a text file: a NUL byte at offset ", nul);
  return text;
}

std::string describe_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  switch (c) {
    case '\n': return "'\\n'";
    case '\t': return "'\\t'";
    case '\r': return "'\\r'";
    case '\'': return "'\\''";
    default: break;
  }
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  static const char* digits = "0123456789abcdef";
  return std::string("'\\x") + digits[u >> 4] + digits[u & 15] + "'";
}

CharVocab CharVocab::from_chars(std::string chars) {
  RECUR_CHECK(!chars.empty(), Value, "a character vocabulary needs at least one character");
  CharVocab v;
  std::fill(std::begin(v.id_), std::end(v.id_), -1);
  for (std::size_t i = 0; i < chars.size(); ++i) {
    const auto u = static_cast<unsigned char>(chars[i]);
    RECUR_CHECK(i == 0 || static_cast<unsigned char>(chars[i - 1]) < u, Value,
                "a character vocabulary must be sorted and distinct; ", describe_char(chars[i]), " at ", i,
                " is not after ", describe_char(chars[i - 1]));
    v.id_[u] = std::int32_t(i);
  }
  v.chars_ = std::move(chars);
  return v;
}

CharVocab CharVocab::from_text(std::string_view text) {
  RECUR_CHECK(!text.empty(), Value, "cannot build a character vocabulary from an empty text");
  bool seen[256] = {};
  for (char c : text) seen[static_cast<unsigned char>(c)] = true;
  std::string chars;
  for (int u = 0; u < 256; ++u)
    if (seen[u]) chars += static_cast<char>(u);
  return from_chars(std::move(chars));
}

std::string CharVocab::to_json() const {
  json j;
  j["format"] = "recur.char_vocab/1";
  std::vector<int> codes;
  for (char c : chars_) codes.push_back(static_cast<unsigned char>(c));
  j["codes"] = codes;
  return j.dump();
}

CharVocab CharVocab::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    RECUR_THROW(Value, "character vocabulary: malformed JSON (", e.what(), ")");
  }
  RECUR_CHECK(j.is_object() && j.value("format", "") == "recur.char_vocab/1", Value,
              "not a recur.char_vocab/1 document");
  RECUR_CHECK(j.contains("codes") && j["codes"].is_array(), Value, "character vocabulary: no \"codes\" array");
  std::string chars;
  for (const json& c : j["codes"]) {
    RECUR_CHECK(c.is_number_integer() && c.get<int>() >= 0 && c.get<int>() <= 255, Value,
                "character vocabulary: a code is not a byte value 0..255: ", c.dump());
    chars += static_cast<char>(c.get<int>());
  }
  return from_chars(std::move(chars));
}

std::int32_t CharVocab::id(char c) const {
  const std::int32_t i = chars_.empty() ? -1 : id_[static_cast<unsigned char>(c)];
  RECUR_CHECK(i >= 0, Value, "the character ", describe_char(c), " is not in the vocabulary");
  return i;
}

char CharVocab::character(std::int32_t id) const {
  RECUR_CHECK(id >= 0 && id < size(), Value, "character id ", id, " is outside the vocabulary of ", size());
  return chars_[std::size_t(id)];
}

std::vector<std::int32_t> CharVocab::encode(std::string_view text, const std::string& what) const {
  std::vector<std::int32_t> ids(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::int32_t k = chars_.empty() ? -1 : id_[static_cast<unsigned char>(text[i])];
    RECUR_CHECK(k >= 0, Value, what, ": the character ", describe_char(text[i]), " at position ", i,
                " is not in the model's vocabulary of ", size(), " characters");
    ids[i] = k;
  }
  return ids;
}

std::string CharVocab::decode(const std::vector<std::int32_t>& ids) const {
  std::string s;
  s.reserve(ids.size());
  for (std::int32_t k : ids) s += character(k);
  return s;
}

TextSplit split_text(const std::string& text, double validation_fraction) {
  RECUR_CHECK(validation_fraction > 0 && validation_fraction < 1, Value,
              "the validation fraction must be in (0, 1), got ", validation_fraction);
  const auto n_val = std::size_t(std::llround(double(text.size()) * validation_fraction));
  RECUR_CHECK(n_val >= 1 && n_val < text.size(), Value, "a text of ", text.size(),
              " characters is too short to split ", validation_fraction, " of it off for validation");
  return {text.substr(0, text.size() - n_val), text.substr(text.size() - n_val)};
}

TbpttBatcher::TbpttBatcher(std::vector<std::int32_t> ids, std::int64_t streams, std::int64_t seq_len,
                           const std::string& what)
    : ids_(std::move(ids)), streams_(streams), seq_len_(seq_len) {
  RECUR_CHECK(streams >= 1 && seq_len >= 1, Value, "the batch size (", streams, ") and sequence length (", seq_len,
              ") must be at least 1");
  const auto n = std::int64_t(ids_.size());
  RECUR_CHECK(n >= min_length(streams, seq_len), Value, what, " has ", n, " characters; ", streams,
              " streams of ", seq_len, "-character chunks need at least ", min_length(streams, seq_len),
              " (give a smaller batch or sequence length)");
  stream_len_ = n / streams;
  batches_ = (stream_len_ - 1) / seq_len;
}

void TbpttBatcher::batch(std::int64_t k, std::vector<std::int32_t>& x, std::vector<std::int32_t>& y) const {
  RECUR_CHECK(k >= 0 && k < batches_, Value, "batch ", k, " is outside 0..", batches_ - 1);
  const std::size_t B = std::size_t(streams_), T = std::size_t(seq_len_);
  x.resize(B * T);
  y.resize(B * T);
  for (std::size_t b = 0; b < B; ++b) {
    const std::size_t start = b * std::size_t(stream_len_) + std::size_t(k) * T;
    std::copy_n(ids_.begin() + std::ptrdiff_t(start), T, x.begin() + std::ptrdiff_t(b * T));
    std::copy_n(ids_.begin() + std::ptrdiff_t(start + 1), T, y.begin() + std::ptrdiff_t(b * T));
  }
}

double unigram_entropy(const std::vector<std::int32_t>& ids, std::int64_t vocab_size) {
  RECUR_CHECK(!ids.empty() && vocab_size > 0, Value, "unigram_entropy: no characters");
  std::vector<double> count(std::size_t(vocab_size), 0.0);
  for (std::int32_t k : ids) {
    RECUR_CHECK(k >= 0 && k < vocab_size, Value, "unigram_entropy: id ", k, " outside 0..", vocab_size - 1);
    count[std::size_t(k)] += 1;
  }
  double h = 0;
  const double n = double(ids.size());
  for (double c : count)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

std::uint64_t SampleRng::next() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double SampleRng::uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }

std::int32_t sample_logits(const float* logits, std::int64_t n, double temperature, std::int64_t top_k,
                           SampleRng& rng) {
  RECUR_CHECK(n > 0 && logits != nullptr, Value, "sample_logits: no logits");
  RECUR_CHECK(std::isfinite(temperature) && temperature >= 0, Value, "the temperature must be finite and >= 0, got ",
              temperature);
  RECUR_CHECK(top_k >= 0, Value, "top-k must be >= 0 (0: every character), got ", top_k);
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    RECUR_CHECK(std::isfinite(logits[i]), Value, "sample_logits: logit ", i, " is ", logits[i]);
    order[std::size_t(i)] = std::int32_t(i);
  }
  // The candidates: every class, or the top_k largest (stable: ties keep the lower index first).
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  if (top_k > 0 && top_k < n) order.resize(std::size_t(top_k));
  if (temperature == 0) return order.front();
  const double top = logits[order.front()];
  std::vector<double> p(order.size());
  double sum = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    p[i] = std::exp((double(logits[order[i]]) - top) / temperature);  // <= 1; the first is 1
    sum += p[i];
  }
  double u = rng.uniform() * sum;
  for (std::size_t i = 0; i < order.size(); ++i) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order.front();  // rounding left u >= 0 after the last term: the most likely class
}

}  // namespace recur::chartext

// TextVectorization, pad_sequences and the IMDB readers (text_vectorization.h).
#include "recur/data/text_vectorization.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "recur/common/error.h"
#include "recur/host/safetensors.h"  // write_file_atomically

namespace recur {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- pad_sequences ----------------------------------------------------------------------
void pad_sequence_into(const std::vector<std::int32_t>& s, std::int64_t maxlen, Padding padding,
                       Truncation truncating, std::int32_t value, std::int32_t* out) {
  const std::int64_t n = std::int64_t(s.size());
  const std::int64_t keep = std::min(n, maxlen);
  const std::int64_t first = truncating == Truncation::Pre ? n - keep : 0;  // first kept token
  const std::int64_t at = padding == Padding::Pre ? maxlen - keep : 0;      // where it goes
  std::fill(out, out + maxlen, value);
  std::copy(s.begin() + first, s.begin() + first + keep, out + at);
}

Tensor pad_sequences(const std::vector<std::vector<std::int32_t>>& sequences, std::int64_t maxlen,
                     Padding padding, Truncation truncating, std::int32_t value) {
  RECUR_CHECK(maxlen >= 0, Value, "pad_sequences: maxlen = ", maxlen,
              "; give a length >= 1, or 0 for the longest sequence's");
  if (maxlen == 0)
    for (const auto& s : sequences) maxlen = std::max(maxlen, std::int64_t(s.size()));
  std::vector<std::int32_t> out(sequences.size() * std::size_t(maxlen));
  for (std::size_t i = 0; i < sequences.size(); ++i)
    pad_sequence_into(sequences[i], maxlen, padding, truncating, value, out.data() + i * std::size_t(maxlen));
  return Tensor::from_vector(out, {std::int64_t(sequences.size()), maxlen}, Device::cpu());
}

// ---- TextVectorization ------------------------------------------------------------------
namespace {

const char* mode_name(TextOutputMode m) {
  switch (m) {
    case TextOutputMode::Int: return "int";
    case TextOutputMode::MultiHot: return "multi_hot";
    case TextOutputMode::Count: return "count";
  }
  return "?";
}

TextOutputMode parse_mode(const std::string& s, const std::string& source) {
  if (s == "int") return TextOutputMode::Int;
  if (s == "multi_hot") return TextOutputMode::MultiHot;
  if (s == "count") return TextOutputMode::Count;
  RECUR_THROW(Value, source, ": output_mode '", s, "' is not int, multi_hot or count");
}

void check_options(const TextVectorizationOptions& o) {
  const std::int64_t least = o.output_mode == TextOutputMode::Int ? 2 : 1;
  RECUR_CHECK(o.max_tokens == 0 || o.max_tokens >= least, Value, "TextVectorization: max_tokens = ",
              o.max_tokens, "; it counts ", least == 2 ? "padding and OOV" : "the OOV token",
              ", so it must be 0 (no limit) or >= ", least);
  RECUR_CHECK(o.output_sequence_length >= 0, Value, "TextVectorization: output_sequence_length = ",
              o.output_sequence_length, " is negative");
  RECUR_CHECK(o.output_sequence_length == 0 || o.output_mode == TextOutputMode::Int, Value,
              "TextVectorization: output_sequence_length applies to output_mode int only");
  RECUR_CHECK(o.ngrams >= 1 && o.ngrams <= 16, Value, "TextVectorization: ngrams = ", o.ngrams,
              " is not from 1 to 16");
}

// Bytes that are not UTF-8 (a Latin-1 review) become U+FFFD, so every token,
// and so the vocabulary file, is valid UTF-8 (JSON holds nothing else).
void make_utf8(std::string& w) {
  if (std::all_of(w.begin(), w.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) return;
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(w.data());
  const std::size_t n = w.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    const std::size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = len == 1 || (len > 0 && c >= 0xc2 && c <= 0xf4 && i + len <= n);
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok && len == 3) ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);
    if (ok && len == 4) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90);
    if (ok) {
      out.append(w, i, len);
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  w = std::move(out);
}

}  // namespace

TextVectorization::TextVectorization(TextVectorizationOptions options) : o_(options) { check_options(o_); }

template <class F>
void TextVectorization::for_each_token(std::string_view text, F&& f) const {
  std::vector<std::string> words = tokenize(text);
  for (std::string& w : words) make_utf8(w);
  for (const std::string& w : words) f(w);
  std::string gram;
  for (int n = 2; n <= o_.ngrams; ++n) {
    for (std::size_t i = 0; i + std::size_t(n) <= words.size(); ++i) {
      gram = words[i];
      for (int k = 1; k < n; ++k) {
        gram += ' ';
        gram += words[i + std::size_t(k)];
      }
      f(gram);
    }
  }
}

void TextVectorization::adapt(const std::vector<std::string>& texts) {
  std::unordered_map<std::string, std::int64_t> counts;
  for (const std::string& t : texts) for_each_token(t, [&](const std::string& tok) { ++counts[tok]; });
  // MultiHot/Count have no padding token: one more id in the vocabulary kept here.
  const std::int64_t size = o_.max_tokens == 0 ? 0
                            : o_.output_mode == TextOutputMode::Int ? o_.max_tokens
                                                                    : o_.max_tokens + 1;
  vocab_ = Vocabulary::from_counts(counts, size);
}

std::vector<std::string> TextVectorization::get_vocabulary() const {
  const std::vector<std::string>& t = vocab_.tokens();
  if (o_.output_mode == TextOutputMode::Int || t.empty()) return t;
  return std::vector<std::string>(t.begin() + 1, t.end());
}

std::int64_t TextVectorization::vocabulary_size() const {
  return o_.output_mode == TextOutputMode::Int ? vocab_.size() : std::max<std::int64_t>(vocab_.size() - 1, 0);
}

std::int32_t TextVectorization::column(std::int32_t id) const {
  return o_.output_mode == TextOutputMode::Int ? id : id - 1;
}

std::vector<std::string> TextVectorization::tokens(std::string_view text) const {
  std::vector<std::string> out;
  for_each_token(text, [&](const std::string& t) { out.push_back(t); });
  return out;
}

std::vector<std::int32_t> TextVectorization::encode(std::string_view text) const {
  RECUR_CHECK(adapted(), Value, "TextVectorization: no vocabulary yet (adapt() or load() first)");
  std::vector<std::int32_t> ids;
  for_each_token(text, [&](const std::string& t) { ids.push_back(column(vocab_.id(t))); });
  if (o_.output_mode == TextOutputMode::Int && o_.output_sequence_length > 0)
    ids.resize(std::size_t(o_.output_sequence_length), Vocabulary::kPadding);  // Keras: pad/cut at the end
  return ids;
}

Tensor TextVectorization::operator()(const std::vector<std::string>& texts) const {
  std::vector<std::vector<std::int32_t>> ids;
  ids.reserve(texts.size());
  for (const std::string& t : texts) ids.push_back(encode(t));
  const std::int64_t n = std::int64_t(texts.size());
  if (o_.output_mode == TextOutputMode::Int)
    return pad_sequences(ids, o_.output_sequence_length, Padding::Post, Truncation::Post);
  const std::int64_t v = vocabulary_size();
  std::vector<float> out(std::size_t(n * v), 0.f);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int32_t c : ids[std::size_t(i)]) {
      float& cell = out[std::size_t(i * v + c)];
      cell = o_.output_mode == TextOutputMode::MultiHot ? 1.f : cell + 1.f;
    }
  return Tensor::from_vector(out, {n, v}, Device::cpu());
}

std::string TextVectorization::to_json() const {
  RECUR_CHECK(adapted(), Value, "TextVectorization: no vocabulary to save (adapt() first)");
  json j;
  j["format"] = "recur.text_vectorization/1";
  j["standardize"] = "lower_and_strip_punctuation";
  j["split"] = "whitespace";
  j["max_tokens"] = o_.max_tokens;
  j["output_sequence_length"] = o_.output_sequence_length;
  j["ngrams"] = o_.ngrams;
  j["output_mode"] = mode_name(o_.output_mode);
  j["vocabulary"] = get_vocabulary();  // as Keras's get_vocabulary()
  return j.dump(1) + "\n";
}

TextVectorization TextVectorization::from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    RECUR_THROW(IO, source, ": not JSON (", e.what(), ")");
  }
  const bool ours = j.is_object() && j.contains("format") && j["format"].is_string() &&
                    j["format"].get<std::string>() == "recur.text_vectorization/1";
  RECUR_CHECK(ours, IO, source, ": not a recur vocabulary (\"format\": \"recur.text_vectorization/1\")");
  TextVectorizationOptions o;
  std::vector<std::string> tokens;
  try {
    RECUR_CHECK(j.value("standardize", "") == "lower_and_strip_punctuation" &&
                    j.value("split", "") == "whitespace", Value, source,
                ": only standardize lower_and_strip_punctuation and split whitespace are known");
    o.max_tokens = j.at("max_tokens").get<std::int64_t>();
    o.output_sequence_length = j.at("output_sequence_length").get<std::int64_t>();
    o.ngrams = j.at("ngrams").get<int>();
    o.output_mode = parse_mode(j.at("output_mode").get<std::string>(), source);
    tokens = j.at("vocabulary").get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    RECUR_THROW(IO, source, ": malformed (", e.what(), ")");
  }
  TextVectorization tv(o);
  if (o.output_mode != TextOutputMode::Int) tokens.insert(tokens.begin(), "");
  try {
    tv.vocab_ = Vocabulary::from_tokens(std::move(tokens));
  } catch (const Error& e) {
    RECUR_THROW(IO, source, ": ", e.message());
  }
  const std::int64_t limit = o.max_tokens == 0 ? 0 : o.output_mode == TextOutputMode::Int ? o.max_tokens
                                                                                          : o.max_tokens + 1;
  RECUR_CHECK(limit == 0 || tv.vocab_.size() <= limit, IO, source, ": ", tv.vocabulary_size(),
              " vocabulary entries, more than max_tokens ", o.max_tokens);
  return tv;
}

void TextVectorization::save(const std::string& path) const { write_file_atomically(path, to_json()); }

TextVectorization TextVectorization::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RECUR_CHECK(f.good(), IO, "cannot open '", path, "': ", std::strerror(errno));
  std::ostringstream s;
  s << f.rdbuf();
  return from_json(s.str(), path);
}

// ---- IMDB ------------------------------------------------------------------------------
namespace {

template <class T>
bool parse_int(std::string_view s, T& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty();
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// imdb_<split>.tsv.gz or .tsv in dir; empty when neither.
std::string tsv_in(const fs::path& dir, const char* split) {
  for (const char* ext : {".tsv.gz", ".tsv"}) {
    const fs::path p = dir / (std::string("imdb_") + split + ext);
    if (is_file(p)) return p.string();
  }
  return "";
}

ImdbData read_any(const std::string& path, bool keep_text) {
  return is_dir(path) ? read_imdb_dir(path, keep_text) : read_imdb_tsv(path, keep_text);
}

ImdbData take(const ImdbData& d, const std::vector<std::int64_t>& rows) {
  ImdbData out;
  for (std::int64_t r : rows) {
    const std::size_t i = std::size_t(r);
    out.labels.push_back(d.labels[i]);
    out.ids.push_back(d.ids[i]);
    out.ratings.push_back(d.ratings[i]);
    out.lengths.push_back(d.lengths[i]);
    if (!d.texts.empty()) out.texts.push_back(d.texts[i]);
  }
  return out;
}

}  // namespace

ImdbData read_imdb_dir(const std::string& split_dir, bool keep_text) {
  const fs::path root(split_dir);
  RECUR_CHECK(is_dir(root), IO, "'", split_dir, "' is not a folder");
  RECUR_CHECK(is_dir(root / "neg") && is_dir(root / "pos"), IO, "'", split_dir,
              "' has no neg/ and pos/ folders; expected an aclImdb split (aclImdb/train or aclImdb/test)");
  ImdbData d;
  for (const auto& [label, cls] : {std::pair<int, const char*>{0, "neg"}, {1, "pos"}}) {
    std::vector<std::pair<std::int64_t, fs::path>> files;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(root / cls, ec)) {
      if (!e.is_regular_file(ec)) continue;
      const std::string name = e.path().filename().string();
      if (name.size() < 4 || name.compare(name.size() - 4, 4, ".txt") != 0) continue;
      const std::string_view stem(name.data(), name.size() - 4);
      const std::size_t us = stem.find('_');
      std::int64_t id = 0;
      std::int32_t rating = 0;
      RECUR_CHECK(us != std::string_view::npos && parse_int(stem.substr(0, us), id) &&
                      parse_int(stem.substr(us + 1), rating), IO, "'", e.path().string(),
                  "': not an aclImdb review name <id>_<rating>.txt");
      RECUR_CHECK(id >= 0 && rating >= 1 && rating <= 10, IO, "'", e.path().string(), "': rating ", rating,
                  " is not from 1 to 10");
      files.emplace_back(id, e.path());
    }
    RECUR_CHECK(!ec, IO, "cannot list '", (root / cls).string(), "': ", ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& [id, path] : files) {
      std::ifstream f(path, std::ios::binary);
      RECUR_CHECK(f.good(), IO, "cannot open '", path.string(), "': ", std::strerror(errno));
      std::ostringstream s;
      s << f.rdbuf();
      RECUR_CHECK(!f.bad(), IO, "cannot read '", path.string(), "'");
      std::string text = s.str();
      const std::string name = path.filename().string();
      d.labels.push_back(label);
      d.ids.push_back(id);
      std::int32_t rating = 0;
      parse_int(std::string_view(name).substr(name.find('_') + 1, name.size() - name.find('_') - 5), rating);
      d.ratings.push_back(rating);
      d.lengths.push_back(count_tokens(text));
      if (keep_text) d.texts.push_back(std::move(text));
    }
  }
  RECUR_CHECK(d.size() > 0, IO, "'", split_dir, "': no <id>_<rating>.txt reviews in neg/ or pos/");
  return d;
}

const char* imdb_split_name(ImdbSplit s) {
  switch (s) {
    case ImdbSplit::Train: return "train";
    case ImdbSplit::Validation: return "validation";
    case ImdbSplit::Test: return "test";
  }
  return "?";
}

std::string ImdbSource::describe() const {
  return carve ? path + " (validation carved out of it)" : path;
}

ImdbSource imdb_source(const std::string& path, ImdbSplit split) {
  const fs::path p(path);
  ImdbSource s;
  const bool carved_split = split != ImdbSplit::Test;
  if (is_dir(p / "train") && is_dir(p / "test")) {  // aclImdb
    s.path = (p / (split == ImdbSplit::Test ? "test" : "train")).string();
    s.carve = carved_split;
    return s;
  }
  if (is_dir(p / "pos") && is_dir(p / "neg")) {  // one aclImdb split
    s.path = path;
    s.carve = carved_split;
    return s;
  }
  if (is_dir(p)) {
    const std::string train = tsv_in(p, "train"), val = tsv_in(p, "val"), test = tsv_in(p, "test");
    const std::string mine = split == ImdbSplit::Train ? train : split == ImdbSplit::Validation ? val : test;
    if (!mine.empty()) {
      s.path = mine;
      s.carve = split == ImdbSplit::Train && val.empty();
      return s;
    }
    if (split == ImdbSplit::Validation && !train.empty()) {
      s.path = train;
      s.carve = true;
      return s;
    }
    RECUR_THROW(IO, "'", path, "' is neither an aclImdb folder (train/ and test/), an aclImdb split (pos/ and neg/)"
                " nor a folder with imdb_", split == ImdbSplit::Test ? "test" : "train",
                ".tsv[.gz]; get aclImdb from https://ai.stanford.edu/~amaas/data/sentiment/ (docs/text.md)");
  }
  RECUR_CHECK(is_file(p), IO, "'", path, "' does not exist; give an aclImdb folder, a folder of "
              "imdb_{train,val,test}.tsv.gz or one TSV file (docs/text.md)");
  s.path = path;
  s.carve = carved_split;
  return s;
}

ImdbData read_imdb(const std::string& path, ImdbSplit split, double validation_fraction, std::uint64_t seed) {
  const ImdbSource s = imdb_source(path, split);
  ImdbData d = read_any(s.path, true);
  if (!s.carve) return d;
  RECUR_CHECK(validation_fraction > 0 && validation_fraction < 1, Value, "the validation fraction ",
              validation_fraction, " is not between 0 and 1");
  std::vector<std::int64_t> order(std::size_t(d.size()));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const std::int64_t n_val = std::int64_t(std::llround(validation_fraction * double(d.size())));
  RECUR_CHECK(n_val >= 1 && n_val < d.size(), Value, s.path, ": ", d.size(),
              " reviews are too few to carve a validation split of ", validation_fraction * 100, "% from");
  std::vector<std::int64_t> rows(order.begin() + (split == ImdbSplit::Validation ? d.size() - n_val : 0),
                                 order.begin() + (split == ImdbSplit::Validation ? d.size() : d.size() - n_val));
  std::sort(rows.begin(), rows.end());
  return take(d, rows);
}

}  // namespace recur

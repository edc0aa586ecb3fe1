// Tokenisation, vocabulary and the IMDB TSV reader. Files are read with
// zlib's gzopen/gzread, which read plain files as they are.
#include "recur/data/text_data.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>

#include "recur/common/error.h"

namespace recur {
namespace {

bool is_strip(unsigned char c) {
  static constexpr std::string_view kPunct = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'";
  return kPunct.find(char(c)) != std::string_view::npos;
}

bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Calls f(token) for every token of text (see tokenize()).
template <class F>
void for_each_token(std::string_view text, F&& f) {
  std::string token;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_space(c)) {
      if (!token.empty()) f(token);
      token.clear();
    } else if (!is_strip(c)) {
      token.push_back(c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : ch);
    }
  }
  if (!token.empty()) f(token);
}

// Line-by-line reading of a gzip or plain file.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path) {
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    RECUR_CHECK(file_ != nullptr, IO, "cannot open '", path, "': ",
                errno ? std::strerror(errno) : "zlib could not allocate its state");
    buffer_.resize(1 << 16);
  }
  ~LineReader() {
    if (file_) gzclose(file_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its '\n' (and a '\r' before it); false at the end.
  bool next(std::string& line) {
    line.clear();
    for (;;) {
      if (pos_ == end_) {
        if (eof_) return !line.empty();
        const int got = gzread(file_, buffer_.data(), unsigned(buffer_.size()));
        if (got < 0) {
          int code = 0;
          const char* msg = gzerror(file_, &code);
          RECUR_THROW(IO, "'", path_, "' line ", line_ + 1, ": read failed (",
                      code == Z_ERRNO ? std::strerror(errno) : msg, ")");
        }
        if (got == 0) {
          // gzread returns 0 at a clean end; a truncated stream leaves an error.
          int code = 0;
          const char* msg = gzerror(file_, &code);
          RECUR_CHECK(code == Z_OK || code == Z_STREAM_END, IO, "'", path_, "': ", msg,
                      " after line ", line_, " (truncated or corrupt gzip?)");
          eof_ = true;
          if (line.empty()) return false;
          ++line_;
          return true;
        }
        pos_ = 0;
        end_ = std::size_t(got);
      }
      const char* start = buffer_.data() + pos_;
      const void* nl = std::memchr(start, '\n', end_ - pos_);
      if (nl) {
        const std::size_t len = std::size_t(static_cast<const char*>(nl) - start);
        line.append(start, len);
        pos_ += len + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        ++line_;
        return true;
      }
      line.append(start, end_ - pos_);
      pos_ = end_;
    }
  }
  std::int64_t line_number() const { return line_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_ = nullptr;
  std::vector<char> buffer_;
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  std::int64_t line_ = 0;
};

template <class T>
bool parse_int(std::string_view s, T& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty();
}

}  // namespace

std::vector<std::string> tokenize(std::string_view text) {
  std::vector<std::string> tokens;
  for_each_token(text, [&](const std::string& t) { tokens.push_back(t); });
  return tokens;
}

std::int64_t count_tokens(std::string_view text) {
  std::int64_t n = 0;
  // A token is a whitespace-free run with a byte left after stripping: count
  // the runs at their first kept byte, building no strings.
  bool in_token = false;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_space(c)) {
      in_token = false;
    } else if (!is_strip(c) && !in_token) {
      in_token = true;
      ++n;
    }
  }
  return n;
}

ImdbData read_imdb_tsv(const std::string& path, bool keep_text) {
  LineReader in(path);
  std::string line;
  RECUR_CHECK(in.next(line), IO, "'", path, "' is empty; expected the header label\\tid\\trating\\ttext");
  RECUR_CHECK(line == "label\tid\trating\ttext", IO, "'", path,
              "' line 1: expected the header label\\tid\\trating\\ttext, found '",
              line.substr(0, 60), "'");
  ImdbData d;
  std::string_view cols[4];
  while (in.next(line)) {
    const std::int64_t ln = in.line_number();
    std::size_t found = 0, start = 0;
    const std::string_view view(line);
    for (;;) {
      const std::size_t tab = view.find('\t', start);
      const std::string_view col = view.substr(start, tab == std::string_view::npos ? tab : tab - start);
      if (found < 4) cols[found] = col;
      ++found;
      if (tab == std::string_view::npos) break;
      start = tab + 1;
    }
    RECUR_CHECK(found == 4, IO, "'", path, "' line ", ln, ": ", found,
                " tab-separated columns, expected 4 (label, id, rating, text)");
    std::int32_t label = 0, rating = 0;
    std::int64_t id = 0;
    RECUR_CHECK(parse_int(cols[0], label) && (label == 0 || label == 1), IO, "'", path, "' line ",
                ln, ": label '", cols[0], "' is not 0 or 1");
    RECUR_CHECK(parse_int(cols[1], id), IO, "'", path, "' line ", ln, ": id '", cols[1],
                "' is not an integer");
    RECUR_CHECK(parse_int(cols[2], rating), IO, "'", path, "' line ", ln, ": rating '", cols[2],
                "' is not an integer");
    d.labels.push_back(label);
    d.ids.push_back(id);
    d.ratings.push_back(rating);
    d.lengths.push_back(count_tokens(cols[3]));
    if (keep_text) d.texts.emplace_back(cols[3]);
  }
  return d;
}

std::vector<std::int64_t> read_int_lines(const std::string& path) {
  LineReader in(path);
  std::string line;
  std::vector<std::int64_t> v;
  while (in.next(line)) {
    std::int64_t x = 0;
    RECUR_CHECK(parse_int(std::string_view(line), x), IO, "'", path, "' line ", in.line_number(),
                ": '", line.substr(0, 40), "' is not an integer");
    v.push_back(x);
  }
  return v;
}

Vocabulary Vocabulary::build(const std::vector<std::string>& texts, std::int64_t max_size) {
  RECUR_CHECK(max_size == 0 || max_size >= 2, Value, "Vocabulary::build: max_size = ", max_size,
              "; it counts padding and OOV, so it must be 0 (no limit) or >= 2");
  std::unordered_map<std::string, std::int64_t> counts;
  for (const std::string& t : texts) for_each_token(t, [&](const std::string& tok) { ++counts[tok]; });
  return from_counts(counts, max_size);
}

Vocabulary Vocabulary::from_counts(const std::unordered_map<std::string, std::int64_t>& counts,
                                   std::int64_t max_size) {
  RECUR_CHECK(max_size == 0 || max_size >= 2, Value, "Vocabulary: max_size = ", max_size,
              "; it counts padding and OOV, so it must be 0 (no limit) or >= 2");
  std::vector<std::pair<std::string, std::int64_t>> sorted;
  sorted.reserve(counts.size());
  for (const auto& [token, n] : counts)
    if (!token.empty() && token != "[UNK]") sorted.emplace_back(token, n);
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::size_t keep = sorted.size();
  if (max_size > 0) keep = std::min(keep, std::size_t(max_size - 2));
  RECUR_CHECK(keep + 2 <= std::size_t(INT32_MAX), Value, "Vocabulary::build: ", keep,
              " tokens do not fit int32 ids");
  Vocabulary v;
  v.tokens_.reserve(keep + 2);
  v.tokens_.push_back("");
  v.tokens_.push_back("[UNK]");
  for (std::size_t i = 0; i < keep; ++i) {
    v.ids_.emplace(sorted[i].first, std::int32_t(i + 2));
    v.tokens_.push_back(std::move(sorted[i].first));
  }
  return v;
}

Vocabulary Vocabulary::from_tokens(std::vector<std::string> tokens) {
  RECUR_CHECK(tokens.size() >= 2 && tokens[0].empty() && tokens[1] == "[UNK]", Value,
              "a vocabulary starts with the padding token \"\" and the OOV token \"[UNK]\"");
  RECUR_CHECK(tokens.size() <= std::size_t(INT32_MAX), Value, "Vocabulary: ", tokens.size(),
              " tokens do not fit int32 ids");
  Vocabulary v;
  for (std::size_t i = 2; i < tokens.size(); ++i) {
    RECUR_CHECK(!tokens[i].empty() && tokens[i] != "[UNK]", Value, "vocabulary token ", i, " is '",
                tokens[i], "', which only ids ", tokens[i].empty() ? 0 : 1, " may be");
    const bool fresh = v.ids_.emplace(tokens[i], std::int32_t(i)).second;
    RECUR_CHECK(fresh, Value, "vocabulary token '", tokens[i], "' appears twice (ids ",
                v.ids_.at(tokens[i]), " and ", i, ")");
  }
  v.tokens_ = std::move(tokens);
  return v;
}

std::int32_t Vocabulary::id(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  return it == ids_.end() ? kOov : it->second;
}

const std::string& Vocabulary::token(std::int32_t id) const {
  RECUR_CHECK(id >= 0 && id < size(), Value, "Vocabulary::token: id ", id, " is outside [0, ",
              size(), ")");
  return tokens_[std::size_t(id)];
}

std::vector<std::int32_t> Vocabulary::encode(std::string_view text) const {
  std::vector<std::int32_t> ids;
  for_each_token(text, [&](const std::string& t) { ids.push_back(id(t)); });
  return ids;
}

}  // namespace recur

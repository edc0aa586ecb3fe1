// Text datasets: Keras-style tokenisation and vocabulary, and the reader of
// the IMDB reviews as TSV (gzip or plain; label, id, rating, text).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace recur {

// Keras TextVectorization's default standardisation and split, on bytes:
// ASCII letters lowercased, the punctuation of Keras's DEFAULT_STRIP_REGEX
// (!"#$%&()*+,-./:;<=>?@[\]^_`{|}~') deleted, then split on ASCII whitespace.
// So "Don't!" is "dont", and IMDB's "<br />" the token "br", as in Keras.
// Bytes outside ASCII stay inside words unchanged (Keras would lowercase
// Unicode letters too: a difference in vocabulary, never in token counts).
std::vector<std::string> tokenize(std::string_view text);
std::int64_t count_tokens(std::string_view text);

struct ImdbData {
  std::vector<std::int32_t> labels;   // 1 positive, 0 negative
  std::vector<std::int64_t> ids;      // the review's id in its split
  std::vector<std::int32_t> ratings;  // 1..10
  std::vector<std::int64_t> lengths;  // tokens per review (tokenize())
  std::vector<std::string> texts;     // the raw texts; empty unless keep_text
  std::int64_t size() const { return std::int64_t(labels.size()); }
};

// Reads a TSV file, gzip-compressed or plain, whose first line is the header
// "label\tid\trating\ttext" (the shared imdb_{train,val,test}.tsv.gz).
// Throws IOError naming the file: missing or unreadable, corrupt gzip, a
// different header, or (naming the line) a row without exactly 4 columns or
// with a label other than 0/1 or a malformed id or rating.
ImdbData read_imdb_tsv(const std::string& path, bool keep_text = false);

// One integer per line, gzip-compressed or plain (e.g. the committed
// datasets/imdb_train_lengths.txt.gz). Throws IOError naming the file and line.
std::vector<std::int64_t> read_int_lines(const std::string& path);

// A vocabulary as Keras's TextVectorization builds it with
// output_mode="int": id 0 is padding (""), id 1 the OOV token "[UNK]", then
// tokens by descending count (ties by byte order).
class Vocabulary {
 public:
  static constexpr std::int32_t kPadding = 0, kOov = 1;
  // From the texts' tokens; max_size counts padding and OOV, as Keras's
  // max_tokens does (0: no limit; else >= 2).
  static Vocabulary build(const std::vector<std::string>& texts, std::int64_t max_size = 0);
  // From token counts (the same order and limit as build).
  static Vocabulary from_counts(const std::unordered_map<std::string, std::int64_t>& counts,
                                std::int64_t max_size = 0);
  // From the tokens by id, as tokens() gives them: "" then "[UNK]" first, no
  // token twice (ValueError naming the first problem).
  static Vocabulary from_tokens(std::vector<std::string> tokens);
  const std::vector<std::string>& tokens() const { return tokens_; }
  std::int64_t size() const { return std::int64_t(tokens_.size()); }
  std::int32_t id(std::string_view token) const;  // kOov when unknown
  const std::string& token(std::int32_t id) const;
  std::vector<std::int32_t> encode(std::string_view text) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t> ids_;
};

}  // namespace recur

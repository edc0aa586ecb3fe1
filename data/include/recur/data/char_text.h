// Character-level text for language models (`recur text`, docs/text-generation.md):
// a plain-text reader (plain or gzip), a character vocabulary, a train/validation
// split, the batcher for truncated backpropagation through time (TBPTT) with
// stateful recurrent layers, and sampling from a softmax with temperature and
// top-k.
//
// Characters are bytes: a UTF-8 file's multi-byte characters become several
// symbols (tinyshakespeare is ASCII).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace recur::chartext {

// The whole file, plain or gzip (zlib's gzopen reads both). IOError when the
// file cannot be opened or read, is a corrupt or truncated gzip stream, or
// holds no characters; ValueError when it holds NUL bytes (not text).
std::string read_text(const std::string& path);

// The sorted distinct bytes of a text; ids 0..size()-1 in that order.
class CharVocab {
 public:
  CharVocab() = default;
  // ValueError for an empty text.
  static CharVocab from_text(std::string_view text);
  // From the character list (sorted, distinct, non-empty; else ValueError).
  static CharVocab from_chars(std::string chars);
  // {"format": "recur.char_vocab/1", "codes": [10, 32, ...]}: byte values, so
  // any byte survives JSON. from_json refuses anything else (ValueError).
  std::string to_json() const;
  static CharVocab from_json(const std::string& text);

  std::int64_t size() const { return std::int64_t(chars_.size()); }
  const std::string& chars() const { return chars_; }
  bool contains(char c) const { return id_[static_cast<unsigned char>(c)] >= 0; }
  // The id of c; ValueError naming the character when it is not in the vocabulary.
  std::int32_t id(char c) const;
  char character(std::int32_t id) const;
  // Every character's id; a character outside the vocabulary is a ValueError
  // naming it, its position and `what` (e.g. "--seed").
  std::vector<std::int32_t> encode(std::string_view text, const std::string& what = "text") const;
  std::string decode(const std::vector<std::int32_t>& ids) const;

 private:
  std::string chars_;
  std::int32_t id_[256] = {};  // -1: not in the vocabulary (set by the factories)
};

// A character shown readably in messages: 'a', '\n', '\x00'.
std::string describe_char(char c);

// The first characters for training, the last `validation_fraction` (in (0, 1))
// for validation, cut at a character (not a line).
struct TextSplit {
  std::string train, validation;
};
TextSplit split_text(const std::string& text, double validation_fraction);

// Truncated backpropagation through time over one long sequence of ids.
// The sequence is cut into `streams` (B) contiguous parts of equal length L
// (the tail that does not fill a part is dropped); part b is row b of every
// batch. Batch k holds, in row b, the inputs ids[b L + k T .. b L + k T + T)
// and the targets one character later, so row b of batch k + 1 continues row b
// of batch k: what a stateful recurrent layer needs (its carried state is the
// state after the previous chunk of the same row). size() = floor((L - 1) / T)
// batches; every input has its next character as target.
class TbpttBatcher {
 public:
  // ValueError when streams or seq_len is < 1 or the sequence is too short for
  // one batch (it needs streams * (seq_len + 1) ids); `what` names the data.
  TbpttBatcher(std::vector<std::int32_t> ids, std::int64_t streams, std::int64_t seq_len,
               const std::string& what = "text");
  std::int64_t size() const { return batches_; }
  std::int64_t streams() const { return streams_; }
  std::int64_t seq_len() const { return seq_len_; }
  std::int64_t stream_length() const { return stream_len_; }
  // Batch k (0 <= k < size()): x and y, [streams, seq_len] row-major.
  void batch(std::int64_t k, std::vector<std::int32_t>& x, std::vector<std::int32_t>& y) const;
  // The smallest sequence length that makes one batch.
  static std::int64_t min_length(std::int64_t streams, std::int64_t seq_len) { return streams * (seq_len + 1); }

 private:
  std::vector<std::int32_t> ids_;
  std::int64_t streams_, seq_len_, stream_len_, batches_;
};

// The entropy, in nats, of the characters' frequencies in `ids` (a unigram
// model's cross-entropy on its own data): the baseline a model must beat.
double unigram_entropy(const std::vector<std::int32_t>& ids, std::int64_t vocab_size);

// A small, portable random stream (splitmix64): the same seed gives the same
// draws on every platform and standard library (std::*_distribution does not).
class SampleRng {
 public:
  explicit SampleRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  double uniform();  // [0, 1), 53 bits

 private:
  std::uint64_t state_;
};

// Draws a class from softmax(logits / temperature), restricted to the top_k
// largest logits when top_k > 0 (ties broken by the lower index). temperature
// 0 is argmax (the lowest index among equal maxima); temperature must be >= 0
// and finite, logits finite and non-empty (ValueError otherwise).
std::int32_t sample_logits(const float* logits, std::int64_t n, double temperature, std::int64_t top_k,
                           SampleRng& rng);

}  // namespace recur::chartext

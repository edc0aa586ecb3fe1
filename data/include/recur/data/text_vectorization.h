// Word-level text vectorisation as Keras's TextVectorization and
// pad_sequences, the aclImdb folder reader, and the IMDB data of either form
// (docs/text.md). Tokens come from tokenize() (text_data.h): Keras's default
// "lower_and_strip_punctuation" standardisation and whitespace split.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "recur/data/bucketing.h"  // Truncation
#include "recur/data/text_data.h"
#include "recur/host/tensor.h"

namespace recur {

// ---- pad_sequences --------------------------------------------------------
// Keras's pad_sequences: every sequence padded with `value` or truncated to
// maxlen (0: the longest sequence's length). padding Pre puts the padding
// before the tokens (Keras's default), Post after them; truncating Pre drops
// a long sequence's first tokens (Keras's default), Post its last ones.
// Returns an int32 [N, maxlen] CPU tensor. maxlen < 0 is a ValueError.
enum class Padding : unsigned char { Pre, Post };
Tensor pad_sequences(const std::vector<std::vector<std::int32_t>>& sequences, std::int64_t maxlen = 0,
                     Padding padding = Padding::Pre, Truncation truncating = Truncation::Pre,
                     std::int32_t value = 0);
// One sequence into `out` (maxlen entries): the row pad_sequences writes.
void pad_sequence_into(const std::vector<std::int32_t>& sequence, std::int64_t maxlen, Padding padding,
                       Truncation truncating, std::int32_t value, std::int32_t* out);

// ---- TextVectorization ----------------------------------------------------
enum class TextOutputMode : unsigned char { Int, MultiHot, Count };

struct TextVectorizationOptions {
  // The vocabulary's largest size, counting its special tokens as Keras does:
  // padding and OOV in Int mode, OOV alone in MultiHot and Count. 0: no limit.
  std::int64_t max_tokens = 0;
  // Int mode: every output padded with 0 or truncated (keeping the first
  // tokens) to this length, as Keras does; 0: each text keeps its length.
  std::int64_t output_sequence_length = 0;
  // 1: words. n > 1: the words, then the 2-grams, ... up to the n-grams,
  // each joined by a space (Keras's ngrams=n), as the tokens.
  int ngrams = 1;
  TextOutputMode output_mode = TextOutputMode::Int;
};

class TextVectorization {
 public:
  explicit TextVectorization(TextVectorizationOptions options = {});
  const TextVectorizationOptions& options() const { return o_; }

  // Builds the vocabulary from texts: tokens (n-grams included) by descending
  // count, ties in byte order.
  void adapt(const std::vector<std::string>& texts);
  bool adapted() const { return vocab_.size() > 0; }
  // Keras's get_vocabulary(): Int mode "", "[UNK]", tokens...; MultiHot and
  // Count "[UNK]", tokens...
  std::vector<std::string> get_vocabulary() const;
  // The number of ids (Int) or of output columns (MultiHot / Count).
  std::int64_t vocabulary_size() const;

  // A text's tokens: words, then n-grams (options().ngrams). Bytes that are not
  // UTF-8 become U+FFFD (Keras reads text as Unicode), so a vocabulary is always
  // valid UTF-8 and can be saved.
  std::vector<std::string> tokens(std::string_view text) const;
  // Int mode: a text's ids, padded or truncated to output_sequence_length
  // when that is set. (MultiHot / Count: the column of each token.)
  std::vector<std::int32_t> encode(std::string_view text) const;
  // Int: int32 [N, L] (L = output_sequence_length, else the longest text,
  // padded with 0 at the end). MultiHot: float32 [N, V] of 0/1, Count: of
  // token counts (column 0: out-of-vocabulary tokens).
  Tensor operator()(const std::vector<std::string>& texts) const;

  // The options and the vocabulary as JSON ("format": "recur.text_vectorization/1"),
  // and back; from_json checks every field and names what is wrong.
  std::string to_json() const;
  static TextVectorization from_json(const std::string& text, const std::string& source = "vocabulary");
  // Atomically (temporary file, then rename); load names the file in errors.
  void save(const std::string& path) const;
  static TextVectorization load(const std::string& path);

 private:
  template <class F>
  void for_each_token(std::string_view text, F&& f) const;
  std::int32_t column(std::int32_t id) const;  // MultiHot/Count: id -> column
  TextVectorizationOptions o_;
  Vocabulary vocab_;  // always with padding and OOV first (ids 0 and 1)
};

// ---- IMDB in either form --------------------------------------------------
// One split of the aclImdb folder that users download (Stanford's
// aclImdb_v1.tar.gz): split_dir/neg/*.txt then split_dir/pos/*.txt, each
// class by id (Keras's text_dataset_from_directory: classes in alphabetical
// order, so neg = 0, pos = 1), a file <id>_<rating>.txt holding one review.
// Other entries (unsup/, urls_*.txt, *.feat) are ignored. Throws IOError
// naming the folder or file: no neg/ or pos/, a name not <id>_<rating>.txt, a
// rating outside 1..10, an unreadable file.
ImdbData read_imdb_dir(const std::string& split_dir, bool keep_text = false);

enum class ImdbSplit : unsigned char { Train, Validation, Test };
const char* imdb_split_name(ImdbSplit split);

// Where a split of IMDB is found under `path` (see read_imdb):
struct ImdbSource {
  std::string path;             // the TSV file or aclImdb split folder read
  bool carve = false;           // validation carved out of `path` (train only)
  std::string describe() const;  // for messages
};
// path is one of:
//  - an aclImdb folder (train/ and test/ in it): Train and Validation carve
//    train/ (validation_fraction of it, by a seeded shuffle), Test is test/;
//  - an aclImdb split folder (pos/ and neg/ in it), or a TSV file: every split
//    is that file or folder, Train and Validation carving it;
//  - a folder of imdb_train.tsv[.gz], imdb_val.tsv[.gz], imdb_test.tsv[.gz]
//    (the shared form): each split its file (Train without Validation's file
//    carves its own).
// Throws IOError naming path when it is none of these.
ImdbSource imdb_source(const std::string& path, ImdbSplit split);
// Reads a split, keeping the texts. When the split is carved out, the samples
// are shuffled with `seed` and the last round(validation_fraction * N) form
// Validation, the rest Train.
ImdbData read_imdb(const std::string& path, ImdbSplit split, double validation_fraction = 0.2,
                   std::uint64_t seed = 1337);

}  // namespace recur

// Text vectorisation and the IMDB readers (recur/data/text_vectorization.h):
// TextVectorization on small examples worked out by hand with Keras's rules
// (max_tokens, output_sequence_length, n-grams, multi-hot and count),
// pad_sequences in its four padding/truncating combinations, the vocabulary's
// save/load round trip, the aclImdb folder and TSV readers with good and bad
// input, and fit running each epoch's own batch count (BatchSource::epoch_size).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace recur::test {
namespace {

namespace fs = std::filesystem;

template <class F>
void expect_error(F f, ErrorKind kind, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << what << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recur_text_" + std::to_string(::getpid()) + "_" + name;
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

using Ids = std::vector<std::int32_t>;
const std::string kFixtures = RECUR_TEST_FIXTURES;

// ---- TextVectorization --------------------------------------------------------------------
const std::vector<std::string> kCorpus = {"The cat sat.", "the DOG sat!", "The cat"};
// Counts: the 3, cat 2, sat 2, dog 1; ties in byte order: the, cat, sat, dog.

TEST(TextVectorization, IntModeWithMaxTokens) {
  TextVectorizationOptions o;
  o.max_tokens = 5;  // "", [UNK] and three words
  TextVectorization tv(o);
  tv.adapt(kCorpus);
  EXPECT_EQ(tv.get_vocabulary(), (std::vector<std::string>{"", "[UNK]", "the", "cat", "sat"}));
  EXPECT_EQ(tv.vocabulary_size(), 5);
  EXPECT_EQ(tv.encode("the dog sat on the cat"), (Ids{2, 1, 4, 1, 2, 3}));
  TextVectorization all;
  all.adapt(kCorpus);
  EXPECT_EQ(all.get_vocabulary(), (std::vector<std::string>{"", "[UNK]", "the", "cat", "sat", "dog"}));
  EXPECT_EQ(all.encode("Dog?"), (Ids{5}));
  // A batch: int32 [N, longest], padded with 0 at the end.
  const Tensor t = tv({"the cat", "sat", ""});
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.to_vector<std::int32_t>(), (Ids{2, 3, 4, 0, 0, 0}));
}

TEST(TextVectorization, OutputSequenceLengthPadsAndCutsAtTheEnd) {
  TextVectorizationOptions o;
  o.output_sequence_length = 4;
  TextVectorization tv(o);
  tv.adapt(kCorpus);
  EXPECT_EQ(tv.encode("the cat"), (Ids{2, 3, 0, 0}));
  EXPECT_EQ(tv.encode("sat the cat sat dog the"), (Ids{4, 2, 3, 4}));  // Keras keeps the first tokens
  const Tensor t = tv({"dog", "the cat sat the cat"});
  EXPECT_EQ(t.shape(), (Shape{2, 4}));
  EXPECT_EQ(t.to_vector<std::int32_t>(), (Ids{5, 0, 0, 0, 2, 3, 4, 2}));
}

TEST(TextVectorization, NgramsAreWordsThenBigrams) {
  TextVectorizationOptions o;
  o.ngrams = 2;
  TextVectorization tv(o);
  EXPECT_EQ(tv.tokens("The cat sat."), (std::vector<std::string>{"the", "cat", "sat", "the cat", "cat sat"}));
  o.ngrams = 3;
  EXPECT_EQ(TextVectorization(o).tokens("a b c"),
            (std::vector<std::string>{"a", "b", "c", "a b", "b c", "a b c"}));
  EXPECT_EQ(TextVectorization(o).tokens("solo"), (std::vector<std::string>{"solo"}));
  tv.adapt(kCorpus);
  // the 3, cat 2, sat 2, "the cat" 2, dog 1, "cat sat" 1, "dog sat" 1, "the dog" 1.
  EXPECT_EQ(tv.get_vocabulary(), (std::vector<std::string>{"", "[UNK]", "the", "cat", "sat", "the cat", "cat sat",
                                                           "dog", "dog sat", "the dog"}));
  EXPECT_EQ(tv.encode("the cat ran"), (Ids{2, 3, 1, 5, 1}));  // "cat ran" is unknown
}

TEST(TextVectorization, MultiHotAndCount) {
  TextVectorizationOptions o;
  o.output_mode = TextOutputMode::MultiHot;
  o.max_tokens = 4;  // [UNK] and three words: no padding token in this mode
  TextVectorization tv(o);
  tv.adapt(kCorpus);
  EXPECT_EQ(tv.get_vocabulary(), (std::vector<std::string>{"[UNK]", "the", "cat", "sat"}));
  EXPECT_EQ(tv.vocabulary_size(), 4);
  const Tensor m = tv({"the dog the", "sat sat", ""});
  EXPECT_EQ(m.shape(), (Shape{3, 4}));
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}));
  o.output_mode = TextOutputMode::Count;
  TextVectorization counts(o);
  counts.adapt(kCorpus);
  EXPECT_EQ(counts({"the dog the", "sat sat cat"}).to_vector<float>(), (std::vector<float>{1, 2, 0, 0, 0, 0, 1, 2}));
  // Bigrams as multi-hot columns too.
  o.output_mode = TextOutputMode::MultiHot;
  o.ngrams = 2;
  o.max_tokens = 0;
  TextVectorization bi(o);
  bi.adapt(kCorpus);
  EXPECT_EQ(bi.vocabulary_size(), 9);
  EXPECT_EQ(bi({"the cat"}).to_vector<float>(), (std::vector<float>{0, 1, 1, 0, 1, 0, 0, 0, 0}));
}

TEST(TextVectorization, RefusesBadOptions) {
  TextVectorizationOptions o;
  o.max_tokens = 1;
  expect_error([&] { TextVectorization tv(o); }, ErrorKind::Value, "max_tokens = 1");
  o = {};
  o.ngrams = 0;
  expect_error([&] { TextVectorization tv(o); }, ErrorKind::Value, "ngrams = 0");
  o = {};
  o.output_mode = TextOutputMode::MultiHot;
  o.output_sequence_length = 5;
  expect_error([&] { TextVectorization tv(o); }, ErrorKind::Value, "output_sequence_length applies to");
  expect_error([] { TextVectorization().encode("x"); }, ErrorKind::Value, "no vocabulary yet");
}

TEST(TextVectorization, SavesAndLoadsItsVocabulary) {
  for (TextOutputMode mode : {TextOutputMode::Int, TextOutputMode::MultiHot}) {
    TextVectorizationOptions o;
    o.output_mode = mode;
    o.max_tokens = 7;
    o.ngrams = 2;
    o.output_sequence_length = mode == TextOutputMode::Int ? 5 : 0;
    TextVectorization tv(o);
    tv.adapt({"Great film, great cast!", "A dull film.", "Great ending; dull start", "caf\xc3\xa9 noir"});
    const std::string path = temp_path("vocabulary.json");
    tv.save(path);
    const TextVectorization back = TextVectorization::load(path);
    EXPECT_EQ(back.get_vocabulary(), tv.get_vocabulary());
    EXPECT_EQ(back.options().max_tokens, 7);
    EXPECT_EQ(back.options().ngrams, 2);
    EXPECT_EQ(back.options().output_sequence_length, o.output_sequence_length);
    EXPECT_EQ(back.options().output_mode, mode);
    EXPECT_EQ(back.to_json(), tv.to_json());
    const std::vector<std::string> texts = {"great dull film", "an unknown caf\xc3\xa9"};
    EXPECT_EQ(back(texts).shape(), tv(texts).shape());
    if (mode == TextOutputMode::Int)
      EXPECT_EQ(back(texts).to_vector<std::int32_t>(), tv(texts).to_vector<std::int32_t>());
    else
      EXPECT_EQ(back(texts).to_vector<float>(), tv(texts).to_vector<float>());
    std::remove(path.c_str());
  }
}

TEST(TextVectorization, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  TextVectorization tv;
  EXPECT_EQ(tv.tokens("Caf\xe9 na\xc3\xafve \xed\xa0\x80x"),
            (std::vector<std::string>{"caf\xef\xbf\xbd", "na\xc3\xafve", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx"}));
  tv.adapt({"caf\xe9 caf\xe9 ok"});  // Latin-1: saved, loaded and encoded alike
  const std::string path = temp_path("latin1_vocabulary.json");
  tv.save(path);
  const TextVectorization back = TextVectorization::load(path);
  EXPECT_EQ(back.encode("Caf\xe9"), (Ids{2}));
  EXPECT_EQ(back.encode("caf\xe9 ok"), tv.encode("caf\xe9 ok"));
  std::remove(path.c_str());
}

TEST(TextVectorization, BadVocabularyFilesSayWhat) {
  const std::string path = temp_path("bad_vocabulary.json");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::IO, "cannot open '" + path + "'");
  write_text(path, "{\"format\": \"recur.text_vectorization/1\"");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::IO, path + ": not JSON");
  const std::string head =
      R"({"format": "recur.text_vectorization/1", "standardize": "lower_and_strip_punctuation",
          "split": "whitespace", "max_tokens": 0, "output_sequence_length": 0, "ngrams": 1, )";
  write_text(path, R"({"format": 3})");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::IO, path + ": not a recur vocabulary");
  write_text(path, head + R"("output_mode": "int", "vocabulary": ["", "[UNK]", "a", "b", "a"]})");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::IO, "vocabulary token 'a' appears twice");
  write_text(path, head + R"("output_mode": "int", "vocabulary": ["a", "b"]})");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::IO, "starts with the padding token");
  write_text(path, head + R"("output_mode": "tf_idf", "vocabulary": ["", "[UNK]"]})");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::Value, "output_mode 'tf_idf'");
  write_text(path, head + R"("vocabulary": ["", "[UNK]"]})");
  expect_error([&] { TextVectorization::load(path); }, ErrorKind::IO, path + ": malformed");
  std::remove(path.c_str());
}

// ---- pad_sequences ------------------------------------------------------------------------
TEST(PadSequences, AllFourSidesAsKeras) {
  const std::vector<Ids> s = {{1, 2, 3}, {4, 5, 6, 7, 8}, {9}, {}};
  auto pad = [&](Padding p, Truncation t) { return pad_sequences(s, 4, p, t).to_vector<std::int32_t>(); };
  EXPECT_EQ(pad(Padding::Pre, Truncation::Pre), (Ids{0, 1, 2, 3, 5, 6, 7, 8, 0, 0, 0, 9, 0, 0, 0, 0}));
  EXPECT_EQ(pad(Padding::Post, Truncation::Pre), (Ids{1, 2, 3, 0, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(pad(Padding::Pre, Truncation::Post), (Ids{0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 9, 0, 0, 0, 0}));
  EXPECT_EQ(pad(Padding::Post, Truncation::Post), (Ids{1, 2, 3, 0, 4, 5, 6, 7, 9, 0, 0, 0, 0, 0, 0, 0}));
  // Keras's defaults (pre, pre); maxlen 0 is the longest; another padding value.
  const Tensor longest = pad_sequences(s, 0, Padding::Pre, Truncation::Pre, -1);
  EXPECT_EQ(longest.shape(), (Shape{4, 5}));
  EXPECT_EQ(longest.to_vector<std::int32_t>(),
            (Ids{-1, -1, 1, 2, 3, 4, 5, 6, 7, 8, -1, -1, -1, -1, 9, -1, -1, -1, -1, -1}));
  EXPECT_EQ(pad_sequences({{7, 8}}, 1).to_vector<std::int32_t>(), (Ids{8}));
  expect_error([&] { pad_sequences(s, -2); }, ErrorKind::Value, "maxlen = -2");
}

// ---- the aclImdb folder ---------------------------------------------------------------------
TEST(ImdbReaders, ReadsTheAclImdbLayout) {
  const ImdbData d = read_imdb_dir(kFixtures + "/aclImdb_tiny/train", true);
  ASSERT_EQ(d.size(), 6);  // unsup/ and urls_pos.txt are not reviews
  EXPECT_EQ(d.labels, (std::vector<std::int32_t>{0, 0, 0, 1, 1, 1}));  // neg = 0, pos = 1, as Keras
  EXPECT_EQ(d.ids, (std::vector<std::int64_t>{266, 874, 12077, 2469, 3247, 4518}));  // by id
  EXPECT_EQ(d.ratings, (std::vector<std::int32_t>{3, 1, 1, 10, 10, 9}));
  for (std::int64_t i = 0; i < d.size(); ++i) EXPECT_EQ(d.lengths[std::size_t(i)], count_tokens(d.texts[std::size_t(i)]));
  EXPECT_TRUE(read_imdb_dir(kFixtures + "/aclImdb_tiny/test").texts.empty());

  // The whole folder: train carved into train and validation, test as it is.
  const ImdbData tr = read_imdb(kFixtures + "/aclImdb_tiny", ImdbSplit::Train, 0.34);
  const ImdbData va = read_imdb(kFixtures + "/aclImdb_tiny", ImdbSplit::Validation, 0.34);
  const ImdbData te = read_imdb(kFixtures + "/aclImdb_tiny", ImdbSplit::Test, 0.34);
  EXPECT_EQ(tr.size(), 4);
  EXPECT_EQ(va.size(), 2);
  EXPECT_EQ(te.size(), 4);
  std::vector<std::int64_t> keys;
  for (const ImdbData* x : {&tr, &va})
    for (std::int64_t i = 0; i < x->size(); ++i) keys.push_back(x->ids[std::size_t(i)] * 2 + x->labels[std::size_t(i)]);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(std::unique(keys.begin(), keys.end()), keys.end()) << "a review in both train and validation";
  EXPECT_EQ(keys.size(), 6u);
  EXPECT_EQ(imdb_source(kFixtures + "/aclImdb_tiny", ImdbSplit::Test).path, kFixtures + "/aclImdb_tiny/test");
}

TEST(ImdbReaders, ReadsTheSharedTsvFolder) {
  const std::string dir = kFixtures + "/imdb_tiny";
  EXPECT_EQ(read_imdb(dir, ImdbSplit::Train).size(), 120);
  EXPECT_EQ(read_imdb(dir, ImdbSplit::Validation).size(), 40);
  EXPECT_EQ(read_imdb(dir, ImdbSplit::Test).size(), 60);
  EXPECT_FALSE(imdb_source(dir, ImdbSplit::Train).carve);
  // One TSV file: validation carved out of it, disjoint and covering it.
  const std::string file = dir + "/imdb_train.tsv";
  const ImdbData tr = read_imdb(file, ImdbSplit::Train, 0.25, 7), va = read_imdb(file, ImdbSplit::Validation, 0.25, 7);
  EXPECT_EQ(tr.size(), 90);
  EXPECT_EQ(va.size(), 30);
  std::vector<std::int64_t> ids = tr.ids;
  ids.insert(ids.end(), va.ids.begin(), va.ids.end());
  std::sort(ids.begin(), ids.end());
  for (std::int64_t i = 0; i < 120; ++i) ASSERT_EQ(ids[std::size_t(i)], i);
}

TEST(ImdbReaders, BadInputNamesTheFileAndLine) {
  const fs::path root = temp_path("aclImdb_bad");
  fs::remove_all(root);
  // A TSV folder whose train file has a bad row on line 3.
  write_text(root / "tsv" / "imdb_train.tsv", "label\tid\trating\ttext\n1\t0\t9\tgood\n1\t1\tnine\tbad rating\n");
  expect_error([&] { read_imdb((root / "tsv").string(), ImdbSplit::Train); }, ErrorKind::IO,
               (root / "tsv" / "imdb_train.tsv").string() + "' line 3: rating 'nine' is not an integer");
  write_text(root / "tsv" / "imdb_train.tsv", "label\tid\trating\ttext\n1\t0\t9\tgood\n7\t1\t9\tbad label\n");
  expect_error([&] { read_imdb((root / "tsv").string(), ImdbSplit::Train); }, ErrorKind::IO,
               "imdb_train.tsv' line 3: label '7' is not 0 or 1");
  expect_error([&] { read_imdb((root / "tsv").string(), ImdbSplit::Test); }, ErrorKind::IO,
               "nor a folder with imdb_test.tsv[.gz]");
  expect_error([&] { read_imdb((root / "nothing_here").string(), ImdbSplit::Train); }, ErrorKind::IO,
               "does not exist");
  // aclImdb splits: no pos/, a bad file name, a rating out of range.
  write_text(root / "acl" / "neg" / "1_2.txt", "Dull.");
  expect_error([&] { read_imdb_dir((root / "acl").string()); }, ErrorKind::IO, "has no neg/ and pos/ folders");
  write_text(root / "acl" / "pos" / "review.txt", "Fine.");
  expect_error([&] { read_imdb_dir((root / "acl").string()); }, ErrorKind::IO,
               (root / "acl" / "pos" / "review.txt").string() + "': not an aclImdb review name <id>_<rating>.txt");
  fs::remove(root / "acl" / "pos" / "review.txt");
  write_text(root / "acl" / "pos" / "3_11.txt", "Fine.");
  expect_error([&] { read_imdb_dir((root / "acl").string()); }, ErrorKind::IO, "3_11.txt': rating 11 is not from 1 to 10");
  fs::remove(root / "acl" / "pos" / "3_11.txt");
  EXPECT_EQ(read_imdb_dir((root / "acl").string()).size(), 1);
  fs::remove_all(root);
}

// ---- fit with a batch count per epoch (BatchSource::epoch_size) -----------------------------
// Length bucketing with a token budget gives each epoch its own number of
// batches: fit runs epoch_size(epoch) steps and asks only for those batches.
class VaryingBatches final : public BatchSource {
 public:
  std::int64_t size() const override { return 2; }
  std::int64_t epoch_size(std::int64_t epoch) const override { return 2 + epoch; }
  Batch get(std::int64_t epoch, std::int64_t index) const override {
    EXPECT_LT(index, epoch_size(epoch)) << "epoch " << epoch;
    asked.emplace_back(epoch, index);
    Batch b;
    b.x = Tensor::from_vector(std::vector<float>{0.5f, -1.f, 2.f, 0.25f}, {2, 2}, Device::cpu());
    b.y = Tensor::from_vector(std::vector<float>{1.f, 0.f}, {2}, Device::cpu());
    return b;
  }
  mutable std::vector<std::pair<std::int64_t, std::int64_t>> asked;
};

TEST(FitEpochSize, RunsEachEpochsOwnBatchCount) {
  ModelConfig c = model_config_from_json(
      R"({"format": "recur.model/1", "input_shape": [2], "layers": [{"type": "Dense", "units": 1}]})");
  c.model->build(c.input_shape, Device::cpu(), DType::f32, 1);
  c.model->compile({OptimizerConfig::rmsprop(), LossKind::BinaryCrossentropy, {}});
  VaryingBatches data;
  FitOptions fo;
  fo.epochs = 3;
  fo.verbose = 0;
  fit(*c.model, data, fo);
  const std::vector<std::pair<std::int64_t, std::int64_t>> want = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {1, 2},
                                                                   {2, 0}, {2, 1}, {2, 2}, {2, 3}};
  EXPECT_EQ(data.asked, want);
}

}  // namespace
}  // namespace recur::test

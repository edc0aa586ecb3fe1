// Character-level text (recur/data/char_text.h): the reader, the vocabulary,
// the split, the TBPTT batcher's continuity, sampling; and fit's hooks for
// stateful models (ResetStatesCallback).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "recur/recur.h"

namespace {

using namespace recur;
namespace ct = recur::chartext;
namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("recur_char_text_" + std::to_string(::getpid()) + "_" + name);
}

void write_plain(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

void write_gzip(const fs::path& p, const std::string& s) {
  gzFile gz = gzopen(p.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, s.data(), unsigned(s.size())), int(s.size()));
  gzclose(gz);
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

TEST(CharText, ReadsPlainAndGzipAlike) {
  const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
  const fs::path plain = temp_path("plain.txt"), gz = temp_path("text.txt.gz");
  write_plain(plain, text);
  write_gzip(gz, text);
  EXPECT_EQ(ct::read_text(plain.string()), text);
  EXPECT_EQ(ct::read_text(gz.string()), text);
  fs::remove(plain);
  fs::remove(gz);
}

TEST(CharText, ReaderRefusesBadFiles) {
  EXPECT_NE(error_of([] { ct::read_text("/nonexistent/recur.txt"); }).find("cannot open '/nonexistent/recur.txt'"),
            std::string::npos);
  const fs::path empty = temp_path("empty.txt"), nul = temp_path("nul.bin"), cut = temp_path("cut.gz");
  write_plain(empty, "");
  EXPECT_NE(error_of([&] { ct::read_text(empty.string()); }).find("holds no text"), std::string::npos);
  write_plain(nul, std::string("abc\0def", 7));
  EXPECT_NE(error_of([&] { ct::read_text(nul.string()); }).find("NUL byte at offset 3"), std::string::npos);
  // A gzip file cut in the middle.
  std::string big;
  for (int i = 0; i < 20000; ++i) big += "line " + std::to_string(i * 7919 % 10007) + "\n";
  write_gzip(cut, big);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  EXPECT_NE(error_of([&] { ct::read_text(cut.string()); }).find("corrupt or truncated gzip"), std::string::npos);
  fs::remove(empty);
  fs::remove(nul);
  fs::remove(cut);
}

TEST(CharText, VocabularyIsSortedDistinctAndRoundTrips) {
  const ct::CharVocab v = ct::CharVocab::from_text("hello, world\n");
  EXPECT_EQ(v.chars(), std::string("\n ,dehlorw"));
  EXPECT_EQ(v.size(), 10);
  const std::vector<std::int32_t> ids = v.encode("world");
  EXPECT_EQ(ids, (std::vector<std::int32_t>{9, 7, 8, 6, 3}));
  EXPECT_EQ(v.decode(ids), "world");
  const ct::CharVocab back = ct::CharVocab::from_json(v.to_json());
  EXPECT_EQ(back.chars(), v.chars());
  EXPECT_EQ(back.id('w'), 9);
  // Bytes outside ASCII survive the JSON too.
  const std::string odd = std::string("a\x01\xff", 3);
  EXPECT_EQ(ct::CharVocab::from_json(ct::CharVocab::from_text(odd).to_json()).chars(), std::string("\x01" "a\xff", 3));
}

TEST(CharText, VocabularyRefusesBadInput) {
  const ct::CharVocab v = ct::CharVocab::from_text("abc");
  const std::string e = error_of([&] { v.encode("abz", "--seed"); });
  EXPECT_NE(e.find("--seed: the character 'z' at position 2 is not in the model's vocabulary of 3"), std::string::npos)
      << e;
  EXPECT_NE(error_of([&] { v.encode("a\nb"); }).find("'\\n' at position 1"), std::string::npos);
  EXPECT_NE(error_of([] { ct::CharVocab::from_text(""); }).find("empty text"), std::string::npos);
  EXPECT_NE(error_of([] { ct::CharVocab::from_chars("ba"); }).find("sorted and distinct"), std::string::npos);
  EXPECT_NE(error_of([] { ct::CharVocab::from_json("{\"format\": \"recur.char_vocab/1\", \"codes\": [300]}"); })
                .find("not a byte value"),
            std::string::npos);
  EXPECT_NE(error_of([] { ct::CharVocab::from_json("[1, 2"); }).find("malformed JSON"), std::string::npos);
  EXPECT_NE(error_of([&] { v.character(3); }).find("outside the vocabulary of 3"), std::string::npos);
}

TEST(CharText, SplitKeepsTheLastFractionForValidation) {
  const std::string text = "0123456789";
  const ct::TextSplit s = ct::split_text(text, 0.3);
  EXPECT_EQ(s.train, "0123456");
  EXPECT_EQ(s.validation, "789");
  EXPECT_NE(error_of([&] { ct::split_text(text, 0.0); }).find("(0, 1)"), std::string::npos);
  EXPECT_NE(error_of([&] { ct::split_text("ab", 0.1); }).find("too short"), std::string::npos);
}

TEST(CharText, BatcherRowsContinueFromBatchToBatch) {
  // ids 0..N-1: every value says where it came from.
  const std::int64_t N = 1003, B = 4, T = 7;
  std::vector<std::int32_t> ids(N);
  for (std::int64_t i = 0; i < N; ++i) ids[std::size_t(i)] = std::int32_t(i);
  const ct::TbpttBatcher b(ids, B, T);
  EXPECT_EQ(b.stream_length(), N / B);
  EXPECT_EQ(b.size(), (N / B - 1) / T);
  std::vector<std::int32_t> x, y, px;
  std::set<std::int32_t> seen;
  for (std::int64_t k = 0; k < b.size(); ++k) {
    b.batch(k, x, y);
    ASSERT_EQ(x.size(), std::size_t(B * T));
    for (std::int64_t r = 0; r < B; ++r)
      for (std::int64_t t = 0; t < T; ++t) {
        const std::size_t i = std::size_t(r * T + t);
        EXPECT_EQ(y[i], x[i] + 1);  // the target is the next character
        if (t > 0) {
          EXPECT_EQ(x[i], x[i - 1] + 1);
        }
        EXPECT_TRUE(seen.insert(x[i]).second) << "character " << x[i] << " used twice";
      }
    if (k > 0) {  // row r of batch k starts where row r of batch k - 1 ended
      for (std::int64_t r = 0; r < B; ++r) EXPECT_EQ(x[std::size_t(r * T)], px[std::size_t(r * T + T - 1)] + 1);
    }
    px = x;
  }
  // Rows are the stream starts: row r begins at r * L.
  b.batch(0, x, y);
  for (std::int64_t r = 0; r < B; ++r) EXPECT_EQ(x[std::size_t(r * T)], r * b.stream_length());
  EXPECT_NE(error_of([&] { b.batch(b.size(), x, y); }).find("outside"), std::string::npos);
  EXPECT_NE(error_of([&] { ct::TbpttBatcher(std::vector<std::int32_t>(31), 4, 7, "tiny"); })
                .find("tiny has 31 characters; 4 streams of 7-character chunks need at least 32"),
            std::string::npos);
  EXPECT_EQ(ct::TbpttBatcher(std::vector<std::int32_t>(32), 4, 7).size(), 1);
}

TEST(CharText, UnigramEntropy) {
  EXPECT_NEAR(ct::unigram_entropy({0, 1, 0, 1}, 3), std::log(2.0), 1e-12);
  EXPECT_NEAR(ct::unigram_entropy({2, 2, 2}, 3), 0.0, 1e-12);
}

std::vector<float> random_logits(std::int64_t n, std::uint64_t seed) {
  ct::SampleRng r(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = float(r.uniform() * 8 - 4);
  return v;
}

TEST(CharText, TemperatureZeroIsArgmax) {
  for (std::uint64_t s = 1; s <= 20; ++s) {
    const std::vector<float> l = random_logits(65, s);
    const auto best = std::int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    ct::SampleRng rng(s);
    EXPECT_EQ(ct::sample_logits(l.data(), 65, 0.0, 0, rng), best);
    EXPECT_EQ(ct::sample_logits(l.data(), 65, 0.0, 5, rng), best);
    EXPECT_EQ(ct::sample_logits(l.data(), 65, 1e-6, 0, rng), best);  // a tiny temperature too
  }
  const float tie[] = {1.f, 3.f, 3.f};
  ct::SampleRng rng(1);
  EXPECT_EQ(ct::sample_logits(tie, 3, 0.0, 0, rng), 1);
}

TEST(CharText, TopKNeverLeavesTheTopK) {
  const std::int64_t n = 65, k = 5;
  const std::vector<float> l = random_logits(n, 7);
  std::vector<float> sorted = l;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const float kth = sorted[std::size_t(k - 1)];
  ct::SampleRng rng(3);
  std::set<std::int32_t> drawn;
  for (int i = 0; i < 5000; ++i) {
    const std::int32_t c = ct::sample_logits(l.data(), n, 5.0, k, rng);  // hot: flat over the k
    ASSERT_GE(l[std::size_t(c)], kth) << "drew " << c << ", outside the top " << k;
    drawn.insert(c);
  }
  EXPECT_EQ(drawn.size(), std::size_t(k));  // and every one of them is reachable
  // Without top-k the same temperature reaches well beyond the top 5.
  std::set<std::int32_t> all;
  for (int i = 0; i < 5000; ++i) all.insert(ct::sample_logits(l.data(), n, 5.0, 0, rng));
  EXPECT_GT(all.size(), std::size_t(k));
}

TEST(CharText, SamplingFollowsTheSoftmaxAndTheSeed) {
  const float l[] = {0.f, std::log(3.f)};  // probabilities 1/4, 3/4
  ct::SampleRng rng(11);
  int ones = 0;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ones += ct::sample_logits(l, 2, 1.0, 0, rng);
  EXPECT_NEAR(double(ones) / draws, 0.75, 0.015);
  // Temperature 2 flattens: p(1) = sqrt(3) / (1 + sqrt(3)).
  ones = 0;
  for (int i = 0; i < draws; ++i) ones += ct::sample_logits(l, 2, 2.0, 0, rng);
  EXPECT_NEAR(double(ones) / draws, std::sqrt(3.0) / (1 + std::sqrt(3.0)), 0.015);
  // The same seed, the same draws; another seed, others.
  const std::vector<float> w = random_logits(65, 5);
  auto draw = [&](std::uint64_t seed) {
    ct::SampleRng r(seed);
    std::vector<std::int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(ct::sample_logits(w.data(), 65, 1.0, 0, r));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
  ct::SampleRng r(1);
  const float bad[] = {0.f, NAN};
  EXPECT_NE(error_of([&] { ct::sample_logits(bad, 2, 1.0, 0, r); }).find("logit 1 is nan"), std::string::npos);
  EXPECT_NE(error_of([&] { ct::sample_logits(l, 2, -1.0, 0, r); }).find("temperature"), std::string::npos);
}

// fit with ResetStatesCallback: each epoch and the validation pass start from zero
// states, so a stateful model's validation loss equals a fresh evaluation of the
// same batches from reset states, and the training batches of an epoch see the
// states of the previous batch of that epoch only.
class Chunks final : public BatchSource {
 public:
  Chunks(std::vector<std::int32_t> ids, std::int64_t B, std::int64_t T) : b_(std::move(ids), B, T) {}
  std::int64_t size() const override { return b_.size(); }
  Batch get(std::int64_t, std::int64_t k) const override {
    std::vector<std::int32_t> x, y;
    b_.batch(k, x, y);
    Batch out;
    out.x = Tensor::from_vector(x, {b_.streams(), b_.seq_len()}, Device::cpu());
    out.y = Tensor::from_vector(y, {b_.streams(), b_.seq_len()}, Device::cpu());
    return out;
  }

 private:
  ct::TbpttBatcher b_;
};

std::unique_ptr<Sequential> tiny_char_model(std::int64_t V) {
  const std::string cfg = R"({"format": "recur.model/1", "input_shape": [null], "layers": [
      {"type": "Embedding", "input_dim": )" + std::to_string(V) + R"(, "output_dim": 8},
      {"type": "GRU", "units": 16, "return_sequences": true, "stateful": true},
      {"type": "Dense", "units": )" + std::to_string(V) + R"(}],
      "compile": {"optimizer": {"name": "adam", "learning_rate": 0.01}, "loss": "sparse_categorical_crossentropy"}})";
  ModelConfig c = model_config_from_json(cfg);
  c.model->build({kAnyDim}, Device::cpu(), DType::f32, 3);
  c.model->compile(*c.compile);
  return std::move(c.model);
}

TEST(CharText, ResetStatesCallbackMakesValidationStartFromZeroStates) {
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 600; ++i) ids.push_back(std::int32_t((i * i + 3 * i) % 7));
  const Chunks train(ids, 4, 10);                                                    // batch 4
  const Chunks val(std::vector<std::int32_t>(ids.begin(), ids.begin() + 200), 3, 10);  // batch 3
  auto model = tiny_char_model(7);
  FitOptions fo;
  fo.epochs = 2;
  fo.verbose = 0;
  // Without the reset, validation's batch of 3 meets training's carried states of 4: an error.
  EXPECT_NE(error_of([&] { fit(*model, train, fo, &val); }).find("call reset_states()"), std::string::npos);
  // With it, both epochs run: training's batch of 4 after validation's batch of 3 needs the
  // reset at the epoch's start too.
  model = tiny_char_model(7);
  const History h = fit(*model, train, fo, &val, {std::make_shared<ResetStatesCallback>()});
  ASSERT_EQ(h.epochs.size(), 2u);
  model->reset_states();
  const double fresh = evaluate(*model, val).at("loss");
  EXPECT_NEAR(h.epochs[1].at("val_loss"), fresh, 1e-5);
  // The carried states matter: validation without a reset before it (the states of its own
  // last batch carried into its first) differs.
  const double carried = evaluate(*model, val).at("loss");
  EXPECT_GT(std::abs(carried - fresh), 1e-6);
}

}  // namespace

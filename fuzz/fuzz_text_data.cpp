// The IMDB TSV reader, the integer-lines reader, the tokenizer, and the small
// parsers of durations, timestamps, normaliser JSON and vocabulary JSON: any
// bytes give a result or a recur::Error.
#include "fuzz_util.h"
#include "recur/common/error.h"
#include "recur/data/text_data.h"
#include "recur/data/text_vectorization.h"
#include "recur/data/timeseries.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = recur::fuzz::write_input(data, size, ".tsv");
  const std::string text(reinterpret_cast<const char*>(data), size);
  namespace ts = recur::timeseries;
  try {
    const recur::ImdbData d = recur::read_imdb_tsv(path, true);
    std::int64_t tokens = 0;
    for (const std::string& t : d.texts) tokens += recur::count_tokens(t);
    (void)tokens;
  } catch (const recur::Error&) {
  }
  try {
    (void)recur::read_int_lines(path);
  } catch (const recur::Error&) {
  }
  (void)recur::tokenize(text);
  try {
    (void)ts::format_duration(ts::parse_duration(text));
  } catch (const recur::Error&) {
  }
  try {
    (void)ts::format_timestamp(ts::parse_timestamp(text));
  } catch (const recur::Error&) {
  }
  try {
    (void)ts::Normalizer::from_json(text);
  } catch (const recur::Error&) {
  }
  try {
    const recur::TextVectorization tv = recur::TextVectorization::from_json(text);
    (void)tv.encode("the film was great");
    (void)tv.to_json();
  } catch (const recur::Error&) {
  }
  return 0;
}

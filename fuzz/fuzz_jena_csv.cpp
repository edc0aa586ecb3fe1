// The Jena CSV reader (plain and gzip): any bytes give a table or a recur::Error.
#include "fuzz_util.h"
#include "recur/common/error.h"
#include "recur/data/timeseries.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = recur::fuzz::write_input(data, size, ".csv");
  namespace ts = recur::timeseries;
  try {
    const ts::TimeseriesTable t = ts::read_jena_csv(path);
    (void)t.report.summary();
    if (t.cols() > 0) (void)ts::read_jena_csv(path, {t.columns.back()});
    if (t.rows() >= 3) {  // the splits, the normaliser and the windows on whatever came out
      const ts::Splits s = ts::book_splits(t.rows());
      const ts::Normalizer n = ts::Normalizer::fit(t, s.train);
      (void)ts::Normalizer::from_json(n.to_json());
    }
  } catch (const recur::Error&) {
  }
  return 0;
}

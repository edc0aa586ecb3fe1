// Timeseries data: the Jena CSV reader on small files written here (good,
// gzip, sentinels, duplicates, disorder, gaps, and the errors), durations,
// splits, the normaliser, the window generator against hand-computed rows, and
// the bundled hourly file with its naive-baseline figures.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace recur::test {
namespace {

namespace ts = recur::timeseries;
namespace fs = std::filesystem;

// A scratch directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("recur_ts_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string write_gzip(const std::string& name, const std::string& text) const {
    const std::string p = (path_ / name).string();
    gzFile f = gzopen(p.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, text.data(), unsigned(text.size())), int(text.size()));
    gzclose(f);
    return p;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// The message of the recur::Error that `f` throws as E; fails when it throws nothing or another.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "threw nothing";
  return "";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)

// The header of the official 10-minute file: quoted names, 14 variables.
const char* kFullHeader =
    "\"Date Time\",\"p (mbar)\",\"T (degC)\",\"Tpot (K)\",\"Tdew (degC)\",\"rh (%)\","
    "\"VPmax (mbar)\",\"VPact (mbar)\",\"VPdef (mbar)\",\"sh (g/kg)\",\"H2OC (mmol/mol)\","
    "\"rho (g/m**3)\",\"wv (m/s)\",\"max. wv (m/s)\",\"wd (deg)\"\n";

// 01.01.2009 00:00:00 in seconds since 1970: 14245 days.
constexpr std::int64_t kJan2009 = 14245LL * 86400;

TEST(JenaReader, ReadsTheOfficialFormatChoosingColumnsByName) {
  TempDir dir;
  const std::string path = dir.write(
      "jena.csv",
      std::string(kFullHeader) +
          "01.01.2009 00:10:00,996.52,-8.02,265.40,-8.90,93.30,3.33,3.11,0.22,1.94,3.12,1307.75,1.03,1.75,152.30\n"
          "01.01.2009 00:20:00,996.57,-8.41,265.01,-9.28,93.40,3.23,3.02,0.21,1.89,3.03,1309.80,0.72,1.50,136.10\n"
          "01.01.2009 00:30:00,996.53,-8.51,264.91,-9.31,93.90,3.21,3.01,0.20,1.88,3.02,1310.24,0.19,0.63,171.60\n");
  const ts::TimeseriesTable t = ts::read_jena_csv(path, {"T (degC)", "p (mbar)", "wv (m/s)"});
  ASSERT_EQ(t.rows(), 3);
  EXPECT_EQ(t.columns, (std::vector<std::string>{"T (degC)", "p (mbar)", "wv (m/s)"}));
  EXPECT_EQ(t.values, (std::vector<float>{-8.02f, 996.52f, 1.03f, -8.41f, 996.57f, 0.72f,
                                          -8.51f, 996.53f, 0.19f}));
  EXPECT_EQ(t.timestamps, (std::vector<std::int64_t>{kJan2009 + 600, kJan2009 + 1200, kJan2009 + 1800}));
  EXPECT_EQ(ts::format_timestamp(t.timestamps[0]), "01.01.2009 00:10:00");
  EXPECT_EQ(t.column_index("p (mbar)"), 1);
  EXPECT_EQ(t.column(0), (std::vector<float>{-8.02f, -8.41f, -8.51f}));
  const ts::ReadReport& r = t.report;
  EXPECT_FALSE(r.gzip);
  EXPECT_EQ(r.lines, 3);
  EXPECT_EQ(r.interval, 600);
  EXPECT_EQ(r.sentinels + r.duplicates + r.out_of_order + r.gap_count, 0);

  // No columns named: all of them, in file order.
  const ts::TimeseriesTable all = ts::read_jena_csv(path);
  ASSERT_EQ(all.cols(), 14);
  EXPECT_EQ(all.columns.front(), "p (mbar)");
  EXPECT_EQ(all.columns.back(), "wd (deg)");
  EXPECT_FLOAT_EQ(all.at(2, 13), 171.60f);
}

TEST(JenaReader, TellsGzipFromPlainByContentNotName) {
  TempDir dir;
  const std::string text =
      "Date Time,p (mbar),T (degC)\r\n"  // CRLF line endings too
      "31.12.2016 23:00:00,999.81,-4.23\r\n"
      "01.01.2017 00:00:00,1000.00,-5.00\r\n"
      "\r\n";
  const std::string gz = dir.write_gzip("looks_plain.csv", text);
  const std::string plain = dir.write("looks_compressed.csv.gz", text);
  for (const std::string& path : {gz, plain}) {
    SCOPED_TRACE(path);
    const ts::TimeseriesTable t = ts::read_jena_csv(path, {"T (degC)"});
    EXPECT_EQ(t.report.gzip, path == gz);
    ASSERT_EQ(t.rows(), 2);
    EXPECT_EQ(t.values, (std::vector<float>{-4.23f, -5.00f}));
    EXPECT_EQ(ts::format_timestamp(t.timestamps[1]), "01.01.2017 00:00:00");
    EXPECT_EQ(t.report.interval, 3600);
  }
}

TEST(JenaReader, SetsWindSpeedSentinelsToZeroAndCountsThem) {
  TempDir dir;
  const std::string path = dir.write(
      "s.csv",
      "Date Time,T (degC),wv (m/s),max. wv (m/s)\n"
      "01.01.2009 00:10:00,-9999,-9999.00,1.5\n"
      "01.01.2009 00:20:00,2.0,0.5,-9999\n"
      "01.01.2009 00:30:00,3.0,-9999.0,-1.5\n");
  const ts::TimeseriesTable t = ts::read_jena_csv(path);
  EXPECT_EQ(t.report.sentinels, 3);
  // Only wind speeds carry the sentinel; other values are kept as they are.
  EXPECT_EQ(t.values, (std::vector<float>{-9999.f, 0.f, 1.5f, 2.f, 0.5f, 0.f, 3.f, 0.f, -1.5f}));
  // Not chosen, not counted.
  EXPECT_EQ(ts::read_jena_csv(path, {"T (degC)"}).report.sentinels, 0);
  // -9999 elsewhere is kept, but counted and located for a warning.
  EXPECT_EQ(t.report.other_sentinels, 1);
  EXPECT_EQ(t.report.first_other_sentinel, path + ":2 column 'T (degC)'");
  EXPECT_NE(t.report.summary().find("-9999 in columns other than wind speeds, kept as values: 1"), std::string::npos);
}

TEST(JenaReader, SortsOutOfOrderRowsAndDropsDuplicateTimestamps) {
  TempDir dir;
  const std::string path = dir.write(
      "d.csv",
      "Date Time,T (degC)\n"
      "01.01.2009 01:00:00,1\n"
      "01.01.2009 03:00:00,3\n"
      "01.01.2009 02:00:00,2\n"      // out of order
      "01.01.2009 04:00:00,4\n"
      "01.01.2009 03:00:00,33\n"     // out of order and a duplicate: the first 3 stays
      "01.01.2009 04:00:00,44\n"     // a duplicate in order
      "01.01.2009 05:00:00,5\n");
  const ts::TimeseriesTable t = ts::read_jena_csv(path);
  EXPECT_EQ(t.report.lines, 7);
  EXPECT_EQ(t.report.out_of_order, 2);
  EXPECT_EQ(t.report.duplicates, 2);
  EXPECT_EQ(t.values, (std::vector<float>{1, 2, 3, 4, 5}));
  ASSERT_EQ(t.rows(), 5);
  for (std::int64_t i = 0; i < 5; ++i) EXPECT_EQ(t.timestamps[std::size_t(i)], kJan2009 + 3600 * (i + 1));
  EXPECT_EQ(t.report.interval, 3600);
  EXPECT_EQ(t.report.gap_count, 0);
  EXPECT_CONTAINS(t.report.summary(), "out-of-order lines sorted: 2");
  EXPECT_CONTAINS(t.report.summary(), "duplicate timestamps dropped: 2");
}

TEST(JenaReader, ReportsGaps) {
  TempDir dir;
  std::string text = "Date Time,T (degC)\n";
  // 10-minute rows 00:00 .. 01:00, then 01:30 (a 30-minute step), then 03:30 (2 hours).
  for (const char* hm : {"00:00", "00:10", "00:20", "00:30", "00:40", "00:50", "01:00", "01:30", "03:30", "03:40"})
    text += std::string("05.03.2012 ") + hm + ":00,1.0\n";
  const ts::TimeseriesTable t = ts::read_jena_csv(dir.write("g.csv", text));
  const ts::ReadReport& r = t.report;
  EXPECT_EQ(r.interval, 600);
  EXPECT_EQ(r.gap_count, 2);
  EXPECT_EQ(r.largest_gap, 7200);
  ASSERT_EQ(r.gaps.size(), 2u);
  EXPECT_EQ(r.gaps[0].row, 7);
  EXPECT_EQ(r.gaps[0].seconds(), 1800);
  EXPECT_EQ(ts::format_timestamp(r.gaps[0].from), "05.03.2012 01:00:00");
  EXPECT_EQ(r.gaps[1].row, 8);
  EXPECT_EQ(r.gaps[1].seconds(), 7200);
  const std::string s = r.summary();
  EXPECT_CONTAINS(s, "sampled every 10m");
  EXPECT_CONTAINS(s, "gaps (steps longer than 10m): 2, the longest 2h");
  EXPECT_CONTAINS(s, "05.03.2012 01:30:00 -> 05.03.2012 03:30:00 (2h)");
}

TEST(JenaReader, MalformedValuesNameTheLineAndTheColumn) {
  TempDir dir;
  const std::string head = "Date Time,p (mbar),T (degC)\n01.01.2009 00:10:00,996.5,-8.0\n";
  const std::string bad_number = dir.write("n.csv", head + "\n01.01.2009 00:20:00,996.4,abc\n");
  std::string m = error_of<IOError>([&] { ts::read_jena_csv(bad_number); });
  EXPECT_CONTAINS(m, bad_number + ":4: column 'T (degC)': cannot parse 'abc' as a number");
  // A column not chosen is not parsed.
  EXPECT_EQ(ts::read_jena_csv(bad_number, {"p (mbar)"}).rows(), 2);

  for (const char* v : {"", "1.0.0", "nan", "inf", "12x", "1e999"}) {
    const std::string p = dir.write("v.csv", head + "01.01.2009 00:20:00,996.4," + v + "\n");
    m = error_of<IOError>([&] { ts::read_jena_csv(p); });
    EXPECT_CONTAINS(m, ":3: column 'T (degC)': cannot parse '" + std::string(v) + "'");
  }
  for (const char* d : {"2009-01-01 00:20:00", "32.01.2009 00:20:00", "29.02.2009 00:00:00",
                        "01.01.2009 24:00:00", "1.1.2009 0:20:00"}) {
    const std::string p = dir.write("d.csv", head + d + ",996.4,-8.1\n");
    m = error_of<IOError>([&] { ts::read_jena_csv(p); });
    EXPECT_CONTAINS(m, ":3: column 'Date Time': cannot parse '" + std::string(d) +
                           "' as a date dd.mm.YYYY HH:MM:SS");
  }
  EXPECT_EQ(ts::parse_timestamp("29.02.2012 12:00:00"), ts::parse_timestamp("28.02.2012 12:00:00") + 86400);

  const std::string fields = dir.write("f.csv", head + "01.01.2009 00:20:00,996.4\n");
  m = error_of<IOError>([&] { ts::read_jena_csv(fields); });
  EXPECT_CONTAINS(m, fields + ":3: 2 fields, the header has 3");
  const std::string extra = dir.write("e.csv", head + "01.01.2009 00:20:00,996.4,1,2\n");
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(extra); }), ":3: 4 fields, the header has 3");
}

// Found by fuzz_jena_csv: a header name that is not UTF-8 reached the normaliser's
// JSON (forecast.json) and threw nlohmann's type_error, which no caller expects.
TEST(JenaReader, RefusesAHeaderThatIsNotUtf8) {
  TempDir dir;
  const std::string path = dir.write("bad.csv", "Date Time,p (mb\x9f\x88),T (degC)\n01.01.2009 00:10:00,1,2\n");
  expect_error([&] { ts::read_jena_csv(path); }, "bad.csv:1: header field 2 is not valid UTF-8 text");
  // UTF-8 names are fine, and the normaliser refuses a bad one with a recur error.
  const std::string ok = dir.write("ok.csv", "Date Time,\xc3\xa9t\xc3\xa9 (degC)\n01.01.2009 00:10:00,1\n");
  EXPECT_EQ(ts::read_jena_csv(ok).columns[0], "\xc3\xa9t\xc3\xa9 (degC)");
  const ts::Normalizer n({"\xff"}, {0.0}, {1.0});
  EXPECT_THROW(n.to_json(), ValueError);
}

TEST(JenaReader, BadFilesAndColumnsGiveClearErrors) {
  TempDir dir;
  const std::string good = dir.write("ok.csv", "Date Time,p (mbar),T (degC)\n01.01.2009 00:10:00,996.5,-8.0\n");
  std::string m = error_of<ValueError>([&] { ts::read_jena_csv(good, {"T (degC)", "Tdew (degC)"}); });
  EXPECT_CONTAINS(m, "no column 'Tdew (degC)'; the file has 'p (mbar)', 'T (degC)'");
  m = error_of<ValueError>([&] { ts::read_jena_csv(good, {"T (degC)", "T (degC)"}); });
  EXPECT_CONTAINS(m, "column 'T (degC)' requested twice");
  m = error_of<ValueError>([&] { ts::read_jena_csv(good, {"Date Time"}); });
  EXPECT_CONTAINS(m, "no column 'Date Time'");

  const std::string missing = dir.path("nowhere.csv");
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(missing); }), "cannot open '" + missing + "'");
  const std::string empty = dir.write("empty.csv", "\n\n");
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(empty); }), "is empty");
  const std::string header_only = dir.write("h.csv", "Date Time,T (degC)\n\n");
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(header_only); }), "has a header but no data lines");
  const std::string no_time = dir.write("nt.csv", "time,T (degC)\n1,2\n");
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(no_time); }),
                  "no 'Date Time' column (is this a Jena climate CSV?); found 'time', 'T (degC)'");
  const std::string twice = dir.write("tw.csv", "Date Time,T (degC),T (degC)\n");
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(twice); }), ":1: column 'T (degC)' appears twice");

  // A gzip file cut short: the reader says so rather than returning fewer rows.
  std::string text = "Date Time,T (degC)\n";
  for (int i = 0; i < 2000; ++i) text += "01.01.2009 00:10:00," + std::to_string(i) + "\n";
  const std::string whole = dir.write_gzip("whole.gz", text);
  std::ifstream in(whole, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = dir.write("cut.gz", bytes.substr(0, bytes.size() / 2));
  EXPECT_CONTAINS(error_of<IOError>([&] { ts::read_jena_csv(cut); }), "corrupt or truncated gzip");
}

TEST(TimeseriesDuration, ParsesUnitsAndConvertsToRows) {
  EXPECT_EQ(ts::parse_duration("10d"), 864000);
  EXPECT_EQ(ts::parse_duration("24h"), 86400);
  EXPECT_EQ(ts::parse_duration("1h"), 3600);
  EXPECT_EQ(ts::parse_duration("30m"), 1800);
  EXPECT_EQ(ts::parse_duration("600s"), 600);
  EXPECT_EQ(ts::parse_duration(" 1h30m "), 5400);
  EXPECT_EQ(ts::parse_duration("0s"), 0);
  for (const char* bad : {"", "240", "h", "1.5h", "-1h", "5x", "1h 30m", "10 d"})
    EXPECT_THROW(ts::parse_duration(bad), ValueError) << bad;
  EXPECT_CONTAINS(error_of<ValueError>([] { ts::parse_duration("5x"); }), "unknown unit 'x'");
  EXPECT_THROW(ts::parse_duration("99999999999999999999d"), ValueError);

  EXPECT_EQ(ts::duration_to_rows(ts::parse_duration("10d"), 3600, "lookback"), 240);
  EXPECT_EQ(ts::duration_to_rows(ts::parse_duration("10d"), 600, "lookback"), 1440);
  EXPECT_EQ(ts::duration_to_rows(ts::parse_duration("24h"), 3600, "delay"), 24);
  EXPECT_EQ(ts::duration_to_rows(0, 3600, "delay"), 0);
  EXPECT_CONTAINS(error_of<ValueError>([] { ts::duration_to_rows(5400, 3600, "lookback"); }),
                  "lookback 1h30m (5400 s) is not a whole multiple of the data's sampling interval 1h (3600 s)");
  EXPECT_CONTAINS(error_of<ValueError>([] { ts::duration_to_rows(3600, 0, "step"); }),
                  "sampling interval is unknown");
  EXPECT_EQ(ts::format_duration(270600), "3d3h10m");
  EXPECT_EQ(ts::format_duration(60600), "16h50m");
  EXPECT_EQ(ts::format_duration(601), "10m1s");
}

TEST(TimeseriesSplits, FollowTheBooksProportions) {
  const ts::Splits full = ts::book_splits(420551);  // the book's own 10-minute file
  EXPECT_EQ(full.train.begin, 0);
  EXPECT_EQ(full.train.end, 200000);
  EXPECT_EQ(full.val.end, 300000);
  EXPECT_EQ(full.test.end, 420551);
  const ts::Splits hourly = ts::book_splits(70038);  // floor(70038 * 200000 / 420551) = 33307
  EXPECT_EQ(hourly.train.end, 33307);
  EXPECT_EQ(hourly.val.begin, 33307);
  EXPECT_EQ(hourly.val.end, 33307 + 16653);
  EXPECT_EQ(hourly.test.begin, 49960);
  EXPECT_EQ(hourly.test.end, 70038);
  EXPECT_THROW(ts::book_splits(4), ValueError);
}

ts::TimeseriesTable small_table(const std::vector<std::vector<float>>& rows,
                                std::vector<std::string> columns) {
  ts::TimeseriesTable t;
  t.columns = std::move(columns);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    t.timestamps.push_back(std::int64_t(r) * 3600);
    t.values.insert(t.values.end(), rows[r].begin(), rows[r].end());
  }
  return t;
}

TEST(TimeseriesNormalizer, TrainStatisticsApplyInvertAndJson) {
  const ts::TimeseriesTable t =
      small_table({{1, 10}, {2, 10}, {3, 20}, {4, 20}, {100, -50}}, {"a", "b"});
  const ts::Normalizer n = ts::Normalizer::fit(t, {0, 4});  // the last row is not training
  EXPECT_DOUBLE_EQ(n.mean(0), 2.5);
  EXPECT_DOUBLE_EQ(n.stddev(0), std::sqrt(1.25));  // ddof = 0, as numpy's std
  EXPECT_DOUBLE_EQ(n.mean(1), 15);
  EXPECT_DOUBLE_EQ(n.stddev(1), 5);
  EXPECT_DOUBLE_EQ(n.normalize(1, 25), 2);
  EXPECT_DOUBLE_EQ(n.denormalize(1, 2), 25);
  const ts::TimeseriesTable z = n.apply(t);
  EXPECT_FLOAT_EQ(z.at(0, 0), float(-1.5 / std::sqrt(1.25)));
  EXPECT_FLOAT_EQ(z.at(4, 1), -13.f);
  EXPECT_EQ(z.timestamps, t.timestamps);

  const ts::Normalizer back = ts::Normalizer::from_json(n.to_json());
  EXPECT_EQ(back.columns(), n.columns());
  EXPECT_EQ(back.mean(), n.mean());      // exact: JSON keeps every digit
  EXPECT_EQ(back.stddev(), n.stddev());

  EXPECT_CONTAINS(error_of<ValueError>([&] { ts::Normalizer::fit(t, {0, 2}); }),
                  "column 'b' is constant over rows [0, 2)");
  EXPECT_THROW(ts::Normalizer::fit(t, {3, 9}), ValueError);
  EXPECT_THROW(n.apply(small_table({{1, 2}}, {"b", "a"})), ValueError);
  EXPECT_THROW(ts::Normalizer::from_json("{\"columns\": [\"a\"], \"mean\": [1]"), ValueError);
  EXPECT_THROW(ts::Normalizer::from_json("{\"columns\": [\"a\"], \"mean\": [1], \"std\": [0]}"), ValueError);
  EXPECT_THROW(ts::Normalizer::from_json("{\"columns\": [\"a\"], \"mean\": [1, 2], \"std\": [1]}"), ValueError);
  EXPECT_THROW(ts::Normalizer::from_json("{\"columns\": [1], \"mean\": [1], \"std\": [1]}"), ValueError);
  EXPECT_THROW(ts::Normalizer::from_json("[]"), ValueError);
}

// 30 rows; column 0 holds the row number r, column 1 holds 100 + r (the target).
ts::TimeseriesTable ramp_table() {
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 30; ++r) rows.push_back({float(r), float(100 + r)});
  return small_table(rows, {"r", "100+r"});
}

TEST(TimeseriesWindows, ReadTheHandComputedRows) {
  const ts::TimeseriesTable t = ramp_table();
  const ts::WindowSpec spec{6, 2, 3};  // lookback 6, step 2, delay 3: 3 samples per window
  // The whole table: now rows t = 5 .. 26 (span t-5..t and target t+3 inside [0, 30)).
  ts::WindowGenerator all(t, 1, spec, {0, 30}, 4, false);
  EXPECT_EQ(all.windows(), 22);
  EXPECT_EQ(all.steps_per_epoch(), 6);  // 5 full batches of 4, then 2
  EXPECT_EQ(all.now_row(0), 5);
  EXPECT_EQ(all.now_row(21), 26);
  const ts::WindowBatch b0 = all.batch(0, 0);
  EXPECT_EQ(b0.size, 4);
  EXPECT_EQ(b0.samples, 3);
  EXPECT_EQ(b0.features, 2);
  // Window 0: rows 1, 3, 5 -> target row 8; window 1: rows 2, 4, 6 -> row 9.
  EXPECT_EQ(std::vector<float>(b0.x.begin(), b0.x.begin() + 12),
            (std::vector<float>{1, 101, 3, 103, 5, 105, 2, 102, 4, 104, 6, 106}));
  EXPECT_EQ(b0.y, (std::vector<float>{108, 109, 110, 111}));
  EXPECT_EQ(b0.now, (std::vector<std::int64_t>{5, 6, 7, 8}));
  const ts::WindowBatch last = all.batch(0, 5);
  EXPECT_EQ(last.size, 2);  // the remainder
  EXPECT_EQ(last.x, (std::vector<float>{21, 121, 23, 123, 25, 125, 22, 122, 24, 124, 26, 126}));
  EXPECT_EQ(last.y, (std::vector<float>{128, 129}));  // the last row of the table is the last target
  EXPECT_THROW(all.batch(0, 6), ValueError);

  const Tensor x = b0.x_tensor(Device::cpu());
  EXPECT_EQ(x.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(x.to_vector<float>(), b0.x);
  EXPECT_EQ(last.y_tensor(Device::cpu()).shape(), (Shape{2, 1}));

  // A split [10, 20): windows t = 15, 16 only; nothing read outside the split.
  ts::WindowGenerator mid(t, 1, spec, {10, 20}, 8, false);
  EXPECT_EQ(mid.windows(), 2);
  const ts::WindowBatch m = mid.batch(7, 0);  // chronological: the epoch does not matter
  EXPECT_EQ(m.x, (std::vector<float>{11, 111, 13, 113, 15, 115, 12, 112, 14, 114, 16, 116}));
  EXPECT_EQ(m.y, (std::vector<float>{118, 119}));

  // Step 1 and delay 0: the window is the 4 rows ending at t, the target row t itself.
  ts::WindowGenerator one(t, 0, {4, 1, 0}, {0, 30}, 32, false);
  EXPECT_EQ(one.windows(), 27);
  const ts::WindowBatch o = one.batch(0, 0);
  EXPECT_EQ(std::vector<float>(o.x.begin(), o.x.begin() + 8), (std::vector<float>{0, 100, 1, 101, 2, 102, 3, 103}));
  EXPECT_EQ(o.y.front(), 3);
  EXPECT_EQ(o.y.back(), 29);
}

TEST(TimeseriesWindows, RejectBadConfigurations) {
  const ts::TimeseriesTable t = ramp_table();
  EXPECT_CONTAINS(error_of<ValueError>([&] { ts::WindowGenerator(t, 1, {6, 2, 3}, {10, 18}, 4, false); }),
                  "split [10, 18) has 8 rows: too few for one window of lookback 6 + delay 3 rows");
  EXPECT_NO_THROW(ts::WindowGenerator(t, 1, {6, 2, 3}, {10, 19}, 4, false));  // exactly one window
  EXPECT_CONTAINS(error_of<ValueError>([&] { ts::WindowGenerator(t, 1, {5, 2, 3}, {0, 30}, 4, false); }),
                  "lookback (5 rows) must be a positive multiple of the step (2 rows)");
  EXPECT_THROW(ts::WindowGenerator(t, 1, {6, 0, 3}, {0, 30}, 4, false), ValueError);
  EXPECT_THROW(ts::WindowGenerator(t, 1, {6, 2, -1}, {0, 30}, 4, false), ValueError);
  EXPECT_THROW(ts::WindowGenerator(t, 2, {6, 2, 3}, {0, 30}, 4, false), ValueError);
  EXPECT_THROW(ts::WindowGenerator(t, 1, {6, 2, 3}, {0, 31}, 4, false), ValueError);
  EXPECT_THROW(ts::WindowGenerator(t, 1, {6, 2, 3}, {0, 30}, 0, false), ValueError);
}

TEST(TimeseriesWindows, ShuffleIsASeededPermutationPerEpoch) {
  const ts::TimeseriesTable t = ramp_table();
  const ts::WindowSpec spec{6, 2, 3};
  ts::WindowGenerator a(t, 1, spec, {0, 30}, 5, true, 42), b(t, 1, spec, {0, 30}, 5, true, 42),
      c(t, 1, spec, {0, 30}, 5, true, 43);
  std::vector<std::int64_t> identity(22);
  std::iota(identity.begin(), identity.end(), 0);
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<std::int64_t> seen;
    for (std::int64_t k = 0; k < a.steps_per_epoch(); ++k) {
      const ts::WindowBatch ba = a.batch(epoch, k), bb = b.batch(epoch, k);
      EXPECT_EQ(ba.x, bb.x);  // same seed, same batches
      EXPECT_EQ(ba.y, bb.y);
      for (std::int64_t i = 0; i < ba.size; ++i) {
        const std::int64_t now = ba.now[std::size_t(i)];
        seen.push_back(now - 5);
        // Each shuffled window still reads its own rows.
        EXPECT_EQ(ba.x[std::size_t(i * 6 + 4)], float(now));
        EXPECT_EQ(ba.y[std::size_t(i)], float(100 + now + 3));
      }
    }
    std::vector<std::int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, identity) << "epoch " << epoch << " visits every window once";
    EXPECT_NE(seen, identity);
    EXPECT_NE(a.epoch_order(epoch), c.epoch_order(epoch)) << "another seed, another order";
  }
  EXPECT_NE(a.epoch_order(0), a.epoch_order(1)) << "reshuffled each epoch";
  EXPECT_EQ(a.epoch_order(1), b.epoch_order(1));
  // mt19937_64 is fixed by the standard and the shuffle is recur's own: the
  // order is the same on every platform and build. Pinned:
  EXPECT_EQ(a.epoch_order(0), (std::vector<std::int64_t>{20, 15, 12, 0, 14, 6, 16, 3, 5, 2, 7,
                                                          21, 10, 1, 9, 17, 19, 18, 11, 4, 8, 13}));
}

TEST(TimeseriesBaseline, IsTheMaeOfTheLastInputOnATinyTable) {
  const ts::TimeseriesTable raw =
      small_table({{0}, {1}, {3}, {6}, {10}, {15}, {21}, {28}}, {"v"});
  const ts::Normalizer n = ts::Normalizer::fit(raw, {0, 8});
  const ts::TimeseriesTable z = n.apply(raw);
  // lookback 2, delay 2 over [2, 8): t = 3, 4, 5 -> |v[t+2] - v[t]| = 9, 11, 13.
  const ts::BaselineResult r = ts::naive_baseline(z, n, 0, {2, 1, 2}, {2, 8});
  EXPECT_EQ(r.windows, 3);
  EXPECT_NEAR(r.mae_units, 11.0, 1e-5);
  EXPECT_NEAR(r.mae, 11.0 / n.stddev(0), 1e-6);
}

// ---- the bundled hourly file ----------------------------------------------------------

class JenaBundled : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    table_ = new ts::TimeseriesTable(ts::read_jena_csv(RECUR_DATA_DIR "/jena_climate_2009_2016_hourly.csv.gz"));
  }
  static void TearDownTestSuite() {
    delete table_;
    table_ = nullptr;
  }
  static const ts::TimeseriesTable& table() { return *table_; }
  static ts::TimeseriesTable* table_;
};
ts::TimeseriesTable* JenaBundled::table_ = nullptr;

TEST_F(JenaBundled, ReadsAllRowsAndReportsTheKnownGaps) {
  const ts::TimeseriesTable& t = table();
  EXPECT_EQ(t.rows(), 70038);
  EXPECT_EQ(t.columns, (std::vector<std::string>{"p (mbar)", "T (degC)", "Tdew (degC)", "rh (%)",
                                                 "VPmax (mbar)", "wv (m/s)"}));
  const ts::ReadReport& r = t.report;
  EXPECT_TRUE(r.gzip);
  EXPECT_EQ(r.lines, 70038);
  EXPECT_EQ(r.sentinels + r.duplicates + r.out_of_order, 0);  // the file was cleaned
  EXPECT_EQ(r.interval, 3600);
  // datasets/README.md: two 70-minute steps, one 80-minute step, 16 h 50 min and 75 h 10 min.
  EXPECT_EQ(r.gap_count, 5);
  EXPECT_EQ(r.largest_gap, 75 * 3600 + 600);
  ASSERT_EQ(r.gaps.size(), 5u);
  std::vector<std::int64_t> seconds;
  for (const ts::Gap& g : r.gaps) seconds.push_back(g.seconds());
  EXPECT_EQ(seconds, (std::vector<std::int64_t>{80 * 60, 70 * 60, 70 * 60, 16 * 3600 + 50 * 60,
                                                75 * 3600 + 600}));
  EXPECT_EQ(ts::format_timestamp(r.gaps[3].from), "24.09.2014 16:50:00");
  EXPECT_EQ(ts::format_timestamp(r.gaps[4].to), "28.10.2016 12:50:00");
  EXPECT_EQ(ts::format_timestamp(t.timestamps.front()), "01.01.2009 00:10:00");
  EXPECT_EQ(ts::format_timestamp(t.timestamps.back()), "31.12.2016 23:50:00");
  EXPECT_FLOAT_EQ(t.at(1, t.column_index("T (degC)")), -7.62f);
}

// The reference: scripts/jena_baseline.py (numpy alone, float64) prints
//   val : 16390 windows, MAE 0.27776 (normalised) = 2.45765 degC
//   test: 19815 windows, MAE 0.29300 (normalised) = 2.59248 degC
// and the shared datasets' README gives 2.458 and 2.592 degC.
TEST_F(JenaBundled, NaiveBaselineMatchesTheReference) {
  const ts::TimeseriesTable& t = table();
  const ts::Splits s = ts::book_splits(t.rows());
  const ts::Normalizer n = ts::Normalizer::fit(t, s.train);
  const int temp = t.column_index("T (degC)");
  EXPECT_NEAR(n.mean(temp), 9.06726814, 1e-5);  // numpy: data[:33307].mean(0), .std(0)
  EXPECT_NEAR(n.stddev(temp), 8.84819557, 1e-5);
  const ts::TimeseriesTable z = n.apply(t);
  const std::int64_t interval = t.report.interval;
  const ts::WindowSpec spec{ts::duration_to_rows(ts::parse_duration("10d"), interval, "lookback"),
                            ts::duration_to_rows(ts::parse_duration("1h"), interval, "step"),
                            ts::duration_to_rows(ts::parse_duration("24h"), interval, "delay")};
  EXPECT_EQ(spec.lookback, 240);
  EXPECT_EQ(spec.delay, 24);

  const ts::BaselineResult val = ts::naive_baseline(z, n, temp, spec, s.val);
  const ts::BaselineResult test = ts::naive_baseline(z, n, temp, spec, s.test);
  EXPECT_EQ(val.windows, 16390);
  EXPECT_EQ(test.windows, 19815);
  EXPECT_NEAR(val.mae_units, 2.458, 0.0005);
  EXPECT_NEAR(test.mae_units, 2.592, 0.0005);
  EXPECT_NEAR(val.mae_units, 2.45765, 2e-5);
  EXPECT_NEAR(test.mae_units, 2.59248, 2e-5);
  EXPECT_NEAR(val.mae, 0.27776, 1e-5);
  EXPECT_NEAR(test.mae, 0.29300, 1e-5);

  // The same figure from the generator's batches: y against the last input's
  // temperature. Any step keeps row t as the last input; a step of 1d reads 10
  // rows per window instead of 240, which keeps this quick under the sanitizers.
  ts::WindowSpec daily = spec;
  daily.step = ts::duration_to_rows(ts::parse_duration("1d"), interval, "step");
  ts::WindowGenerator gen(z, temp, daily, s.val, 512, false);
  ASSERT_EQ(gen.windows(), val.windows);
  double sum = 0;
  for (std::int64_t k = 0; k < gen.steps_per_epoch(); ++k) {
    const ts::WindowBatch b = gen.batch(0, k);
    for (std::int64_t i = 0; i < b.size; ++i)
      sum += std::fabs(double(b.y[std::size_t(i)]) -
                       b.x[std::size_t(((i * b.samples) + b.samples - 1) * b.features + temp)]);
  }
  EXPECT_NEAR(sum / double(gen.windows()), val.mae, 1e-9);
}

// ---- derived features (issue 17) ----------------------------------------------------------

TEST(TimeseriesFeatures, ParsesNamesAndRefusesUnknownOnes) {
  EXPECT_TRUE(ts::parse_features("none").names().empty());
  EXPECT_EQ(ts::parse_features("time").names(), (std::vector<std::string>{"time"}));
  EXPECT_EQ(ts::parse_features("wind, time").names(), (std::vector<std::string>{"time", "wind"}));
  const ts::FeatureSet all = ts::parse_features("all");
  EXPECT_TRUE(all.time && all.wind_if_available && !all.wind);
  // `all` takes the wind only where the data has a direction (the bundled file has none).
  EXPECT_EQ(ts::resolve_features(all, {"T (degC)", "wv (m/s)"}).names(), (std::vector<std::string>{"time"}));
  EXPECT_EQ(ts::resolve_features(all, {"T (degC)", "wv (m/s)", "wd (deg)"}).names(),
            (std::vector<std::string>{"time", "wind"}));
  for (const char* bad : {"sun", "time,", "", "Time", "all,time", "none,wind"})
    EXPECT_CONTAINS(error_of<ValueError>([&] { ts::parse_features(bad); }), "give none, all, or a comma list");
  EXPECT_CONTAINS(error_of<ValueError>([&] { ts::parse_features("time,sun"); }), "unknown feature 'sun'");
  EXPECT_EQ(ts::features_from_names({"time", "wind"}).names(), (std::vector<std::string>{"time", "wind"}));
  EXPECT_THROW(ts::features_from_names({"moon"}), ValueError);
}

TEST(TimeseriesFeatures, DayAndYearFractionsAtKnownTimestamps) {
  EXPECT_DOUBLE_EQ(ts::day_fraction(ts::parse_timestamp("01.01.2009 00:00:00")), 0.0);
  EXPECT_DOUBLE_EQ(ts::day_fraction(ts::parse_timestamp("17.03.2013 12:00:00")), 0.5);
  EXPECT_DOUBLE_EQ(ts::day_fraction(ts::parse_timestamp("17.03.2013 06:00:00")), 0.25);
  EXPECT_DOUBLE_EQ(ts::day_fraction(ts::parse_timestamp("17.03.2013 00:10:00")), 600.0 / 86400);
  EXPECT_DOUBLE_EQ(ts::year_fraction(ts::parse_timestamp("01.01.2009 00:00:00")), 0.0);
  EXPECT_DOUBLE_EQ(ts::year_fraction(ts::parse_timestamp("01.07.2009 00:00:00")), 181.0 / 365);  // 2009: 365 days
  EXPECT_DOUBLE_EQ(ts::year_fraction(ts::parse_timestamp("01.07.2012 00:00:00")), 182.0 / 366);  // 2012: leap
  EXPECT_DOUBLE_EQ(ts::year_fraction(ts::parse_timestamp("31.12.2016 23:00:00")), (365.0 * 24 + 23) / (366 * 24));
  EXPECT_DOUBLE_EQ(ts::year_fraction(ts::parse_timestamp("01.01.2017 00:00:00")), 0.0);
}

TEST(TimeseriesFeatures, TimeColumnsAreSineCosinePairs) {
  ts::TimeseriesTable t;
  t.columns = {"T (degC)"};
  for (const char* when : {"01.01.2010 00:00:00", "01.01.2010 12:00:00", "01.07.2010 06:00:00", "01.07.2010 18:00:00"})
    t.timestamps.push_back(ts::parse_timestamp(when));
  t.values = {1, 2, 3, 4};
  ts::FeatureSet f;
  f.time = true;
  const ts::TimeseriesTable o = ts::add_features(t, f);
  EXPECT_EQ(o.columns, (std::vector<std::string>{"T (degC)", "day sin", "day cos", "year sin", "year cos"}));
  EXPECT_EQ(o.timestamps, t.timestamps);
  const double pi = std::acos(-1.0), jul = 2 * pi * 181 / 365;  // 01.07 of 2010, at midnight
  const double expect[4][5] = {
      {1, 0, 1, 0, 1},                                                                   // midnight, Jan 1
      {2, 0, -1, std::sin(pi / 365), std::cos(pi / 365)},                                // noon, Jan 1
      {3, 1, 0, std::sin(jul + pi / 2 / 365), std::cos(jul + pi / 2 / 365)},             // 06:00, Jul 1
      {4, -1, 0, std::sin(jul + 1.5 * pi / 365), std::cos(jul + 1.5 * pi / 365)}};      // 18:00, Jul 1
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 5; ++c) EXPECT_NEAR(o.at(r, c), expect[r][c], 1e-6) << "row " << r << " column " << c;
  EXPECT_LT(o.at(2, 4), -0.99);  // July 1 is half a year on: cos near -1
  EXPECT_THROW(ts::add_features(o, f), ValueError);  // the columns exist already
}

TEST(TimeseriesFeatures, WindVectorFromSpeedAndDirection) {
  auto near = [](ts::WindVector w, double x, double y) {
    EXPECT_NEAR(w.x, x, 1e-12);
    EXPECT_NEAR(w.y, y, 1e-12);
  };
  near(ts::wind_vector(2, 0), 2, 0);
  near(ts::wind_vector(2, 90), 0, 2);
  near(ts::wind_vector(2, 180), -2, 0);
  near(ts::wind_vector(2, 270), 0, -2);
  near(ts::wind_vector(std::sqrt(2.0), 45), 1, 1);
  near(ts::wind_vector(0, 123), 0, 0);
  near(ts::wind_vector(-9999, 90), 0, 0);  // the missing-speed sentinel: calm
  near(ts::wind_vector(3, -9999), 0, 0);   // a missing direction: cannot be placed
  near(ts::wind_vector(3, 361), 0, 0);
  near(ts::wind_vector(3, std::nan("")), 0, 0);

  ts::TimeseriesTable t;
  t.columns = {"T (degC)", "wv (m/s)", "max. wv (m/s)", "wd (deg)"};
  t.timestamps = {0, 3600, 7200, 10800};
  t.values = {5, 2, 4, 90,  6, -9999, 3, 180,  7, 1, 2, -9999,  8, 3, 6, 0};
  ts::FeatureSet f;
  f.wind = true;
  const ts::TimeseriesTable o = ts::add_features(t, f);
  EXPECT_EQ(o.columns,
            (std::vector<std::string>{"T (degC)", "Wx (m/s)", "Wy (m/s)", "max. Wx (m/s)", "max. Wy (m/s)"}));
  const float expect[4][5] = {{5, 0, 2, 0, 4}, {6, 0, 0, -3, 0}, {7, 0, 0, 0, 0}, {8, 3, 0, 6, 0}};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 5; ++c) EXPECT_NEAR(o.at(r, c), expect[r][c], 1e-6) << "row " << r << " column " << c;

  // No direction (the bundled file): a clear refusal naming what is missing.
  ts::TimeseriesTable nodir;
  nodir.columns = {"T (degC)", "wv (m/s)"};
  nodir.timestamps = {0};
  nodir.values = {1, 2};
  nodir.report.source = "hourly.csv";
  const std::string msg = error_of<ValueError>([&] { ts::add_features(nodir, f); });
  EXPECT_CONTAINS(msg, "hourly.csv: the wind feature needs");
  EXPECT_CONTAINS(msg, "missing: 'wd (deg)'");
  EXPECT_CONTAINS(msg, "leave wind out of --features");
  ts::FeatureSet unresolved = ts::parse_features("all");
  EXPECT_THROW(ts::add_features(nodir, unresolved), ValueError);  // `all` is resolved first
}

TEST(TimeseriesWindows, MultiHorizonTargetsUpToTheDelay) {
  const ts::TimeseriesTable t = ramp_table();
  ts::WindowSpec spec{6, 2, 6};
  spec.horizons = 3;  // targets at t + 2, t + 4, t + 6
  ts::WindowGenerator g(t, 1, spec, {0, 30}, 4, false);
  EXPECT_EQ(g.windows(), 30 - 6 - 6 + 1);  // the same windows as one horizon at the delay
  const ts::WindowBatch b = g.batch(0, 0);
  EXPECT_EQ(b.horizons, 3);
  EXPECT_EQ(std::vector<float>(b.y.begin(), b.y.begin() + 6), (std::vector<float>{107, 109, 111, 108, 110, 112}));
  EXPECT_EQ(b.y_tensor(Device::cpu()).shape(), (Shape{4, 3}));
  EXPECT_EQ(g.batch(0, g.steps_per_epoch() - 1).y.back(), 129);  // the last row is the last window's last target
  ts::WindowSpec bad{6, 2, 6};
  bad.horizons = 4;
  EXPECT_CONTAINS(error_of<ValueError>([&] { ts::WindowGenerator(t, 1, bad, {0, 30}, 4, false); }),
                  "horizons (4) must be at least 1 and, above 1, divide the delay (6 rows)");
  bad.horizons = 0;
  EXPECT_THROW(ts::WindowGenerator(t, 1, bad, {0, 30}, 4, false), ValueError);
}

}  // namespace
}  // namespace recur::test

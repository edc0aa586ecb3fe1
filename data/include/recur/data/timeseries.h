// Timeseries data for forecasting: the Jena climate CSV reader, the book's
// train/validation/test splits, normalisation by the training split, durations
// in time units, the windowed batch generator and the naive baseline.
//
// Windows. With lookback L, step s and delay D counted in rows (L a multiple
// of s, n = L / s samples per window), the window whose "now" is row t reads
//   x[k] = row t - L + s * (k + 1),  k = 0 .. n-1   (so x[n-1] is row t itself),
//   y    = the target column at row t + D.
// The lookback span is the L rows t-L+1 .. t; with s > 1 every s-th of them is
// read, ending at t. A split [b, e) owns the windows whose span and target both
// lie inside it: t = b + L - 1 .. e - D - 1, that is e - b - L - D + 1 windows,
// numbered w = 0, 1, ... in time order (t = b + L - 1 + w). No window crosses a
// split boundary, so no validation or test row feeds training and vice versa.
// (Deep Learning with Python lets windows run past the end of a split: the 1st
// edition's generator reads its target up to `delay` rows past max_index, the
// 2nd edition's timeseries_dataset_from_array bounds only the inputs. Keeping the
// target inside too is what reproduces the bundled file's reference figures
// below, and scripts/jena_baseline.py recomputes them the same way in numpy.)
//
// Splits, as the book (200,000 / 100,000 / the rest of 420,551 rows):
//   train = [0, a), val = [a, a + v), test = [a + v, N), with
//   a = floor(N * 200000 / 420551), v = floor(N * 100000 / 420551).
//
// Naive baseline: "the target in D rows equals the target now", y_hat = x[n-1]
// of the target column, scored as the MAE over every window of a split (all
// windows, a partial last batch included). On the bundled hourly file
// (datasets/jena_climate_2009_2016_hourly.csv.gz, N = 70,038) with L = 240, s = 1,
// D = 24 and the temperature normalised by the training rows' mean and std:
// val 2.458 degC (16,390 windows), test 2.592 degC (19,815 windows).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "recur/host/tensor.h"

namespace recur::timeseries {

// A gap: consecutive rows (after sorting) further apart than the sampling interval.
struct Gap {
  std::int64_t row = 0;   // the first row after the gap
  std::int64_t from = 0;  // timestamp of the row before it, seconds
  std::int64_t to = 0;    // timestamp of `row`, seconds
  std::int64_t seconds() const { return to - from; }
};

// What the reader found and fixed.
struct ReadReport {
  std::string source;                  // the path read
  bool gzip = false;                   // the file was gzip-compressed
  std::int64_t lines = 0;              // data lines read (header and blank lines not counted)
  std::int64_t sentinels = 0;          // -9999 wind speeds set to 0
  std::int64_t other_sentinels = 0;    // -9999 in other columns: kept as values, but worth a warning
  std::string first_other_sentinel;    // "FILE:LINE column 'NAME'" of the first of them
  std::int64_t out_of_order = 0;       // lines with an earlier timestamp than the line before
  std::int64_t duplicates = 0;         // rows dropped for repeating a timestamp (first kept)
  std::int64_t interval = 0;           // sampling interval, seconds: the most frequent step
                                       // (the shortest of equally frequent ones); 0 below 2 rows
  std::int64_t gap_count = 0;          // steps longer than `interval`
  std::int64_t largest_gap = 0;        // the longest step, seconds (0 when no gap)
  std::vector<Gap> gaps;               // the first kMaxListedGaps gaps
  static constexpr std::size_t kMaxListedGaps = 10;

  // Several lines of text, for the user.
  std::string summary() const;
};

// A table of float32 values with one timestamp per row, sorted by time, without
// duplicate timestamps.
struct TimeseriesTable {
  std::vector<std::string> columns;       // names, in the order requested
  std::vector<std::int64_t> timestamps;   // seconds since 1970-01-01 00:00:00 (no time zone)
  std::vector<float> values;              // [rows, cols], row-major
  ReadReport report;

  std::int64_t rows() const { return static_cast<std::int64_t>(timestamps.size()); }
  std::int64_t cols() const { return static_cast<std::int64_t>(columns.size()); }
  float at(std::int64_t row, std::int64_t col) const {
    return values[static_cast<std::size_t>(row * cols() + col)];
  }
  // Index of the column called `name`; ValueError listing the columns otherwise.
  int column_index(const std::string& name) const;
  std::vector<float> column(int col) const;
};

// Reads a Jena climate CSV, plain or gzip (told apart by content, not by name):
// a header line `Date Time,<name>,...` (names optionally in double quotes, as in
// the official file), then one line per sample, `dd.mm.YYYY HH:MM:SS,<number>,...`.
// `columns` picks the variables by header name, in that order; empty: all of
// them in file order. Only the chosen columns are parsed; every line must have
// as many fields as the header.
// Fixes, counted in the report: -9999 in `wv (m/s)` and `max. wv (m/s)` (the
// official file's sentinel for a missing wind speed) becomes 0; rows are stably
// sorted by time; of rows with the same timestamp the first in the file stays.
// Gaps are reported, not filled.
// Throws IOError: the file is missing, unreadable or a corrupt gzip stream, it is
// empty, has no `Date Time` column or no data line, a line has the wrong number of fields
// ("FILE:LINE: 7 fields, the header has 15"), a value is not a finite number or
// date ("FILE:LINE: column 'T (degC)': cannot parse 'abc' as a number").
// ValueError: an unknown or repeated column name (the message lists the file's).
TimeseriesTable read_jena_csv(const std::string& path, const std::vector<std::string>& columns = {});

// "dd.mm.YYYY HH:MM:SS" <-> seconds since 1970-01-01 00:00:00.
std::string format_timestamp(std::int64_t seconds);
// Throws ValueError naming the text.
std::int64_t parse_timestamp(const std::string& text);

// ---- splits -------------------------------------------------------------------

struct RowRange {
  std::int64_t begin = 0, end = 0;  // [begin, end)
  std::int64_t size() const { return end - begin; }
};

struct Splits {
  RowRange train, val, test;
};

// The book's proportions, as at the top of this file. ValueError when a split is empty.
Splits book_splits(std::int64_t rows);

// ---- normalisation --------------------------------------------------------------

// Per-column mean and standard deviation (population, ddof = 0, as numpy's std)
// of the training rows, computed in double. Saved with a model as JSON.
class Normalizer {
 public:
  Normalizer() = default;
  Normalizer(std::vector<std::string> columns, std::vector<double> mean, std::vector<double> stddev);

  // Statistics of `rows` of the table. ValueError when the range is empty or out
  // of the table, or a column is constant there (std 0: nothing to divide by).
  static Normalizer fit(const TimeseriesTable& table, RowRange rows);

  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& stddev() const { return std_; }
  double mean(int col) const;
  double stddev(int col) const;

  // (v - mean) / std and back, for column `col`.
  double normalize(int col, double v) const;
  double denormalize(int col, double v) const;
  // The table with every value normalised (float32 of the double result). The
  // table's columns must be this normaliser's, in the same order (ValueError).
  TimeseriesTable apply(const TimeseriesTable& table) const;

  // {"columns": [...], "mean": [...], "std": [...]}; from_json throws ValueError
  // on a malformed document, mismatched lengths or a std that is not > 0.
  std::string to_json() const;
  static Normalizer from_json(const std::string& text);

 private:
  std::vector<std::string> columns_;
  std::vector<double> mean_, std_;
};

// ---- durations ------------------------------------------------------------------

// "10d", "24h", "1h", "30m", "600s", or a sum such as "1h30m" -> seconds.
// ValueError for anything else (a bare number has no unit: "240" is refused).
std::int64_t parse_duration(const std::string& text);
// The duration as a number of rows sampled every `interval` seconds. ValueError
// when `interval` <= 0 or `seconds` is not a whole multiple of it (naming both);
// `what` names the quantity in messages ("lookback").
std::int64_t duration_to_rows(std::int64_t seconds, std::int64_t interval, const std::string& what);
// "10d", "1h30m", "0s": the shortest form.
std::string format_duration(std::int64_t seconds);

// ---- windows --------------------------------------------------------------------

struct WindowSpec {
  std::int64_t lookback = 0;  // L rows spanned by the inputs, a multiple of step
  std::int64_t step = 1;      // s: every s-th row of the span is read
  std::int64_t delay = 0;     // D: the target is D rows after the window's last input
  // H: targets per window. 1: the target at row t + D. H > 1 (D a multiple of H): the
  // target at rows t + (h + 1) * D / H, h = 0 .. H-1 (a direct multi-horizon forecast;
  // the last is t + D, so a split owns the same windows whatever H is).
  std::int64_t horizons = 1;
  std::int64_t samples() const { return step > 0 ? lookback / step : 0; }  // n = L / s
  // Rows from t to the target of horizon h.
  std::int64_t horizon_rows(std::int64_t h) const { return horizons > 1 ? (h + 1) * (delay / horizons) : delay; }
};

// One batch, on the host. Rows are windows; the last batch of an epoch may be short.
struct WindowBatch {
  std::int64_t size = 0;        // B, windows in this batch
  std::int64_t samples = 0;     // n = lookback / step
  std::int64_t features = 0;    // F, the table's columns
  std::int64_t horizons = 1;    // H (WindowSpec::horizons)
  std::vector<float> x;         // [B, n, F], row-major
  std::vector<float> y;         // [B, H]: the target column at row t + D (H = 1), or at each horizon
  std::vector<std::int64_t> now;  // [B]: row t (the last input row) of each window

  Tensor x_tensor(Device device) const;  // [B, n, F] float32 on `device`
  Tensor y_tensor(Device device) const;  // [B, H]
};

// Batches of the windows of one split (see the top of this file). Training
// (shuffle = true): each epoch visits every window once, in an order drawn from
// (seed, epoch) with std::mt19937_64 and recur's own Fisher-Yates (no
// std::*_distribution), so a seed gives the same batches on every platform;
// another epoch gives another order. Validation and test (shuffle = false):
// windows in time order, the same every epoch. Every epoch has
// ceil(windows / batch_size) batches; the last one holds the remainder.
//
// The generator reads `table` (normally normalised) and keeps a reference: the
// table must outlive it. Not thread-safe (the epoch's order is cached).
class WindowGenerator {
 public:
  // ValueError: step or batch_size < 1, lookback not a positive multiple of step,
  // delay < 0, target column or split out of range, a split too short for one window.
  WindowGenerator(const TimeseriesTable& table, int target_column, WindowSpec spec, RowRange split,
                  std::int64_t batch_size, bool shuffle, std::uint64_t seed = 0);
  WindowGenerator(const TimeseriesTable&& table, int, WindowSpec, RowRange, std::int64_t, bool,
                  std::uint64_t = 0) = delete;  // would dangle

  std::int64_t windows() const { return windows_; }
  std::int64_t steps_per_epoch() const { return (windows_ + batch_ - 1) / batch_; }
  std::int64_t batch_size() const { return batch_; }
  const WindowSpec& spec() const { return spec_; }
  RowRange split() const { return split_; }
  int target_column() const { return target_; }

  // Row t of window w (time order), w in [0, windows()).
  std::int64_t now_row(std::int64_t w) const;
  // Window indices in the order epoch `epoch` visits them.
  std::vector<std::int64_t> epoch_order(std::int64_t epoch) const;
  // Batch k of epoch `epoch`, k in [0, steps_per_epoch()). ValueError otherwise.
  WindowBatch batch(std::int64_t epoch, std::int64_t k) const;

 private:
  const TimeseriesTable& table_;
  int target_;
  WindowSpec spec_;
  RowRange split_;
  std::int64_t batch_, windows_;
  bool shuffle_;
  std::uint64_t seed_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> cached_order_;
};

// ---- derived features ----------------------------------------------------------------
//
// Columns computed from a table, appended (time) or replacing columns (wind), before
// normalisation; `recur forecast --features` chooses them and records the choice.
//   time: "day sin", "day cos" = sin/cos(2 pi f_day), f_day = (seconds since midnight) / 86400;
//         "year sin", "year cos" = sin/cos(2 pi f_year), f_year = (seconds since Jan 1
//         00:00 of the timestamp's year) / (that year's length, 365 or 366 days).
//         Timestamps carry no time zone: they are the file's clock.
//   wind: `wv (m/s)` (speed) and `wd (deg)` (direction, degrees) become "Wx (m/s)" =
//         v cos(d) and "Wy (m/s)" = v sin(d), at the place of `wv (m/s)`; `max. wv (m/s)`,
//         when present, becomes "max. Wx (m/s)" and "max. Wy (m/s)" with the same
//         direction. A speed of -9999 (the file's sentinel; the reader already sets it to
//         0) or below 0 counts as calm (0, 0); so does a direction of -9999 or one that is
//         not a number from 0 to 360 (the speed cannot be placed without it).
struct FeatureSet {
  bool time = false;
  bool wind = false;
  bool wind_if_available = false;  // "all": wind when the data has a direction
  // ["time", "wind"], the chosen ones in this order ("none" when empty).
  std::vector<std::string> names() const;
};

// "none", "all", or a comma list of "time" and "wind" (e.g. "time,wind"); ValueError
// naming the word and the choices otherwise.
FeatureSet parse_features(const std::string& text);
// Names as FeatureSet::names() writes them, back to a set (ValueError on an unknown name).
FeatureSet features_from_names(const std::vector<std::string>& names);
// `all` resolved against the columns a file has: wind only when `wv (m/s)` and `wd (deg)` are there.
FeatureSet resolve_features(FeatureSet f, const std::vector<std::string>& columns);
// The file columns the features need (wind: `wv (m/s)`, `wd (deg)`).
std::vector<std::string> feature_inputs(const FeatureSet& f);

double day_fraction(std::int64_t timestamp);   // [0, 1)
double year_fraction(std::int64_t timestamp);  // [0, 1)
struct WindVector {
  double x = 0, y = 0;
};
WindVector wind_vector(double speed, double direction_degrees);

// The table with the features: time columns appended after the others, wind columns
// replacing speed and direction. ValueError (naming the table's source file) when wind
// is asked for and `wv (m/s)` or `wd (deg)` is missing. The report is kept.
TimeseriesTable add_features(const TimeseriesTable& table, const FeatureSet& f);

// ---- the naive baseline -----------------------------------------------------------

struct BaselineResult {
  std::int64_t windows = 0;
  double mae = 0;        // in normalised units
  double mae_units = 0;  // in the column's own units (degC): mae * std of the target column
};

// MAE of "y = x[n-1]" (the target column at row t + D equals its value at row t)
// over every window of `split`, summed in double. `normalized` is the table after
// `norm.apply`; `target_column` indexes both.
BaselineResult naive_baseline(const TimeseriesTable& normalized, const Normalizer& norm,
                              int target_column, const WindowSpec& spec, RowRange split);

}  // namespace recur::timeseries

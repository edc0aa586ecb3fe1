// Timeseries data: the Jena CSV reader (zlib reads plain and gzip files alike),
// splits, the normaliser (JSON via nlohmann), durations, windows and the naive
// baseline. The window definition is documented in the header.
#include "recur/data/timeseries.h"
#include "recur/data/file_read.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string_view>
#include <utility>

namespace recur::timeseries {
namespace {

constexpr const char* kDateTime = "Date Time";

// ---- reading the file ----------------------------------------------------------

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Trimmed, and without one pair of surrounding double quotes.
std::string_view unquote(std::string_view s) {
  s = trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = trim(s.substr(1, s.size() - 2));
  return s;
}

// Splits a line at commas (the format has no quoted commas).
void split_fields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      out.push_back(line.substr(start));
      return;
    }
    out.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "'" : ", '") + n + "'";
  return s;
}

bool is_leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(std::int64_t y, int m) {
  static const int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return kDays[m - 1] + (m == 2 && is_leap(y) ? 1 : 0);
}

// Days from 1970-01-01 to y-m-d (proleptic Gregorian), y >= 1.
std::int64_t days_from_civil(std::int64_t y, int m, int d) {
  auto leaps_before = [](std::int64_t year) {  // leap years in [1, year)
    const std::int64_t p = year - 1;
    return p / 4 - p / 100 + p / 400;
  };
  static const int kBefore[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  return (y - 1970) * 365 + leaps_before(y) - leaps_before(1970) + kBefore[m - 1] +
         (m > 2 && is_leap(y) ? 1 : 0) + d - 1;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

// "dd.mm.YYYY HH:MM:SS" -> seconds; false when malformed.
bool parse_timestamp_view(std::string_view s, std::int64_t* out) {
  if (s.size() != 19 || s[2] != '.' || s[5] != '.' || s[10] != ' ' || s[13] != ':' ||
      s[16] != ':')
    return false;
  auto num = [&](std::size_t pos, std::size_t len, int* v) {
    int x = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
  };
  int d = 0, mo = 0, y = 0, h = 0, mi = 0, se = 0;
  if (!num(0, 2, &d) || !num(3, 2, &mo) || !num(6, 4, &y) || !num(11, 2, &h) ||
      !num(14, 2, &mi) || !num(17, 2, &se))
    return false;
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
      se > 59)
    return false;
  *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return true;
}

bool parse_number(std::string_view s, double* out) {
  s = unquote(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(*out);
}

// Whether `s` is well-formed UTF-8 (what JSON, and so forecast.json, can hold).
bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || c < 0xc2 || c > 0xf4 || i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((p[i + k] & 0xc0) != 0x80) return false;
    // No overlong 3/4-byte forms, UTF-16 surrogates or code points past U+10FFFF.
    if ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0) || (c == 0xf0 && p[i + 1] < 0x90) ||
        (c == 0xf4 && p[i + 1] >= 0x90))
      return false;
    i += len;
  }
  return true;
}

bool is_wind_speed(const std::string& name) { return name == "wv (m/s)" || name == "max. wv (m/s)"; }

// The sampling interval and the gaps of sorted, distinct timestamps.
void find_gaps(const std::vector<std::int64_t>& ts, ReadReport& r) {
  if (ts.size() < 2) return;
  std::map<std::int64_t, std::int64_t> counts;
  for (std::size_t i = 1; i < ts.size(); ++i) ++counts[ts[i] - ts[i - 1]];
  std::int64_t best = 0;
  for (const auto& [stepsize, count] : counts) {  // ascending: ties keep the shortest
    if (count > best) {
      best = count;
      r.interval = stepsize;
    }
  }
  for (std::size_t i = 1; i < ts.size(); ++i) {
    const std::int64_t d = ts[i] - ts[i - 1];
    if (d <= r.interval) continue;
    ++r.gap_count;
    r.largest_gap = std::max(r.largest_gap, d);
    if (r.gaps.size() < ReadReport::kMaxListedGaps)
      r.gaps.push_back(Gap{static_cast<std::int64_t>(i), ts[i - 1], ts[i]});
  }
}

// ---- windows ---------------------------------------------------------------------

// Checks a window configuration; returns the number of windows in `split`.
std::int64_t check_windows(const TimeseriesTable& table, int target, const WindowSpec& spec,
                           RowRange split) {
  RECUR_CHECK(target >= 0 && target < table.cols(), Value, "target column ", target,
              " out of range: the table has ", table.cols(), " columns");
  RECUR_CHECK(spec.step >= 1, Value, "window step must be at least 1 row, got ", spec.step);
  RECUR_CHECK(spec.lookback >= 1 && spec.lookback % spec.step == 0, Value, "window lookback (",
              spec.lookback, " rows) must be a positive multiple of the step (", spec.step,
              " rows)");
  RECUR_CHECK(spec.delay >= 0, Value, "window delay must not be negative, got ", spec.delay);
  RECUR_CHECK(spec.horizons >= 1 && (spec.horizons == 1 || (spec.delay >= spec.horizons && spec.delay % spec.horizons == 0)),
              Value, "horizons (", spec.horizons, ") must be at least 1 and, above 1, divide the delay (", spec.delay,
              " rows)");
  RECUR_CHECK(split.begin >= 0 && split.begin <= split.end && split.end <= table.rows(), Value,
              "split [", split.begin, ", ", split.end, ") is not inside the table's ",
              table.rows(), " rows");
  const std::int64_t n = split.size() - spec.lookback - spec.delay + 1;
  RECUR_CHECK(n >= 1, Value, "split [", split.begin, ", ", split.end, ") has ", split.size(),
              " rows: too few for one window of lookback ", spec.lookback, " + delay ",
              spec.delay, " rows");
  return n;
}

// splitmix64's finaliser: spreads (seed, epoch) over the generator's seed space.
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, range), range >= 1, without modulo bias.
std::uint64_t bounded(std::mt19937_64& g, std::uint64_t range) {
  const std::uint64_t threshold = (0 - range) % range;  // 2^64 mod range
  for (;;) {
    const std::uint64_t r = g();
    if (r >= threshold) return r % range;
  }
}

}  // namespace

// ---- the table and the reader ---------------------------------------------------

int TimeseriesTable::column_index(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  RECUR_THROW(Value, "no column '", name, "'; the table has ", quoted_list(columns));
}

std::vector<float> TimeseriesTable::column(int col) const {
  RECUR_CHECK(col >= 0 && col < cols(), Value, "column ", col, " out of range: the table has ",
              cols(), " columns");
  std::vector<float> v(static_cast<std::size_t>(rows()));
  for (std::int64_t r = 0; r < rows(); ++r) v[std::size_t(r)] = at(r, col);
  return v;
}

std::string ReadReport::summary() const {
  std::ostringstream os;
  os << source << ": " << lines << " lines" << (gzip ? " (gzip)" : "") << ", sampled every "
     << format_duration(interval) << "\n";
  os << "  -9999 wind speeds set to 0: " << sentinels << "; out-of-order lines sorted: "
     << out_of_order << "; duplicate timestamps dropped: " << duplicates << "\n";
  if (other_sentinels > 0)
    os << "  -9999 in columns other than wind speeds, kept as values: " << other_sentinels << " (the first at "
       << first_other_sentinel << ")\n";
  os << "  gaps (steps longer than " << format_duration(interval) << "): " << gap_count;
  if (gap_count > 0) os << ", the longest " << format_duration(largest_gap);
  os << "\n";
  for (const Gap& g : gaps)
    os << "    before row " << g.row << ": " << format_timestamp(g.from) << " -> "
       << format_timestamp(g.to) << " (" << format_duration(g.seconds()) << ")\n";
  if (gap_count > static_cast<std::int64_t>(gaps.size()))
    os << "    ... and " << gap_count - static_cast<std::int64_t>(gaps.size()) << " more\n";
  return os.str();
}

TimeseriesTable read_jena_csv(const std::string& path, const std::vector<std::string>& columns) {
  ReadReport report;
  report.source = path;
  const std::string text = recur::data::read_file(path, &report.gzip);

  std::string_view rest(text);
  if (rest.size() >= 3 && rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // BOM
  std::int64_t line_no = 0;
  // The next non-blank line, without its line ending; false at the end.
  auto next_line = [&](std::string_view* line) {
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      std::string_view l = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      ++line_no;
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      if (!trim(l).empty()) {
        *line = l;
        return true;
      }
    }
    return false;
  };

  std::string_view line;
  RECUR_CHECK(next_line(&line), IO, "'", path,
              "' is empty: expected a CSV header starting with 'Date Time'");
  std::vector<std::string_view> fields;
  split_fields(line, fields);
  std::vector<std::string> header;
  for (std::string_view f : fields) header.emplace_back(unquote(f));
  const std::int64_t header_line = line_no;
  for (std::size_t i = 0; i < header.size(); ++i)
    RECUR_CHECK(valid_utf8(header[i]), IO, path, ":", header_line, ": header field ", i + 1,
                " is not valid UTF-8 text (is this a Jena climate CSV?)");
  int time_col = -1;
  for (std::size_t i = 0; i < header.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      RECUR_CHECK(header[i] != header[j], IO, path, ":", header_line, ": column '", header[i],
                  "' appears twice in the header");
    if (header[i] == kDateTime) time_col = static_cast<int>(i);
  }
  RECUR_CHECK(time_col >= 0, IO, path, ":", header_line,
              ": the header has no 'Date Time' column (is this a Jena climate CSV?); found ",
              quoted_list(header));
  std::vector<std::string> available;
  for (const std::string& h : header)
    if (h != kDateTime) available.push_back(h);

  // The chosen columns and where they are in a line.
  const std::vector<std::string>& names = columns.empty() ? available : columns;
  std::vector<int> source;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      RECUR_CHECK(names[i] != names[j], Value, "column '", names[i], "' requested twice");
    const auto it = std::find(available.begin(), available.end(), names[i]);
    RECUR_CHECK(it != available.end(), Value, path, ": no column '", names[i],
                "'; the file has ", quoted_list(available));
    source.push_back(static_cast<int>(std::find(header.begin(), header.end(), names[i]) -
                                      header.begin()));
  }
  const std::size_t ncols = names.size();
  std::vector<char> wind(ncols);
  for (std::size_t c = 0; c < ncols; ++c) wind[c] = is_wind_speed(names[c]);

  std::vector<std::int64_t> ts;
  std::vector<float> vals;
  ts.reserve(text.size() / 64);
  vals.reserve(ts.capacity() * ncols);
  while (next_line(&line)) {
    split_fields(line, fields);
    RECUR_CHECK(fields.size() == header.size(), IO, path, ":", line_no, ": ", fields.size(),
                " fields, the header has ", header.size());
    std::int64_t t = 0;
    const std::string_view stamp = unquote(fields[std::size_t(time_col)]);
    RECUR_CHECK(parse_timestamp_view(stamp, &t), IO, path, ":", line_no,
                ": column 'Date Time': cannot parse '", stamp,
                "' as a date dd.mm.YYYY HH:MM:SS");
    if (!ts.empty() && t < ts.back()) ++report.out_of_order;
    ts.push_back(t);
    for (std::size_t c = 0; c < ncols; ++c) {
      double v = 0;
      const std::string_view field = fields[std::size_t(source[c])];
      RECUR_CHECK(parse_number(field, &v), IO, path, ":", line_no, ": column '", names[c],
                  "': cannot parse '", unquote(field), "' as a number");
      if (v == -9999.0) {
        if (wind[c]) {
          v = 0;
          ++report.sentinels;
        } else {  // kept: only the wind speeds' sentinel has a known meaning
          if (report.other_sentinels == 0) report.first_other_sentinel = path + ":" + std::to_string(line_no) +
                                                                     " column '" + names[c] + "'";
          ++report.other_sentinels;
        }
      }
      vals.push_back(static_cast<float>(v));
    }
  }
  report.lines = static_cast<std::int64_t>(ts.size());
  RECUR_CHECK(!ts.empty(), IO, "'", path, "' has a header but no data lines");

  // Stable sort by time, then keep the first row of each timestamp.
  TimeseriesTable table;
  table.columns = names;
  std::vector<std::int64_t> order(ts.size());
  std::iota(order.begin(), order.end(), std::int64_t(0));
  if (report.out_of_order > 0)
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return ts[std::size_t(a)] < ts[std::size_t(b)];
    });
  std::vector<std::int64_t> keep;
  keep.reserve(order.size());
  for (const std::int64_t i : order) {
    if (!keep.empty() && ts[std::size_t(i)] == ts[std::size_t(keep.back())])
      ++report.duplicates;
    else
      keep.push_back(i);
  }
  if (report.out_of_order == 0 && report.duplicates == 0) {  // the usual case: no copy
    table.timestamps = std::move(ts);
    table.values = std::move(vals);
  } else {
    table.timestamps.resize(keep.size());
    table.values.resize(keep.size() * ncols);
    for (std::size_t r = 0; r < keep.size(); ++r) {
      const std::size_t i = std::size_t(keep[r]);
      table.timestamps[r] = ts[i];
      std::copy_n(vals.begin() + std::ptrdiff_t(i * ncols), ncols,
                  table.values.begin() + std::ptrdiff_t(r * ncols));
    }
  }
  find_gaps(table.timestamps, report);
  table.report = std::move(report);
  return table;
}

std::string format_timestamp(std::int64_t seconds) {
  const std::int64_t days = floor_div(seconds, 86400);
  const std::int64_t sec = seconds - days * 86400;
  std::int64_t y = 1970 + floor_div(days, 366);
  while (days_from_civil(y + 1, 1, 1) <= days) ++y;
  int m = 1;
  while (m < 12 && days_from_civil(y, m + 1, 1) <= days) ++m;
  const std::int64_t d = days - days_from_civil(y, m, 1) + 1;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02d.%02d.%04lld %02d:%02d:%02d", int(d), m, (long long)y,
                int(sec / 3600), int(sec / 60 % 60), int(sec % 60));
  return buf;
}

std::int64_t parse_timestamp(const std::string& text) {
  std::int64_t t = 0;
  RECUR_CHECK(parse_timestamp_view(text, &t), Value, "cannot parse '", text,
              "' as a date dd.mm.YYYY HH:MM:SS");
  return t;
}

// ---- splits -----------------------------------------------------------------------

Splits book_splits(std::int64_t rows) {
  const std::int64_t a = rows * 200000 / 420551, v = rows * 100000 / 420551;
  Splits s{{0, a}, {a, a + v}, {a + v, rows}};
  RECUR_CHECK(s.train.size() > 0 && s.val.size() > 0 && s.test.size() > 0, Value, rows,
              " rows are too few for the book's splits (train ", s.train.size(), ", val ",
              s.val.size(), ", test ", s.test.size(), " rows)");
  return s;
}

// ---- normalisation ----------------------------------------------------------------

Normalizer::Normalizer(std::vector<std::string> columns, std::vector<double> mean,
                       std::vector<double> stddev)
    : columns_(std::move(columns)), mean_(std::move(mean)), std_(std::move(stddev)) {
  RECUR_CHECK(columns_.size() == mean_.size() && columns_.size() == std_.size(), Value,
              "normaliser: ", columns_.size(), " columns but ", mean_.size(), " means and ",
              std_.size(), " standard deviations");
  for (std::size_t c = 0; c < columns_.size(); ++c)
    RECUR_CHECK(std::isfinite(mean_[c]) && std::isfinite(std_[c]) && std_[c] > 0, Value,
                "normaliser: column '", columns_[c], "' has mean ", mean_[c], " and std ", std_[c],
                " (need finite values and std > 0)");
}

Normalizer Normalizer::fit(const TimeseriesTable& table, RowRange rows) {
  RECUR_CHECK(rows.begin >= 0 && rows.begin < rows.end && rows.end <= table.rows(), Value,
              "normaliser: rows [", rows.begin, ", ", rows.end, ") are empty or not inside the table's ",
              table.rows(), " rows");
  const std::int64_t nc = table.cols();
  const double n = double(rows.size());
  std::vector<double> mean(std::size_t(nc), 0.0), var(std::size_t(nc), 0.0);
  for (std::int64_t r = rows.begin; r < rows.end; ++r)
    for (std::int64_t c = 0; c < nc; ++c) mean[std::size_t(c)] += table.at(r, c);
  for (double& m : mean) m /= n;
  for (std::int64_t r = rows.begin; r < rows.end; ++r)
    for (std::int64_t c = 0; c < nc; ++c) {
      const double d = table.at(r, c) - mean[std::size_t(c)];
      var[std::size_t(c)] += d * d;
    }
  std::vector<double> sd(static_cast<std::size_t>(nc));
  for (std::int64_t c = 0; c < nc; ++c) {
    sd[std::size_t(c)] = std::sqrt(var[std::size_t(c)] / n);
    RECUR_CHECK(sd[std::size_t(c)] > 0, Value, "normaliser: column '", table.columns[std::size_t(c)],
                "' is constant over rows [", rows.begin, ", ", rows.end,
                ") (std 0): it cannot be normalised");
  }
  return Normalizer(table.columns, std::move(mean), std::move(sd));
}

double Normalizer::mean(int col) const {
  RECUR_CHECK(col >= 0 && std::size_t(col) < mean_.size(), Value, "normaliser: column ", col,
              " out of range (", mean_.size(), " columns)");
  return mean_[std::size_t(col)];
}

double Normalizer::stddev(int col) const {
  RECUR_CHECK(col >= 0 && std::size_t(col) < std_.size(), Value, "normaliser: column ", col,
              " out of range (", std_.size(), " columns)");
  return std_[std::size_t(col)];
}

double Normalizer::normalize(int col, double v) const { return (v - mean(col)) / stddev(col); }
double Normalizer::denormalize(int col, double v) const { return v * stddev(col) + mean(col); }

TimeseriesTable Normalizer::apply(const TimeseriesTable& table) const {
  RECUR_CHECK(table.columns == columns_, Value, "normaliser for columns ", quoted_list(columns_),
              " applied to a table with columns ", quoted_list(table.columns));
  TimeseriesTable out = table;
  const std::size_t nc = columns_.size();
  for (std::size_t i = 0; i < out.values.size(); ++i) {
    const std::size_t c = i % nc;
    out.values[i] = static_cast<float>((double(out.values[i]) - mean_[c]) / std_[c]);
  }
  return out;
}

std::string Normalizer::to_json() const {
  nlohmann::json j;
  j["columns"] = columns_;
  j["mean"] = mean_;
  j["std"] = std_;
  try {
    return j.dump();
  } catch (const nlohmann::json::exception& e) {  // a column name that is not UTF-8
    RECUR_THROW(Value, "the normaliser's column names cannot be written as JSON (", e.what(), ")");
  }
}

Normalizer Normalizer::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    RECUR_THROW(Value, "normaliser: not JSON: ", e.what());
  }
  for (const char* key : {"columns", "mean", "std"})
    RECUR_CHECK(j.is_object() && j.contains(key) && j[key].is_array(), Value,
                "normaliser: JSON needs an array '", key, "'");
  std::vector<std::string> columns;
  std::vector<double> mean, sd;
  try {
    columns = j["columns"].get<std::vector<std::string>>();
    mean = j["mean"].get<std::vector<double>>();
    sd = j["std"].get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    RECUR_THROW(Value, "normaliser: 'columns' must hold strings, 'mean' and 'std' numbers: ",
                e.what());
  }
  return Normalizer(std::move(columns), std::move(mean), std::move(sd));
}

// ---- durations ----------------------------------------------------------------------

std::int64_t parse_duration(const std::string& text) {
  const std::string_view s = trim(text);
  RECUR_CHECK(!s.empty(), Value, "empty duration: expected a number and a unit, e.g. 10d, 24h, "
              "30m, 600s");
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    std::int64_t n = 0;
    const std::size_t digits = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      RECUR_CHECK(n < std::numeric_limits<std::int64_t>::max() / 10 - 10, Value, "duration '",
                  text, "' is too long");
      n = n * 10 + (s[i++] - '0');
    }
    RECUR_CHECK(i > digits && i < s.size(), Value, "cannot parse '", text,
                "' as a duration: expected whole numbers each followed by a unit d, h, m or s "
                "(e.g. 10d, 24h, 1h30m, 600s)");
    std::int64_t unit = 0;
    switch (s[i]) {
      case 'd': unit = 86400; break;
      case 'h': unit = 3600; break;
      case 'm': unit = 60; break;
      case 's': unit = 1; break;
      default:
        RECUR_THROW(Value, "cannot parse '", text, "' as a duration: unknown unit '", s[i],
                    "' (use d, h, m or s)");
    }
    ++i;
    RECUR_CHECK(n <= (std::numeric_limits<std::int64_t>::max() - total) / unit, Value,
                "duration '", text, "' is too long");
    total += n * unit;
  }
  return total;
}

std::int64_t duration_to_rows(std::int64_t seconds, std::int64_t interval, const std::string& what) {
  RECUR_CHECK(interval > 0, Value, what, ": the data's sampling interval is unknown (",
              interval, " s); a duration cannot be turned into rows");
  RECUR_CHECK(seconds >= 0, Value, what, " must not be negative, got ", seconds, " s");
  RECUR_CHECK(seconds % interval == 0, Value, what, " ", format_duration(seconds), " (", seconds,
              " s) is not a whole multiple of the data's sampling interval ",
              format_duration(interval), " (", interval, " s)");
  return seconds / interval;
}

std::string format_duration(std::int64_t seconds) {
  if (seconds == 0) return "0s";
  std::string s = seconds < 0 ? "-" : "";
  std::int64_t v = seconds < 0 ? -seconds : seconds;
  const std::pair<std::int64_t, char> units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  for (const auto& [size, name] : units)
    if (v >= size) {
      s += std::to_string(v / size) + name;
      v %= size;
    }
  return s;
}

// ---- windows -------------------------------------------------------------------------

Tensor WindowBatch::x_tensor(Device device) const {
  return Tensor::from_vector(x, {size, samples, features}, device);
}

Tensor WindowBatch::y_tensor(Device device) const {
  return Tensor::from_vector(y, {size, horizons}, device);
}

WindowGenerator::WindowGenerator(const TimeseriesTable& table, int target_column, WindowSpec spec,
                                 RowRange split, std::int64_t batch_size, bool shuffle,
                                 std::uint64_t seed)
    : table_(table), target_(target_column), spec_(spec), split_(split), batch_(batch_size),
      windows_(check_windows(table, target_column, spec, split)), shuffle_(shuffle), seed_(seed) {
  RECUR_CHECK(batch_size >= 1, Value, "batch size must be at least 1, got ", batch_size);
}

std::int64_t WindowGenerator::now_row(std::int64_t w) const {
  RECUR_CHECK(w >= 0 && w < windows_, Value, "window ", w, " out of range: the split has ",
              windows_, " windows");
  return split_.begin + spec_.lookback - 1 + w;
}

std::vector<std::int64_t> WindowGenerator::epoch_order(std::int64_t epoch) const {
  RECUR_CHECK(epoch >= 0, Value, "epoch must not be negative, got ", epoch);
  std::vector<std::int64_t> order(static_cast<std::size_t>(windows_));
  std::iota(order.begin(), order.end(), std::int64_t(0));
  if (!shuffle_) return order;
  std::mt19937_64 g(mix(seed_ + 0x9E3779B97F4A7C15ull * (std::uint64_t(epoch) + 1)));
  for (std::size_t i = order.size() - 1; i > 0; --i)
    std::swap(order[i], order[bounded(g, i + 1)]);
  return order;
}

WindowBatch WindowGenerator::batch(std::int64_t epoch, std::int64_t k) const {
  RECUR_CHECK(k >= 0 && k < steps_per_epoch(), Value, "batch ", k, " out of range: an epoch has ",
              steps_per_epoch(), " batches");
  if (epoch != cached_epoch_) {
    cached_order_ = epoch_order(epoch);
    cached_epoch_ = epoch;
  }
  WindowBatch b;
  b.size = std::min(batch_, windows_ - k * batch_);
  b.samples = spec_.samples();
  b.features = table_.cols();
  b.horizons = spec_.horizons;
  const std::size_t F = std::size_t(b.features);
  b.x.resize(std::size_t(b.size * b.samples) * F);
  b.y.resize(std::size_t(b.size * b.horizons));
  b.now.resize(std::size_t(b.size));
  float* x = b.x.data();
  for (std::int64_t i = 0; i < b.size; ++i) {
    const std::int64_t t = now_row(cached_order_[std::size_t(k * batch_ + i)]);
    b.now[std::size_t(i)] = t;
    for (std::int64_t h = 0; h < b.horizons; ++h)
      b.y[std::size_t(i * b.horizons + h)] = table_.at(t + spec_.horizon_rows(h), target_);
    for (std::int64_t j = 0; j < b.samples; ++j, x += F) {
      const std::int64_t row = t - spec_.lookback + spec_.step * (j + 1);
      const float* src = table_.values.data() + std::size_t(row) * F;
      std::copy(src, src + F, x);
    }
  }
  return b;
}

// ---- derived features --------------------------------------------------------------------

namespace {
constexpr const char* kSpeed = "wv (m/s)";
constexpr const char* kMaxSpeed = "max. wv (m/s)";
constexpr const char* kDirection = "wd (deg)";
constexpr double kTwoPi = 6.283185307179586476925286766559;
}  // namespace

std::vector<std::string> FeatureSet::names() const {
  std::vector<std::string> n;
  if (time) n.emplace_back("time");
  if (wind) n.emplace_back("wind");
  return n;
}

FeatureSet parse_features(const std::string& text) {
  FeatureSet f;
  const std::string_view all = trim(text);
  if (all == "none") return f;
  if (all == "all") {
    f.time = true;
    f.wind_if_available = true;
    return f;
  }
  std::vector<std::string_view> words;
  split_fields(all, words);
  for (std::string_view w : words) {
    w = trim(w);
    if (w == "time") f.time = true;
    else if (w == "wind") f.wind = true;
    else
      RECUR_THROW(Value, "--features '", text, "': unknown feature '", w,
                  "'; give none, all, or a comma list of time (day and year as sine/cosine pairs) and wind "
                  "(the wind as a vector; needs the wind direction 'wd (deg)')");
  }
  return f;
}

FeatureSet features_from_names(const std::vector<std::string>& names) {
  FeatureSet f;
  for (const std::string& n : names) {
    if (n == "time") f.time = true;
    else if (n == "wind") f.wind = true;
    else RECUR_THROW(Value, "unknown feature '", n, "' (known: time, wind)");
  }
  return f;
}

FeatureSet resolve_features(FeatureSet f, const std::vector<std::string>& columns) {
  if (f.wind_if_available) {
    auto has = [&](const char* c) { return std::find(columns.begin(), columns.end(), c) != columns.end(); };
    f.wind = f.wind || (has(kSpeed) && has(kDirection));
    f.wind_if_available = false;
  }
  return f;
}

std::vector<std::string> feature_inputs(const FeatureSet& f) {
  if (f.wind) return {kSpeed, kDirection};
  return {};
}

double day_fraction(std::int64_t timestamp) {
  const std::int64_t days = floor_div(timestamp, 86400);
  return double(timestamp - days * 86400) / 86400.0;
}

double year_fraction(std::int64_t timestamp) {
  const std::int64_t days = floor_div(timestamp, 86400);
  std::int64_t y = 1970 + floor_div(days, 366);
  while (days_from_civil(y + 1, 1, 1) <= days) ++y;
  const std::int64_t start = days_from_civil(y, 1, 1) * 86400;
  const std::int64_t length = (is_leap(y) ? 366 : 365) * std::int64_t(86400);
  return double(timestamp - start) / double(length);
}

WindVector wind_vector(double speed, double direction_degrees) {
  if (!(speed > 0)) return {};  // calm, the -9999 sentinel, any negative speed, NaN
  if (!(direction_degrees >= 0 && direction_degrees <= 360)) return {};  // -9999, NaN, out of range
  const double r = direction_degrees * kTwoPi / 360.0;
  return {speed * std::cos(r), speed * std::sin(r)};
}

TimeseriesTable add_features(const TimeseriesTable& table, const FeatureSet& f) {
  RECUR_CHECK(!f.wind_if_available, Value, "add_features: resolve 'all' first (resolve_features)");
  const auto find = [&](const char* name) {
    const auto it = std::find(table.columns.begin(), table.columns.end(), name);
    return it == table.columns.end() ? -1 : int(it - table.columns.begin());
  };
  const int speed = find(kSpeed), direction = find(kDirection), max_speed = find(kMaxSpeed);
  if (f.wind) {
    std::string missing;
    if (speed < 0) missing += std::string("'") + kSpeed + "'";
    if (direction < 0) missing += (missing.empty() ? "'" : " and '") + std::string(kDirection) + "'";
    RECUR_CHECK(missing.empty(), Value, table.report.source.empty() ? std::string("the data") : table.report.source,
                ": the wind feature needs the wind speed '", kSpeed, "' and direction '", kDirection, "'; missing: ",
                missing, " (the columns are ", quoted_list(table.columns),
                "); the bundled hourly file has no wind direction: use the official 14-column file, or leave "
                "wind out of --features");
  }
  // The output columns: source column index, or a negative code for a computed one.
  enum : int { kWx = -1, kWy = -2, kMaxWx = -3, kMaxWy = -4, kDaySin = -5, kDayCos = -6, kYearSin = -7, kYearCos = -8 };
  std::vector<std::pair<std::string, int>> out;
  for (int c = 0; c < int(table.cols()); ++c) {
    if (f.wind && c == direction) continue;
    if (f.wind && c == speed) {
      out.emplace_back("Wx (m/s)", kWx);
      out.emplace_back("Wy (m/s)", kWy);
    } else if (f.wind && c == max_speed) {
      out.emplace_back("max. Wx (m/s)", kMaxWx);
      out.emplace_back("max. Wy (m/s)", kMaxWy);
    } else {
      out.emplace_back(table.columns[std::size_t(c)], c);
    }
  }
  if (f.time)
    for (const auto& [name, code] : std::initializer_list<std::pair<const char*, int>>{
             {"day sin", kDaySin}, {"day cos", kDayCos}, {"year sin", kYearSin}, {"year cos", kYearCos}})
      out.emplace_back(name, code);
  for (const auto& [name, code] : out)
    if (code < 0)
      RECUR_CHECK(find(name.c_str()) < 0, Value, "the feature column '", name, "' is already a column of ",
                  table.report.source.empty() ? std::string("the data") : table.report.source);

  TimeseriesTable t;
  t.timestamps = table.timestamps;
  t.report = table.report;
  for (const auto& [name, code] : out) t.columns.push_back(name);
  const std::size_t nc = out.size();
  t.values.resize(std::size_t(table.rows()) * nc);
  for (std::int64_t r = 0; r < table.rows(); ++r) {
    const std::int64_t when = table.timestamps[std::size_t(r)];
    WindVector w, wmax;
    if (f.wind) {
      w = wind_vector(table.at(r, speed), table.at(r, direction));
      if (max_speed >= 0) wmax = wind_vector(table.at(r, max_speed), table.at(r, direction));
    }
    const double day = kTwoPi * (f.time ? day_fraction(when) : 0), year = kTwoPi * (f.time ? year_fraction(when) : 0);
    float* row = t.values.data() + std::size_t(r) * nc;
    for (std::size_t k = 0; k < nc; ++k) {
      const int code = out[k].second;
      double v = 0;
      switch (code) {
        case kWx: v = w.x; break;
        case kWy: v = w.y; break;
        case kMaxWx: v = wmax.x; break;
        case kMaxWy: v = wmax.y; break;
        case kDaySin: v = std::sin(day); break;
        case kDayCos: v = std::cos(day); break;
        case kYearSin: v = std::sin(year); break;
        case kYearCos: v = std::cos(year); break;
        default: v = table.at(r, code);
      }
      row[k] = float(v);
    }
  }
  return t;
}

// ---- the naive baseline ------------------------------------------------------------------

BaselineResult naive_baseline(const TimeseriesTable& normalized, const Normalizer& norm,
                              int target_column, const WindowSpec& spec, RowRange split) {
  RECUR_CHECK(norm.columns() == normalized.columns, Value, "naive baseline: the normaliser's columns ",
              quoted_list(norm.columns()), " are not the table's ", quoted_list(normalized.columns));
  BaselineResult r;
  r.windows = check_windows(normalized, target_column, spec, split);
  double sum = 0;
  for (std::int64_t t = split.begin + spec.lookback - 1; t < split.end - spec.delay; ++t)
    sum += std::fabs(double(normalized.at(t + spec.delay, target_column)) -
                     double(normalized.at(t, target_column)));
  r.mae = sum / double(r.windows);
  r.mae_units = r.mae * norm.stddev(target_column);
  return r;
}

}  // namespace recur::timeseries

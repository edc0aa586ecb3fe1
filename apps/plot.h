// Line plots for the command line's reports: PNG through gnuplot when it is
// installed, else a self-contained SVG (no dependency).
#pragma once

#include <string>
#include <vector>

namespace recur::app {

struct Series {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
};

struct Plot {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
};

// Writes `stem`.png with gnuplot when `gnuplot` runs, else `stem`.svg; returns
// the path written. Throws recur::IOError naming the path when it cannot write.
std::string write_plot(const Plot& plot, const std::string& stem);
// The SVG alone (what write_plot falls back to).
std::string plot_svg(const Plot& plot);

}  // namespace recur::app

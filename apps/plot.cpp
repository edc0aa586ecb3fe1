// Line plots: gnuplot PNG or a hand-written SVG (plot.h).
#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "recur/common/error.h"

namespace recur::app {

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

// A "nice" tick step for the range: 1, 2 or 5 times a power of ten.
double tick_step(double range, int target) {
  const double raw = range / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

std::string fmt(double v) {
  std::ostringstream s;
  s << std::setprecision(4) << v;
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  RECUR_CHECK(f.good(), IO, "cannot write '", path, "'");
  f << text;
  f.flush();
  RECUR_CHECK(f.good(), IO, "writing '", path, "' failed");
}

bool have_gnuplot() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

}  // namespace

std::string plot_svg(const Plot& p) {
  const double W = 900, H = 480, L = 70, R = 20, T = 40, B = 60;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series& s : p.series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1);
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << escape(p.title) << "</text>\n";
  // Axes, ticks and grid.
  const double xs = tick_step(x1 - x0, 8), ys = tick_step(y1 - y0, 6);
  for (double v = std::ceil(x0 / xs) * xs; v <= x1 + 1e-9 * xs; v += xs)
    s << "<line x1=\"" << X(v) << "\" y1=\"" << T << "\" x2=\"" << X(v) << "\" y2=\"" << H - B
      << "\" stroke=\"#eee\"/><text x=\"" << X(v) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">"
      << fmt(v) << "</text>\n";
  for (double v = std::ceil(y0 / ys) * ys; v <= y1 + 1e-9 * ys; v += ys)
    s << "<line x1=\"" << L << "\" y1=\"" << Y(v) << "\" x2=\"" << W - R << "\" y2=\"" << Y(v)
      << "\" stroke=\"#eee\"/><text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">"
      << fmt(v) << "</text>\n";
  s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B
    << "\" fill=\"none\" stroke=\"#333\"/>\n";
  s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 18 << "\" text-anchor=\"middle\">" << escape(p.xlabel)
    << "</text>\n<text transform=\"translate(18," << (T + H - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(p.ylabel) << "</text>\n";
  for (std::size_t k = 0; k < p.series.size(); ++k) {
    const Series& se = p.series[k];
    const char* color = kColors[k % (sizeof(kColors) / sizeof(kColors[0]))];
    s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\""
      << (se.dashed ? " stroke-dasharray=\"6,4\"" : "") << " points=\"";
    for (std::size_t i = 0; i < se.x.size() && i < se.y.size(); ++i)
      if (std::isfinite(se.x[i]) && std::isfinite(se.y[i])) s << X(se.x[i]) << "," << Y(se.y[i]) << " ";
    s << "\"/>\n";
    const double ly = T + 16 + 16 * double(k);
    s << "<line x1=\"" << W - R - 190 << "\" y1=\"" << ly - 4 << "\" x2=\"" << W - R - 165 << "\" y2=\"" << ly - 4
      << "\" stroke=\"" << color << "\" stroke-width=\"2\"" << (se.dashed ? " stroke-dasharray=\"6,4\"" : "")
      << "/><text x=\"" << W - R - 160 << "\" y=\"" << ly << "\">" << escape(se.name) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string write_plot(const Plot& p, const std::string& stem) {
  if (have_gnuplot()) {
    const std::string data = stem + ".dat", script = stem + ".gp", png = stem + ".png";
    std::ostringstream d, g;
    d << std::setprecision(9);
    for (const Series& s : p.series) {
      for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) d << s.x[i] << " " << s.y[i] << "\n";
      d << "\n\n";
    }
    g << "set terminal pngcairo size 900,480\nset output '" << png << "'\nset title '" << p.title
      << "'\nset xlabel '" << p.xlabel << "'\nset ylabel '" << p.ylabel << "'\nset grid\nplot ";
    for (std::size_t k = 0; k < p.series.size(); ++k)
      g << (k ? ", " : "") << "'" << data << "' index " << k << " with lines lw 1.5"
        << (p.series[k].dashed ? " dt 2" : "") << " title '" << p.series[k].name << "'";
    g << "\n";
    write_text(data, d.str());
    write_text(script, g.str());
    const bool ok = std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) == 0;
    std::remove(data.c_str());
    std::remove(script.c_str());
    if (ok) return png;
  }
  const std::string svg = stem + ".svg";
  write_text(svg, plot_svg(p));
  return svg;
}

}  // namespace recur::app

#pragma once
// What the report's chart types share: the series colours and the value axis (nice ticks, short
// tick labels). Internal to src/report.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

namespace longattn::report::detail {

inline constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                           "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                           "#7f7f7f", "#bcbd22"};

inline const char* series_color(std::size_t n) { return kPalette[n % std::size(kPalette)]; }

// A "nice" step (1, 2, 2.5 or 5 times a power of ten) for about `count` ticks over [0, max].
inline double nice_step(double max, int count) {
  const double raw = max / count;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// A value axis from 0 to the first nice tick at or above the data's maximum.
struct ValueAxis {
  double max = 1;
  double step = 1;

  explicit ValueAxis(double data_max) {
    if (!(data_max > 0)) data_max = 1;
    step = nice_step(data_max, 5);
    max = std::ceil(data_max / step) * step;
  }
};

inline std::string fmt_value(double v) {
  if (v == 0) return "0";
  if (std::abs(v) >= 100) return fmt::format("{:.0f}", v);
  if (std::abs(v) >= 1) return fmt::format("{:.3g}", v);
  return fmt::format("{:.2g}", v);
}

// A complete SVG document as an inline <svg class="chart"> element (no XML declaration), the
// mark by which pages and tests find charts.
inline std::string inline_chart(std::string doc) {
  doc = doc.substr(std::min(doc.size(), doc.find("<svg")));
  doc.insert(4, R"( class="chart")");
  return doc;
}

}  // namespace longattn::report::detail

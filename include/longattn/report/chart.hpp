#pragma once
// Line charts as self-contained SVG: the report's only chart type (TF/s against sequence length,
// memory against sequence length, TF/s against keep ratio, weak scaling). Every data point is an
// element with a data-point attribute and a tooltip, so a browser test can count them.
#include <string>
#include <vector>

namespace longattn::report {

struct Series {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y), any order; sorted when drawn
  bool dashed = false;  // a reference (a model, a single-GPU kernel) beside measured series
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log2_x = false;            // sequence lengths and GPU counts
  std::vector<Series> series;

  bool empty() const;
  // An <svg class="chart"> element, width x height pixels, legend below the plot.
  std::string svg(int width = 560, int height = 340) const;
};

// 1536 -> "1536", 16384 -> "16K", 1048576 -> "1M" (used for axis ticks).
std::string short_count(double n);

}  // namespace longattn::report

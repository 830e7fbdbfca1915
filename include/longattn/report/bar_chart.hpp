#pragma once
// Grouped bar charts as self-contained SVG: one group of bars per category (a mask), one bar per
// series (a backend) in every group, e.g. TF/s per mask at one sequence length. Every bar is an
// element with a data-point attribute and a tooltip, like the line charts' points.
#include <optional>
#include <string>
#include <vector>

namespace longattn::report {

struct BarChart {
  std::string title;
  std::string y_label;
  std::vector<std::string> categories;  // x axis, in this order
  struct Series {
    std::string label;
    std::vector<std::optional<double>> values;  // one per category; nullopt: not measured
  };
  std::vector<Series> series;

  bool empty() const;
  // An <svg class="chart"> element, width x height pixels, category labels slanted under the
  // bars, legend below them.
  std::string svg(int width = 760, int height = 360) const;
};

}  // namespace longattn::report

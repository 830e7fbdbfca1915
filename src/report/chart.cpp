#include "longattn/report/chart.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "chart_axes.hpp"
#include "longattn/report/svg.hpp"

namespace longattn::report {

using detail::fmt_value;
using detail::series_color;

std::string short_count(double n) {
  const auto v = static_cast<long long>(n);
  if (v >= (1 << 20) && v % (1 << 20) == 0) return fmt::format("{}M", v >> 20);
  if (v >= 1024 && v % 1024 == 0) return fmt::format("{}K", v >> 10);
  if (double(v) == n) return fmt::format("{}", v);
  return fmt::format("{:g}", n);
}

bool LineChart::empty() const {
  return std::all_of(series.begin(), series.end(), [](const Series& s) { return s.points.empty(); });
}

std::string LineChart::svg(int width, int height) const {
  const int legend_rows = int(series.size() + 1) / 2;
  const double left = 64, right = 16, top = 30, plot_h = height - 70.0;
  const double total_h = top + plot_h + 44 + 16.0 * legend_rows;
  const double plot_w = width - left - right;

  std::set<double> xs;
  double y_max = 0;
  for (const Series& s : series)
    for (auto [x, y] : s.points) {
      xs.insert(x);
      if (std::isfinite(y)) y_max = std::max(y_max, y);
    }
  const detail::ValueAxis axis(y_max);
  const double step = axis.step;
  y_max = axis.max;
  const double x_lo = xs.empty() ? 0 : *xs.begin(), x_hi = xs.empty() ? 1 : *xs.rbegin();
  auto tx = [&](double x) {
    const double a = log2_x ? std::log2(x) : x, lo = log2_x ? std::log2(x_lo) : x_lo,
                 hi = log2_x ? std::log2(x_hi) : x_hi;
    return left + (hi > lo ? (a - lo) / (hi - lo) : 0.5) * plot_w;
  };
  auto ty = [&](double y) { return top + plot_h - y / y_max * plot_h; };

  Svg svg(width, total_h);
  svg.title(title);
  svg.text(width / 2.0, 18, title, R"(text-anchor="middle" font-weight="bold" font-size="14")");
  svg.rect(left, top, plot_w, plot_h, "#fafafa", R"(stroke="#ccc")");
  for (double y = 0; y <= y_max + step / 2; y += step) {
    svg.line(left, ty(y), left + plot_w, ty(y), "#e4e4e4");
    svg.text(left - 6, ty(y) + 4, fmt_value(y), R"(text-anchor="end" font-size="11")");
  }
  for (double x : xs) {
    svg.line(tx(x), top + plot_h, tx(x), top + plot_h + 4, "#888");
    svg.text(tx(x), top + plot_h + 16, log2_x ? short_count(x) : fmt_value(x),
             R"(text-anchor="middle" font-size="11")");
  }
  svg.text(left + plot_w / 2, top + plot_h + 32, x_label, R"(text-anchor="middle" font-size="12")");
  svg.text(14, top + plot_h / 2, y_label,
           fmt::format(R"svg(text-anchor="middle" font-size="12" transform="rotate(-90 14 {:g})")svg",
                       top + plot_h / 2));

  for (size_t n = 0; n < series.size(); ++n) {
    const char* color = series_color(n);
    auto pts = series[n].points;
    std::sort(pts.begin(), pts.end());
    std::string path;
    for (auto [x, y] : pts)
      if (std::isfinite(y)) path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", tx(x), ty(y));
    if (!path.empty())
      svg.raw(fmt::format(R"(<path d="{}" fill="none" stroke="{}" stroke-width="2"{}/>)", path,
                          color, series[n].dashed ? R"( stroke-dasharray="6 4")" : ""));
    for (auto [x, y] : pts) {
      if (!std::isfinite(y)) continue;
      // Reference points are hollow, so that a measured point on top of its model shows both.
      svg.raw(fmt::format(R"(<circle data-point="1" cx="{:.1f}" cy="{:.1f}" r="{}" {}><title>{}</title></circle>)",
                          tx(x), ty(y), series[n].dashed ? "5" : "3.5",
                          series[n].dashed ? fmt::format(R"(fill="none" stroke="{}" stroke-width="1.5")", color)
                                           : fmt::format(R"(fill="{}")", color),
                          xml_escape(fmt::format("{}: {} = {}, {} = {}", series[n].label, x_label,
                                                 log2_x ? short_count(x) : fmt_value(x), y_label,
                                                 fmt_value(y)))));
    }
    const double lx = left + (n % 2) * plot_w / 2, ly = top + plot_h + 50 + 16.0 * double(n / 2);
    svg.rect(lx, ly - 9, 12, 10, color);
    svg.text(lx + 16, ly, series[n].label, R"(font-size="11")");
  }
  return detail::inline_chart(svg.str());
}

}  // namespace longattn::report

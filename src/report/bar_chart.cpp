#include "longattn/report/bar_chart.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "chart_axes.hpp"
#include "longattn/report/svg.hpp"

namespace longattn::report {

using detail::fmt_value;
using detail::series_color;

bool BarChart::empty() const {
  return std::none_of(series.begin(), series.end(), [](const Series& s) {
    return std::any_of(s.values.begin(), s.values.end(), [](auto v) { return v.has_value(); });
  });
}

std::string BarChart::svg(int width, int height) const {
  // Category labels are mask names: slanted 35 degrees below the axis, so they need ~90 px.
  const double left = 64, right = 16, top = 30, label_h = 92, plot_h = height - 70.0 - label_h;
  const double plot_w = width - left - right;
  const int legend_rows = int(series.size() + 2) / 3;
  const double total_h = top + plot_h + label_h + 12 + 16.0 * legend_rows;

  double data_max = 0;
  for (const Series& s : series)
    for (auto v : s.values)
      if (v && std::isfinite(*v)) data_max = std::max(data_max, *v);
  const detail::ValueAxis axis(data_max);
  auto ty = [&](double y) { return top + plot_h - y / axis.max * plot_h; };

  Svg svg(width, total_h);
  svg.title(title);
  svg.text(width / 2.0, 18, title, R"(text-anchor="middle" font-weight="bold" font-size="14")");
  svg.rect(left, top, plot_w, plot_h, "#fafafa", R"(stroke="#ccc")");
  for (double y = 0; y <= axis.max + axis.step / 2; y += axis.step) {
    svg.line(left, ty(y), left + plot_w, ty(y), "#e4e4e4");
    svg.text(left - 6, ty(y) + 4, fmt_value(y), R"(text-anchor="end" font-size="11")");
  }
  svg.text(14, top + plot_h / 2, y_label,
           fmt::format(R"svg(text-anchor="middle" font-size="12" transform="rotate(-90 14 {:g})")svg",
                       top + plot_h / 2));

  // Each category gets an equal slot; its bars fill 80% of it, one per series.
  const double slot = categories.empty() ? plot_w : plot_w / double(categories.size());
  const double bar_w = slot * 0.8 / double(std::max<std::size_t>(series.size(), 1));
  for (std::size_t c = 0; c < categories.size(); ++c) {
    const double x0 = left + slot * double(c) + slot * 0.1;
    for (std::size_t n = 0; n < series.size(); ++n) {
      if (c >= series[n].values.size() || !series[n].values[c] || !std::isfinite(*series[n].values[c]))
        continue;
      const double v = *series[n].values[c];
      svg.raw(fmt::format(
          R"(<rect data-point="1" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"><title>{}</title></rect>)",
          x0 + bar_w * double(n), ty(v), std::max(bar_w - 1, 1.0), top + plot_h - ty(v), series_color(n),
          xml_escape(fmt::format("{} on {}: {} = {}", series[n].label, categories[c], y_label, fmt_value(v)))));
    }
    const double cx = left + slot * (double(c) + 0.5), cy = top + plot_h + 12;
    svg.text(cx, cy, categories[c],
             fmt::format(R"svg(text-anchor="end" font-size="11" transform="rotate(-35 {:.1f} {:.1f})")svg", cx, cy));
  }
  for (std::size_t n = 0; n < series.size(); ++n) {
    const double lx = left + double(n % 3) * plot_w / 3,
                 ly = top + plot_h + label_h + 12 + 16.0 * double(n / 3);
    svg.rect(lx, ly - 9, 12, 10, series_color(n));
    svg.text(lx + 16, ly, series[n].label, R"(font-size="11")");
  }
  return detail::inline_chart(svg.str());
}

}  // namespace longattn::report

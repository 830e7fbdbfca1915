#include "longattn/report/mask_picture.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "longattn/error.hpp"
#include "longattn/report/svg.hpp"

namespace longattn {
namespace {

std::uint8_t mix(int from, int to, double t) { return std::uint8_t(std::lround(from + (to - from) * t)); }

// 0 empty, 1..3 partial by thirds, 4 full.
int shade_level(const DensityGrid& g, Index r, Index c) {
  const Index allowed = g.allowed(r, c);
  if (allowed == 0) return 0;
  if (allowed == g.cell_area(r, c)) return 4;
  const double d = g.density(r, c);
  return d < 1.0 / 3 ? 1 : d < 2.0 / 3 ? 2 : 3;
}

std::string hex(Rgb c) { return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b); }

}  // namespace

Rgb density_color(double density) {
  if (!(density > 0)) return {255, 255, 255};
  const double t = std::min(density, 1.0);
  return {mix(198, 8, t), mix(219, 48, t), mix(239, 107, t)};
}

std::string render_text(const DensityGrid& grid, int chars_per_cell, TextShading shading) {
  if (chars_per_cell < 1) throw InputError("render_text: chars_per_cell must be at least 1");
  static constexpr std::array<std::string_view, 5> kUnicode = {" ", "░", "▒", "▓", "█"};
  static constexpr std::array<std::string_view, 5> kAscii = {" ", ".", ":", "#", "@"};
  const auto& shades = shading == TextShading::unicode ? kUnicode : kAscii;
  const bool uni = shading == TextShading::unicode;
  const std::string_view horizontal = uni ? "─" : "-";
  const Index width = grid.cols() * chars_per_cell;

  auto border = [&](std::string_view left, std::string_view right) {
    std::string line(left);
    for (Index i = 0; i < width; ++i) line += horizontal;
    line += right;
    line += '\n';
    return line;
  };
  std::string out = border(uni ? "┌" : "+", uni ? "┐" : "+");
  for (Index r = 0; r < grid.rows(); ++r) {
    out += uni ? "│" : "|";
    for (Index c = 0; c < grid.cols(); ++c)
      for (int k = 0; k < chars_per_cell; ++k) out += shades[std::size_t(shade_level(grid, r, c))];
    out += uni ? "│\n" : "|\n";
  }
  out += border(uni ? "└" : "+", uni ? "┘" : "+");
  return out;
}

Image mask_image(const DensityGrid& grid, int pixels_per_cell) {
  if (pixels_per_cell < 1) throw InputError("mask_image: pixels_per_cell must be at least 1");
  Image image(int(grid.cols()) * pixels_per_cell, int(grid.rows()) * pixels_per_cell);
  for (Index r = 0; r < grid.rows(); ++r)
    for (Index c = 0; c < grid.cols(); ++c)
      if (grid.allowed(r, c) > 0)
        image.fill_rect(int(c) * pixels_per_cell, int(r) * pixels_per_cell, pixels_per_cell,
                        pixels_per_cell, density_color(grid.density(r, c)));
  return image;
}

std::string mask_svg(const DensityGrid& grid, double size_px, std::string_view caption) {
  if (!(size_px > 0)) throw InputError(fmt::format("SVG size must be positive, got {}", size_px));
  const double top = caption.empty() ? 0 : 24;  // room for the caption line
  const double cell_w = size_px / double(grid.cols());
  const double cell_h = size_px / double(grid.rows());
  Svg svg(size_px, size_px + top);
  if (!caption.empty()) {
    svg.title(caption);
    svg.text(0, 16, caption, R"(font-family="sans-serif" font-size="13" fill="#222")");
  }
  svg.rect(0, top, size_px, size_px, "#ffffff");
  svg.raw(R"(<g shape-rendering="crispEdges">)");
  // One rectangle per run of equally coloured cells in a row keeps files small for large grids.
  for (Index r = 0; r < grid.rows(); ++r) {
    Index c = 0;
    while (c < grid.cols()) {
      const Rgb color = density_color(grid.density(r, c));
      Index end = c + 1;
      while (end < grid.cols() && density_color(grid.density(r, end)) == color) ++end;
      if (grid.allowed(r, c) > 0)
        svg.rect(double(c) * cell_w, top + double(r) * cell_h, double(end - c) * cell_w, cell_h, hex(color));
      c = end;
    }
  }
  svg.raw("</g>");
  svg.rect(0, top, size_px, size_px, "none", R"(stroke="#444" stroke-width="1")");
  return svg.str();
}

}  // namespace longattn

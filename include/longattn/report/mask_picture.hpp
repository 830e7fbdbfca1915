#pragma once
// Pictures of a mask's density grid: terminal text, SVG and raster. Every cell with at least one
// allowed pair is drawn visibly, however sparse, so thin bands survive downsampling.
#include <string>
#include <string_view>

#include "longattn/report/density_grid.hpp"
#include "longattn/report/image.hpp"

namespace longattn {

// White for an empty cell; light to dark blue as the density goes from just above 0 to 1.
Rgb density_color(double density);

enum class TextShading { unicode, ascii };

// One line per cell row inside a frame; each cell is `chars_per_cell` characters wide (2 makes a
// square on most terminals). Shades: empty, < 1/3, < 2/3, < 1, full.
std::string render_text(const DensityGrid& grid, int chars_per_cell = 1,
                        TextShading shading = TextShading::unicode);

// An image with pixels_per_cell x pixels_per_cell pixels per cell.
Image mask_image(const DensityGrid& grid, int pixels_per_cell = 1);

// An SVG of the grid, size_px wide, with `caption` written above it (none when empty).
std::string mask_svg(const DensityGrid& grid, double size_px, std::string_view caption = {});

}  // namespace longattn

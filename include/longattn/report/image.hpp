#pragma once
// An 8-bit RGB raster and the PNG encoding of it (libpng; absent from builds without libpng).
#include <cstdint>
#include <string>
#include <vector>

namespace longattn {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(Rgb, Rgb) = default;
};

class Image {
 public:
  Image(int width, int height, Rgb fill = {255, 255, 255});  // throws InputError if not positive
  int width() const { return width_; }
  int height() const { return height_; }
  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);
  void fill_rect(int x, int y, int w, int h, Rgb c);  // clipped to the image
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }  // rows of r, g, b bytes

 private:
  int width_, height_;
  std::vector<std::uint8_t> pixels_;
};

bool png_supported();  // false when built without libpng
// Throws InputError when PNG support is missing or the file cannot be written.
std::vector<std::uint8_t> encode_png(const Image& image);
void write_png(const std::string& path, const Image& image);

}  // namespace longattn

#include "longattn/report/image.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "longattn/error.hpp"

#ifdef LONGATTN_HAVE_PNG
#include <png.h>
#endif

namespace longattn {

Image::Image(int width, int height, Rgb fill) : width_(width), height_(height) {
  if (width <= 0 || height <= 0)
    throw InputError(fmt::format("image size must be positive, got {} x {}", width, height));
  pixels_.resize(std::size_t(width) * std::size_t(height) * 3);
  fill_rect(0, 0, width, height, fill);
}

Rgb Image::at(int x, int y) const {
  const std::size_t p = (std::size_t(y) * width_ + x) * 3;
  return {pixels_[p], pixels_[p + 1], pixels_[p + 2]};
}

void Image::set(int x, int y, Rgb c) {
  const std::size_t p = (std::size_t(y) * width_ + x) * 3;
  pixels_[p] = c.r;
  pixels_[p + 1] = c.g;
  pixels_[p + 2] = c.b;
}

void Image::fill_rect(int x, int y, int w, int h, Rgb c) {
  const int x0 = std::max(x, 0), x1 = std::min(x + w, width_);
  const int y0 = std::max(y, 0), y1 = std::min(y + h, height_);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) set(xx, yy, c);
}

#ifdef LONGATTN_HAVE_PNG

bool png_supported() { return true; }

namespace {
void append_bytes(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}
void no_flush(png_structp) {}

// libpng reports errors by longjmp to the setjmp point, so this frame holds no C++ object with a
// destructor; the caller turns `false` into an exception.
bool write_image(png_structp png, png_infop info, const Image& image, std::vector<std::uint8_t>* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, append_bytes, no_flush);
  png_set_IHDR(png, info, png_uint_32(image.width()), png_uint_32(image.height()), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const std::size_t stride = std::size_t(image.width()) * 3;
  for (int y = 0; y < image.height(); ++y)
    png_write_row(png, image.pixels().data() + std::size_t(y) * stride);
  png_write_end(png, nullptr);
  return true;
}
}  // namespace

std::vector<std::uint8_t> encode_png(const Image& image) {
  std::vector<std::uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  const bool ok = info && write_image(png, info, image, &out);
  png_destroy_write_struct(&png, &info);
  if (!ok) throw InputError("PNG encoding failed");
  return out;
}

#else

bool png_supported() { return false; }

std::vector<std::uint8_t> encode_png(const Image&) {
  throw InputError("PNG output is not available: longattn was built without libpng (install libpng-dev)");
}

#endif

void write_png(const std::string& path, const Image& image) {
  const std::vector<std::uint8_t> bytes = encode_png(image);
  std::ofstream file(path, std::ios::binary);
  if (!file) throw InputError(fmt::format("cannot open '{}' for writing", path));
  file.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!file) throw InputError(fmt::format("cannot write '{}'", path));
}

}  // namespace longattn

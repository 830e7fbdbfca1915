#include "longattn/peers/npy.hpp"

#include <fmt/format.h>

#include <cstring>
#include <fstream>

#include "longattn/error.hpp"

namespace longattn::peers {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

std::size_t item_size(std::string_view descr) {
  if (descr == "<f4") return 4;
  if (descr == "<f2" || descr == "<u2") return 2;
  return 0;
}

std::string shape_text(const std::vector<Index>& shape) {
  std::string s = "(";
  for (Index d : shape) s += fmt::format("{},", d);
  if (shape.size() > 1) s.pop_back();
  return s + ")";
}

// The value of `key` in the header dict, e.g. "'descr': '<f4'" -> "'<f4'".
std::string_view dict_value(std::string_view header, std::string_view key, const std::string& path) {
  const std::string quoted = fmt::format("'{}':", key);
  const auto at = header.find(quoted);
  if (at == std::string_view::npos)
    throw InputError(fmt::format("'{}': .npy header has no {}", path, quoted));
  std::string_view rest = header.substr(at + quoted.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  std::size_t end = 0;
  if (!rest.empty() && rest.front() == '(') end = rest.find(')') + 1;
  else if (!rest.empty() && rest.front() == '\'') end = rest.find('\'', 1) + 1;
  else end = rest.find_first_of(",}");
  if (end == 0 || end == std::string_view::npos)
    throw InputError(fmt::format("'{}': malformed .npy header value of {}", path, key));
  return rest.substr(0, end);
}

}  // namespace

std::size_t NpyArray::elements() const {
  std::size_t n = 1;
  for (Index d : shape) n *= std::size_t(d);
  return n;
}

std::string_view npy_descr(bench::DType t) {
  switch (t) {
    case bench::DType::fp32: return "<f4";
    case bench::DType::fp16: return "<f2";
    case bench::DType::bf16: return "<u2";
  }
  return "<f4";
}

void write_npy(const std::string& path, std::string_view descr, const std::vector<Index>& shape,
               const void* data, std::size_t bytes) {
  std::size_t n = 1;
  for (Index d : shape) n *= std::size_t(d);
  if (item_size(descr) == 0 || n * item_size(descr) != bytes)
    throw InputError(fmt::format("write_npy '{}': {} bytes do not hold {} elements of {}", path,
                                 bytes, n, descr));
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                   descr, shape_text(shape));
  // Magic (6) + version (2) + length (2) + header + '\n', padded with spaces to 64 bytes.
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError(fmt::format("cannot write '{}'", path));
  out.write(kMagic, 6);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const std::uint16_t len = std::uint16_t(header.size());
  const char len_le[2] = {char(len & 0xff), char(len >> 8)};
  out.write(len_le, 2);
  out.write(header.data(), std::streamsize(header.size()));
  out.write(static_cast<const char*>(data), std::streamsize(bytes));
  if (!out) throw InputError(fmt::format("cannot write '{}' (disk full?)", path));
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot read '{}'", path));
  char pre[10];
  if (!in.read(pre, 10) || std::memcmp(pre, kMagic, 6) != 0)
    throw InputError(fmt::format("'{}' is not a .npy file", path));
  const int major = static_cast<unsigned char>(pre[6]);
  std::size_t header_len = static_cast<unsigned char>(pre[8]) | (std::size_t(static_cast<unsigned char>(pre[9])) << 8);
  if (major >= 2) {  // versions 2 and 3: a 4-byte length
    char more[2];
    if (!in.read(more, 2)) throw InputError(fmt::format("'{}': truncated .npy header", path));
    header_len |= (std::size_t(static_cast<unsigned char>(more[0])) << 16) |
                  (std::size_t(static_cast<unsigned char>(more[1])) << 24);
  } else if (major != 1) {
    throw InputError(fmt::format("'{}': unknown .npy version {}", path, major));
  }
  std::string header(header_len, '\0');
  if (!in.read(header.data(), std::streamsize(header_len)))
    throw InputError(fmt::format("'{}': truncated .npy header", path));

  NpyArray a;
  const std::string_view descr = dict_value(header, "descr", path);
  a.descr = std::string(descr.substr(1, descr.size() - 2));
  if (item_size(a.descr) == 0)
    throw InputError(fmt::format("'{}': element type {} is not one of <f4, <f2, <u2", path, a.descr));
  if (dict_value(header, "fortran_order", path) != "False")
    throw InputError(fmt::format("'{}': Fortran-order arrays are not supported", path));
  std::string_view shape = dict_value(header, "shape", path);
  shape = shape.substr(1, shape.size() - 2);
  while (!shape.empty()) {
    const auto comma = shape.find(',');
    std::string_view item = shape.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == 'L')) item.remove_suffix(1);
    if (!item.empty()) {
      Index v = 0;
      for (char c : item) {
        if (c < '0' || c > '9') throw InputError(fmt::format("'{}': malformed shape", path));
        v = v * 10 + (c - '0');
      }
      a.shape.push_back(v);
    }
    if (comma == std::string_view::npos) break;
    shape.remove_prefix(comma + 1);
  }
  a.data.resize(a.elements() * item_size(a.descr));
  if (!in.read(reinterpret_cast<char*>(a.data.data()), std::streamsize(a.data.size())))
    throw InputError(fmt::format("'{}': {} bytes of data expected for shape {}, the file is shorter",
                                 path, a.data.size(), shape_text(a.shape)));
  return a;
}

void expect_npy(const NpyArray& a, const std::string& path, std::string_view descr,
                const std::vector<Index>& shape) {
  if (a.descr != descr)
    throw InputError(fmt::format("'{}' holds {}, expected {}", path, a.descr, descr));
  if (a.shape != shape)
    throw InputError(fmt::format("'{}' has shape {}, expected {}", path, shape_text(a.shape),
                                 shape_text(shape)));
}

}  // namespace longattn::peers

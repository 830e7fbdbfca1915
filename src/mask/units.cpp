#include "longattn/units.hpp"

#include <fmt/format.h>

#include <charconv>
#include <limits>
#include <optional>

#include "longattn/error.hpp"

namespace longattn {

namespace {
std::optional<Index> parse_integer(std::string_view s) {
  Index v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}
}  // namespace

Index parse_length(std::string_view text, std::string_view what) {
  std::string_view digits = text;
  Index scale = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k': case 'K': scale = Index(1) << 10; break;
      case 'm': case 'M': scale = Index(1) << 20; break;
      case 'g': case 'G': scale = Index(1) << 30; break;
      default: break;
    }
    if (scale != 1) digits.remove_suffix(1);
  }
  const auto value = parse_integer(digits);
  if (!value)
    throw InputError(fmt::format("{}: '{}' is not a length (use e.g. 4096, 16K, 1M)", what, text));
  if (*value > std::numeric_limits<Index>::max() / scale || *value < 0)
    throw InputError(fmt::format("{}: '{}' is out of range", what, text));
  return *value * scale;
}

HeadConfig parse_heads(std::string_view text, int head_dim) {
  const auto colon = text.find(':');
  const auto hq = parse_integer(text.substr(0, colon));
  const auto hkv = colon == std::string_view::npos ? hq : parse_integer(text.substr(colon + 1));
  if (!hq || !hkv || *hq > std::numeric_limits<int>::max() || *hkv > std::numeric_limits<int>::max())
    throw InputError(fmt::format("--heads: '{}' is not Hq:Hkv (e.g. 64:8) or Hq", text));
  HeadConfig h{int(*hq), int(*hkv), head_dim};
  validate(h);
  return h;
}

std::string short_length(Index n) {
  if (n >= (Index(1) << 20) && n % (Index(1) << 20) == 0) return fmt::format("{}M", n >> 20);
  if (n >= 1024 && n % 1024 == 0) return fmt::format("{}K", n >> 10);
  return fmt::format("{}", n);
}

}  // namespace longattn

// relative_l2_error: the error metric every kernel is judged by.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "longattn/error.hpp"
#include "longattn/reference.hpp"

namespace longattn {

double relative_l2_error(std::span<const float> x, std::span<const float> ref, Index width,
                         std::span<const Index> rows) {
  if (width <= 0) throw InputError(fmt::format("row width must be positive, got {}", width));
  if (x.size() != ref.size())
    throw InputError(
        fmt::format("x has {} elements but the reference has {}", x.size(), ref.size()));
  if (x.size() % std::size_t(width) != 0)
    throw InputError(fmt::format("{} elements do not form rows of width {}", x.size(), width));
  const Index n = Index(x.size()) / width;
  double diff = 0, norm = 0;
  bool nan = false;
  auto add_row = [&](Index i) {
    for (std::size_t e = std::size_t(i * width); e < std::size_t((i + 1) * width); ++e) {
      nan |= std::isnan(x[e]);
      const double d = double(x[e]) - double(ref[e]);
      diff += d * d;
      norm += double(ref[e]) * double(ref[e]);
    }
  };
  if (rows.empty()) {
    for (Index i = 0; i < n; ++i) add_row(i);
  } else {
    for (Index i : rows) {
      if (i < 0 || i >= n)
        throw InputError(fmt::format("rows lists row {}, outside [0, {})", i, n));
      add_row(i);
    }
  }
  if (nan) return std::numeric_limits<double>::infinity();
  if (norm == 0) return diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(diff / norm);
}

}  // namespace longattn

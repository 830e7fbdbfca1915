#pragma once
// Closed-form sums used to count allowed pairs without rasterising.
#include <algorithm>

#include "longattn/range.hpp"

namespace longattn::detail {

// sum over r in [0, n) of clamp(a + r, lo, hi), for lo <= hi, in O(1).
inline Index clamped_sum(Index a, Index n, Index lo, Index hi) {
  if (n <= 0) return 0;
  const Index below = std::clamp<Index>(lo - a, 0, n);              // terms clamped to lo
  const Index above = std::clamp<Index>(n - (hi - a + 1), 0, n);    // terms clamped to hi
  const Index first = below, last = n - above;                      // linear terms r in [first, last)
  const Index count = std::max<Index>(last - first, 0);
  const Index linear = count * a + (first + last - 1) * count / 2;  // a + r summed over the range
  return below * lo + above * hi + linear;
}

}  // namespace longattn::detail

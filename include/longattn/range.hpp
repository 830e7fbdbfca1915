#pragma once
// Half-open index ranges: the one vocabulary for rows, keys, tiles and blocks.
#include <algorithm>
#include <cstdint>

namespace longattn {

using Index = std::int64_t;

struct Range {
  Index begin = 0;
  Index end = 0;

  constexpr Index size() const { return end > begin ? end - begin : 0; }
  constexpr bool empty() const { return end <= begin; }
  constexpr bool contains(Index i) const { return begin <= i && i < end; }
  constexpr bool overlaps(Range o) const { return begin < o.end && o.begin < end; }
  constexpr Range intersect(Range o) const {
    return {std::max(begin, o.begin), std::min(end, o.end)};
  }
  constexpr Range shifted(Index by) const { return {begin + by, end + by}; }
  friend constexpr bool operator==(Range, Range) = default;
};

// Integer ceil-division for non-negative operands.
constexpr Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }

}  // namespace longattn

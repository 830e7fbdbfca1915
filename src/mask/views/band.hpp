#pragma once
// Internal to the views: a slice seen as its rectangle cut by the diagonal band
// lower <= j - i <= upper, with a missing bound replaced by one that never cuts, so that a row's
// keys and a column's rows are plain clamps. Both are monotone in the row (column) index.
#include <algorithm>

#include "../clamped_sum.hpp"
#include "longattn/mask.hpp"

namespace longattn::detail {

struct Band {
  Range q, k;
  Index lower, upper;

  explicit Band(const Slice& s)
      : q(s.q),
        k(s.k),
        lower(s.lower_offset().value_or(s.k.begin - s.q.end)),
        upper(s.upper_offset().value_or(s.k.end - s.q.begin)) {}

  Range keys_of_row(Index i) const {
    return {std::max(k.begin, i + lower), std::min(k.end, i + upper + 1)};
  }
  Range rows_of_key(Index j) const {
    return {std::max(q.begin, j - upper), std::min(q.end, j - lower + 1)};
  }
  // Allowed pairs inside rows x keys, in O(1): the pairs with j - i <= upper minus those with
  // j - i < lower, each a clamped arithmetic sum over the rows.
  Index pairs(Range rows, Range keys) const {
    rows = rows.intersect(q);
    keys = keys.intersect(k);
    if (rows.empty() || keys.empty() || upper < lower) return 0;
    auto at_most = [&](Index t) {  // pairs with j - i <= t
      return clamped_sum(rows.begin + t + 1 - keys.begin, rows.size(), 0, keys.size());
    };
    return at_most(upper) - at_most(lower - 1);
  }
  // The rows with at least one allowed key: a range, as a row's key count is concave in the row.
  Range nonempty_rows() const {
    if (upper < lower || k.empty()) return {};
    return q.intersect({k.begin - upper, k.end - lower});
  }
};

}  // namespace longattn::detail

// FlashMask column bounds: the complement of each column's allowed rows (from column_intervals),
// which must be at most two intervals.
#include "longattn/views/flashmask.hpp"

#include <fmt/format.h>

#include "longattn/views/row_intervals.hpp"

namespace longattn {

std::variant<FlashMaskBounds, NotExpressible> flashmask_bounds(const SliceMask& m) {
  const Index sq = m.seqlen_q();
  const RowIntervals columns = column_intervals(m);
  FlashMaskBounds f;
  f.seqlen_q = sq;
  const size_t n = size_t(m.seqlen_k());
  f.uts.assign(n, 0);
  f.ute.assign(n, 0);
  f.lts.assign(n, sq);
  f.lte.assign(n, sq);

  std::vector<Range> masked;  // the gaps around a column's allowed rows
  for (Index j = 0; j < m.seqlen_k(); ++j) {
    masked.clear();
    Index cursor = 0;
    for (Range rows : columns.row(j)) {
      if (cursor < rows.begin) masked.push_back({cursor, rows.begin});
      cursor = rows.end;
    }
    if (cursor < sq) masked.push_back({cursor, sq});
    if (masked.size() > 2)
      return NotExpressible{fmt::format(
          "column {} has {} masked row intervals; FlashMask allows at most two", j, masked.size())};
    // Two intervals: upper then lower. One: upper when it ends at or above the diagonal.
    const bool upper_first = masked.size() == 2 || (masked.size() == 1 && masked[0].end <= j + 1);
    if (upper_first) {
      f.uts[j] = masked[0].begin;
      f.ute[j] = masked[0].end;
    }
    if (masked.size() == 2 || (masked.size() == 1 && !upper_first)) {
      f.lts[j] = masked.back().begin;
      f.lte[j] = masked.back().end;
    }
  }
  return f;
}

}  // namespace longattn

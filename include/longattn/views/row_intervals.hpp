#pragma once
// Per-row key intervals: for every query row, its allowed keys as sorted, disjoint, non-adjacent
// ranges (CSR). O(S + intervals) memory. The view the CPU reference and partial tiles consume.
#include <span>
#include <variant>
#include <vector>

#include "longattn/block_sparse.hpp"
#include "longattn/mask.hpp"

namespace longattn {

struct RowIntervals {
  Index seqlen_k = 0;
  std::vector<Index> offsets;  // seqlen_q + 1
  std::vector<Range> keys;

  Index seqlen_q() const { return offsets.empty() ? 0 : Index(offsets.size()) - 1; }
  std::span<const Range> row(Index i) const {
    return {keys.data() + offsets[i], size_t(offsets[i + 1] - offsets[i])};
  }
  Index row_count(Index i) const;  // allowed keys of row i
  Index max_intervals_per_row() const;
};

RowIntervals row_intervals(const SliceMask& m);
RowIntervals row_intervals(const BlockSparseMask& m, int head);
// One RowIntervals per mask head: the single one of a slice mask, or one per KV-head pattern of
// a block-sparse mask (the argument is a patterns.hpp Mask).
std::vector<RowIntervals> row_intervals_per_head(const std::variant<SliceMask, BlockSparseMask>& m);

// The transpose: for every key column, its allowed query rows (used by backward passes).
RowIntervals column_intervals(const SliceMask& m);

}  // namespace longattn

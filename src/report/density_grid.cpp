#include "longattn/report/density_grid.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "longattn/error.hpp"

namespace longattn {
namespace {

// sum over x in [0, n) of min(x, len), for n >= 0: the pairs of a row prefix below a diagonal.
Index ramp_prefix(Index n, Index len) {
  if (n <= 0) return 0;
  if (n <= len + 1) return n * (n - 1) / 2;
  return len * (len + 1) / 2 + (n - len - 1) * len;
}

// Pairs of q x k with j - i <= t: row i contributes clamp(i + t + 1 - k.begin, 0, |k|).
Index pairs_at_or_below(Range q, Range k, Index t) {
  const Index shift = t + 1 - k.begin;
  return ramp_prefix(q.end + shift, k.size()) - ramp_prefix(q.begin + shift, k.size());
}

}  // namespace

Index band_area(Range q, Range k, std::optional<Index> lower, std::optional<Index> upper) {
  if (q.empty() || k.empty()) return 0;
  if (lower && upper && *lower > *upper) return 0;
  const Index at_or_below_upper = upper ? pairs_at_or_below(q, k, *upper) : q.size() * k.size();
  const Index below_lower = lower ? pairs_at_or_below(q, k, *lower - 1) : 0;
  return at_or_below_upper - below_lower;
}

DensityGrid::DensityGrid(Index seqlen_q, Index seqlen_k, Index rows, Index cols)
    : seqlen_q_(seqlen_q), seqlen_k_(seqlen_k) {
  if (seqlen_q <= 0 || seqlen_k <= 0)
    throw InputError(fmt::format("density grid: empty mask ({} x {})", seqlen_q, seqlen_k));
  if (rows <= 0 || cols <= 0)
    throw InputError(fmt::format("density grid: need at least one cell, got {} x {}", rows, cols));
  rows_ = std::min(rows, seqlen_q);
  cols_ = std::min(cols, seqlen_k);
  allowed_.assign(std::size_t(rows_ * cols_), 0);
}

Index DensityGrid::total() const { return std::accumulate(allowed_.begin(), allowed_.end(), Index(0)); }

void DensityGrid::add_band(Range q, Range k, std::optional<Index> lower, std::optional<Index> upper) {
  q = q.intersect({0, seqlen_q_});
  k = k.intersect({0, seqlen_k_});
  if (q.empty() || k.empty()) return;
  for (Index r = row_of(q.begin), r_last = row_of(q.end - 1); r <= r_last; ++r) {
    const Range rows = q.intersect(row_span(r));
    // Only the key columns the band can reach from these rows: j in [first + lower, last + upper].
    Range keys = k;
    if (lower) keys.begin = std::max(keys.begin, rows.begin + *lower);
    if (upper) keys.end = std::min(keys.end, rows.end - 1 + *upper + 1);
    if (keys.empty()) continue;
    for (Index c = col_of(keys.begin), c_last = col_of(keys.end - 1); c <= c_last; ++c)
      allowed_[r * cols_ + c] += band_area(rows, keys.intersect(col_span(c)), lower, upper);
  }
}

DensityGrid density_grid(const SliceMask& m, Index rows, Index cols) {
  DensityGrid grid(m.seqlen_q(), m.seqlen_k(), rows, cols);
  for (const Slice& s : m.slices()) grid.add_band(s.q, s.k, s.lower_offset(), s.upper_offset());
  return grid;
}

DensityGrid density_grid(const BlockSparseMask& m, int head, Index rows, Index cols) {
  if (head < 0 || head >= m.num_heads())
    throw InputError(fmt::format("head {} out of range: the mask has {} head(s)", head, m.num_heads()));
  DensityGrid grid(m.seqlen(), m.seqlen(), rows, cols);
  const BlockPartition& blocks = m.blocks();
  const BlockLists& kept = m.kept(head);
  const std::optional<Index> upper = m.causal() ? std::optional<Index>(0) : std::nullopt;
  for (Index b = 0; b < kept.num_rows(); ++b)
    for (auto e = kept.offsets[b]; e < kept.offsets[b + 1]; ++e)
      grid.add_band(blocks.block(b), blocks.block(kept.indices[e]), std::nullopt, upper);
  return grid;
}

DensityGrid density_grid(const Mask& m, int head, Index rows, Index cols) {
  if (const auto* s = std::get_if<SliceMask>(&m)) {
    if (head != 0) throw InputError(fmt::format("head {} out of range: a static mask has one head", head));
    return density_grid(*s, rows, cols);
  }
  return density_grid(std::get<BlockSparseMask>(m), head, rows, cols);
}

}  // namespace longattn

#pragma once
// A mask downsampled to a grid of cells, each holding its exact number of allowed pairs. Built from
// the slices (or kept blocks) in O(slices + cells they touch), never by rasterising S^2 pairs, so
// pictures of S = 1M masks cost about as much as pictures of small ones.
#include <optional>
#include <vector>

#include "longattn/patterns.hpp"
#include "longattn/range.hpp"

namespace longattn {

class DensityGrid {
 public:
  // rows x cols cells over seqlen_q x seqlen_k pairs, clamped to at most one pair per cell side.
  // Cell r covers query rows [r * seqlen_q / rows, (r + 1) * seqlen_q / rows).
  DensityGrid(Index seqlen_q, Index seqlen_k, Index rows, Index cols);

  Index seqlen_q() const { return seqlen_q_; }
  Index seqlen_k() const { return seqlen_k_; }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Range row_span(Index r) const { return {r * seqlen_q_ / rows_, (r + 1) * seqlen_q_ / rows_}; }
  Range col_span(Index c) const { return {c * seqlen_k_ / cols_, (c + 1) * seqlen_k_ / cols_}; }
  Index row_of(Index i) const { return ((i + 1) * rows_ - 1) / seqlen_q_; }  // cell holding row i
  Index col_of(Index j) const { return ((j + 1) * cols_ - 1) / seqlen_k_; }

  Index allowed(Index r, Index c) const { return allowed_[r * cols_ + c]; }
  Index cell_area(Index r, Index c) const { return row_span(r).size() * col_span(c).size(); }
  double density(Index r, Index c) const { return double(allowed(r, c)) / double(cell_area(r, c)); }
  Index total() const;  // equals the mask's area

  // Adds { (i, j) : i in q, j in k, lower <= j - i <= upper } to the cells it touches.
  void add_band(Range q, Range k, std::optional<Index> lower, std::optional<Index> upper);

 private:
  Index seqlen_q_, seqlen_k_, rows_, cols_;
  std::vector<Index> allowed_;
};

// Pairs (i, j) with i in q, j in k and lower <= j - i <= upper (an absent bound is unbounded), O(1).
Index band_area(Range q, Range k, std::optional<Index> lower, std::optional<Index> upper);

DensityGrid density_grid(const SliceMask& m, Index rows, Index cols);
// One KV head of a block-sparse mask.
DensityGrid density_grid(const BlockSparseMask& m, int head, Index rows, Index cols);
// Either kind; head must be 0 for a static mask.
DensityGrid density_grid(const Mask& m, int head, Index rows, Index cols);

}  // namespace longattn

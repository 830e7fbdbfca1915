#pragma once
// A set of rows that a device operation is restricted to. The context-parallel algorithms keep
// accumulators over all of a rank's rows, but one step of a document mask touches only some of
// them; the rows are known at plan time, so the operations of a step work on those rows alone.
//
// A RowSet applies to tensors of `extent` rows, [extent][row elements] (the row width is the
// tensor's count / extent). Its ranges are sorted, disjoint and not adjacent. Made once, outside
// timing, by Device::row_set(), which also puts a copy where the device's kernels read it.
#include <span>
#include <vector>

#include "longattn/cp/tensor.hpp"
#include "longattn/range.hpp"

namespace longattn::cp {

class RowSet {
 public:
  RowSet() = default;
  // ranges: normalised here; device_copy: the device's own form of them (or empty).
  RowSet(std::vector<Range> ranges, Index extent, Buffer device_copy = {});

  Index extent() const { return extent_; }
  std::span<const Range> ranges() const { return ranges_; }
  Index rows() const { return rows_; }  // rows in the set
  bool empty() const { return rows_ == 0; }
  const TensorRef& device_copy() const { return device_.ref(); }

  // Elements per row of t; throws std::logic_error when t does not have `extent` rows.
  std::size_t row_elems(TensorRef t) const;

 private:
  std::vector<Range> ranges_;
  Index extent_ = 0;
  Index rows_ = 0;
  Buffer device_;
};

// Host-side set algebra on row ranges; results are sorted, disjoint and not adjacent.
std::vector<Range> normalized_rows(std::vector<Range> ranges);
std::vector<Range> rows_union(std::span<const Range> a, std::span<const Range> b);
std::vector<Range> rows_intersection(std::span<const Range> a, std::span<const Range> b);
std::vector<Range> rows_minus(std::span<const Range> a, std::span<const Range> b);
// [0, extent) without `a`.
std::vector<Range> rows_complement(std::span<const Range> a, Index extent);

}  // namespace longattn::cp

#include "longattn/cp/row_set.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace longattn::cp {

std::vector<Range> normalized_rows(std::vector<Range> ranges) {
  std::erase_if(ranges, [](Range r) { return r.empty(); });
  std::sort(ranges.begin(), ranges.end(), [](Range a, Range b) { return a.begin < b.begin; });
  std::vector<Range> out;
  for (Range r : ranges) {
    if (!out.empty() && r.begin <= out.back().end)
      out.back().end = std::max(out.back().end, r.end);
    else
      out.push_back(r);
  }
  return out;
}

std::vector<Range> rows_union(std::span<const Range> a, std::span<const Range> b) {
  std::vector<Range> all(a.begin(), a.end());
  all.insert(all.end(), b.begin(), b.end());
  return normalized_rows(std::move(all));
}

std::vector<Range> rows_intersection(std::span<const Range> a, std::span<const Range> b) {
  std::vector<Range> out;
  for (Range x : a)
    for (Range y : b)
      if (x.overlaps(y)) out.push_back(x.intersect(y));
  return normalized_rows(std::move(out));
}

std::vector<Range> rows_minus(std::span<const Range> a, std::span<const Range> b) {
  const std::vector<Range> nb = normalized_rows({b.begin(), b.end()});
  std::vector<Range> out;
  for (Range x : normalized_rows({a.begin(), a.end()})) {
    Index at = x.begin;
    for (Range y : nb) {
      if (y.end <= at || !y.overlaps(x)) continue;
      if (y.begin > at) out.push_back({at, y.begin});
      at = std::max(at, y.end);
    }
    if (at < x.end) out.push_back({at, x.end});
  }
  return normalized_rows(std::move(out));
}

std::vector<Range> rows_complement(std::span<const Range> a, Index extent) {
  const Range all{0, extent};
  return rows_minus({&all, 1}, a);
}

RowSet::RowSet(std::vector<Range> ranges, Index extent, Buffer device_copy)
    : ranges_(normalized_rows(std::move(ranges))), extent_(extent), device_(std::move(device_copy)) {
  for (Range r : ranges_) {
    if (r.begin < 0 || r.end > extent)
      throw std::out_of_range(
          fmt::format("row range [{}, {}) outside [0, {})", r.begin, r.end, extent));
    rows_ += r.size();
  }
}

std::size_t RowSet::row_elems(TensorRef t) const {
  if (extent_ <= 0 || t.count % std::size_t(extent_) != 0)
    throw std::logic_error(
        fmt::format("a tensor of {} elements does not have {} rows", t.count, extent_));
  return t.count / std::size_t(extent_);
}

}  // namespace longattn::cp

// Per-row key intervals and their transpose, built from the slices without rasterising: every
// slice contributes one interval to each of its rows (and to each of its columns), arriving in
// order and coalesced with its neighbour when adjacent. O(S + sum of slice extents) time.
#include "longattn/views/row_intervals.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "band.hpp"
#include "longattn/error.hpp"

namespace longattn {

namespace {

using detail::Band;

// CSR over `lines` lines: span(band) lists the lines a band touches, cut(band, line) its interval
// there, order(band) where a band's intervals lie across lines. Two slices meeting one line are
// disjoint along it, so visiting bands by `order` hands every line its intervals sorted, and
// coalescing adjacent ones as they arrive keeps the memory at O(lines + merged intervals).
template <class Span, class Cut, class Order>
RowIntervals build(Index lines, Index extent, const std::vector<Slice>& slices, Span span, Cut cut,
                   Order order) {
  std::vector<Band> bands(slices.begin(), slices.end());
  std::stable_sort(bands.begin(), bands.end(),
                   [&](const Band& a, const Band& b) { return order(a) < order(b); });
  RowIntervals r;
  r.seqlen_k = extent;
  r.offsets.assign(size_t(lines + 1), 0);
  std::vector<Index> last_end(size_t(lines), -1);  // end of each line's latest interval
  for (const Band& b : bands) {
    const Range lines_of_band = span(b);
    for (Index l = lines_of_band.begin; l < lines_of_band.end; ++l)
      if (const Range c = cut(b, l); !c.empty()) {
        r.offsets[l + 1] += c.begin != last_end[l];
        last_end[l] = c.end;
      }
  }
  for (Index l = 0; l < lines; ++l) r.offsets[l + 1] += r.offsets[l];
  r.keys.resize(size_t(r.offsets[lines]));
  std::vector<Index> fill(r.offsets.begin(), r.offsets.end() - 1);
  std::fill(last_end.begin(), last_end.end(), -1);
  for (const Band& b : bands) {
    const Range lines_of_band = span(b);
    for (Index l = lines_of_band.begin; l < lines_of_band.end; ++l)
      if (const Range c = cut(b, l); !c.empty()) {
        if (c.begin == last_end[l])
          r.keys[fill[l] - 1].end = c.end;
        else
          r.keys[fill[l]++] = c;
        last_end[l] = c.end;
      }
  }
  return r;
}

}  // namespace

Index RowIntervals::row_count(Index i) const {
  Index n = 0;
  for (Range k : row(i)) n += k.size();
  return n;
}

Index RowIntervals::max_intervals_per_row() const {
  Index most = 0;
  for (size_t i = 0; i + 1 < offsets.size(); ++i)
    most = std::max(most, offsets[i + 1] - offsets[i]);
  return most;
}

RowIntervals row_intervals(const SliceMask& m) {
  return build(
      m.seqlen_q(), m.seqlen_k(), m.slices(), [](const Band& b) { return b.q; },
      [](const Band& b, Index i) { return b.keys_of_row(i); },
      [](const Band& b) { return b.k.begin; });
}

RowIntervals column_intervals(const SliceMask& m) {
  return build(
      m.seqlen_k(), m.seqlen_q(), m.slices(), [](const Band& b) { return b.k; },
      [](const Band& b, Index j) { return b.rows_of_key(j); },
      [](const Band& b) { return b.q.begin; });
}

std::vector<RowIntervals> row_intervals_per_head(const std::variant<SliceMask, BlockSparseMask>& m) {
  std::vector<RowIntervals> out;
  if (const auto* s = std::get_if<SliceMask>(&m)) {
    out.push_back(row_intervals(*s));
  } else {
    const auto& b = std::get<BlockSparseMask>(m);
    for (int h = 0; h < b.num_heads(); ++h) out.push_back(row_intervals(b, h));
  }
  return out;
}

RowIntervals row_intervals(const BlockSparseMask& m, int head) {
  if (head < 0 || head >= m.num_heads())
    throw InputError(
        fmt::format("row intervals: head {} out of range [0, {})", head, m.num_heads()));
  const BlockPartition& blocks = m.blocks();
  const BlockLists& kept = m.kept(head);
  RowIntervals r;
  r.seqlen_k = m.seqlen();
  r.offsets.assign(size_t(m.seqlen() + 1), 0);
  std::vector<Range> runs;  // kept key blocks of one query block, adjacent ones coalesced
  for (Index qb = 0; qb < kept.num_rows(); ++qb) {
    runs.clear();
    for (Index e = kept.offsets[qb]; e < kept.offsets[qb + 1]; ++e) {
      const Range keys = blocks.block(kept.indices[e]);
      if (!runs.empty() && runs.back().end == keys.begin)
        runs.back().end = keys.end;
      else
        runs.push_back(keys);
    }
    const Range rows = blocks.block(qb);
    for (Index i = rows.begin; i < rows.end; ++i) {
      for (Range run : runs) {
        if (m.causal()) run.end = std::min(run.end, i + 1);
        if (!run.empty()) r.keys.push_back(run);
      }
      r.offsets[i + 1] = Index(r.keys.size());
    }
  }
  return r;
}

}  // namespace longattn

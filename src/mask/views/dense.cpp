// The dense bitmap view: rasterised from the slices (or the kept blocks), one row at a time.
#include "longattn/views/dense.hpp"

#include <fmt/format.h>

#include <bit>

#include "longattn/error.hpp"

namespace longattn {

DenseMask::DenseMask(Index rows, Index cols) : rows_(rows), cols_(cols), words_per_row_(0) {
  if (rows < 0 || cols < 0)
    throw InputError(fmt::format("dense mask: negative shape {} x {}", rows, cols));
  if (cols > 0 && rows > kDenseMaxElements / cols)
    throw InputError(fmt::format("dense mask: {} x {} exceeds the dense limit of {} elements", rows,
                                 cols, kDenseMaxElements));
  words_per_row_ = ceil_div(cols, 64);
  bits_.assign(size_t(rows * words_per_row_), 0);
}

Index DenseMask::popcount() const {
  Index n = 0;
  for (std::uint64_t w : bits_) n += std::popcount(w);
  return n;
}

DenseMask to_dense(const SliceMask& m) {
  DenseMask d(m.seqlen_q(), m.seqlen_k());
  for (const Slice& s : m.slices())
    for (Index i = s.q.begin; i < s.q.end; ++i) {
      const Range keys = s.keys_of_row(i);
      for (Index j = keys.begin; j < keys.end; ++j) d.set(i, j);
    }
  return d;
}

DenseMask to_dense(const BlockSparseMask& m, int head) {
  if (head < 0 || head >= m.num_heads())
    throw InputError(fmt::format("dense mask: head {} out of range [0, {})", head, m.num_heads()));
  DenseMask d(m.seqlen(), m.seqlen());
  const BlockPartition& blocks = m.blocks();
  const BlockLists& kept = m.kept(head);
  for (Index qb = 0; qb < kept.num_rows(); ++qb) {
    const Range rows = blocks.block(qb);
    for (Index e = kept.offsets[qb]; e < kept.offsets[qb + 1]; ++e) {
      const Range keys = blocks.block(kept.indices[e]);
      for (Index i = rows.begin; i < rows.end; ++i) {
        const Index end = m.causal() ? std::min(keys.end, i + 1) : keys.end;
        for (Index j = keys.begin; j < end; ++j) d.set(i, j);
      }
    }
  }
  return d;
}

}  // namespace longattn

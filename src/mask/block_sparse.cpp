#include "longattn/block_sparse.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "clamped_sum.hpp"
#include "longattn/error.hpp"

namespace longattn {

BlockPartition::BlockPartition(std::vector<Index> starts) : starts_(std::move(starts)) {
  if (starts_.size() < 2 || starts_.front() != 0)
    throw InputError("a block partition needs starts 0 = s_0 < ... < s_n = seqlen with n >= 1");
  for (size_t b = 1; b < starts_.size(); ++b)
    if (starts_[b] <= starts_[b - 1])
      throw InputError(fmt::format("block partition starts must increase: s_{} = {} after {}", b,
                                   starts_[b], starts_[b - 1]));
}

BlockPartition BlockPartition::uniform(Index seqlen, Index block) {
  if (seqlen <= 0 || block <= 0)
    throw InputError(fmt::format("uniform blocks need seqlen > 0 and block > 0 (got {}, {})",
                                 seqlen, block));
  std::vector<Index> starts;
  for (Index s = 0; s < seqlen; s += block) starts.push_back(s);
  starts.push_back(seqlen);
  return BlockPartition(std::move(starts));
}

Index BlockPartition::block_of(Index i) const {
  return Index(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
}

BlockSparseMask::BlockSparseMask(BlockPartition blocks, std::vector<BlockLists> kept, bool causal)
    : blocks_(std::move(blocks)), kept_(std::move(kept)), causal_(causal) {
  const Index n = blocks_.num_blocks();
  if (kept_.empty()) throw InputError("a block-sparse mask needs at least one head");
  for (size_t h = 0; h < kept_.size(); ++h) {
    const BlockLists& l = kept_[h];
    if (l.num_rows() != n || l.offsets.front() != 0 || l.offsets.back() != Index(l.indices.size()))
      throw InputError(fmt::format("block-sparse head {}: kept lists must have {} rows", h, n));
    for (Index r = 0; r < n; ++r) {
      if (l.offsets[r + 1] < l.offsets[r])
        throw InputError(fmt::format("block-sparse head {}: offsets decrease at row {}", h, r));
      for (auto e = l.offsets[r]; e < l.offsets[r + 1]; ++e) {
        const auto kb = l.indices[e];
        if (kb < 0 || kb >= n)
          throw InputError(fmt::format("block-sparse head {}: key block {} out of range [0, {})",
                                       h, kb, n));
        if (e > l.offsets[r] && kb <= l.indices[e - 1])
          throw InputError(fmt::format(
              "block-sparse head {}: key blocks of query block {} must be ascending and unique", h,
              r));
      }
    }
  }
}

bool BlockSparseMask::allows(int head, Index i, Index j) const {
  if (causal_ && j > i) return false;
  const BlockLists& l = kept_[head];
  const Index qb = blocks_.block_of(i);
  const auto kb = std::int32_t(blocks_.block_of(j));
  const auto* first = l.indices.data() + l.offsets[qb];
  const auto* last = l.indices.data() + l.offsets[qb + 1];
  return std::binary_search(first, last, kb);
}

namespace {
// Allowed pairs of one kept block: the rectangle, cut by j <= i when causal.
Index block_area(Range q, Range k, bool causal) {
  if (!causal) return q.size() * k.size();
  // row i keeps clamp(i - k.begin + 1, 0, |k|) keys
  return detail::clamped_sum(q.begin - k.begin + 1, q.size(), 0, k.size());
}
}  // namespace

Index BlockSparseMask::area(int head) const {
  const BlockLists& l = kept_[head];
  Index a = 0;
  for (Index qb = 0; qb < l.num_rows(); ++qb)
    for (auto e = l.offsets[qb]; e < l.offsets[qb + 1]; ++e)
      a += block_area(blocks_.block(qb), blocks_.block(l.indices[e]), causal_);
  return a;
}

Index BlockSparseMask::total_area() const {
  Index a = 0;
  for (int h = 0; h < num_heads(); ++h) a += area(h);
  return a;
}

double BlockSparseMask::block_density() const {
  Index kept = 0;
  for (int h = 0; h < num_heads(); ++h) kept += kept_blocks(h);
  const double n = double(blocks_.num_blocks());
  return double(kept) / (num_heads() * n * n);
}

double BlockSparseMask::density() const {
  const double s = double(seqlen());
  return double(total_area()) / (num_heads() * s * s);
}

SliceMask BlockSparseMask::head_mask(int head) const {
  const BlockLists& l = kept_[head];
  std::vector<Slice> slices;
  slices.reserve(l.indices.size());
  for (Index qb = 0; qb < l.num_rows(); ++qb)
    for (auto e = l.offsets[qb]; e < l.offsets[qb + 1]; ++e) {
      const Range q = blocks_.block(qb), k = blocks_.block(l.indices[e]);
      if (causal_)
        append_diagonal_band(slices, q, k, std::nullopt, 0);
      else
        slices.push_back({q, k, SliceType::full});
    }
  return SliceMask(seqlen(), std::move(slices));
}

}  // namespace longattn

#pragma once
// Dynamic block-sparse masks: one block partition of [0, S) shared by queries and keys, and per
// KV head the kept key blocks of each query block (query heads of a GQA group share them).
#include <cstdint>
#include <vector>

#include "longattn/mask.hpp"
#include "longattn/range.hpp"

namespace longattn {

class BlockPartition {
 public:
  BlockPartition() = default;
  // starts: 0 = s_0 < s_1 < ... < s_n = seqlen. Throws InputError otherwise.
  explicit BlockPartition(std::vector<Index> starts);
  static BlockPartition uniform(Index seqlen, Index block);  // last block may be shorter

  Index seqlen() const { return starts_.empty() ? 0 : starts_.back(); }
  Index num_blocks() const { return starts_.empty() ? 0 : Index(starts_.size()) - 1; }
  Range block(Index b) const { return {starts_[b], starts_[b + 1]}; }
  Index block_of(Index i) const;  // binary search
  const std::vector<Index>& starts() const { return starts_; }

 private:
  std::vector<Index> starts_;
};

// Kept blocks in CSR form: row b lists its column blocks, ascending.
struct BlockLists {
  std::vector<std::int64_t> offsets;  // num_rows + 1
  std::vector<std::int32_t> indices;
  Index num_rows() const { return offsets.empty() ? 0 : Index(offsets.size()) - 1; }
  Index count(Index row) const { return offsets[row + 1] - offsets[row]; }
};

class BlockSparseMask {
 public:
  BlockSparseMask() = default;
  // kept[h] are the q->k lists of KV head h. causal additionally requires j <= i.
  // Throws InputError on out-of-range, unsorted or duplicate block indices.
  BlockSparseMask(BlockPartition blocks, std::vector<BlockLists> kept, bool causal);

  Index seqlen() const { return blocks_.seqlen(); }
  const BlockPartition& blocks() const { return blocks_; }
  int num_heads() const { return int(kept_.size()); }
  bool causal() const { return causal_; }
  const BlockLists& kept(int head) const { return kept_[head]; }

  bool allows(int head, Index i, Index j) const;
  Index area(int head) const;       // exact allowed pairs of one head
  Index total_area() const;         // summed over heads
  Index kept_blocks(int head) const { return Index(kept_[head].indices.size()); }
  double block_density() const;     // kept blocks / (heads * blocks^2)
  double density() const;           // total_area / (heads * S^2)

  // One head as a canonical static mask: a slice per kept block, cut by j <= i when causal.
  SliceMask head_mask(int head) const;

 private:
  BlockPartition blocks_;
  std::vector<BlockLists> kept_;
  bool causal_ = false;
};

}  // namespace longattn

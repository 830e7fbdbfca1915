#pragma once
// Block-sparse index lists in both directions: q->k (forward) and k->q (backward) per KV head.
#include <vector>

#include "longattn/block_sparse.hpp"

namespace longattn {

struct BlockIndexLists {
  std::vector<BlockLists> q_to_k;  // per head: query block -> key blocks
  std::vector<BlockLists> k_to_q;  // per head: key block -> query blocks
};

BlockIndexLists block_index_lists(const BlockSparseMask& m);

}  // namespace longattn

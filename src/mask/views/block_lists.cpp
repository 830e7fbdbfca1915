// Block-sparse index lists: the kept q->k lists as they are, and their transpose k->q, built by
// counting and filling in query-block order so every list stays ascending.
#include "longattn/views/block_lists.hpp"

namespace longattn {

namespace {

BlockLists transpose(const BlockLists& rows, Index num_cols) {
  BlockLists t;
  t.offsets.assign(size_t(num_cols + 1), 0);
  for (std::int32_t c : rows.indices) ++t.offsets[size_t(c) + 1];
  for (Index c = 0; c < num_cols; ++c) t.offsets[c + 1] += t.offsets[c];
  t.indices.resize(rows.indices.size());
  std::vector<std::int64_t> fill(t.offsets.begin(), t.offsets.end() - 1);
  for (Index r = 0; r < rows.num_rows(); ++r)
    for (Index e = rows.offsets[r]; e < rows.offsets[r + 1]; ++e)
      t.indices[size_t(fill[rows.indices[e]]++)] = std::int32_t(r);
  return t;
}

}  // namespace

BlockIndexLists block_index_lists(const BlockSparseMask& m) {
  BlockIndexLists lists;
  for (int h = 0; h < m.num_heads(); ++h) {
    lists.q_to_k.push_back(m.kept(h));
    lists.k_to_q.push_back(transpose(m.kept(h), m.blocks().num_blocks()));
  }
  return lists;
}

}  // namespace longattn

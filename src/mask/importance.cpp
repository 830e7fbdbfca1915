// Importance selection: mean-pooled Q and K blocks, their dot products per KV head, top k per
// query block (top_k.hpp, shared with random selection).
#include "longattn/importance.hpp"

#include <fmt/format.h>

#include <vector>

#include "longattn/error.hpp"
#include "top_k.hpp"

namespace longattn {

namespace {

// Mean vectors of one tensor [S][heads][D] per (head group, block): pooled[(g * n + b) * D + d].
// A group is `group` consecutive heads (the query heads of one KV head; 1 for K).
std::vector<double> pool_blocks(std::span<const float> x, const BlockPartition& blocks, int heads,
                                int group, int head_dim) {
  const Index n = blocks.num_blocks();
  const int groups = heads / group;
  std::vector<double> pooled(size_t(groups) * size_t(n) * size_t(head_dim), 0.0);
  for (Index b = 0; b < n; ++b) {
    const Range rows = blocks.block(b);
    const double weight = 1.0 / (double(rows.size()) * group);
    for (int g = 0; g < groups; ++g) {
      double* mean = pooled.data() + (size_t(g) * size_t(n) + size_t(b)) * size_t(head_dim);
      for (Index i = rows.begin; i < rows.end; ++i)
        for (int h = g * group; h < (g + 1) * group; ++h) {
          const float* v = x.data() + (size_t(i) * size_t(heads) + size_t(h)) * size_t(head_dim);
          for (int d = 0; d < head_dim; ++d) mean[d] += v[d];
        }
      for (int d = 0; d < head_dim; ++d) mean[d] *= weight;
    }
  }
  return pooled;
}

}  // namespace

GeneratedMask make_importance_block_mask(const MaskSpec& spec, std::span<const float> q,
                                         std::span<const float> k, const HeadConfig& heads) {
  validate(heads);
  const BlockPartition blocks = block_partition(spec);  // validates spec
  const MaskParams& p = spec.params;
  const Index s = spec.seqlen;
  if (q.size() != size_t(s) * heads.heads_q * heads.head_dim ||
      k.size() != size_t(s) * heads.heads_kv * heads.head_dim)
    throw InputError(fmt::format(
        "importance selection: Q has {} and K {} values; S = {} with heads {}:{} x {} needs {} "
        "and {}",
        q.size(), k.size(), s, heads.heads_q, heads.heads_kv, heads.head_dim,
        size_t(s) * heads.heads_q * heads.head_dim, size_t(s) * heads.heads_kv * heads.head_dim));
  if (p.sparse_heads != 1 && p.sparse_heads != heads.heads_kv)
    throw InputError(fmt::format(
        "importance selection: sparse heads must be 1 (shared) or heads_kv = {} (got {})",
        heads.heads_kv, p.sparse_heads));

  const Index n = blocks.num_blocks();
  const int d_len = heads.head_dim;
  const std::vector<double> q_mean =
      pool_blocks(q, blocks, heads.heads_q, heads.heads_q / heads.heads_kv, d_len);
  const std::vector<double> k_mean = pool_blocks(k, blocks, heads.heads_kv, 1, d_len);
  auto mean_of = [&](const std::vector<double>& pooled, int g, Index b) {
    return pooled.data() + (size_t(g) * size_t(n) + size_t(b)) * size_t(d_len);
  };

  // Pattern h scores with KV heads [h, h + 1) (per head) or all of them (shared).
  const int per_pattern = p.sparse_heads == 1 ? heads.heads_kv : 1;
  std::vector<BlockLists> kept(size_t(p.sparse_heads));
  std::vector<double> score(static_cast<size_t>(n));
  std::vector<std::int32_t> order;
  for (int h = 0; h < p.sparse_heads; ++h) {
    BlockLists& l = kept[size_t(h)];
    l.offsets.push_back(0);
    for (Index qb = 0; qb < n; ++qb) {
      const Index candidates = detail::candidate_blocks(qb, n, p.sparse_causal);
      for (Index kb = 0; kb < candidates; ++kb) {
        double dot = 0;
        for (int g = h * per_pattern; g < (h + 1) * per_pattern; ++g) {
          const double* a = mean_of(q_mean, g, qb);
          const double* b = mean_of(k_mean, g, kb);
          for (int d = 0; d < d_len; ++d) dot += a[d] * b[d];
        }
        score[size_t(kb)] = dot;
      }
      detail::append_top_k(score, candidates, p.keep, order, l.indices);
      l.offsets.push_back(Index(l.indices.size()));
    }
  }
  GeneratedMask g{spec, SliceMask{}, std::nullopt, {}};
  g.spec.params.selection = BlockSelection::importance;
  g.mask = BlockSparseMask(blocks, std::move(kept), p.sparse_causal);
  return g;
}

}  // namespace longattn

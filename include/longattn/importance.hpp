#pragma once
// Importance selection of block-sparse masks (DESIGN.md section 2): instead of seeded random
// scores, each query block keeps the key blocks whose mean-pooled keys best match its
// mean-pooled queries. The mask depends on the inputs, so it is made from them, not from
// (pattern, S, parameters, seed) alone.
#include <span>

#include "longattn/flops.hpp"
#include "longattn/patterns.hpp"

namespace longattn {

// score_g(qb, kb) = qbar_g(qb) . kbar_g(kb), where qbar_g(qb) is the mean of q[i][h][:] over the
// rows i of query block qb and the query heads h of KV head g's group, and kbar_g(kb) the mean of
// k[j][g][:] over the rows j of key block kb. With spec.params.sparse_heads == heads.heads_kv each
// KV head keeps its own top k; with sparse_heads == 1 one pattern is kept for all, scored by the
// sum over KV heads. Per query block: the top k = clamp(round(keep * candidates), 1, candidates)
// of its candidate key blocks (all, or 0..qb when sparse_causal), ties to the smaller block.
//
// q: [S][heads_q][head_dim], k: [S][heads_kv][head_dim] (reference.hpp's layouts), fp32 values
// exactly as the kernels get them. Throws InputError for a static pattern, sizes that do not
// match, or sparse_heads other than 1 or heads_kv. spec.params.selection is not consulted.
GeneratedMask make_importance_block_mask(const MaskSpec& spec, std::span<const float> q,
                                         std::span<const float> k, const HeadConfig& heads);

}  // namespace longattn

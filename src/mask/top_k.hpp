#pragma once
// The kept key blocks of one query block, shared by random and importance selection: the top
// k = clamp(round(keep * candidates), 1, candidates) scores among the first `candidates` key
// blocks, ties to the smaller block, appended in ascending block order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "longattn/range.hpp"

namespace longattn::detail {

// Causal masks only offer the key blocks 0..qb (those holding a key j <= some query i).
inline Index candidate_blocks(Index query_block, Index num_blocks, bool causal) {
  return causal ? query_block + 1 : num_blocks;
}

inline Index kept_count(double keep, Index candidates) {
  return std::clamp<Index>(Index(std::floor(keep * double(candidates) + 0.5)), 1, candidates);
}

// order: scratch of at least `candidates` entries.
inline void append_top_k(std::span<const double> score, Index candidates, double keep,
                         std::vector<std::int32_t>& order, std::vector<std::int32_t>& out) {
  const Index k = kept_count(keep, candidates);
  order.resize(std::max<size_t>(order.size(), size_t(candidates)));
  const auto first = order.begin(), mid = first + k, last = first + candidates;
  std::iota(first, last, 0);
  std::partial_sort(first, mid, last, [&](std::int32_t a, std::int32_t b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  });
  std::sort(first, mid);
  out.insert(out.end(), first, mid);
}

}  // namespace longattn::detail

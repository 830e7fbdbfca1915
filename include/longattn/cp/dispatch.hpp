#pragma once
// Which tokens each rank holds (dispatch) and the mask a rank sees for its tokens against a set of
// key tokens. Every rank holds the same number of tokens, as a list of global ranges ("chunks") in
// its local order; the mask needs no padding and documents are cut anywhere.
//
//   contiguous  rank r holds [r S/N, (r+1) S/N)
//   zigzag      2N equal chunks; rank r holds chunks r and 2N-1-r (balances causal masks)
//   balanced    N x k equal chunks assigned k per rank so that the attention area (allowed pairs
//               of the chunk's query rows) is as even as possible: largest first to the rank with
//               the least area, then pairwise swaps while they lower the largest rank's area
//
// Two-level meshes (USP, LoongTrain): the dispatch balances R ring positions ("units"), and each
// unit's tokens are then split evenly, in order, among its U Ulysses members; a member's chunks
// are its slice of the unit's token list. Rank = unit * U + member.
#include <span>
#include <string_view>
#include <vector>

#include "longattn/mask.hpp"

namespace longattn::cp {

enum class DispatchKind { contiguous, zigzag, balanced };
std::string_view to_string(DispatchKind k);
DispatchKind parse_dispatch(std::string_view name);  // throws InputError listing the names

using Chunks = std::vector<Range>;

Index total_tokens(std::span<const Range> chunks);
// Adjacent ranges merged; empty ones dropped.
Chunks normalized(Chunks chunks);

struct Dispatch {
  DispatchKind kind = DispatchKind::contiguous;
  Index seqlen = 0;
  int units = 1;    // ring positions R
  int members = 1;  // Ulysses degree U
  std::vector<Chunks> rank_chunks;  // units * members entries

  int ranks() const { return units * members; }
  Index tokens_per_rank() const { return seqlen / ranks(); }
  const Chunks& chunks(int rank) const { return rank_chunks.at(rank); }
  // The tokens of unit u: its members' chunks in member order (the sequence a Ulysses group
  // attends after its all-to-all).
  Chunks unit_chunks(int unit) const;
  // Every rank's chunks in rank order (the key sequence of an all-gather over all ranks).
  Chunks all_chunks() const;
};

// Throws InputError when S is not divisible as the kind needs (S by N; by 2R for zigzag; by R*k
// for balanced), naming the numbers. chunks_per_unit (k) is used by `balanced` only.
Dispatch make_dispatch(DispatchKind kind, const SliceMask& mask, int units, int members,
                       int chunks_per_unit = 8);

// The mask of query tokens q_chunks against key tokens k_chunks, in local coordinates (row i is the
// i-th token of q_chunks' concatenation, column j likewise).
SliceMask local_mask(const SliceMask& mask, std::span<const Range> q_chunks,
                     std::span<const Range> k_chunks);

// Area of the query rows in `chunks` against all keys.
Index rows_area(const SliceMask& mask, std::span<const Range> chunks);

// The rows of a rank's chunks gathered from a global [S][width] array, and put back.
std::vector<float> gather_rows(std::span<const Range> chunks, std::span<const float> global,
                               std::size_t width);
void scatter_rows(std::span<const Range> chunks, std::span<const float> local,
                  std::span<float> global, std::size_t width);

}  // namespace longattn::cp

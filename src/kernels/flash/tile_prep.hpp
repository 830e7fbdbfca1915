#pragma once
// Pieces every MaskTiles producer shares (prepare_mask for static masks, mask_prep.cpp;
// prepare_block_sparse_mask, block_sparse_prep.cpp): argument checks, outer tiles cut at segment
// boundaries, bitmask rows, and the work items. Host only, no CUDA.
#include <cstdint>
#include <limits>
#include <vector>

#include "longattn/kernels/flash.hpp"

namespace longattn::flash {

// Positions, runs and partial tiles must stay well inside int32 (the device records).
inline constexpr Index kMaxPosition = std::numeric_limits<std::int32_t>::max() / 2;

// Throw InputError for a tile shape whose key side is not a positive multiple of 32, bad
// options, or sequence lengths too large for 32-bit positions.
void check_prepare_args(TileShape shape, const PrepareOptions& opt);
void check_positions(Index seqlen_q, Index seqlen_k);

// Sets bits [begin, end) of a row of words.
void set_bits(std::uint32_t* row, Index begin, Index end);

// Outer tiles of at most `tile` positions over [0, extent) starting at the given boundaries; a
// tile holding fewer than tile / 2 positions when the next segment begins runs on into it.
std::vector<TileSpan> cut_outer(std::vector<Index> bounds, Index extent, Index tile);

// Given out.outer, out.offsets, out.runs (and out.head_outer for per-KV-head masks) and the
// chunk count of every outer tile: the work items, one per outer tile or, when a tile outweighs
// a fair share of a CTA's work, its passes and then its chunks split across several (runs are
// cut at chunk boundaries then). Items sorted heaviest first; out.split set when any tile split.
void add_work_items(MaskTiles& out, const std::vector<Index>& chunks_of, const PrepareOptions& opt);

}  // namespace longattn::flash

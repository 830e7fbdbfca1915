#pragma once
// Tile maps: for a tile shape (Mq, Nk), per query tile the key tiles that are full (every pair
// allowed) or partial, as runs of consecutive key tiles; empty tiles are absent. Kernels visit
// exactly these tiles and apply mask arithmetic on partial ones only.
#include <cstdint>
#include <vector>

#include "longattn/mask.hpp"

namespace longattn {

struct TileShape {
  Index rows = 128;  // Mq
  Index cols = 128;  // Nk
};

enum class TileKind : std::uint8_t { full, partial };

struct TileRun {
  Range tiles;  // key tile indices
  TileKind kind;
  friend bool operator==(const TileRun&, const TileRun&) = default;
};

struct TileMap {
  TileShape shape;
  Index seqlen_q = 0;
  Index seqlen_k = 0;
  std::vector<Index> offsets;  // num_q_tiles + 1, into runs
  std::vector<TileRun> runs;   // ascending, adjacent runs differ in kind or are not contiguous

  Index num_q_tiles() const { return offsets.empty() ? 0 : Index(offsets.size()) - 1; }
  Index num_k_tiles() const { return ceil_div(seqlen_k, shape.cols); }
  Range q_tile(Index t) const;  // query rows of tile t (the last may be short)
  Range k_tile(Index t) const;
  Index full_tiles(Index q_tile) const;
  Index partial_tiles(Index q_tile) const;
  Index total_full() const;
  Index total_partial() const;
  // Pairs the kernel computes: the clipped area of every listed tile.
  Index issued_area() const;
};

TileMap tile_map(const SliceMask& m, TileShape shape);

}  // namespace longattn

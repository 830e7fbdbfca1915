// Tile maps, classified exactly without visiting empty tiles or rasterising.
//
// For one query tile, every slice that meets it contributes its allowed-pair count to each key
// tile as a few pieces, constant per tile over a run of tiles: an interior run, where every row
// of the slice inside the query tile allows every key of the tile, and a handful of boundary
// tiles near the slice's two diagonal edges, counted in closed form. As slices are disjoint, the
// pieces' sum is the tile's allowed-pair count: equal to the clipped tile area means full, above
// zero partial. A sweep over the pieces' end points gives the runs directly, so the cost per
// query tile is O(slices meeting it x (1 + Mq / Nk)) and the memory O(slices + runs), whatever
// the number of full tiles.
#include "longattn/views/tile_map.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "band.hpp"
#include "longattn/error.hpp"

namespace longattn {

namespace {

using detail::Band;

// Allowed pairs per key tile, the same for every tile of `tiles`.
struct Piece {
  Range tiles;
  Index per_tile;
};

struct Event {
  Index tile;
  Index delta;
};

class QueryTileSweep {
 public:
  QueryTileSweep(Index seqlen_k, Index cols)
      : seqlen_k_(seqlen_k), cols_(cols), num_k_tiles_(ceil_div(seqlen_k, cols)) {}

  Range k_tile(Index t) const { return {t * cols_, std::min((t + 1) * cols_, seqlen_k_)}; }

  // Adds the pieces of one slice restricted to query rows `rows`.
  void add(const Band& b, Range rows) {
    rows = rows.intersect(b.nonempty_rows());
    if (rows.empty()) return;
    const Range first = b.keys_of_row(rows.begin), last = b.keys_of_row(rows.end - 1);
    const Range touched{first.begin / cols_, ceil_div(last.end, cols_)};
    // Key tiles inside [last.begin, first.end) are allowed on every row.
    const Index interior_begin = ceil_div(last.begin, cols_);
    const Index interior_end = first.end >= seqlen_k_ ? num_k_tiles_ : first.end / cols_;
    if (interior_begin >= interior_end) {
      add_boundary(b, rows, touched);
      return;
    }
    add_boundary(b, rows, {touched.begin, interior_begin});
    Range interior{interior_begin, interior_end};
    if (interior.end == num_k_tiles_ && k_tile(num_k_tiles_ - 1).size() < cols_) {
      // The short last tile gets its own piece, so that every piece is constant per tile.
      pieces_.push_back(
          {{num_k_tiles_ - 1, num_k_tiles_}, rows.size() * k_tile(num_k_tiles_ - 1).size()});
      --interior.end;
    }
    if (!interior.empty()) pieces_.push_back({interior, rows.size() * cols_});
    add_boundary(b, rows, {interior_end, touched.end});
  }

  // Classifies the summed pieces of query tile rows `rows` and appends its runs; resets.
  void emit(Range rows, std::vector<TileRun>& runs) {
    events_.clear();
    for (const Piece& p : pieces_) {
      events_.push_back({p.tiles.begin, p.per_tile});
      events_.push_back({p.tiles.end, -p.per_tile});
    }
    pieces_.clear();
    std::sort(events_.begin(), events_.end(),
              [](const Event& a, const Event& b) { return a.tile < b.tile; });
    const size_t first_run = runs.size();
    Index sum = 0;
    for (size_t e = 0; e < events_.size();) {
      const Index x = events_[e].tile;
      for (; e < events_.size() && events_[e].tile == x; ++e) sum += events_[e].delta;
      if (sum == 0) continue;
      // Every piece over the short last tile starts there, so [x, y) has tiles of one width.
      const Index y = events_[e].tile;
      const TileKind kind =
          sum == rows.size() * k_tile(x).size() ? TileKind::full : TileKind::partial;
      if (runs.size() > first_run && runs.back().tiles.end == x && runs.back().kind == kind)
        runs.back().tiles.end = y;
      else
        runs.push_back({{x, y}, kind});
    }
  }

 private:
  // Exact counts for the few tiles near a slice's edges.
  void add_boundary(const Band& b, Range rows, Range tiles) {
    for (Index t = tiles.begin; t < tiles.end; ++t)
      if (const Index c = b.pairs(rows, k_tile(t)); c > 0) pieces_.push_back({{t, t + 1}, c});
  }

  Index seqlen_k_, cols_, num_k_tiles_;
  std::vector<Piece> pieces_;
  std::vector<Event> events_;
};

}  // namespace

Range TileMap::q_tile(Index t) const {
  return {t * shape.rows, std::min((t + 1) * shape.rows, seqlen_q)};
}

Range TileMap::k_tile(Index t) const {
  return {t * shape.cols, std::min((t + 1) * shape.cols, seqlen_k)};
}

Index TileMap::full_tiles(Index t) const {
  Index n = 0;
  for (Index r = offsets[t]; r < offsets[t + 1]; ++r)
    if (runs[r].kind == TileKind::full) n += runs[r].tiles.size();
  return n;
}

Index TileMap::partial_tiles(Index t) const {
  Index n = 0;
  for (Index r = offsets[t]; r < offsets[t + 1]; ++r)
    if (runs[r].kind == TileKind::partial) n += runs[r].tiles.size();
  return n;
}

Index TileMap::total_full() const {
  Index n = 0;
  for (const TileRun& r : runs)
    if (r.kind == TileKind::full) n += r.tiles.size();
  return n;
}

Index TileMap::total_partial() const {
  Index n = 0;
  for (const TileRun& r : runs)
    if (r.kind == TileKind::partial) n += r.tiles.size();
  return n;
}

Index TileMap::issued_area() const {
  Index area = 0;
  for (Index t = 0; t < num_q_tiles(); ++t) {
    const Index rows = q_tile(t).size();
    for (Index r = offsets[t]; r < offsets[t + 1]; ++r) {
      const Range tiles = runs[r].tiles;
      area += rows * (k_tile(tiles.end - 1).end - k_tile(tiles.begin).begin);
    }
  }
  return area;
}

TileMap tile_map(const SliceMask& m, TileShape shape) {
  if (shape.rows <= 0 || shape.cols <= 0)
    throw InputError(
        fmt::format("tile shape {}x{}: both sides must be positive", shape.rows, shape.cols));
  TileMap map;
  map.shape = shape;
  map.seqlen_q = m.seqlen_q();
  map.seqlen_k = m.seqlen_k();
  const Index num_q_tiles = ceil_div(m.seqlen_q(), shape.rows);
  map.offsets.reserve(size_t(num_q_tiles + 1));
  map.offsets.push_back(0);

  // Slices are sorted by q.begin: a query tile sees those that started before its end and have
  // not ended before its start.
  const std::vector<Slice>& slices = m.slices();
  std::vector<Band> active;
  size_t next = 0;
  QueryTileSweep sweep(m.seqlen_k(), shape.cols);
  for (Index t = 0; t < num_q_tiles; ++t) {
    const Range rows = map.q_tile(t);
    std::erase_if(active, [&](const Band& b) { return b.q.end <= rows.begin; });
    for (; next < slices.size() && slices[next].q.begin < rows.end; ++next)
      active.emplace_back(slices[next]);
    for (const Band& b : active) sweep.add(b, rows);
    sweep.emit(rows, map.runs);
    map.offsets.push_back(Index(map.runs.size()));
  }
  return map;
}

}  // namespace longattn

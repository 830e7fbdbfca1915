// Tile maps at S = 1,048,576 checked tile by tile against closed forms: the full/partial/empty
// class of a tile of a diagonal-band mask follows from the range of j - i over the tile. (Speed is
// measured by the benchmark, not here.)
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "longattn/patterns.hpp"
#include "longattn/views/tile_map.hpp"

namespace longattn {
namespace {

constexpr Index kMillion = Index(1) << 20;

// Band -left <= j - i <= right (a missing bound is unbounded): over a tile, j - i covers every
// value of [k0 - (q1 - 1), (k1 - 1) - q0].
int band_tile_kind(Range rows, Range keys, std::optional<Index> left, std::optional<Index> right) {
  const Index lo = keys.begin - (rows.end - 1), hi = (keys.end - 1) - rows.begin;
  const Index min_ok = left ? -*left : lo, max_ok = right ? *right : hi;
  if (hi < min_ok || lo > max_ok) return -1;
  return lo >= min_ok && hi <= max_ok ? int(TileKind::full) : int(TileKind::partial);
}

void check_band_map(const TileMap& map, std::optional<Index> left, std::optional<Index> right) {
  const Index nk = map.num_k_tiles();
  Index full = 0, partial = 0, issued = 0;
  for (Index t = 0; t < map.num_q_tiles(); ++t) {
    Index k = 0;  // next key tile to compare
    auto expect_until = [&](Index end, int kind) {
      for (; k < end; ++k) {
        const int want = band_tile_kind(map.q_tile(t), map.k_tile(k), left, right);
        if (want != kind) {
          ADD_FAILURE() << "tile (" << t << ", " << k << "): map says " << kind << ", want " << want
                        << " (-1 absent, 0 full, 1 partial)";
          return false;
        }
        if (want >= 0) issued += map.q_tile(t).size() * map.k_tile(k).size();
        full += want == int(TileKind::full);
        partial += want == int(TileKind::partial);
      }
      return true;
    };
    for (Index r = map.offsets[t]; r < map.offsets[t + 1]; ++r) {
      if (!expect_until(map.runs[r].tiles.begin, -1)) return;
      if (!expect_until(map.runs[r].tiles.end, int(map.runs[r].kind))) return;
    }
    if (!expect_until(nk, -1)) return;
  }
  EXPECT_EQ(map.total_full(), full);
  EXPECT_EQ(map.total_partial(), partial);
  EXPECT_EQ(map.issued_area(), issued);
}

const SliceMask& static_mask(const GeneratedMask& g) { return std::get<SliceMask>(g.mask); }

TEST(TileMapMillion, CausalCounts) {
  const GeneratedMask g = make_mask({Pattern::causal, kMillion, {}, 0});
  const TileMap map = tile_map(static_mask(g), {128, 128});
  const Index n = kMillion / 128;  // 8192 tiles each way
  ASSERT_EQ(map.num_q_tiles(), n);
  EXPECT_EQ(map.total_full(), n * (n - 1) / 2);  // strictly below the diagonal
  EXPECT_EQ(map.total_partial(), n);             // the diagonal
  EXPECT_EQ(map.issued_area(), (n * (n - 1) / 2 + n) * 128 * 128);
  // Query tile t: one run of t full tiles, then the diagonal tile: two runs (one for t = 0).
  EXPECT_EQ(Index(map.runs.size()), 2 * n - 1);
  for (Index t : {Index(0), Index(1), n / 2, n - 1}) {
    EXPECT_EQ(map.full_tiles(t), t);
    EXPECT_EQ(map.partial_tiles(t), 1);
    EXPECT_EQ(map.runs[map.offsets[t + 1] - 1], (TileRun{{t, t + 1}, TileKind::partial}));
  }
  check_band_map(map, std::nullopt, 0);
}

TEST(TileMapMillion, CausalNonSquareTiles) {
  const GeneratedMask g = make_mask({Pattern::causal, kMillion, {}, 0});
  check_band_map(tile_map(static_mask(g), {96, 160}), std::nullopt, 0);
}

TEST(TileMapMillion, SlidingWindows) {
  MaskSpec spec{Pattern::sliding_window, kMillion, {}, 0};
  spec.params.window = 1000;
  check_band_map(tile_map(static_mask(make_mask(spec)), {128, 128}), 1000, 1000);
  spec.pattern = Pattern::sliding_window_causal;
  spec.params.window = 4096;
  check_band_map(tile_map(static_mask(make_mask(spec)), {64, 128}), 4096, 0);
}

}  // namespace
}  // namespace longattn

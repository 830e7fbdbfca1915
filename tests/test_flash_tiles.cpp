// The flash kernels' MaskTiles for block-sparse masks, on the host: rasterised back per KV head
// they are exactly the mask (uniform 64 / 128 and variable blocks, causal or not, odd S, forward
// and backward tiles, split backward items), and whole kept blocks off the diagonal are full
// chunks without bitmasks.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <string>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/kernels/flash.hpp"
#include "longattn/patterns.hpp"
#include "longattn/views/block_lists.hpp"

namespace longattn {
namespace {

// Tile shapes of the kernels at head dim 128 (flash::forward_tile / backward_tile live in the
// CUDA library): 128 x 64 forward, 64 x 128 backward.
constexpr TileShape kForward{128, 64};
constexpr TileShape kBackward{64, 128};

// Pairs (head, q, k) the tiles let through, each counted once; fails on overlaps, on items that
// miss or repeat a (tile, run, pass), and on full chunks that would need masking.
std::vector<char> rasterise(const flash::MaskTiles& t, const BlockSparseMask& m, int passes) {
  const Index s = t.seqlen_q;
  const int heads = t.num_kv_heads();
  EXPECT_EQ(heads, m.num_heads());
  std::vector<char> seen(size_t(heads) * size_t(s * s), 0);
  const Index words = t.shape.cols / 32;
  const Index chunk = t.key_major ? t.shape.rows : t.shape.cols;
  std::vector<int> covered(t.runs.size() * size_t(passes), 0);
  for (const flash::WorkItem& it : t.items) {
    EXPECT_GE(it.outer, t.head_outer[it.kv_head]);
    EXPECT_LT(it.outer, t.head_outer[it.kv_head + 1]);
    EXPECT_GE(it.run_begin, t.offsets[it.outer]);
    EXPECT_LE(it.run_end, t.offsets[it.outer + 1]);
    for (int r = it.run_begin; r < it.run_end; ++r)
      for (int p = it.pass_begin; p < it.pass_end; ++p) ++covered[size_t(r) * passes + p];
  }
  for (int c : covered) EXPECT_EQ(c, 1);
  for (int h = 0; h < heads; ++h) {
    Index next = 0;  // head h's outer tiles cover the outer axis once, in order
    for (int o = t.head_outer[h]; o < t.head_outer[h + 1]; ++o) {
      const Range span{t.outer[o].begin, t.outer[o].end};
      EXPECT_EQ(span.begin, next);
      EXPECT_LE(span.size(), t.key_major ? t.shape.cols : t.shape.rows);
      next = span.end;
      for (int r = t.offsets[o]; r < t.offsets[o + 1]; ++r) {
        const flash::TileRun32 run = t.runs[r];
        for (Index c0 = run.begin, i = 0; c0 < run.end; c0 += chunk, ++i) {
          const Range ch{c0, std::min<Index>(c0 + chunk, run.end)};
          const Range q = t.key_major ? ch : span, k = t.key_major ? span : ch;
          if (run.bits < 0 && !t.key_major) {
            EXPECT_EQ(ch.size(), chunk) << "a short full chunk";
          }
          for (Index qi = q.begin; qi < q.end; ++qi)
            for (Index kj = k.begin; kj < k.end; ++kj) {
              bool allowed = true;
              if (run.bits >= 0) {
                const std::uint32_t* row =
                    t.bits.data() + ((run.bits + i) * t.shape.rows + (qi - q.begin)) * words;
                allowed = (row[(kj - k.begin) / 32] >> ((kj - k.begin) % 32)) & 1u;
              } else {
                EXPECT_TRUE(m.allows(h, qi, kj)) << "full chunk with a masked pair, head " << h
                                                 << ": " << qi << "," << kj;
              }
              if (allowed) {
                char& cell = seen[size_t(h) * size_t(s * s) + size_t(qi * s + kj)];
                EXPECT_EQ(cell, 0) << "pair listed twice";
                cell = 1;
              }
            }
        }
      }
    }
    EXPECT_EQ(next, s);
  }
  return seen;
}

MaskSpec sparse_spec(Pattern p, Index s, bool causal) {
  MaskSpec spec;
  spec.pattern = p;
  spec.seqlen = s;
  spec.seed = 17;
  spec.params.keep = 0.4;
  spec.params.sparse_causal = causal;
  spec.params.sparse_heads = 3;
  spec.params.min_block = 48;  // variable blocks not aligned to the 64-wide chunks
  spec.params.average_block = 100;
  return spec;
}

TEST(FlashBlockSparseTiles, RasteriseToTheMaskPerKvHead) {
  struct Layout {
    Pattern pattern;
    Index sparse_block;
  };
  for (const Layout l : {Layout{Pattern::block_sparse_uniform, 64},
                         Layout{Pattern::block_sparse_uniform, 128},
                         Layout{Pattern::block_sparse_variable, 0}})
    for (bool causal : {false, true})
      for (Index s : {Index(1), Index(333), Index(1001)}) {
        MaskSpec spec = sparse_spec(l.pattern, s, causal);
        if (l.sparse_block > 0) spec.params.sparse_block = l.sparse_block;
        const BlockSparseMask m = std::get<BlockSparseMask>(make_mask(spec).mask);
        for (int variant = 0; variant < 3; ++variant) {
          const bool key_major = variant > 0;
          flash::PrepareOptions opt;
          if (variant == 2) {  // split long key tiles as a many-SM device would
            opt.passes = 2;
            opt.num_sms = 132;
            opt.allow_split = true;
          }
          const flash::MaskTiles t =
              flash::prepare_block_sparse_mask(m, key_major ? kBackward : kForward, key_major, opt);
          const std::string what = fmt::format("{} block {} causal {} S={} variant {}",
                                               to_string(l.pattern), l.sparse_block, causal, s,
                                               variant);
          // Grouped by KV head in both directions (the backward's resident CTAs then share one
          // head's rows); query-major, as many per head.
          for (size_t i = 1; i < t.items.size(); ++i)
            EXPECT_LE(t.items[i - 1].kv_head, t.items[i].kv_head) << what << " item " << i;
          if (!key_major) {
            ASSERT_EQ(t.items.size() % size_t(m.num_heads()), 0u) << what;
            const size_t per = t.items.size() / size_t(m.num_heads());
            for (size_t i = 0; i < t.items.size(); ++i)
              EXPECT_EQ(t.items[i].kv_head, int(i / per)) << what;
          }
          const std::vector<char> seen = rasterise(t, m, opt.passes);
          Index mismatches = 0, area = 0;
          for (int h = 0; h < m.num_heads(); ++h)
            for (Index i = 0; i < s; ++i)
              for (Index j = 0; j < s; ++j) {
                const bool got = seen[size_t(h) * size_t(s * s) + size_t(i * s + j)];
                mismatches += got != m.allows(h, i, j);
                area += got;
              }
          EXPECT_EQ(mismatches, 0) << what;
          EXPECT_EQ(area, m.total_area()) << what;
          EXPECT_GE(t.issued_area, m.total_area()) << what;
        }
      }
}

TEST(FlashBlockSparseTiles, AlignedKeptBlocksAreFullChunks) {
  // Blocks of 128, S a multiple: forward chunks are whole halves of kept blocks, never partial
  // when not causal, and issued area is the kept area exactly.
  MaskSpec spec = sparse_spec(Pattern::block_sparse_uniform, 1024, false);
  spec.params.sparse_block = 128;
  const BlockSparseMask m = std::get<BlockSparseMask>(make_mask(spec).mask);
  for (bool key_major : {false, true}) {
    const flash::MaskTiles t =
        flash::prepare_block_sparse_mask(m, key_major ? kBackward : kForward, key_major);
    EXPECT_TRUE(t.bits.empty());
    EXPECT_EQ(t.issued_area, m.total_area());
    EXPECT_EQ(t.num_kv_heads(), 3);
    EXPECT_EQ(t.num_outer(), 3 * 8);
  }
  // Causal: only kept diagonal blocks are cut, into 2 partial chunks of 64 each way.
  spec.params.sparse_causal = true;
  const BlockSparseMask c = std::get<BlockSparseMask>(make_mask(spec).mask);
  Index diagonal = 0;
  for (int h = 0; h < 3; ++h)
    for (Index b = 0; b < 8; ++b) diagonal += c.allows(h, b * 128, b * 128);
  EXPECT_GT(diagonal, 0);
  for (bool key_major : {false, true}) {
    const flash::MaskTiles t =
        flash::prepare_block_sparse_mask(c, key_major ? kBackward : kForward, key_major);
    Index partial_chunks = 0;  // each a run of its own
    for (const flash::TileRun32& r : t.runs) partial_chunks += r.bits >= 0;
    EXPECT_EQ(partial_chunks, 2 * diagonal);
    EXPECT_EQ(t.partial_tiles(), 2);  // the two halves of a diagonal block: one bitmask each
  }
}

TEST(FlashBlockSparseTiles, PartialChunksShareTheirShapesBitmask) {
  // Blocks of 64 under 128-row query tiles (64-query chunks under 128-key tiles backward): a
  // chunk kept by one of the tile's two blocks only is partial, and all of them are one of two
  // shapes, each stored once.
  MaskSpec spec = sparse_spec(Pattern::block_sparse_uniform, 4096, false);
  spec.params.sparse_block = 64;
  const BlockSparseMask m = std::get<BlockSparseMask>(make_mask(spec).mask);
  for (bool key_major : {false, true}) {
    const flash::MaskTiles t =
        flash::prepare_block_sparse_mask(m, key_major ? kBackward : kForward, key_major);
    Index partial_chunks = 0;
    for (const flash::TileRun32& r : t.runs) {
      if (r.bits < 0) continue;
      ++partial_chunks;
      EXPECT_EQ(r.end - r.begin, 64);
    }
    EXPECT_GT(partial_chunks, 100);
    EXPECT_EQ(t.partial_tiles(), 2);
  }
}

TEST(FlashBlockSparseTiles, GivenKeyToQueryListsAreChecked) {
  MaskSpec spec = sparse_spec(Pattern::block_sparse_variable, 1001, true);
  const BlockSparseMask m = std::get<BlockSparseMask>(make_mask(spec).mask);
  // The lists the host transposes give the tiles the convenience overload builds.
  std::vector<BlockLists> k_to_q = block_index_lists(m).k_to_q;
  const flash::MaskTiles a = flash::prepare_block_sparse_mask(m, kBackward, true);
  const flash::MaskTiles b = flash::prepare_block_sparse_mask(m, kBackward, true, k_to_q);
  EXPECT_EQ(a.bits, b.bits);
  EXPECT_EQ(a.runs.size(), b.runs.size());
  EXPECT_EQ(a.issued_area, b.issued_area);
  // Too few heads, or lists of another mask, are input errors.
  EXPECT_THROW(flash::prepare_block_sparse_mask(
                   m, kBackward, true, std::span<const BlockLists>(k_to_q.data(), 1)),
               InputError);
  k_to_q[1].indices.pop_back();
  k_to_q[1].offsets.back() -= 1;
  EXPECT_THROW(flash::prepare_block_sparse_mask(m, kBackward, true, k_to_q), InputError);
}

TEST(FlashTiles, MeanSpanIsTheIssuedKeysPerQueryRow) {
  // Full: every key of every row. Causal with 128 x 64 tiles: the rows of query tile t issue the
  // chunks up to its last row, keys [0, 128 (t + 1)): mean (S + 128) / 2 for S a multiple of 128.
  // Documents: far fewer.
  const Index s = 4096;
  auto span = [&](Pattern p) {
    return flash::prepare_mask(std::get<SliceMask>(make_mask({p, s, {}, 0}).mask), kForward, false)
        .mean_span();
  };
  EXPECT_EQ(span(Pattern::full), s);
  EXPECT_EQ(span(Pattern::causal), (s + 128) / 2);
  EXPECT_LT(span(Pattern::causal_document), s / 4);
}

TEST(FlashTiles, DescendingWalkWhereKeyTilesShareTheirQueryEnds) {
  // Key-major, a GQA group of 8 query heads per CTA. Causal-like spans end together (descending
  // keeps neighbouring key tiles on the same rows); a sliding window's spans shift with the tile
  // and full spans are equal (ascending); query-major tiles never walk descending.
  auto descending = [](Pattern p, bool key_major = true) {
    flash::PrepareOptions opt;
    opt.passes = 8;
    const SliceMask m = std::get<SliceMask>(make_mask({p, 16384, {}, 0}).mask);
    return flash::prepare_mask(m, key_major ? kBackward : kForward, key_major, opt).descending;
  };
  EXPECT_TRUE(descending(Pattern::causal));
  EXPECT_TRUE(descending(Pattern::causal_document));
  EXPECT_TRUE(descending(Pattern::prefix_lm_causal));
  EXPECT_FALSE(descending(Pattern::full));
  EXPECT_FALSE(descending(Pattern::sliding_window_causal));
  EXPECT_FALSE(descending(Pattern::sliding_window));
  EXPECT_FALSE(descending(Pattern::causal, false));
  // Block-sparse: scattered kept blocks, always ascending (measured slower descending).
  MaskSpec spec{Pattern::block_sparse_uniform, 16384, {}, 0};
  spec.params.sparse_heads = 2;
  flash::PrepareOptions opt;
  opt.passes = 8;
  const BlockSparseMask b = std::get<BlockSparseMask>(make_mask(spec).mask);
  EXPECT_FALSE(flash::prepare_block_sparse_mask(b, kBackward, true, opt).descending);
}

TEST(FlashBlockSparseTiles, StaticMasksHaveNoHeadSets) {
  const SliceMask m = std::get<SliceMask>(make_mask({Pattern::causal, 300, {}, 0}).mask);
  const flash::MaskTiles t = flash::prepare_mask(m, kForward, false);
  EXPECT_FALSE(t.per_head());
  EXPECT_EQ(t.num_kv_heads(), 1);
}

}  // namespace
}  // namespace longattn

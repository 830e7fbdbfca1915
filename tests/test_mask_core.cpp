// The canonical mask core: slice arithmetic, diagonal bands, validation, restriction,
// transposition and the pattern generators' hand-computable cases.
#include <gtest/gtest.h>

#include <optional>

#include "longattn/error.hpp"
#include "longattn/mask.hpp"
#include "longattn/patterns.hpp"
#include "longattn/rng.hpp"

namespace longattn {
namespace {

// Brute-force semantics of one slice, straight from the definition in mask.hpp.
bool slice_rule(const Slice& s, Index i, Index j) {
  if (!s.q.contains(i) || !s.k.contains(j)) return false;
  const Index r = i - s.q.begin, c = j - s.k.begin, d = s.k.size() - s.q.size();
  const bool below = c <= r + d, above = c >= r;
  switch (s.type) {
    case SliceType::full: return true;
    case SliceType::causal: return below;
    case SliceType::inv_causal: return above;
    case SliceType::band: return below && above;
  }
  return false;
}

Index brute_area(const Slice& s) {
  Index a = 0;
  for (Index i = s.q.begin; i < s.q.end; ++i)
    for (Index j = s.k.begin; j < s.k.end; ++j) a += slice_rule(s, i, j);
  return a;
}

TEST(Slice, AreaAndRowsMatchDefinitionForAllTypesAndShapes) {
  for (Index lq = 1; lq <= 9; ++lq)
    for (Index lk = 1; lk <= 9; ++lk)
      for (SliceType t : {SliceType::full, SliceType::causal, SliceType::inv_causal, SliceType::band}) {
        const Slice s{{3, 3 + lq}, {5, 5 + lk}, t};
        EXPECT_EQ(s.area(), brute_area(s)) << lq << "x" << lk << " " << to_string(t);
        for (Index i = 3; i < 3 + lq; ++i)
          for (Index j = 0; j < 20; ++j) EXPECT_EQ(s.allows(i, j), slice_rule(s, i, j));
      }
}

TEST(DiagonalBand, EqualsItsDefinitionAndHasNoEmptyRows) {
  Rng rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const Index qb = rng.uniform_int(0, 20), qe = qb + rng.uniform_int(1, 30);
    const Index kb = rng.uniform_int(0, 20), ke = kb + rng.uniform_int(1, 30);
    std::optional<Index> lo, hi;
    if (rng.uniform_int(0, 3)) lo = rng.uniform_int(-40, 30);
    if (rng.uniform_int(0, 3)) hi = rng.uniform_int(-30, 40);
    std::vector<Slice> out;
    append_diagonal_band(out, {qb, qe}, {kb, ke}, lo, hi);
    const SliceMask m(60, 60, out);  // validates disjointness and bounds
    for (Index i = 0; i < 60; ++i)
      for (Index j = 0; j < 60; ++j) {
        const bool want = i >= qb && i < qe && j >= kb && j < ke && (!lo || j - i >= *lo) &&
                          (!hi || j - i <= *hi);
        ASSERT_EQ(m.allows(i, j), want) << trial << ": " << i << "," << j;
      }
    for (const Slice& s : out)
      for (Index i = s.q.begin; i < s.q.end; ++i) EXPECT_FALSE(s.keys_of_row(i).empty());
  }
}

TEST(SliceMask, RejectsOverlapsAndOutOfRangeSlices) {
  EXPECT_THROW(SliceMask(10, {{{0, 5}, {0, 5}, SliceType::full}, {{4, 8}, {4, 6}, SliceType::full}}),
               InputError);
  EXPECT_THROW(SliceMask(10, {{{0, 11}, {0, 5}, SliceType::full}}), InputError);
  EXPECT_THROW(SliceMask(10, {{{3, 3}, {0, 5}, SliceType::full}}), InputError);
  EXPECT_THROW(SliceMask(0, {}), InputError);
  // Touching rectangles are fine, in any input order.
  const SliceMask ok(10, {{{5, 10}, {0, 10}, SliceType::causal}, {{0, 5}, {0, 5}, SliceType::full}});
  EXPECT_EQ(ok.slices().front().q.begin, 0);
}

TEST(SliceMask, RestrictAndTransposeAreExact) {
  for (std::uint64_t seed = 0; seed < 6; ++seed)
    for (Pattern p : {Pattern::causal, Pattern::sliding_window, Pattern::shared_question,
                      Pattern::global_sliding_window, Pattern::prefix_lm_document,
                      Pattern::causal_blockwise}) {
      MaskSpec spec{p, 97, {}, seed};
      spec.params.window = 9;
      spec.params.global = 5;
      spec.params.doc_lens = std::vector<Index>{20, 31, 1, 45};
      const GeneratedMask g = make_mask(spec);
      const auto& m = std::get<SliceMask>(g.mask);
      const SliceMask t = m.transposed();
      const SliceMask r = m.restrict({13, 70}, {40, 90});
      EXPECT_EQ(t.area(), m.area());
      for (Index i = 0; i < 97; ++i)
        for (Index j = 0; j < 97; ++j) {
          ASSERT_EQ(t.allows(j, i), m.allows(i, j));
          if (i >= 13 && i < 70 && j >= 40 && j < 90) {
            ASSERT_EQ(r.allows(i - 13, j - 40), m.allows(i, j));
          }
        }
    }
}

TEST(Patterns, HandComputedAreas) {
  auto area = [](Pattern p, Index s, auto&& set) {
    MaskSpec spec{p, s, {}, 0};
    set(spec.params);
    return total_area(make_mask(spec).mask);
  };
  auto none = [](MaskParams&) {};
  EXPECT_EQ(area(Pattern::causal, 4096, none), 8390656);
  EXPECT_EQ(area(Pattern::full, 4096, none), 4096 * 4096);
  EXPECT_EQ(area(Pattern::sliding_window_causal, 4096, [](MaskParams& p) { p.window = 1024; }),
            3673600);
  // |i - j| <= w: S + 2 * (w S - w (w + 1) / 2)
  EXPECT_EQ(area(Pattern::sliding_window, 4096, [](MaskParams& p) { p.window = 1024; }),
            4096 + 2 * (1024 * 4096 - 1024 * 1025 / 2));
  EXPECT_EQ(area(Pattern::causal_document, 10,
                 [](MaskParams& p) { p.doc_lens = std::vector<Index>{4, 6}; }),
            10 + 21);
  EXPECT_EQ(area(Pattern::prefix_lm_causal, 10, [](MaskParams& p) { p.prefix = 4; }),
            16 + 6 * 4 + 21);
}

TEST(Patterns, ParseAndValidate) {
  EXPECT_EQ(parse_pattern("causal_blockwise"), Pattern::causal_blockwise);
  EXPECT_THROW(parse_pattern("casual"), InputError);
  EXPECT_EQ(all_patterns().size(), 14u);
  auto bad = [](auto&& set) {
    MaskSpec spec{Pattern::sliding_window, 100, {}, 0};
    set(spec);
    return make_mask(spec);
  };
  EXPECT_THROW(bad([](MaskSpec& s) { s.seqlen = 0; }), InputError);
  EXPECT_THROW(bad([](MaskSpec& s) { s.params.window = -1; }), InputError);
  EXPECT_THROW(bad([](MaskSpec& s) { s.params.keep = 0; }), InputError);
  EXPECT_THROW(bad([](MaskSpec& s) { s.pattern = Pattern::prefix_lm_causal; s.params.prefix = 101; }), InputError);
  EXPECT_THROW(bad([](MaskSpec& s) { s.pattern = Pattern::global_sliding_window; s.params.global = -1; }), InputError);
  EXPECT_THROW(bad([](MaskSpec& s) { s.params.doc_lens = std::vector<Index>{50, 49}; }),
               InputError);
}

TEST(Patterns, DeterministicPerSeed) {
  for (const PatternInfo& pi : all_patterns()) {
    const MaskSpec spec{pi.pattern, 3000, {}, 42};
    const auto a = make_mask(spec), b = make_mask(spec);
    EXPECT_EQ(total_area(a.mask), total_area(b.mask)) << pi.name;
    if (auto* sa = std::get_if<SliceMask>(&a.mask)) {
      EXPECT_EQ(sa->slices(), std::get<SliceMask>(b.mask).slices()) << pi.name;
    }
  }
}

TEST(BlockSparse, KeepsRoundedFractionPerQueryBlockAndPartitionsExactly) {
  for (bool causal : {false, true})
    for (Pattern p : {Pattern::block_sparse_uniform, Pattern::block_sparse_variable}) {
      MaskSpec spec{p, 5000, {}, 3};
      spec.params.keep = 0.2;
      spec.params.sparse_heads = 2;
      spec.params.sparse_causal = causal;
      const GeneratedMask g = make_mask(spec);
      const auto& m = std::get<BlockSparseMask>(g.mask);
      const BlockPartition& b = m.blocks();
      EXPECT_EQ(b.seqlen(), 5000);
      for (Index x = 0; x < b.num_blocks(); ++x) {
        if (p == Pattern::block_sparse_variable) {
          EXPECT_GE(b.block(x).size(), 128);
        }
      }
      for (int h = 0; h < 2; ++h)
        for (Index qb = 0; qb < b.num_blocks(); ++qb) {
          const Index cand = causal ? qb + 1 : b.num_blocks();
          const Index want = std::max<Index>(1, Index(0.2 * cand + 0.5));
          EXPECT_EQ(m.kept(h).count(qb), want);
        }
      // Area from blocks equals the area of the head's slices.
      for (int h = 0; h < 2; ++h) EXPECT_EQ(m.area(h), m.head_mask(h).area());
    }
}

}  // namespace
}  // namespace longattn

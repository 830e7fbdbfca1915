// Dispatch and local masks: every rank holds S / N tokens, the placements are the documented ones,
// undispatch restores the global order, and a local mask is exactly the global mask seen through
// the chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "longattn/cp/dispatch.hpp"
#include "longattn/error.hpp"
#include "longattn/patterns.hpp"

namespace longattn::cp {
namespace {

SliceMask make(Pattern p, Index S, std::uint64_t seed = 1) {
  MaskSpec spec;
  spec.pattern = p;
  spec.seqlen = S;
  spec.seed = seed;
  spec.params.window = 37;
  spec.params.global = 16;
  spec.params.block = 32;
  spec.params.histogram = pile_histogram();
  return std::get<SliceMask>(make_mask(spec).mask);
}

std::vector<Pattern> static_patterns() {
  std::vector<Pattern> out;
  for (const PatternInfo& i : all_patterns())
    if (i.family != PatternFamily::dynamic) out.push_back(i.pattern);
  return out;
}

// Every position exactly once, every rank S / N tokens.
void expect_partition(const Dispatch& d) {
  std::vector<int> seen(d.seqlen, 0);
  for (int r = 0; r < d.ranks(); ++r) {
    EXPECT_EQ(total_tokens(d.chunks(r)), d.tokens_per_rank()) << "rank " << r;
    for (Range c : d.chunks(r))
      for (Index i = c.begin; i < c.end; ++i) ++seen[i];
  }
  for (Index i = 0; i < d.seqlen; ++i) ASSERT_EQ(seen[i], 1) << "position " << i;
}

TEST(CpDispatch, ContiguousAndZigzagPlacements) {
  const SliceMask m = make(Pattern::causal, 64);
  Dispatch c = make_dispatch(DispatchKind::contiguous, m, 4, 1);
  expect_partition(c);
  EXPECT_EQ(c.chunks(2), (Chunks{{32, 48}}));
  Dispatch z = make_dispatch(DispatchKind::zigzag, m, 4, 1);
  expect_partition(z);
  EXPECT_EQ(z.chunks(0), (Chunks{{0, 8}, {56, 64}}));
  EXPECT_EQ(z.chunks(3), (Chunks{{24, 40}}));  // chunks 3 and 4 are adjacent: merged
  // Zigzag balances causal exactly.
  std::vector<Index> area;
  for (int r = 0; r < 4; ++r) area.push_back(rows_area(m, z.chunks(r)));
  EXPECT_EQ(*std::min_element(area.begin(), area.end()), *std::max_element(area.begin(), area.end()));
}

TEST(CpDispatch, TwoLevelMeshSplitsEachUnitAmongItsMembers) {
  const SliceMask m = make(Pattern::causal, 96);
  Dispatch d = make_dispatch(DispatchKind::zigzag, m, 2, 3);  // R = 2 ring positions, U = 3
  expect_partition(d);
  // Unit 0 holds chunks 0 and 3 of 4 (24 tokens each); its members take 16 tokens each, in order.
  EXPECT_EQ(d.unit_chunks(0), (Chunks{{0, 24}, {72, 96}}));
  EXPECT_EQ(d.chunks(0), (Chunks{{0, 16}}));
  EXPECT_EQ(d.chunks(1), (Chunks{{16, 24}, {72, 80}}));
  EXPECT_EQ(d.chunks(2), (Chunks{{80, 96}}));
  EXPECT_EQ(d.unit_chunks(1), (Chunks{{24, 72}}));
}

TEST(CpDispatch, BalancedSplitsByAreaWithoutPadding) {
  for (Pattern p : {Pattern::causal, Pattern::causal_document, Pattern::shared_question,
                    Pattern::prefix_lm_document, Pattern::global_sliding_window}) {
    const SliceMask m = make(p, 1024, 7);
    for (int units : {2, 4}) {
      Dispatch b = make_dispatch(DispatchKind::balanced, m, units, 1, 8);
      expect_partition(b);
      auto imbalance = [&](const Dispatch& d) {
        double mx = 0, sum = 0;
        for (int r = 0; r < d.ranks(); ++r) {
          double a = double(rows_area(m, d.chunks(r)));
          mx = std::max(mx, a);
          sum += a;
        }
        return mx / (sum / d.ranks());
      };
      const double bal = imbalance(b);
      EXPECT_LE(bal, imbalance(make_dispatch(DispatchKind::contiguous, m, units, 1)) + 1e-12)
          << to_string(p);
      EXPECT_LE(bal, imbalance(make_dispatch(DispatchKind::zigzag, m, units, 1)) + 1e-12)
          << to_string(p);
      // Every rank holds 8 equal chunks, so no assignment beats the even share, nor any chunk
      // together with the 7 lightest others: stay within 5% of that bound.
      std::vector<double> areas;
      for (Index i = 0; i < 8 * units; ++i) {
        Range c{i * 1024 / (8 * units), (i + 1) * 1024 / (8 * units)};
        areas.push_back(double(rows_area(m, {&c, 1})));
      }
      std::sort(areas.begin(), areas.end());
      double heaviest = areas.back();
      for (int i = 0; i < 7; ++i) heaviest += areas[i];
      const double share = double(m.area()) / units;
      EXPECT_LE(bal, 1.05 * std::max(heaviest, share) / share) << to_string(p) << " on " << units;
    }
  }
}

TEST(CpDispatch, RejectsSizesItCannotSplit) {
  const SliceMask m = make(Pattern::causal, 100);
  EXPECT_THROW(make_dispatch(DispatchKind::contiguous, m, 3, 1), InputError);
  EXPECT_THROW(make_dispatch(DispatchKind::zigzag, m, 4, 1), InputError);  // 100 % 8 != 0
  EXPECT_THROW(make_dispatch(DispatchKind::balanced, m, 2, 1, 8), InputError);
  EXPECT_THROW(parse_dispatch("round_robin"), InputError);
}

TEST(CpDispatch, UndispatchRestoresTheGlobalOrder) {
  const SliceMask m = make(Pattern::causal_document, 240);
  const std::size_t width = 3;
  std::vector<float> global(240 * width);
  std::iota(global.begin(), global.end(), 0.f);
  for (DispatchKind k : {DispatchKind::contiguous, DispatchKind::zigzag, DispatchKind::balanced}) {
    Dispatch d = make_dispatch(k, m, 3, 2, 5);
    std::vector<float> back(global.size(), -1.f);
    for (int r = 0; r < d.ranks(); ++r) {
      std::vector<float> local = gather_rows(d.chunks(r), global, width);
      ASSERT_EQ(local.size(), std::size_t(d.tokens_per_rank()) * width);
      scatter_rows(d.chunks(r), local, back, width);
    }
    EXPECT_EQ(back, global) << to_string(k);
  }
}

TEST(CpLocalMask, IsTheGlobalMaskSeenThroughTheChunks) {
  const Chunks qs{{5, 19}, {40, 41}, {60, 90}};
  const Chunks ks{{0, 7}, {33, 70}, {88, 96}};
  for (Pattern p : static_patterns()) {
    const SliceMask m = make(p, 96, 3);
    const SliceMask l = local_mask(m, qs, ks);
    std::vector<Index> qi, kj;
    for (Range r : qs)
      for (Index i = r.begin; i < r.end; ++i) qi.push_back(i);
    for (Range r : ks)
      for (Index j = r.begin; j < r.end; ++j) kj.push_back(j);
    ASSERT_EQ(l.seqlen_q(), Index(qi.size()));
    ASSERT_EQ(l.seqlen_k(), Index(kj.size()));
    Index area = 0;
    for (std::size_t a = 0; a < qi.size(); ++a)
      for (std::size_t b = 0; b < kj.size(); ++b) {
        const bool want = m.allows(qi[a], kj[b]);
        area += want;
        ASSERT_EQ(l.allows(Index(a), Index(b)), want)
            << to_string(p) << " local (" << a << ", " << b << ")";
      }
    EXPECT_EQ(l.area(), area) << to_string(p);
  }
}

}  // namespace
}  // namespace longattn::cp

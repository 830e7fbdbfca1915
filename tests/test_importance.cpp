// Importance selection of block-sparse masks: hand-computed pooled scores (group averaging, ties,
// causal candidates, keep extremes), per-KV-head vs shared patterns, the top-k property on
// variable blocks, bad input, and the bench building the mask from the case's own inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "longattn/bench/cpu_backend.hpp"
#include "longattn/bench/runner.hpp"
#include "longattn/error.hpp"
#include "longattn/importance.hpp"

namespace longattn {
namespace {

using Lists = std::vector<std::vector<std::int32_t>>;

Lists kept_lists(const GeneratedMask& g, int head = 0) {
  const BlockLists& l = std::get<BlockSparseMask>(g.mask).kept(head);
  Lists out;
  for (Index r = 0; r < l.num_rows(); ++r)
    out.emplace_back(l.indices.begin() + l.offsets[r], l.indices.begin() + l.offsets[r + 1]);
  return out;
}

MaskSpec uniform_spec(Index s, Index block, double keep, bool causal = false) {
  MaskSpec spec;
  spec.pattern = Pattern::block_sparse_uniform;
  spec.seqlen = s;
  spec.params.sparse_block = block;
  spec.params.keep = keep;
  spec.params.sparse_causal = causal;
  spec.params.selection = BlockSelection::importance;
  return spec;
}

// S = 6 in blocks of 2, heads 2:1, D = 2. Pooled (over rows and the group's two query heads):
// qbar = (0, 1), (1, 0), (-1, 0.5); kbar = (1, 0), (0, 1), (-1, 0).
// Scores qb x kb: [0 1 0], [1 0 -1], [-1 0.5 1].
struct HandCase {
  HeadConfig heads{2, 1, 2};
  // q[i][h][d]
  std::vector<float> q = {
      0, 2, 0, 0,  0, 2, 0, 0,     // block 0: head 0 (0, 2), head 1 (0, 0)
      1, 0, 1, 0,  2, 0, 0, 0,     // block 1: mean (1, 0)
      -1, 1, -1, 0, -1, 1, -1, 0,  // block 2: mean (-1, 0.5)
  };
  std::vector<float> k = {2, 0, 0, 0, 0, 1, 0, 1, -1, 0, -1, 0};  // k[j][0][d]
};

TEST(Importance, KeepsTheBestPooledMatchPerQueryBlock) {
  const HandCase c;
  const GeneratedMask g = make_importance_block_mask(uniform_spec(6, 2, 1.0 / 3), c.q, c.k, c.heads);
  EXPECT_EQ(kept_lists(g), (Lists{{1}, {0}, {2}}));
  EXPECT_EQ(g.spec.params.selection, BlockSelection::importance);
  // Two of three: the second best joins, listed ascending.
  EXPECT_EQ(kept_lists(make_importance_block_mask(uniform_spec(6, 2, 0.6), c.q, c.k, c.heads)),
            (Lists{{0, 1}, {0, 1}, {1, 2}}));
}

TEST(Importance, CausalOffersOnlyBlocksUpToTheDiagonal) {
  const HandCase c;
  // Candidates 1, 2, 3; k = round(0.5 x candidates) clamped to [1, candidates]: 1, 1, 2.
  const GeneratedMask g = make_importance_block_mask(uniform_spec(6, 2, 0.5, true), c.q, c.k, c.heads);
  EXPECT_EQ(kept_lists(g), (Lists{{0}, {0}, {1, 2}}));
  EXPECT_TRUE(std::get<BlockSparseMask>(g.mask).causal());
}

TEST(Importance, TiesGoToTheSmallerBlock) {
  HandCase c;
  std::fill(c.q.begin(), c.q.end(), 0.f);  // every score 0
  EXPECT_EQ(kept_lists(make_importance_block_mask(uniform_spec(6, 2, 0.6), c.q, c.k, c.heads)),
            (Lists{{0, 1}, {0, 1}, {0, 1}}));
  EXPECT_EQ(kept_lists(make_importance_block_mask(uniform_spec(6, 2, 0.6, true), c.q, c.k, c.heads)),
            (Lists{{0}, {0}, {0, 1}}));
}

TEST(Importance, KeepExtremes) {
  const HandCase c;
  EXPECT_EQ(kept_lists(make_importance_block_mask(uniform_spec(6, 2, 1.0), c.q, c.k, c.heads)),
            (Lists{{0, 1, 2}, {0, 1, 2}, {0, 1, 2}}));
  EXPECT_EQ(kept_lists(make_importance_block_mask(uniform_spec(6, 2, 1e-6), c.q, c.k, c.heads)),
            (Lists{{1}, {0}, {2}}));  // at least one: the argmax
  EXPECT_EQ(kept_lists(make_importance_block_mask(uniform_spec(6, 2, 1.0, true), c.q, c.k, c.heads)),
            (Lists{{0}, {0, 1}, {0, 1, 2}}));
  // A shorter last block pools over its own rows only: S = 5 gives blocks of 2, 2, 1.
  HandCase d;
  d.q.resize(5 * 2 * 2);
  d.k = {2, 0, 0, 0, 0, 1, 0, 1, -3, 0};  // kbar_2 = (-3, 0)
  const GeneratedMask g = make_importance_block_mask(uniform_spec(5, 2, 1e-6), d.q, d.k, d.heads);
  EXPECT_EQ(std::get<BlockSparseMask>(g.mask).blocks().num_blocks(), 3);
}

TEST(Importance, PerKvHeadPatternsOrOneSharedBySummedScores) {
  // Heads 2:2, S = 4 in blocks of 2, D = 1; one block kept of two.
  // Head 0: qbar = (1, 1), kbar = (1, -1) -> both query blocks keep block 0.
  // Head 1: qbar = (1, 1), kbar = (-1, 3) -> both keep block 1. Summed: (0, 2) -> block 1.
  const HeadConfig heads{2, 2, 1};
  const std::vector<float> q(4 * 2, 1.f);
  const std::vector<float> k = {1, -1, 1, -1, -1, 3, -1, 3};  // k[j][g]
  MaskSpec spec = uniform_spec(4, 2, 0.5);
  spec.params.sparse_heads = 2;
  const GeneratedMask per_head = make_importance_block_mask(spec, q, k, heads);
  EXPECT_EQ(kept_lists(per_head, 0), (Lists{{0}, {0}}));
  EXPECT_EQ(kept_lists(per_head, 1), (Lists{{1}, {1}}));
  spec.params.sparse_heads = 1;
  EXPECT_EQ(kept_lists(make_importance_block_mask(spec, q, k, heads)), (Lists{{1}, {1}}));
}

TEST(Importance, KeptBlocksOutscoreTheRestOnVariableBlocks) {
  const HeadConfig heads{4, 2, 8};
  const Index s = 1000;
  std::mt19937 gen(5);
  std::normal_distribution<float> nd;
  std::vector<float> q(size_t(s) * 4 * 8), k(size_t(s) * 2 * 8);
  for (float& x : q) x = nd(gen);
  for (float& x : k) x = nd(gen);
  for (bool causal : {false, true}) {
    MaskSpec spec;
    spec.pattern = Pattern::block_sparse_variable;
    spec.seqlen = s;
    spec.seed = 9;
    spec.params.min_block = 32;
    spec.params.average_block = 64;
    spec.params.keep = 0.3;
    spec.params.sparse_causal = causal;
    spec.params.sparse_heads = 2;
    const GeneratedMask g = make_importance_block_mask(spec, q, k, heads);
    const auto& m = std::get<BlockSparseMask>(g.mask);
    const BlockPartition& p = m.blocks();
    EXPECT_EQ(p.starts(), block_partition(spec).starts());  // the random mode's partition
    auto mean = [&](const std::vector<float>& x, int nh, int h0, int h1, Index b, int d) {
      double sum = 0;
      for (Index i = p.block(b).begin; i < p.block(b).end; ++i)
        for (int h = h0; h < h1; ++h) sum += x[(size_t(i) * nh + h) * 8 + d];
      return sum / double(p.block(b).size() * (h1 - h0));
    };
    for (int g_head = 0; g_head < 2; ++g_head)
      for (Index qb = 0; qb < p.num_blocks(); ++qb) {
        const Index cand = causal ? qb + 1 : p.num_blocks();
        std::vector<double> score(static_cast<size_t>(cand));
        for (Index kb = 0; kb < cand; ++kb)
          for (int d = 0; d < 8; ++d)
            score[size_t(kb)] += mean(q, 4, 2 * g_head, 2 * g_head + 2, qb, d) * mean(k, 2, g_head, g_head + 1, kb, d);
        const Lists lists = kept_lists(g, g_head);
        const auto& kept = lists[size_t(qb)];
        EXPECT_EQ(Index(kept.size()), std::max<Index>(1, Index(std::floor(0.3 * cand + 0.5))));
        double worst_kept = 1e300;
        for (auto kb : kept) worst_kept = std::min(worst_kept, score[size_t(kb)]);
        for (Index kb = 0; kb < cand; ++kb) {
          if (std::find(kept.begin(), kept.end(), kb) == kept.end()) {
            EXPECT_LE(score[size_t(kb)], worst_kept + 1e-12) << "qb " << qb << " kb " << kb;
          }
        }
      }
  }
}

TEST(Importance, BadInput) {
  const HandCase c;
  MaskSpec spec = uniform_spec(6, 2, 0.5);
  EXPECT_THROW(make_importance_block_mask(spec, std::span(c.q).first(4), c.k, c.heads), InputError);
  spec.params.sparse_heads = 3;
  EXPECT_THROW(make_importance_block_mask(spec, c.q, c.k, c.heads), InputError);
  spec.params.sparse_heads = 1;
  spec.pattern = Pattern::causal;
  EXPECT_THROW(make_importance_block_mask(spec, c.q, c.k, c.heads), InputError);
  // Without the inputs the mask cannot be made.
  EXPECT_THROW(make_mask(uniform_spec(6, 2, 0.5)), InputError);
  EXPECT_EQ(parse_selection("importance"), BlockSelection::importance);
  EXPECT_THROW(parse_selection("top"), InputError);
}

TEST(Importance, BenchScoresTheCaseInputs) {
  bench::CpuBackendOptions o;
  bench::RunOptions ro;
  ro.timing.warmup = 1;
  ro.timing.min_reps = 2;
  ro.timing.max_reps = 2;
  ro.timing.time_budget_s = 0;
  bench::Runner runner(ro, std::make_shared<const bench::Environment>());
  runner.use_backend(o.name, bench::make_cpu_backend(o));
  bench::Case c;
  c.backend = o.name;
  c.mask = uniform_spec(300, 64, 0.4, true);
  c.mask.params.sparse_heads = 2;
  c.mask.seed = 3;
  c.data_seed = 3;
  c.heads = {4, 2, 32};
  c.dtype = bench::DType::fp32;
  c.direction = bench::Direction::fwdbwd;
  const bench::Record r = runner.run(c);
  ASSERT_EQ(r.status, bench::Status::ok) << r.reason;
  ASSERT_TRUE(r.check);
  EXPECT_EQ(r.mask.heads, 2);
  EXPECT_GT(r.mask.density, 0);
  EXPECT_LT(r.mask.density, 1);
  // Another data seed scores other inputs: the mask is made again (and still checks).
  c.data_seed = 4;
  EXPECT_EQ(runner.run(c).status, bench::Status::ok);
}

}  // namespace
}  // namespace longattn

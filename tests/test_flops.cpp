#include <gtest/gtest.h>

#include <string>

#include "longattn/error.hpp"
#include "longattn/flops.hpp"

using namespace longattn;

namespace {

// Two 4-token blocks over S = 8; every kept block is a full 4 x 4 = 16 pairs.
BlockSparseMask two_block_mask(std::vector<std::vector<std::vector<std::int32_t>>> heads) {
  std::vector<BlockLists> kept;
  for (const auto& rows : heads) {
    BlockLists l;
    l.offsets.push_back(0);
    for (const auto& row : rows) {
      l.indices.insert(l.indices.end(), row.begin(), row.end());
      l.offsets.push_back(std::int64_t(l.indices.size()));
    }
    kept.push_back(std::move(l));
  }
  return BlockSparseMask(BlockPartition::uniform(8, 4), std::move(kept), false);
}

void expect_message(const HeadConfig& h, const std::string& needle) {
  try {
    validate(h);
    ADD_FAILURE() << "no InputError for " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Flops, FromAreaFollowsTheConvention) {
  const Flops f = flops_from_area(1000.0, 64);
  EXPECT_DOUBLE_EQ(f.forward, 4.0 * 1000 * 64);
  EXPECT_DOUBLE_EQ(f.backward, 2.5 * 4.0 * 1000 * 64);
  EXPECT_DOUBLE_EQ(f.total, 3.5 * 4.0 * 1000 * 64);
  EXPECT_DOUBLE_EQ(flops_from_area(0.0, 8).total, 0.0);
  EXPECT_THROW(flops_from_area(-1.0, 64), InputError);
  EXPECT_THROW(flops_from_area(10.0, 0), InputError);
}

TEST(Flops, CausalHandCase) {
  // Causal at S = 4096: 4096 * 4097 / 2 allowed pairs.
  const Mask causal = make_mask({Pattern::causal, 4096, {}, 0}).mask;
  ASSERT_EQ(total_area(causal), 8390656);
  const Flops f = attention_flops(causal, {64, 8, 128});
  EXPECT_DOUBLE_EQ(f.forward, 4.0 * 8390656 * 64 * 128);  // 274,945,015,808
  EXPECT_DOUBLE_EQ(f.forward, 274945015808.0);
  EXPECT_DOUBLE_EQ(f.backward, 2.5 * f.forward);
  EXPECT_DOUBLE_EQ(f.total, 3.5 * f.forward);

  // The same from a hand-written slice, and GQA does not change a static mask's FLOPs.
  const Mask slice = SliceMask(4096, {{{0, 4096}, {0, 4096}, SliceType::causal}});
  EXPECT_DOUBLE_EQ(attention_flops(slice, {64, 64, 128}).forward, f.forward);
  EXPECT_DOUBLE_EQ(attention_flops(slice, {64, 1, 128}).forward, f.forward);
}

TEST(Flops, SlidingWindowHandCase) {
  MaskParams p;
  p.window = 1024;
  const Mask m = make_mask({Pattern::sliding_window_causal, 4096, p, 0}).mask;
  ASSERT_EQ(total_area(m), 3673600);
  EXPECT_DOUBLE_EQ(attention_flops(m, {1, 1, 128}).forward, 4.0 * 3673600 * 128);
}

TEST(Flops, BlockSparsePerHeadGroup) {
  // KV head 0 keeps 2 blocks (32 pairs), KV head 1 keeps 3 (48 pairs).
  const Mask m = two_block_mask({{{0}, {1}}, {{0, 1}, {0}}});
  // Hq = 8 over Hkv = 2: each KV head's area counts for its 4 query heads.
  const Flops f = attention_flops(m, {8, 2, 16});
  EXPECT_DOUBLE_EQ(f.forward, 4.0 * (4 * 32 + 4 * 48) * 16);
  EXPECT_DOUBLE_EQ(f.total, 3.5 * f.forward);
  // A head count that is neither 1 nor heads_kv is an error, naming both counts.
  try {
    attention_flops(m, {12, 3, 16});
    ADD_FAILURE() << "no InputError for 2 mask heads with heads_kv 3";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("2 heads"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(3)"), std::string::npos) << e.what();
  }
}

TEST(Flops, SingleHeadDynamicMaskIsSharedByAllHeads) {
  const Mask m = two_block_mask({{{0, 1}, {1}}});  // 48 pairs
  EXPECT_DOUBLE_EQ(attention_flops(m, {8, 2, 16}).forward, 4.0 * 8 * 48 * 16);
  EXPECT_DOUBLE_EQ(attention_flops(m, {8, 8, 16}).forward, 4.0 * 8 * 48 * 16);
  EXPECT_DOUBLE_EQ(attention_flops(m, {3, 1, 16}).forward, 4.0 * 3 * 48 * 16);
}

TEST(Flops, GeneratedBlockSparseMatchesItsHeadMasks) {
  MaskParams p;
  p.sparse_heads = 4;
  p.sparse_block = 64;
  p.keep = 0.3;
  const GeneratedMask g = make_mask({Pattern::block_sparse_uniform, 1000, p, 5});
  const auto& b = std::get<BlockSparseMask>(g.mask);
  ASSERT_EQ(b.num_heads(), 4);
  double area = 0;  // each head through its canonical slice form, times 2 query heads per group
  for (int h = 0; h < 4; ++h) area += 2.0 * double(b.head_mask(h).area());
  EXPECT_DOUBLE_EQ(attention_flops(g.mask, {8, 4, 64}).forward, 4.0 * area * 64);
}

TEST(Flops, InvalidHeadConfigs) {
  EXPECT_NO_THROW(validate({64, 8, 128}));
  EXPECT_NO_THROW(validate({1, 1, 1}));
  expect_message({10, 4, 128}, "heads_q (10) is not a multiple of heads_kv (4)");
  expect_message({0, 1, 128}, "heads_q");
  expect_message({-8, 2, 128}, "heads_q");
  expect_message({8, 0, 128}, "heads_kv");
  expect_message({8, -2, 128}, "heads_kv");
  expect_message({8, 2, 0}, "head_dim");
  expect_message({8, 2, -64}, "head_dim");
  // attention_flops validates too.
  const Mask causal = make_mask({Pattern::causal, 16, {}, 0}).mask;
  EXPECT_THROW(attention_flops(causal, {10, 4, 128}), InputError);
  EXPECT_THROW(attention_flops(causal, {8, 2, 0}), InputError);
}

// The benchmark grid: cross product of named axes in a fixed order, seeds per draw, validation.
#include <gtest/gtest.h>

#include <set>

#include "longattn/bench/grid.hpp"
#include "longattn/error.hpp"

using namespace longattn;
using namespace longattn::bench;

namespace {
Grid small_grid() {
  Grid g;
  g.backends = {"a", "b"};
  g.masks = {{Pattern::full, {}}, {Pattern::causal, {}}};
  g.seqlens = {128, 256, 512};
  g.heads = {{4, 2, 0}, {4, 4, 0}};
  g.head_dims = {64};
  g.dtypes = {DType::bf16, DType::fp16};
  g.directions = {Direction::fwd, Direction::bwd};
  g.draws = 3;
  g.seed = 10;
  return g;
}
}  // namespace

TEST(BenchGrid, ExpandsTheCrossProductInOrder) {
  const Grid g = small_grid();
  const auto cases = expand(g);
  ASSERT_EQ(cases.size(), 2u * 2 * 3 * 2 * 1 * 2 * 2 * 3);
  EXPECT_EQ(cases.size(), grid_size(g));
  // Backend is the innermost axis, seqlen the outermost.
  EXPECT_EQ(cases[0].backend, "a");
  EXPECT_EQ(cases[1].backend, "b");
  EXPECT_EQ(cases[0].seqlen(), 128);
  EXPECT_EQ(cases.back().seqlen(), 512);
  EXPECT_EQ(cases[0].mask.pattern, Pattern::full);
  // Every case is distinct.
  std::set<std::string> seen;
  for (const Case& c : cases) seen.insert(describe(c) + std::to_string(c.mask.seed));
  EXPECT_EQ(seen.size(), cases.size());
}

TEST(BenchGrid, DrawsGetConsecutiveSeedsAndHeadDimsAreApplied) {
  const auto cases = expand(small_grid());
  std::set<std::uint64_t> seeds;
  for (const Case& c : cases) {
    EXPECT_EQ(c.mask.seed, 10u + std::uint64_t(c.draw));
    EXPECT_EQ(c.data_seed, c.mask.seed);
    EXPECT_EQ(c.heads.head_dim, 64);
    seeds.insert(c.mask.seed);
  }
  EXPECT_EQ(seeds, (std::set<std::uint64_t>{10, 11, 12}));
}

TEST(BenchGrid, RejectsBadAxes) {
  Grid g = small_grid();
  g.backends.clear();
  EXPECT_THROW(expand(g), InputError);
  g = small_grid();
  g.draws = 0;
  EXPECT_THROW(expand(g), InputError);
  g = small_grid();
  g.seqlens = {0};
  EXPECT_THROW(expand(g), InputError);
  g = small_grid();
  g.heads = {{6, 4, 0}};  // not a multiple
  try {
    expand(g);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("multiple"), std::string::npos) << e.what();
  }
}

TEST(BenchGrid, DefaultsAreThePaperSuiteOnGpuAndSmallOnCpu) {
  const Grid gpu = default_gpu_grid();
  EXPECT_EQ(gpu.seqlens, (std::vector<Index>{1024, 2048, 4096, 8192, 16384, 24576, 32768, 40960, 49152}));
  ASSERT_EQ(gpu.heads.size(), 2u);
  EXPECT_EQ(gpu.heads[0].heads_q, 64);
  EXPECT_EQ(gpu.heads[0].heads_kv, 8);
  EXPECT_EQ(gpu.heads[1].heads_kv, 64);
  EXPECT_EQ(gpu.head_dims, std::vector<int>{128});
  EXPECT_EQ(gpu.dtypes, std::vector<DType>{DType::bf16});
  EXPECT_EQ(gpu.masks.size(), 12u);  // the static patterns
  const Grid cpu = default_cpu_grid();
  EXPECT_EQ(cpu.backends, std::vector<std::string>{"cpu"});
  EXPECT_LE(cpu.seqlens.back(), 1024);
}

TEST(BenchGrid, ParsesDtypeAndDirection) {
  EXPECT_EQ(parse_dtype("bf16"), DType::bf16);
  EXPECT_EQ(parse_dtype("fp16"), DType::fp16);
  EXPECT_THROW(parse_dtype("int8"), InputError);
  EXPECT_EQ(parse_direction("fwdbwd"), Direction::fwdbwd);
  EXPECT_EQ(parse_direction("bwd"), Direction::bwd);
  EXPECT_THROW(parse_direction("sideways"), InputError);
}

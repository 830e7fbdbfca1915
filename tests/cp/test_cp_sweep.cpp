// CP sweeps: the cases of suites/cp.json for each weak-scaling point, and the resume keys, which
// must match the records of real GPU runs (tests/data/cp_records.jsonl: an excerpt of the H200
// sweeps on 1 and 2 GPUs, run with `longattn cp` and the same axes).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "longattn/bench/suite.hpp"
#include "longattn/cp/sweep.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {
namespace {

TEST(CpSweep, CpSuiteCoversEverySplitAtEachGpuCount) {
  const bench::Suite s = bench::load_suite("cp");
  ASSERT_EQ(s.cp_gpu.size(), 1u);
  // Topologies: ulysses, ring_p2p, ring_allgather, usp (every U | N), loongtrain (every U, w).
  const std::map<int, std::size_t> placements{{1, 5}, {2, 8}, {4, 12}, {8, 17}};
  for (auto [n, topologies] : placements) {
    SCOPED_TRACE(n);
    const auto cases = expand(s.cp_gpu[0], n, true);
    EXPECT_EQ(cases.size(), topologies * 6 * 2);  // x masks x dispatches
    std::set<std::string> keys;
    for (const CpCase& c : cases) {
      EXPECT_EQ(c.topology.ranks, n);
      EXPECT_EQ(c.mask.seqlen, 8192 * n);
      EXPECT_EQ(c.heads.heads_q, 64);
      EXPECT_EQ(c.heads.head_dim, 128);
      EXPECT_EQ(c.dtype, DType::bf16);
      keys.insert(case_key(c, "flash"));
    }
    EXPECT_EQ(keys.size(), cases.size()) << "two cases share a resume key";
  }
  const auto cpu = expand(s.cp_cpu[0], 2, false);
  ASSERT_FALSE(cpu.empty());
  EXPECT_EQ(cpu.front().dtype, DType::fp32);
  EXPECT_EQ(cpu.front().mask.seqlen, 2 * 128);
}

TEST(CpSweep, DefaultsFollowTheDevice) {
  bench::CpGrid g;
  const auto gpu = expand(g, 2, true);
  ASSERT_FALSE(gpu.empty());
  EXPECT_EQ(gpu.front().mask.seqlen, 2 * 8192);
  EXPECT_EQ(gpu.front().heads.heads_q, 64);
  const auto cpu = expand(g, 2, false);
  EXPECT_EQ(cpu.front().mask.seqlen, 2 * 256);
  EXPECT_EQ(cpu.front().dtype, DType::fp32);
  // The five algorithms at their default splits x full, causal, full_document, causal_document.
  EXPECT_EQ(cpu.size(), std::size_t(5 * 4));
}

TEST(CpSweep, RefusesBadNamesAndSizes) {
  bench::CpGrid g;
  g.algorithms = {"ring"};
  EXPECT_THROW(expand(g, 2, false), InputError);
  g = {};
  g.seqlens = {512};
  g.tokens_per_rank = {256};
  EXPECT_THROW(expand(g, 2, false), InputError);
  g = {};
  g.ulysses = {"x"};
  g.algorithms = {"usp"};
  EXPECT_THROW(expand(g, 2, false), InputError);
}

TEST(CpSweep, ResumeKeysMatchRealRecords) {
  const bench::Suite s = bench::load_suite("cp");
  std::ifstream in(std::string(LONGATTN_TEST_DATA) + "/cp_records.jsonl");
  ASSERT_TRUE(in);
  std::map<int, std::set<std::string>> expected;
  for (int n : {1, 2})
    for (const CpCase& c : expand(s.cp_gpu[0], n, true)) expected[n].insert(case_key(c, "flash"));
  std::string line;
  int records = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const int n = j["cp"]["ranks"].get<int>();
    EXPECT_TRUE(expected[n].count(case_key(j))) << case_key(j);
    ++records;
  }
  EXPECT_EQ(records, 8);
}

}  // namespace
}  // namespace longattn::cp

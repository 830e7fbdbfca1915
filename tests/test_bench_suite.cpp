// Suites (suites/*.json): every shipped suite parses, the CP suite describes the CP study, and
// malformed CP grids are refused with the field named.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "longattn/bench/suite.hpp"
#include "longattn/error.hpp"

namespace longattn::bench {
namespace {

using nlohmann::json;

TEST(BenchSuite, EveryShippedSuiteParses) {
  const auto names = list_suites();
  EXPECT_NE(std::find(names.begin(), names.end(), "cp"), names.end());
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const Suite s = load_suite(n);
    EXPECT_EQ(s.name, n);
    EXPECT_FALSE(s.description.empty());
    if (!s.is_cp()) {
      EXPECT_FALSE(suite_cases(s, false).empty());
    }
  }
}

TEST(BenchSuite, CpSuiteIsTheWeakScalingStudy) {
  const Suite s = load_suite("cp");
  ASSERT_TRUE(s.is_cp());
  EXPECT_TRUE(s.gpu.empty() && s.cpu.empty());
  EXPECT_THROW(suite_cases(s, true), InputError);  // the cases depend on the rank count
  ASSERT_EQ(s.cp_gpu.size(), 1u);
  const CpGrid& g = s.cp_gpu[0];
  EXPECT_EQ(g.algorithms,
            (std::vector<std::string>{"ulysses", "ring_p2p", "ring_allgather", "usp", "loongtrain"}));
  EXPECT_EQ(g.ulysses, std::vector<std::string>{"all"});
  EXPECT_EQ(g.dispatches, (std::vector<std::string>{"zigzag", "balanced"}));
  EXPECT_EQ(g.tokens_per_rank, std::vector<Index>{8192});
  EXPECT_TRUE(g.seqlens.empty());
  std::vector<Pattern> patterns;
  for (const MaskAxis& m : g.masks) {
    patterns.push_back(m.pattern);
    ASSERT_TRUE(m.params.histogram.has_value()) << to_string(m.pattern);
    EXPECT_EQ(m.params.histogram->name, builtin_histogram("prolong512k").name);
  }
  EXPECT_EQ(patterns, (std::vector<Pattern>{Pattern::full, Pattern::causal, Pattern::full_document,
                                            Pattern::causal_document, Pattern::shared_question,
                                            Pattern::global_sliding_window}));
  ASSERT_EQ(g.heads.size(), 1u);
  EXPECT_EQ(g.heads[0].heads_q, 64);
  EXPECT_EQ(g.heads[0].heads_kv, 8);
  EXPECT_EQ(g.head_dims, std::vector<int>{128});
  EXPECT_EQ(g.dtypes, std::vector<DType>{DType::bf16});
  EXPECT_EQ(g.directions, std::vector<Direction>{Direction::fwdbwd});

  ASSERT_EQ(s.cp_cpu.size(), 1u);
  EXPECT_EQ(s.cp_cpu[0].dtypes, std::vector<DType>{DType::fp32});
  EXPECT_EQ(s.cp_cpu[0].masks.size(), g.masks.size());
}

json cp_suite(json grid) {
  return {{"name", "t"}, {"cpu", json::array({std::move(grid)})}};
}

void expect_refused(const json& suite, const std::string& words) {
  try {
    parse_suite(suite, "t.json");
    ADD_FAILURE() << "accepted: " << suite.dump();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(BenchSuite, RefusesMalformedCpGrids) {
  const json ok = {{"cp", {{"tokens_per_rank", {256}}}}, {"masks", {"causal"}}};
  EXPECT_TRUE(parse_suite(cp_suite(ok), "t.json").is_cp());
  json g = ok;
  g["cp"]["tokens"] = {256};
  expect_refused(cp_suite(g), "unknown cp key 'tokens'");
  g = ok;
  g["backends"] = {"cpu"};
  expect_refused(cp_suite(g), "'backends' does not apply to a CP grid");
  g = ok;
  g["cp"].erase("tokens_per_rank");
  expect_refused(cp_suite(g), "tokens_per_rank (weak scaling) or seqlens");
  g = ok;
  g["seqlens"] = {512};
  expect_refused(cp_suite(g), "tokens_per_rank (weak scaling) or seqlens");
  g = ok;
  g["cp"]["ulysses"] = {true};
  expect_refused(cp_suite(g), "cp.ulysses");
  g = ok;
  g["cp"]["balance_chunks"] = 0;
  expect_refused(cp_suite(g), "balance_chunks");
  json mixed = cp_suite(ok);
  mixed["cpu"].push_back({{"masks", {"causal"}}, {"seqlens", {256}}});
  expect_refused(mixed, "mixes CP grids");
}

}  // namespace
}  // namespace longattn::bench

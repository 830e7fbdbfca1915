// Timing statistics and the rendering of records (JSON, CSV, table).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "longattn/bench/result.hpp"
#include "longattn/bench/timing.hpp"
#include "longattn/error.hpp"

using namespace longattn;
using namespace longattn::bench;

TEST(BenchTiming, QuantilesInterpolateBetweenRanks) {
  const std::vector<double> s = {1, 2, 3, 4, 5};
  EXPECT_DOUBLE_EQ(quantile(s, 0.5), 3);
  EXPECT_DOUBLE_EQ(quantile(s, 0.2), 1.8);  // position 0.8 between 1 and 2
  EXPECT_DOUBLE_EQ(quantile(s, 0.8), 4.2);
  EXPECT_DOUBLE_EQ(quantile(s, 0), 1);
  EXPECT_DOUBLE_EQ(quantile(s, 1), 5);
  EXPECT_THROW(quantile({}, 0.5), InputError);
  EXPECT_THROW(quantile(s, 1.5), InputError);
}

TEST(BenchTiming, SummarySortsItsSamples) {
  const TimingSummary t = summarize({5, 1, 4, 2, 3, 10});
  EXPECT_EQ(t.reps, 6);
  EXPECT_DOUBLE_EQ(t.median_ms, 3.5);
  EXPECT_DOUBLE_EQ(t.p20_ms, 2.0);
  EXPECT_DOUBLE_EQ(t.p80_ms, 5.0);
  EXPECT_DOUBLE_EQ(t.min_ms, 1);
  EXPECT_DOUBLE_EQ(t.max_ms, 10);
  EXPECT_DOUBLE_EQ(t.mean_ms, 25.0 / 6);
  EXPECT_THROW(summarize({}), InputError);
}

TEST(BenchTiming, RepsFollowTheBudgetWithinBounds) {
  TimingOptions o;
  o.min_reps = 20;
  o.max_reps = 500;
  o.time_budget_s = 1.0;
  EXPECT_EQ(planned_reps(100.0, o), 20);   // slow case: the minimum
  EXPECT_EQ(planned_reps(10.0, o), 100);   // 1 s / 10 ms
  EXPECT_EQ(planned_reps(0.01, o), 500);   // short case: capped
  EXPECT_EQ(planned_reps(0.0, o), 500);
  o.max_reps = 10;
  EXPECT_THROW(validate(o), InputError);
  o = TimingOptions{};
  o.time_budget_s = -1;
  EXPECT_THROW(validate(o), InputError);
}

namespace {
Record sample_record() {
  Record r;
  r.c.backend = "naive";
  r.c.mask.pattern = Pattern::causal;
  r.c.mask.seqlen = 16384;
  r.c.heads = {64, 8, 128};
  r.c.dtype = DType::bf16;
  r.c.direction = Direction::fwdbwd;
  r.mask.area = 134225920;
  r.mask.density = 0.5;
  r.flops = flops_from_area(double(r.mask.area) * 64, 128);
  PhaseResult f;
  f.timing = summarize({1.0, 1.1, 1.2});
  f.tflops = r.flops.forward / 1.1e-3 / 1e12;
  r.forward = f;
  r.backward = f;
  r.memory.case_gib = 1.5;
  CheckResult c;
  c.o = OutputCheck{0.002, 0.003, 0.006};
  c.dq = OutputCheck{0.004, 0.003, 0.006};
  r.check = c;
  return r;
}
}  // namespace

TEST(BenchRecord, JsonCarriesCaseMeasurementsAndStatus) {
  const Record r = sample_record();
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["case"]["pattern"], "causal");
  EXPECT_EQ(j["case"]["seqlen"], 16384);
  EXPECT_EQ(j["case"]["heads_kv"], 8);
  EXPECT_EQ(j["mask"]["area"], 134225920);
  EXPECT_DOUBLE_EQ(j["forward"]["median_ms"].get<double>(), 1.1);
  EXPECT_DOUBLE_EQ(j["memory"]["peak_gib"].get<double>(), 1.5);
  EXPECT_TRUE(j["check"]["o"]["pass"].get<bool>());
  EXPECT_TRUE(j["check"]["passed"].get<bool>());
  EXPECT_TRUE(j["backward"]["tflops"].is_number());
}

TEST(BenchRecord, CsvRowMatchesHeader) {
  const std::string header = csv_header(), row = csv_row(sample_record());
  auto fields = [](const std::string& s) { return std::count(s.begin(), s.end(), ',') + 1; };
  EXPECT_EQ(fields(header), fields(row)) << header << "\n" << row;
  EXPECT_EQ(row.rfind("naive,ok,causal,16384,", 0), 0u) << row;
}

TEST(BenchRecord, TableRowsAreFixedWidthUnderAHashHeader) {
  const std::string header = table_header();
  EXPECT_EQ(header[0], '#');
  EXPECT_EQ(header[header.find('\n') + 1], '#');
  Record a = sample_record(), b = sample_record();
  b.c.backend = "cudnn";
  b.forward->timing.median_ms = 123.456;
  EXPECT_EQ(table_row(a).size(), table_row(b).size());
  EXPECT_EQ(table_row(a).size(), header.find('\n'));
  b.status = Status::unsupported;
  b.reason = "not expressible";
  EXPECT_NE(table_row(b).find("unsupported  # not expressible"), std::string::npos);
}

TEST(BenchRecord, StatusNamesAndSizes) {
  EXPECT_EQ(to_string(Status::oom), "oom");
  EXPECT_EQ(to_string(Status::wrong), "wrong");
  EXPECT_EQ(short_size(16384), "16K");
  EXPECT_EQ(short_size(1 << 20), "1M");
  EXPECT_EQ(short_size(1000), "1000");
}

TEST(BenchRecord, CheckFailureNamesTheOutput) {
  CheckResult c;
  c.o = OutputCheck{0.001, 0.003, 0.006};
  EXPECT_TRUE(c.passed());
  c.dk = OutputCheck{0.05, 0.003, 0.006};
  EXPECT_FALSE(c.passed());
  EXPECT_NE(c.failure().find("dK"), std::string::npos);
  c.dk = OutputCheck{std::nan(""), 0.003, 0.006};
  EXPECT_FALSE(c.passed());
}

// Reports from benchmark records: loading runs, charts with every point, the support matrix and
// the winners, and clear errors for malformed input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "longattn/error.hpp"
#include "longattn/report/chart.hpp"
#include "longattn/report/run_report.hpp"

namespace longattn::report {
namespace {

using nlohmann::json;

json record(const std::string& backend, const std::string& pattern, long long s,
            const std::string& status, double fwd_tf, double bwd_tf) {
  json r = {{"backend", backend},
            {"status", status},
            {"reason", status == "ok" ? "" : "cannot run " + pattern},
            {"case", {{"pattern", pattern}, {"seqlen", s}, {"heads_q", 64}, {"heads_kv", 8},
                      {"head_dim", 128}, {"dtype", "bf16"}, {"direction", "fwdbwd"},
                      {"params", {{"keep", 0.5}, {"sparse_block", 128}}}}},
            {"memory", {{"peak_gib", 0.001 * double(s)}}},
            {"environment", {{"gpu_name", "Test GPU"}, {"git_commit", "abc"}}}};
  if (status == "ok") {
    r["forward"] = {{"median_ms", 1.0}, {"tflops", fwd_tf}};
    r["backward"] = {{"median_ms", 2.0}, {"tflops", bwd_tf}};
  }
  return r;
}

report::Run sample_run() {
  report::Run run{"sample", "", {}};
  for (long long s : {4096LL, 16384LL}) {
    run.records.push_back(record("flash", "causal", s, "ok", 300 + s / 1024.0, 250));
    run.records.push_back(record("cudnn", "causal", s, "ok", 310, 240 + s / 1024.0));
    run.records.push_back(record("cudnn", "shared_question", s, "unsupported", 0, 0));
    run.records.push_back(record("flash", "shared_question", s, "ok", 280, 230));
  }
  return run;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST(Chart, DrawsEveryFinitePointAndALegend) {
  LineChart c{"t", "S", "TF/s", true, {{"a", {{1024, 1}, {4096, 3}}}, {"b", {{1024, 2}}}}};
  const std::string svg = c.svg();
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("class=\"chart\""), std::string::npos);
  EXPECT_EQ(count(svg, "data-point=\"1\""), 3);
  EXPECT_NE(svg.find(">4K<"), std::string::npos);
  EXPECT_FALSE(c.empty());
  EXPECT_TRUE(LineChart{}.empty());
  EXPECT_EQ(short_count(1 << 20), "1M");
  EXPECT_EQ(short_count(1536), "1536");
}

TEST(RunReport, ChartsSupportMatrixAndWinners) {
  const report::Run run = sample_run();
  const Report rep = build_report(std::span<const report::Run>(&run, 1));
  // forward and backward TF/s charts for causal and shared_question, and memory charts
  EXPECT_EQ(count(rep.html, "class=\"chart\""), 2 + 2 + 2);
  EXPECT_EQ(rep.charts.size(), 6u);
  // 2 backends x 2 lengths on causal per direction, 1 backend x 2 on shared_question
  EXPECT_EQ(count(rep.html, "data-point=\"1\""), (4 + 2) * 2 + 6);
  EXPECT_NE(rep.html.find("<td class=\"unsupported\""), std::string::npos);
  EXPECT_NE(rep.html.find("id=\"self-check\""), std::string::npos);
  // cudnn wins causal forward at 4K (310 > 304), flash at 16K (316 > 310)
  EXPECT_NE(rep.markdown.find("| causal | 64:8 | 4K | cudnn (310) |"), std::string::npos)
      << rep.markdown;
  EXPECT_NE(rep.markdown.find("| causal | 64:8 | 16K | flash (316) |"), std::string::npos);
  EXPECT_NE(rep.markdown.find("unsupported 2"), std::string::npos);
  for (const auto& [stem, svg] : rep.charts) {
    EXPECT_EQ(svg.rfind("<?xml", 0), 0u) << stem;
    EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  }
}

TEST(RunReport, SeveralRunsAreLabelled) {
  report::Run a = sample_run(), b = sample_run();
  a.label = "h100";
  b.label = "h200";
  const std::vector<report::Run> runs{a, b};
  const Report rep = build_report(runs);
  EXPECT_NE(rep.html.find("flash @ h200"), std::string::npos);
}

TEST(RunReport, LoadsRunFoldersAndRejectsMalformedLines) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "longattn_report_test";
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "records.jsonl");
    for (const json& r : sample_run().records) f << r.dump() << "\n";
  }
  EXPECT_EQ(load_run(dir.string()).records.size(), 8u);
  {
    std::ofstream f(dir / "bad.jsonl");
    f << sample_run().records[0].dump() << "\n{not json\n";
  }
  try {
    load_run((dir / "bad.jsonl").string());
    FAIL() << "malformed line accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_run((dir / "missing").string()), InputError);
  EXPECT_THROW(build_report(std::span<const report::Run>()), InputError);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace longattn::report

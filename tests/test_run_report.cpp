// Reports from benchmark records: loading runs, charts with every point, the support matrix and
// the winners, and clear errors for malformed input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "longattn/error.hpp"
#include "longattn/report/bar_chart.hpp"
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

TEST(BarChart, DrawsEveryMeasuredBarInCategoryOrder) {
  BarChart c{"t", "TF/s", {"full", "causal", "shared_question"},
             {{"flash", {300.0, 280.0, 250.0}}, {"cudnn", {320.0, 300.0, std::nullopt}}}};
  const std::string svg = c.svg();
  EXPECT_EQ(svg.rfind("<svg class=\"chart\"", 0), 0u);
  EXPECT_EQ(count(svg, "data-point=\"1\""), 5);  // cudnn has no shared_question bar
  EXPECT_LT(svg.find(">full<"), svg.find(">causal<"));
  EXPECT_LT(svg.find(">causal<"), svg.find(">shared_question<"));
  EXPECT_NE(svg.find("cudnn on causal: TF/s = 300"), std::string::npos);
  EXPECT_FALSE(c.empty());
  EXPECT_TRUE((BarChart{"t", "y", {"full"}, {{"a", {std::nullopt}}}}.empty()));
}

TEST(RunReport, NamesEveryCommitOfAResumedRun) {
  report::Run run = sample_run();
  const Report one = build_report(std::span<const report::Run>(&run, 1));
  EXPECT_NE(one.markdown.find("| sample | 8 | Test GPU | abc |"), std::string::npos) << one.markdown;
  for (int i = 5; i < 8; ++i) run.records[i]["environment"]["git_commit"] = "def";
  const Report two = build_report(std::span<const report::Run>(&run, 1));
  EXPECT_NE(two.markdown.find("| abc (5), def (3) |"), std::string::npos) << two.markdown;
  EXPECT_NE(two.html.find("abc (5), def (3)"), std::string::npos);
  // Records 5..7 are the 16K causal cudnn, shared_question cudnn and flash: the 16K winners
  // compare two commits and say so; the 4K ones do not.
  EXPECT_NE(two.markdown.find("| causal | 64:8 | 16K | flash (316) † |"), std::string::npos) << two.markdown;
  EXPECT_NE(two.markdown.find("| causal | 64:8 | 4K | cudnn (310) | flash (250) |"), std::string::npos);
  EXPECT_NE(two.markdown.find("measured at different commits"), std::string::npos);
  EXPECT_EQ(one.markdown.find("†"), std::string::npos);
}

TEST(RunReport, ChartsSupportMatrixAndWinners) {
  const report::Run run = sample_run();
  const Report rep = build_report(std::span<const report::Run>(&run, 1));
  // forward and backward TF/s charts for causal and shared_question, memory charts, and the
  // per-mask bars at each length and direction
  EXPECT_EQ(count(rep.html, "class=\"chart\""), 2 + 2 + 2 + 4);
  EXPECT_EQ(rep.charts.size(), 10u);
  // lines: 2 backends x 2 lengths on causal per direction, 1 backend x 2 on shared_question,
  // memory 6; bars: 3 measured (backend, mask) pairs per length and direction
  EXPECT_EQ(count(rep.html, "data-point=\"1\""), (4 + 2) * 2 + 6 + 4 * 3);
  EXPECT_NE(rep.html.find("TF/s per mask at each length"), std::string::npos);
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

// ---- context parallelism and block-sparse ------------------------------------------------------

// Real records of `longattn cp` on H200s (tests/data/cp_records.jsonl): causal and full_document,
// ulysses and ring_p2p, zigzag, 8K tokens per GPU on 1 and 2 GPUs, flash kernel.
report::Run cp_run() {
  return load_run(std::string(LONGATTN_TEST_DATA) + "/cp_records.jsonl");
}

const std::string& chart_named(const Report& rep, const std::string& stem) {
  for (const auto& [s, svg] : rep.charts)
    if (s == stem) return svg;
  static const std::string none;
  ADD_FAILURE() << "no chart " << stem;
  return none;
}

TEST(RunReport, CpRecordsGetWeakScalingAndCommunicationCharts) {
  const report::Run run = cp_run();
  ASSERT_EQ(run.records.size(), 8u);
  const Report rep = build_report(std::span<const report::Run>(&run, 1));
  EXPECT_NE(rep.html.find("Context parallelism: forward weak scaling"), std::string::npos);
  EXPECT_NE(rep.html.find("Context parallelism: backward weak scaling"), std::string::npos);
  EXPECT_NE(rep.html.find("Context parallelism: communication volume per rank"), std::string::npos);
  // No kernel charts: CP records are per-GPU TF/s of a whole job, not a kernel's.
  for (const auto& [stem, svg] : rep.charts) {
    EXPECT_EQ(stem.rfind("cp_", 0), 0u) << stem;
    EXPECT_GT(count(svg, "data-point=\"1\""), 0) << stem;
  }
  // 2 masks x 2 directions of weak scaling, 2 algorithms x 2 directions of bytes.
  EXPECT_EQ(rep.charts.size(), 4u + 4u);
  // best placement, ulysses and ring_p2p, each at 1 and 2 GPUs
  const std::string& scaling = chart_named(rep, "cp_scaling_causal_fwd_8192_64-8_128");
  EXPECT_EQ(count(scaling, "data-point=\"1\""), 3 * 2);
  EXPECT_NE(scaling.find(">best placement<"), std::string::npos);
  EXPECT_EQ(count(scaling, "stroke-dasharray"), 0);  // no kernel records, no reference line
  // counted and modelled bytes at 1 and 2 GPUs; the model dashed
  const std::string& bytes = chart_named(rep, "cp_bytes_ulysses_fwd_8192_64-8_128");
  EXPECT_EQ(count(bytes, "data-point=\"1\""), 2 * 2);
  EXPECT_NE(bytes.find(">ulysses counted<"), std::string::npos);
  EXPECT_NE(bytes.find(">ulysses model<"), std::string::npos);
  EXPECT_EQ(count(bytes, "stroke-dasharray"), 1);
  // 150994944 B = 151 MB per rank forward on 2 GPUs
  EXPECT_NE(bytes.find("MB per rank = 151"), std::string::npos);
  EXPECT_NE(rep.markdown.find("fastest placement per mask and GPU count"), std::string::npos);
  EXPECT_NE(rep.markdown.find("| causal | 64:8 | 8K | 2 | "), std::string::npos) << rep.markdown;
  // the support matrix lists the CP algorithms
  EXPECT_NE(rep.markdown.find("| cp:ulysses |"), std::string::npos);
}

TEST(RunReport, KernelRecordsGiveTheSingleGpuReferenceLine) {
  report::Run run = cp_run();
  // flash at the per-GPU length on the CP study's causal mask (ProLong-512K documents named, as
  // the sweep does): a reference; on full_document with other documents: none.
  json causal = record("flash", "causal", 8192, "ok", 400, 420);
  causal["case"]["params"] = run.records[0]["case"]["params"];
  json documents = record("flash", "full_document", 8192, "ok", 300, 320);
  documents["case"]["params"]["histogram"] = "pile";
  run.records.push_back(causal);
  run.records.push_back(documents);
  const Report rep = build_report(std::span<const report::Run>(&run, 1));
  const std::string& scaling = chart_named(rep, "cp_scaling_causal_bwd_8192_64-8_128");
  EXPECT_NE(scaling.find(">flash kernel, 1 GPU, S=8K<"), std::string::npos);
  EXPECT_EQ(count(scaling, "data-point=\"1\""), 3 * 2 + 2);  // the reference at 1 and 2 GPUs
  EXPECT_NE(scaling.find("TF/s per GPU = 420"), std::string::npos);
  const std::string& documents_chart = chart_named(rep, "cp_scaling_full_document_bwd_8192_64-8_128");
  EXPECT_EQ(documents_chart.find("flash kernel"), std::string::npos);
  // the kernel's own charts are still drawn
  EXPECT_NE(rep.html.find("Forward TF/s against sequence length"), std::string::npos);
}

TEST(RunReport, BlockSparseRecordsGetAKeepRatioChart) {
  report::Run run{"sparse", "", {}};
  for (double keep : {0.2, 0.5, 0.8}) {
    json r = record("sparse_flash", "block_sparse_uniform", 32768, "ok", 100 * keep, 90 * keep);
    r["case"]["params"]["keep"] = keep;
    run.records.push_back(r);
  }
  const Report rep = build_report(std::span<const report::Run>(&run, 1));
  EXPECT_NE(rep.html.find("Block-sparse TF/s against keep ratio"), std::string::npos);
  const std::string& chart = chart_named(rep, "sparse_block_sparse_uniform-S-32K_fwd_64-8_128");
  EXPECT_EQ(count(chart, "data-point=\"1\""), 3);
  EXPECT_NE(chart.find("keep ratio = 0.8"), std::string::npos);
}

}  // namespace
}  // namespace longattn::report

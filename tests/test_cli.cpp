// The `longattn` CLI run as a user runs it: statistics against hand-computed cases, JSON records,
// exports that round-trip, pictures that are well-formed, and bad input that fails with a message
// naming the problem.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out;
  std::string err;
};

std::string quote(const std::string& arg) {
  std::string q = "'";
  for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A fresh directory per test for files the CLI writes.
fs::path scratch() {
  const auto* t = testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::temp_directory_path() /
                 ("longattn_cli_" + std::to_string(getpid()) + "_" + t->name());
  fs::create_directories(dir);
  return dir;
}

std::string command_line(const std::vector<std::string>& args) {
  std::string cmd = quote(LONGATTN_CLI);
  for (const std::string& a : args) cmd.append(" ").append(quote(a));
  return cmd;
}

CliRun longattn(const std::vector<std::string>& args) {
  const fs::path err = fs::temp_directory_path() / ("longattn_cli_err_" + std::to_string(getpid()));
  const std::string cmd = command_line(args) + " 2>" + quote(err.string());
  CliRun r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err);
  fs::remove(err);
  return r;
}

nlohmann::json json_of(const CliRun& r) {
  EXPECT_EQ(r.status, 0) << r.err;
  return nlohmann::json::parse(r.out);  // throws (failing the test) if not JSON
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Cli, ShowCausalAreaByHand) {
  const CliRun r = longattn({"masks", "show", "causal", "--seqlen", "4096"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "8,390,656")) << r.out;  // 4096 * 4097 / 2
  const auto j = json_of(longattn({"masks", "show", "causal", "--seqlen", "4096", "--json"}));
  EXPECT_EQ(j["area"], 8390656);
  EXPECT_DOUBLE_EQ(j["density"].get<double>(), 8390656.0 / (4096.0 * 4096.0));
  EXPECT_EQ(j["slices"]["count"], 1);
}

TEST(Cli, ShowSlidingWindowCausalAreaByHand) {
  // Rows 0..1023 see i + 1 keys, the other 3072 rows see w + 1 = 1025: 524800 + 3148800.
  const CliRun r = longattn({"masks", "show", "sliding_window_causal", "--window", "1024", "--seqlen", "4096"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "3,673,600")) << r.out;
  const auto j = json_of(longattn(
      {"masks", "show", "sliding_window_causal", "--window", "1024", "--seqlen", "4K", "--json"}));
  EXPECT_EQ(j["area"], 3673600);
  EXPECT_EQ(j["parameters"]["window"], 1024);
  EXPECT_EQ(j["seqlen"], 4096);
}

TEST(Cli, ShowJsonRecordHasEveryField) {
  const auto j = json_of(longattn({"masks", "show", "causal_document", "--doc-lens", "1000,250,2846",
                                   "--seed", "3", "--heads", "64:8", "--head-dim", "128", "--json"}));
  for (const char* key : {"pattern", "parameters", "seqlen", "seed", "area", "density", "documents",
                          "slices", "flops", "prefixes"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["pattern"], "causal_document");
  EXPECT_EQ(j["seqlen"], 4096);  // the --doc-lens sum when --seqlen is left out
  EXPECT_EQ(j["seed"], 3);
  const long area = 1000L * 1001 / 2 + 250L * 251 / 2 + 2846L * 2847 / 2;
  EXPECT_EQ(j["area"], area);
  EXPECT_EQ(j["documents"]["count"], 3);
  EXPECT_EQ(j["documents"]["min"], 250);
  EXPECT_EQ(j["documents"]["max"], 2846);
  EXPECT_NEAR(j["documents"]["mean"].get<double>(), 4096.0 / 3, 1e-9);
  EXPECT_EQ(j["slices"]["count"], 3);
  EXPECT_EQ(j["flops"]["forward"].get<double>(), 4.0 * double(area) * 64 * 128);
}

TEST(Cli, ShowSampledDocumentsAndPrefixes) {
  const auto j = json_of(longattn({"masks", "show", "prefix_lm_document", "--seqlen", "16K", "--seed", "2", "--json"}));
  EXPECT_EQ(j["seqlen"], 16384);
  EXPECT_EQ(j["parameters"]["histogram"], "prolong64k");  // 12K < S <= 64K
  const long docs = j["documents"]["count"].get<long>();
  EXPECT_GT(docs, 1);
  EXPECT_EQ(j["prefixes"]["count"].get<long>(), docs);
  EXPECT_GE(j["prefixes"]["min"].get<long>(), 1);
  // The same seed gives the same mask; another seed another one.
  EXPECT_EQ(j, json_of(longattn({"masks", "show", "prefix_lm_document", "--seqlen", "16K", "--seed", "2", "--json"})));
  EXPECT_NE(j["area"], json_of(longattn({"masks", "show", "prefix_lm_document", "--seqlen", "16K", "--seed", "5", "--json"}))["area"]);
}

TEST(Cli, ShowRendersSmallMasksPairByPair) {
  const CliRun r = longattn({"masks", "show", "causal", "--seqlen", "4", "--ascii"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "+--------+\n|@@      |\n|@@@@    |\n|@@@@@@  |\n|@@@@@@@@|\n+--------+\n")) << r.out;
}

TEST(Cli, FlopsByHand) {
  const auto j = json_of(longattn({"flops", "causal", "--seqlen", "4096", "--heads", "64:8", "--head-dim", "128", "--json"}));
  const double forward = 4.0 * 8390656 * 64 * 128;
  EXPECT_EQ(j["area"], 8390656);
  EXPECT_EQ(j["flops"]["forward"].get<double>(), forward);
  EXPECT_EQ(j["flops"]["backward"].get<double>(), 2.5 * forward);
  EXPECT_EQ(j["flops"]["total"].get<double>(), 3.5 * forward);
  EXPECT_EQ(j["flops"]["heads_q"], 64);
  EXPECT_EQ(j["flops"]["heads_kv"], 8);

  const CliRun text = longattn({"flops", "causal", "--seqlen", "4096", "--heads", "64:8", "--head-dim", "128"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_TRUE(contains(text.out, "2.749450e+11")) << text.out;  // 4 * 8390656 * 64 * 128
  EXPECT_TRUE(contains(text.out, "8,390,656")) << text.out;
}

TEST(Cli, FlopsIssuedTilesAndPerHeadMasks) {
  // Causal at S = 256 with 128x128 tiles: one diagonal tile per row of tiles is partial, one full.
  const auto t = json_of(longattn({"flops", "causal", "--seqlen", "256", "--tile", "128x128", "--json"}));
  EXPECT_EQ(t["issued"]["full_tiles"], 1);
  EXPECT_EQ(t["issued"]["partial_tiles"], 2);
  EXPECT_EQ(t["issued"]["area"], 3 * 128 * 128);

  // Block-sparse masks with a pattern per KV head: each head's area counts once per query head of
  // its group, so FLOPs = 4 * (summed area) * (Hq / Hkv) * D.
  const auto b = json_of(longattn({"flops", "block_sparse_uniform", "--seqlen", "2048", "--sparse-heads", "2",
                                   "--keep", "0.2", "--heads", "8:2", "--head-dim", "64", "--json"}));
  EXPECT_EQ(b["mask_heads"], 2);
  EXPECT_EQ(b["flops"]["forward"].get<double>(), 4.0 * b["area"].get<double>() * 4 * 64);
}

TEST(Cli, ExportJsonRoundTripsThroughMaskFile) {
  const fs::path dir = scratch();
  for (const std::string pattern : {"shared_question", "sliding_window", "block_sparse_variable"}) {
    const std::string file = (dir / (pattern + ".json")).string();
    const CliRun e = longattn({"masks", "export", pattern, "--seqlen", "3000", "--seed", "4", "--window", "100",
                            "--sparse-heads", "2", "--format", "json", "--output", file});
    ASSERT_EQ(e.status, 0) << e.err;
    const auto original = json_of(longattn({"masks", "show", pattern, "--seqlen", "3000", "--seed", "4",
                                            "--window", "100", "--sparse-heads", "2", "--json"}));
    const auto loaded = json_of(longattn({"masks", "show", "--mask-file", file, "--json"}));
    EXPECT_EQ(loaded["source"], file);
    for (const char* key : {"seqlen", "area", "density", "slices", "blocks", "mask_heads"})
      EXPECT_EQ(loaded[key], original[key]) << pattern << " " << key;
    // Exporting the loaded mask writes the same file.
    const std::string again = (dir / (pattern + "_again.json")).string();
    ASSERT_EQ(longattn({"masks", "export", "--mask-file", file, "--output", again}).status, 0);
    EXPECT_EQ(read_file(file), read_file(again)) << pattern;
  }
  // A loaded document mask is recognised as one (its cu_seqlens view) and reports its documents.
  const std::string docs = (dir / "docs.json").string();
  ASSERT_EQ(longattn({"masks", "export", "full_document", "--doc-lens", "5,7,3", "-o", docs}).status, 0);
  const auto d = json_of(longattn({"masks", "show", "--mask-file", docs, "--json"}));
  EXPECT_EQ(d["documents"]["count"], 3);
  EXPECT_EQ(d["documents"]["min"], 3);
  EXPECT_EQ(d["documents"]["max"], 7);
  EXPECT_EQ(d["area"], 25 + 49 + 9);
  // To stdout by default.
  const auto j = json_of(longattn({"masks", "export", "causal", "--seqlen", "8"}));
  EXPECT_TRUE(j.is_object());
}

TEST(Cli, ExportSvgIsWellFormed) {
  const fs::path file = scratch() / "mask.svg";
  const CliRun r = longattn({"masks", "export", "global_sliding_window", "--seqlen", "1M", "--output", file.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string svg = read_file(file);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_TRUE(contains(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_TRUE(contains(svg, "global_sliding_window"));
  EXPECT_GT(svg.size(), 1000u);
  EXPECT_TRUE(svg.ends_with("</svg>\n"));
  // Every element closes: count opening and closing tags of the container elements.
  auto count = [&](const std::string& what) {
    std::size_t n = 0;
    for (auto p = svg.find(what); p != std::string::npos; p = svg.find(what, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<svg"), count("</svg>"));
  EXPECT_EQ(count("<g "), count("</g>"));
  EXPECT_EQ(count("<rect"), count("/>") - count("<line"));
  const CliRun out = longattn({"masks", "export", "causal", "--seqlen", "100", "--format", "svg"});
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_EQ(out.out.rfind("<?xml", 0), 0u);
}

TEST(Cli, ExportPngHasSignatureAndSize) {
  const fs::path file = scratch() / "mask.png";
  const CliRun r = longattn({"masks", "export", "block_causal_document", "--seqlen", "64K", "--format", "png",
                          "--size", "300", "--output", file.string()});
  if (r.status != 0 && contains(r.err, "without libpng")) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string png = read_file(file);
  ASSERT_GT(png.size(), 40u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t(std::uint8_t(png[at])) << 24) | (std::uint32_t(std::uint8_t(png[at + 1])) << 16) |
           (std::uint32_t(std::uint8_t(png[at + 2])) << 8) | std::uint8_t(png[at + 3]);
  };
  EXPECT_EQ(be32(16), 300u);
  EXPECT_EQ(be32(20), 300u);
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
}

TEST(Cli, ListsEveryPattern) {
  const CliRun r = longattn({"masks", "list"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = json_of(longattn({"masks", "list", "--json"}));
  ASSERT_EQ(j.size(), 14u);
  for (const auto& p : j) {
    EXPECT_TRUE(contains(r.out, p["name"].get<std::string>())) << p["name"];
    EXPECT_TRUE(p.contains("family") && p.contains("rule") && p.contains("parameters"));
  }
  EXPECT_TRUE(contains(r.out, "window w (1024)") || contains(r.out, "(1024)")) << r.out;
}

TEST(Cli, HelpOnEverySubcommand) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"--help"}, {"masks", "--help"}, {"masks", "list", "--help"}, {"masks", "show", "--help"},
           {"masks", "export", "--help"}, {"flops", "--help"}}) {
    const std::string cmd = command_line(args);
    FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
    const int status = pclose(pipe);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
    EXPECT_TRUE(contains(out, "Usage")) << cmd << "\n" << out;
  }
  const CliRun show = longattn({"masks", "show", "--help"});
  for (const char* flag : {"--seqlen", "--seed", "--window", "--global", "--prefix", "--block", "--sparse-block",
                           "--min-block", "--avg-block", "--keep", "--sparse-causal", "--sparse-heads",
                           "--doc-lens", "--histogram", "--mask-file", "--json", "--heads", "--head-dim"})
    EXPECT_TRUE(contains(show.out, flag)) << flag;
}

TEST(Cli, HistogramFromCsv) {
  const fs::path csv = scratch() / "h.csv";
  std::ofstream(csv) << "begin,end,probability\n100,101,1\n";
  const auto j = json_of(longattn({"masks", "show", "full_document", "--seqlen", "1000", "--histogram",
                                   csv.string(), "--json"}));
  EXPECT_EQ(j["documents"]["count"], 10);  // every document is 100 long
  EXPECT_EQ(j["area"], 10 * 100 * 100);
}

// Bad input: non-zero exit and a message that names the problem.
void expect_failure(const std::vector<std::string>& args, const std::string& names) {
  const CliRun r = longattn(args);
  std::string cmd;
  for (const auto& a : args) cmd += a + " ";
  EXPECT_NE(r.status, 0) << cmd;
  EXPECT_LT(r.status, 128) << cmd << ": crashed\n" << r.err;
  EXPECT_TRUE(contains(r.err, names)) << cmd << ": message does not name '" << names << "':\n" << r.err;
}

TEST(Cli, BadInputFailsWithAMessage) {
  expect_failure({"masks", "show", "bogus", "--seqlen", "4096"}, "bogus");
  expect_failure({"masks", "show", "causal", "--seqlen", "0"}, "seqlen");
  expect_failure({"masks", "show", "causal", "--seqlen", "-5"}, "seqlen");
  expect_failure({"masks", "show", "causal", "--seqlen", "12X"}, "12X");
  expect_failure({"masks", "show", "causal"}, "--seqlen");
  expect_failure({"masks", "show", "sliding_window", "--window", "-1", "--seqlen", "4096"}, "window");
  expect_failure({"flops", "causal", "--seqlen", "4096", "--heads", "10:4"}, "multiple");
  expect_failure({"flops", "causal", "--seqlen", "4096", "--heads", "ten"}, "--heads");
  expect_failure({"flops", "causal", "--seqlen", "4096", "--head-dim", "0"}, "head_dim");
  expect_failure({"masks", "show", "block_sparse_uniform", "--seqlen", "4096", "--keep", "1.5"}, "keep");
  expect_failure({"masks", "show", "causal_document", "--seqlen", "4096", "--doc-lens", "1000,20"}, "4096");
  expect_failure({"masks", "show", "causal_document", "--seqlen", "4096", "--doc-lens", "1000,x"}, "--doc-lens");
  expect_failure({"masks", "show", "causal", "--seqlen", "64", "--histogram", "nope"}, "nope");
  expect_failure({"masks", "export", "causal", "--seqlen", "64", "--format", "gif"}, "gif");
  expect_failure({"masks", "export", "causal", "--seqlen", "64", "--format", "png"}, "--output");
  expect_failure({"masks", "export", "causal", "--seqlen", "64", "--format", "svg", "--size", "0"}, "--size");
  expect_failure({"masks", "show", "--mask-file", "/nonexistent/mask.json"}, "/nonexistent/mask.json");
  expect_failure({"masks", "show"}, "PATTERN");
  expect_failure({"masks", "show", "--unknown-flag"}, "unknown-flag");

  const fs::path dir = scratch();
  const fs::path syntax = dir / "syntax.json", overlap = dir / "overlap.json", range = dir / "range.json";
  std::ofstream(syntax) << "{\"seqlen\": 16, \"slices\": [";
  std::ofstream(overlap) << R"({"seqlen": 16, "slices": [{"q": [0, 8], "k": [0, 8], "type": "full"},
                                                        {"q": [4, 12], "k": [4, 12], "type": "causal"}]})";
  std::ofstream(range) << R"({"seqlen": 16, "slices": [{"q": [0, 20], "k": [0, 8], "type": "full"}]})";
  for (const fs::path& bad : {syntax, overlap, range}) {
    const CliRun r = longattn({"masks", "show", "--mask-file", bad.string()});
    EXPECT_EQ(r.status, 2) << bad << "\n" << r.err;  // an input error, not an internal one
    EXPECT_TRUE(contains(r.err, "error")) << r.err;
  }
}

TEST(Cli, BenchImportanceSelectionOnCpu) {
  // The mask is scored from the case's own seeded inputs; the record says so and checks ok.
  const CliRun r = longattn({"bench", "--backend", "cpu", "--mask", "block_sparse_uniform",
                             "--seqlen", "320", "--heads", "4:2", "--head-dim", "32", "--dtype",
                             "fp32", "--direction", "fwd", "--sparse-block", "64", "--keep", "0.5",
                             "--sparse-causal", "--sparse-heads", "2", "--selection", "importance",
                             "--reps", "2", "--min-reps", "2", "--warmup", "1", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(j["status"], "ok") << j.dump();
  EXPECT_NE(j.dump().find("\"selection\":\"importance\""), std::string::npos) << j.dump();
  expect_failure({"bench", "--backend", "cpu", "--mask", "block_sparse_uniform", "--seqlen", "256",
                  "--selection", "best"}, "best");
}

TEST(Cli, BenchNeverOverwritesRecords) {
  // A second run into a folder that holds records is refused; --resume adds only what is missing.
  const fs::path dir = scratch() / "run";
  fs::remove_all(dir);
  const std::vector<std::string> grid = {"bench", "--backend", "cpu", "--mask", "causal", "--seqlen",
                                         "128", "--heads", "2:1", "--head-dim", "16", "--dtype", "fp32",
                                         "--direction", "fwd", "--reps", "1", "--min-reps", "1",
                                         "--warmup", "1", "--out", dir.string()};
  ASSERT_EQ(longattn(grid).status, 0);
  const std::string first = read_file(dir / "records.jsonl");
  ASSERT_EQ(std::count(first.begin(), first.end(), '\n'), 1) << first;

  const CliRun again = longattn(grid);
  EXPECT_EQ(again.status, 2) << again.err;
  EXPECT_TRUE(contains(again.err, "already holds records")) << again.err;
  EXPECT_TRUE(contains(again.err, "--resume")) << again.err;
  EXPECT_EQ(read_file(dir / "records.jsonl"), first);  // untouched

  auto more = grid;
  more[6] = "128,160";  // one new length beside the recorded one
  more.push_back("--resume");
  const CliRun resumed = longattn(more);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  const std::string both = read_file(dir / "records.jsonl");
  EXPECT_EQ(both.substr(0, first.size()), first);
  EXPECT_EQ(std::count(both.begin(), both.end(), '\n'), 2) << both;
}

}  // namespace

#include "commands/sweep.hpp"

#include "commands/commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "longattn/bench/backend.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/progress.hpp"
#include "longattn/bench/suite.hpp"
#include "longattn/error.hpp"

namespace longattn::cli {

using namespace longattn::bench;
namespace fs = std::filesystem;

namespace {

// Keys of the cases already recorded in a run folder (for --resume).
std::set<std::string> recorded_cases(const fs::path& jsonl) {
  std::set<std::string> keys;
  std::ifstream in(jsonl);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("backend") || !j.contains("case"))
      throw InputError(fmt::format("{}:{}: not a benchmark record; cannot resume this run",
                                   jsonl.string(), n));
    keys.insert(case_key(j));
  }
  return keys;
}

}  // namespace

void add_sweep_options(CLI::App& cmd, SweepOptions& o) {
  TimingOptions& t = o.run.timing;
  cmd.add_option("--reps", t.max_reps, "most timed repetitions per phase")->capture_default_str()
      ->group("Timing");
  cmd.add_option("--min-reps", t.min_reps, "fewest timed repetitions per phase")
      ->capture_default_str()->group("Timing");
  cmd.add_option("--time-budget", t.time_budget_s,
                 "seconds per timed phase: short cases get more reps, up to --reps")
      ->capture_default_str()->group("Timing");
  cmd.add_option("--warmup", t.warmup, "untimed calls before timing")->capture_default_str()
      ->group("Timing");
  cmd.add_flag("--no-l2-flush", o.no_l2_flush, "do not flush the L2 cache between repetitions")
      ->group("Timing");
  cmd.add_option("--check-rows", o.run.check.rows,
                 "rows compared with the CPU reference when a full check is too costly (0 = all "
                 "rows always)")
      ->capture_default_str()->group("Correctness");
  cmd.add_flag("--no-check", o.no_check, "skip the correctness check")->group("Correctness");
  cmd.add_option("--out", o.out, "directory for records.jsonl (one JSON record per case) and results.csv")
      ->group("Output");
  cmd.add_flag("--json", o.json, "print one JSON record per case on stdout instead of the table")
      ->group("Output");
#ifdef LONGATTN_WITH_PEERS
  add_peer_bridge_options(cmd, o.bridge);
#endif
}

void finish_sweep_options(SweepOptions& o) {
  o.run.timing.l2_flush = !o.no_l2_flush;
  o.run.check.enabled = !o.no_check;
  validate(o.run.timing);
  if (o.run.check.rows < 0)
    throw InputError(fmt::format("--check-rows must be >= 0, got {}", o.run.check.rows));
}

bool known_backend(std::string_view name) {
#ifdef LONGATTN_WITH_PEERS
  if (peers::is_peer(name)) return true;
#endif
  return find_backend(name) != nullptr;
}

void require_known_backend(std::string_view name) {
  if (known_backend(name)) return;
  std::string own;
  for (const BackendInfo& b : registered_backends())
    own += fmt::format("{}{}", own.empty() ? "" : ", ", b.name);
#ifdef LONGATTN_WITH_PEERS
  const std::string peer_names = peers::peer_names();
#else
  const std::string peer_names = "none: this binary has no peer bridge";
#endif
  throw InputError(fmt::format("unknown backend '{}' (built in: {}; peers: {})", name, own,
                               peer_names));
}

std::size_t run_sweep(std::span<const Case> all, const SweepOptions& o, std::string_view title) {
  std::ofstream jsonl, csv;
  std::set<std::string> done;
  if (!o.out.empty()) {
    std::error_code ec;
    fs::create_directories(o.out, ec);
    if (ec) throw InputError(fmt::format("--out: cannot create '{}': {}", o.out, ec.message()));
    const fs::path records = fs::path(o.out) / "records.jsonl", table = fs::path(o.out) / "results.csv";
    // Measurements are never overwritten: a folder that holds records is resumed or refused.
    if (!o.resume && fs::exists(records) && fs::file_size(records, ec) > 0)
      throw InputError(fmt::format(
          "--out: '{}' already holds records; pass --resume to add to that run (recorded cases "
          "are skipped), or choose another folder",
          records.string()));
    if (o.resume && fs::exists(records)) done = recorded_cases(records);
    const auto mode = o.resume ? std::ios::app : std::ios::trunc;
    const bool new_csv = !o.resume || !fs::exists(table);
    jsonl.open(records, std::ios::out | mode);
    csv.open(table, std::ios::out | mode);
    if (!jsonl || !csv) throw InputError(fmt::format("--out: cannot write into '{}'", o.out));
    if (new_csv) csv << csv_header() << '\n';
  }
  std::vector<Case> cases;
  for (const Case& c : all)
    if (!done.count(case_key(c))) cases.push_back(c);

  auto env = std::make_shared<const Environment>(collect_environment(LONGATTN_GIT_COMMIT));
  const RunOptions& ro = o.run;
  if (!o.json) {
    fmt::print("# {}  commit {}  {}\n", title, env->git_commit, env->timestamp);
    if (env->gpu)
      fmt::print("# GPU {} ({} SMs, {:.0f} GiB, L2 {:.0f} MiB)  driver {}  CUDA runtime {}  cuDNN {}  "
                 "cuBLAS {}  NCCL {}\n",
                 env->gpu_name, env->gpu_sm_count, env->gpu_memory_gib, env->gpu_l2_mib, env->driver,
                 env->cuda_runtime, env->cudnn, env->cublas, env->nccl);
    else
      fmt::print("# no GPU: host {} ({} threads)\n", env->hostname, env->cpu_threads);
    fmt::print("# {} cases{}; timing: warm-up {}, reps {}..{} within {} s per phase, L2 flush {}; "
               "errors vs CPU reference ({})\n",
               cases.size(), done.empty() ? "" : fmt::format(" ({} already recorded)", done.size()),
               ro.timing.warmup, ro.timing.min_reps, ro.timing.max_reps, ro.timing.time_budget_s,
               ro.timing.l2_flush ? "on" : "off", ro.check.enabled ? "on" : "off");
#ifdef LONGATTN_WITH_PEERS
    const auto peer_cases = std::count_if(cases.begin(), cases.end(),
                                          [](const Case& c) { return peers::is_peer(c.backend); });
    if (peer_cases > 0)
      fmt::print("# {} of them on Python peers, through the bridge on {} (case timeout {} s)\n",
                 peer_cases, o.bridge.device, o.bridge.case_timeout_s);
#endif
    fmt::print("{}\n", table_header());
    std::fflush(stdout);
  }

  Runner runner(ro, env);
  Progress progress(cases.size());
  std::size_t failed = 0;
  progress.update(0, cases.empty() ? "" : describe(cases.front()));
  auto emit = [&](const Record& r, const std::string& line, std::size_t i) {
    if (r.status == Status::error || r.status == Status::wrong) ++failed;
    if (o.json) fmt::print("{}\n", line);
    else fmt::print("{}\n", table_row(r));
    std::fflush(stdout);
    if (jsonl.is_open()) {
      jsonl << line << '\n' << std::flush;
      csv << csv_row(r) << '\n' << std::flush;
    }
    progress.update(i + 1, i + 1 < cases.size() ? describe(cases[i + 1]) : "done");
  };
#ifdef LONGATTN_WITH_PEERS
  peers::run_cases(runner, cases, ro, o.bridge, env,
                   [&](const Record& r, const nlohmann::json& details, std::size_t i) {
                     emit(r, peers::to_json(r, details).dump(), i);
                   });
#else
  runner.run_all(cases, [&](const Record& r, std::size_t i) { emit(r, to_json(r).dump(), i); });
#endif
  return failed;
}

}  // namespace longattn::cli

// longattn bench: the kernel benchmark sweep over named axes (backend x mask x seqlen x heads x
// head dim x dtype x direction x draws), with records as a table, JSON Lines and CSV.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands/commands.hpp"
#include "commands/mask_options.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/grid.hpp"
#include "longattn/bench/progress.hpp"
#include "longattn/bench/runner.hpp"
#include "longattn/error.hpp"

namespace longattn::cli {
namespace {

using namespace longattn::bench;

struct BenchOptions {
  std::vector<std::string> backends, masks, seqlens, heads, dtypes, directions;
  std::vector<int> head_dims;
  MaskOptions mask;  // the shared mask parameter flags
  int draws = 1;
  std::uint64_t seed = 0;
  TimingOptions timing;
  bool no_l2_flush = false;
  Index check_rows = CheckOptions{}.rows;
  bool no_check = false;
  std::string out;
  bool json = false;
  bool list_backends = false;
};

Grid build_grid(const BenchOptions& o, bool gpu) {
  Grid g = gpu ? default_gpu_grid() : default_cpu_grid();
  if (gpu) {
    g.backends.clear();
    for (const BackendInfo& b : registered_backends())
      if (b.device == Device::gpu) g.backends.emplace_back(b.name);
  }
  if (!o.backends.empty()) g.backends = o.backends;
  for (const std::string& b : g.backends)
    if (!find_backend(b)) make_backend(b);  // throws InputError listing the built-in backends
  const MaskParams params = to_params(o.mask);
  if (!o.masks.empty()) {
    g.masks.clear();
    for (const std::string& m : o.masks) g.masks.push_back({parse_pattern(m), params});
  } else {
    for (MaskAxis& m : g.masks) m.params = params;
  }
  if (!o.seqlens.empty()) {
    g.seqlens.clear();
    for (const std::string& s : o.seqlens) g.seqlens.push_back(parse_seqlen(s, "--seqlen"));
  }
  if (!o.heads.empty()) {
    g.heads.clear();
    for (const std::string& h : o.heads) g.heads.push_back(parse_heads(h));
  }
  if (!o.head_dims.empty()) g.head_dims = o.head_dims;
  if (!o.dtypes.empty()) {
    g.dtypes.clear();
    for (const std::string& t : o.dtypes) g.dtypes.push_back(parse_dtype(t));
  }
  if (!o.directions.empty()) {
    g.directions.clear();
    for (const std::string& d : o.directions) g.directions.push_back(parse_direction(d));
  }
  g.draws = o.draws;
  g.seed = o.seed;
  return g;
}

void list_backends() {
  for (const BackendInfo& b : registered_backends()) {
    const auto backend = b.make();
    fmt::print("{:<8} {:<4} {}\n", b.name, to_string(b.device), b.summary);
    fmt::print("{:<13} masks: {}\n", "", backend->capabilities().masks);
  }
}

void run_bench(const BenchOptions& o) {
  if (o.list_backends) {
    list_backends();
    return;
  }
  const bool gpu = gpu_present();
  const Grid grid = build_grid(o, gpu);
  const std::vector<Case> cases = expand(grid);

  RunOptions ro;
  ro.timing = o.timing;
  ro.timing.l2_flush = !o.no_l2_flush;
  validate(ro.timing);
  if (o.check_rows < 0) throw InputError(fmt::format("--check-rows must be >= 0, got {}", o.check_rows));
  ro.check.rows = o.check_rows;
  ro.check.enabled = !o.no_check;

  std::ofstream jsonl, csv;
  if (!o.out.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.out, ec);
    if (ec) throw InputError(fmt::format("--out: cannot create '{}': {}", o.out, ec.message()));
    jsonl.open(std::filesystem::path(o.out) / "records.jsonl");
    csv.open(std::filesystem::path(o.out) / "results.csv");
    if (!jsonl || !csv) throw InputError(fmt::format("--out: cannot write into '{}'", o.out));
    csv << csv_header() << '\n';
  }

  auto env = std::make_shared<const Environment>(collect_environment(LONGATTN_GIT_COMMIT));
  if (!o.json) {
    fmt::print("# longattn bench  commit {}  {}\n", env->git_commit, env->timestamp);
    if (env->gpu)
      fmt::print("# GPU {} ({} SMs, {:.0f} GiB, L2 {:.0f} MiB)  driver {}  CUDA runtime {}  cuDNN {}  "
                 "cuBLAS {}  NCCL {}\n",
                 env->gpu_name, env->gpu_sm_count, env->gpu_memory_gib, env->gpu_l2_mib, env->driver,
                 env->cuda_runtime, env->cudnn, env->cublas, env->nccl);
    else
      fmt::print("# no GPU: host {} ({} threads)\n", env->hostname, env->cpu_threads);
    fmt::print("# {} cases; timing: warm-up {}, reps {}..{} within {} s per phase, L2 flush {}; "
               "errors vs CPU reference ({})\n",
               cases.size(), ro.timing.warmup, ro.timing.min_reps, ro.timing.max_reps,
               ro.timing.time_budget_s, ro.timing.l2_flush ? "on" : "off",
               ro.check.enabled ? "on" : "off");
    fmt::print("{}\n", table_header());
    std::fflush(stdout);
  }

  Runner runner(ro, env);
  Progress progress(cases.size());
  std::size_t failed = 0;
  progress.update(0, cases.empty() ? "" : describe(cases.front()));
  runner.run_all(cases, [&](const Record& r, std::size_t i) {
    if (r.status == Status::error || r.status == Status::wrong) ++failed;
    const std::string line = to_json(r).dump();
    if (o.json) fmt::print("{}\n", line);
    else fmt::print("{}\n", table_row(r));
    std::fflush(stdout);
    if (jsonl.is_open()) {
      jsonl << line << '\n' << std::flush;
      csv << csv_row(r) << '\n' << std::flush;
    }
    progress.update(i + 1, i + 1 < cases.size() ? describe(cases[i + 1]) : "done");
  });
  if (failed > 0) exit_code = 1;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Benchmark attention backends over a grid of cases: time (CUDA events, warm-up, >= 20 reps, "
      "L2 flushed, median/p20/p80), TF/s from exact mask-aware FLOPs, peak device memory and "
      "relative L2 error against the CPU reference.\n\n"
      "Every axis flag takes a list (repeat the flag or separate with commas); the grid is their "
      "cross product. Defaults on a GPU reproduce the paper's dense suite: every GPU backend, the "
      "12 static patterns, S = 1K,2K,4K,8K,16K,24K,32K,40K,48K, heads 64:8 and 64:64, D = 128, "
      "bf16, fwdbwd. Without a GPU the defaults are small enough for about a minute on two cores: "
      "backend cpu, masks full and causal_document, S = 256,512, heads 4:2, D = 64, fp32, fwdbwd.\n\n"
      "Statuses: ok, unsupported (with the reason), oom, error, wrong (error over tolerance). The "
      "sweep never stops at a bad case; the exit status is 1 when a case is error or wrong.");
  cmd->add_option("--backend", o->backends, "backends (see --list-backends); default: every GPU backend, or cpu")
      ->delimiter(',');
  cmd->add_flag("--list-backends", o->list_backends, "list the backends built into this binary and exit");
  cmd->add_option("--mask", o->masks, "mask patterns (see `longattn masks list`); default: the 12 static ones")
      ->delimiter(',');
  cmd->add_option("--seqlen", o->seqlens, "sequence lengths: 4096, 16K, 1M (K = 1024)")->delimiter(',');
  cmd->add_option("--heads", o->heads, "query:KV heads, e.g. 64:8,64:64 (or Hq for Hkv = Hq)")->delimiter(',');
  cmd->add_option("--head-dim", o->head_dims, "head dimensions D")->delimiter(',');
  cmd->add_option("--dtype", o->dtypes, "element types: bf16, fp16 (GPU backends), fp32 (cpu)")->delimiter(',');
  cmd->add_option("--direction", o->directions,
                  "fwd, bwd (timed alone from saved O and LSE), fwdbwd (both, each timed alone)")
      ->delimiter(',');
  cmd->add_option("--draws", o->draws, "seeded mask draws per grid point (seeds SEED, SEED+1, ...)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the first draw (masks and inputs)")->capture_default_str();
  add_mask_param_options(*cmd, o->mask);
  cmd->add_option("--reps", o->timing.max_reps, "most timed repetitions per phase")->capture_default_str()
      ->group("Timing");
  cmd->add_option("--min-reps", o->timing.min_reps, "fewest timed repetitions per phase")
      ->capture_default_str()->group("Timing");
  cmd->add_option("--time-budget", o->timing.time_budget_s,
                  "seconds per timed phase: short cases get more reps, up to --reps")
      ->capture_default_str()->group("Timing");
  cmd->add_option("--warmup", o->timing.warmup, "untimed calls before timing")->capture_default_str()
      ->group("Timing");
  cmd->add_flag("--no-l2-flush", o->no_l2_flush, "do not flush the L2 cache between repetitions")
      ->group("Timing");
  cmd->add_option("--check-rows", o->check_rows,
                  "rows compared with the CPU reference when a full check is too costly (0 = all "
                  "rows always)")
      ->capture_default_str()->group("Correctness");
  cmd->add_flag("--no-check", o->no_check, "skip the correctness check")->group("Correctness");
  cmd->add_option("--out", o->out, "directory for records.jsonl (one JSON record per case) and results.csv")
      ->group("Output");
  cmd->add_flag("--json", o->json, "print one JSON record per case on stdout instead of the table")
      ->group("Output");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace longattn::cli

// longattn bench: the kernel benchmark sweep over named axes (backend x mask x seqlen x heads x
// head dim x dtype x direction x draws), with records as a table, JSON Lines and CSV.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands/commands.hpp"
#include "commands/mask_options.hpp"
#include "commands/sweep.hpp"
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
  SweepOptions sweep;  // timing, correctness, output, peer bridge
  bool list_backends = false;
};

Grid build_grid(const BenchOptions& o, bool gpu) {
  Grid g = gpu ? default_gpu_grid() : default_cpu_grid();
  if (!o.backends.empty()) g.backends = o.backends;
  for (const std::string& b : g.backends)
    require_known_backend(b);
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

  BenchOptions run = o;
  finish_sweep_options(run.sweep);
  if (run_sweep(cases, run.sweep, "longattn bench") > 0) exit_code = 1;
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
      "Python peers (torch.sdpa.*, torch.flex, flash_attn*, flashinfer; `longattn peers list`) "
      "run in the same sweep through a child Python process, on the same masks, inputs, timing "
      "and CPU reference; a peer that cannot express a mask exactly is unsupported, and a crash, "
      "OOM or hang of a peer ends only its own case.\n\n"
      "Statuses: ok, unsupported (with the reason), oom, error, wrong (error over tolerance). The "
      "sweep never stops at a bad case; the exit status is 1 when a case is error or wrong.");
  cmd->add_option("--backend", o->backends,
                  "built-in backends (see --list-backends) and Python peers (see `longattn peers "
                  "list`), side by side in one run; default: every GPU backend, or cpu")
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
  add_sweep_options(*cmd, o->sweep);
  cmd->add_flag("--resume", o->sweep.resume,
                "add to --out's records.jsonl, skipping the cases it already holds (without it, "
                "a folder that holds records is refused, not overwritten)")
      ->group("Output");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace longattn::cli

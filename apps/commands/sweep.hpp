#pragma once
// Running a list of cases for the CLI: longattn's own backends through the Runner, Python peers
// through the bridge (when built), a `#` header and fixed-width rows (or JSON lines) on stdout,
// records.jsonl and results.csv in the output folder, a progress bar on stderr. Shared by
// `longattn bench` and `longattn suite`.
#include <CLI/CLI.hpp>
#include <span>
#include <string>
#include <string_view>

#include "longattn/bench/case.hpp"
#include "longattn/bench/runner.hpp"
#ifdef LONGATTN_WITH_PEERS
#include "longattn/peers/bridge.hpp"
#endif

namespace longattn::cli {

struct SweepOptions {
  bench::RunOptions run;
  std::string out;      // folder for records.jsonl and results.csv; empty: write none
  bool json = false;    // one JSON record per case on stdout instead of the table
  bool resume = false;  // keep out/records.jsonl and skip the cases it already holds
  bool no_l2_flush = false;  // flags, folded into `run` by finish_sweep_options()
  bool no_check = false;
#ifdef LONGATTN_WITH_PEERS
  peers::BridgeOptions bridge;
#endif
};

// The timing and correctness flags (--reps, --min-reps, --time-budget, --warmup, --no-l2-flush,
// --check-rows, --no-check) and --out / --json, bound to `o`; call finish_sweep_options() after
// parsing.
void add_sweep_options(CLI::App& cmd, SweepOptions& o);
void finish_sweep_options(SweepOptions& o);

// True when `name` is a backend the sweep can run (built in, or a peer of the bridge).
bool known_backend(std::string_view name);
// Throws InputError naming the built-in backends and the peers when `name` is not known.
void require_known_backend(std::string_view name);

// Runs the cases in order; returns how many ended error or wrong.
std::size_t run_sweep(std::span<const bench::Case> cases, const SweepOptions& o,
                      std::string_view title);

}  // namespace longattn::cli

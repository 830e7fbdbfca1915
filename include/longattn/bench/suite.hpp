#pragma once
// Suites: named, versioned sweeps kept as JSON files under suites/ (data, not code). A suite lists
// grids for GPU machines and for CPU-only machines; `longattn suite NAME` runs the one that fits.
//
//   {"name": "quick", "version": 1, "description": "...",
//    "gpu": [GRID, ...], "cpu": [GRID, ...]}
//   GRID: {"backends": ["cudnn", ...],        (optional: the default backends of the machine)
//          "masks": ["static" | "causal" | {"pattern": "sliding_window", "window": 512}, ...],
//          "seqlens": ["4K", 16384], "heads": ["64:8"], "head_dims": [128],
//          "dtypes": ["bf16"], "directions": ["fwd", "bwd"], "draws": 1, "seed": 0}
//   Mask parameters use the record's names: window, global, prefix, block, sparse_block,
//   min_block, average_block, keep, sparse_causal, sparse_heads, histogram.
//
// A grid with a "cp" object is a context-parallel grid (run under `mpirun -np N`, one weak-scaling
// point per N); its masks, heads, head_dims, dtypes, directions and seed mean what they mean above,
// "seqlens" is optional (total tokens) and "backends" and "draws" do not apply:
//   "cp": {"algorithms": ["all"] | ["ulysses", "usp", ...], "ulysses": ["all"] | [2, 4],
//          "inner_rings": [2], "gather_groups": [1, 4], "dispatches": ["zigzag", "balanced"],
//          "balance_chunks": 8, "tokens_per_rank": ["8K"]}
// A suite's grids are all CP grids or none: a CP suite runs once per rank count.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "longattn/bench/cp_grid.hpp"
#include "longattn/bench/grid.hpp"

namespace longattn::bench {

struct Suite {
  std::string name;
  int version = 1;
  std::string description;
  std::vector<Grid> gpu;
  std::vector<Grid> cpu;
  std::vector<CpGrid> cp_gpu;  // a CP suite has these instead
  std::vector<CpGrid> cp_cpu;
  std::string source;  // the file it came from

  bool is_cp() const { return !cp_gpu.empty() || !cp_cpu.empty(); }
};

// Throws InputError naming the field of a malformed suite.
Suite parse_suite(const nlohmann::json& j, const std::string& source);
// NAME is looked up as <suites dir>/NAME.json; a path to a .json file is read directly.
Suite load_suite(const std::string& name_or_path);
// $LONGATTN_SUITES_DIR, else the suites/ folder of the source tree this binary was built from.
std::string suites_dir();
std::vector<std::string> list_suites();

// The cases of the suite for this machine, in order (a kernel suite; a CP suite's cases depend on
// the rank count: cp::expand).
std::vector<Case> suite_cases(const Suite& s, bool gpu);

// Identifies a case across runs (backend and the record's full "case" object), so that a
// resumed run skips what is already recorded.
std::string case_key(const Case& c);
std::string case_key(const nlohmann::json& record);

}  // namespace longattn::bench

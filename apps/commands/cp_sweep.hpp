#pragma once
// Running CP grids under mpirun for the CLI: every rank expands the grids for the job's rank
// count, rank 0 prints the table (or JSON lines) and appends records.jsonl. Shared by `longattn cp`
// and `longattn suite` (CP suites).
#include <functional>
#include <string>
#include <vector>

#include "longattn/bench/cp_grid.hpp"
#include "longattn/bench/timing.hpp"
#include "longattn/bench/check.hpp"

namespace longattn::cli {

struct CpSweepSettings {
  std::string device = "auto";  // auto (GPU when present and built with NCCL), cpu, gpu
  std::string kernel;           // empty: the reference on the CPU, default_gpu_kernel() on a GPU
  int threads = 1;
  double timeout_s = 300;
  bench::TimingOptions timing{1, 5, 100, 0.5, true};
  bench::CheckOptions check;
  std::string out;              // folder for records.jsonl (rank 0); empty: none
  bool json = false;            // JSON lines on stdout instead of the table
  bool steps = false;           // each phase's traced steps under its row of the table
  bool resume = false;          // skip the cases out/records.jsonl holds for this rank count
  int inject_hang = -1;
  std::string title = "longattn cp";
};

// Collective: every rank must call it with the same arguments; `fingerprint` (the resolved
// options) is compared across ranks first, as a rank with other arguments would wait forever in
// a collective the others never make. `grids(gpu)` gives the grids for the device chosen (it may
// throw InputError, reported once all ranks agree). Sets exit_code to 1 when a case is error or
// wrong; for bad input rank 0 prints the error and every rank sets exit_code to 2.
void run_cp_sweep(const std::function<std::vector<bench::CpGrid>(bool gpu)>& grids,
                  const CpSweepSettings& settings, const std::string& fingerprint);

}  // namespace longattn::cli

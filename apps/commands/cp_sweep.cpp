#include "commands/cp_sweep.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "commands/commands.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/cp/communicator.hpp"
#include "longattn/cp/host_group.hpp"
#include "longattn/cp/local_attention.hpp"
#include "longattn/cp/run.hpp"
#include "longattn/cp/sweep.hpp"
#include "longattn/error.hpp"

namespace longattn::cli {

namespace fs = std::filesystem;
using namespace longattn::cp;

namespace {

// Keys of the CP cases out/records.jsonl already holds (kernel records in the folder are ignored).
std::set<std::string> recorded_cp_cases(const fs::path& jsonl) {
  std::set<std::string> keys;
  std::ifstream in(jsonl);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("backend") || !j.contains("case"))
      throw InputError(fmt::format("{}:{}: not a benchmark record; cannot resume this run",
                                   jsonl.string(), n));
    if (!j.contains("cp") || !j["cp"].is_object()) continue;
    try {
      keys.insert(case_key(j));
    } catch (const nlohmann::json::exception&) {
      throw InputError(fmt::format("{}:{}: a CP record without its placement; cannot resume",
                                   jsonl.string(), n));
    }
  }
  return keys;
}

}  // namespace

void run_cp_sweep(const std::function<std::vector<bench::CpGrid>(bool gpu)>& grids_for,
                  const CpSweepSettings& s, const std::string& fingerprint) {
  MpiSession mpi;
  HostGroup group = HostGroup::world(s.timeout_s);
  const bool root = group.rank() == 0;
  try {
    const auto all = group.all_gather(fingerprint);
    for (int r = 1; r < int(all.size()); ++r)
      if (all[r] != all[0])
        throw InputError(fmt::format("the ranks run different configurations: rank 0 has {}, "
                                     "rank {} has {}",
                                     all[0], r, all[r]));
    // Input errors found by some ranks only (rank 0 writes the output) are shared first.
    CpOptions ro;
    std::vector<CpCase> cases;
    std::shared_ptr<const bench::Environment> env;
    std::ofstream jsonl;
    std::string problem;
    // Rank 0's verdict per case: '1' = already recorded (resume), '0' = to run.
    std::string skip;
    try {
      const bool gpu_present = bench::gpu_present();
      if (s.device == "auto") ro.gpu = gpu_present && nccl_available();
      else if (s.device == "gpu") ro.gpu = true;
      else if (s.device == "cpu") ro.gpu = false;
      else throw InputError(fmt::format("--device: '{}' is not auto, cpu or gpu", s.device));
      ro.kernel = !s.kernel.empty() ? s.kernel : ro.gpu ? default_gpu_kernel() : "reference";
      ro.threads = s.threads;
      ro.timeout_s = s.timeout_s;
      ro.inject_hang = s.inject_hang;
      ro.timing = s.timing;
      bench::validate(ro.timing);
      if (s.check.rows < 0) throw InputError("--check-rows must be >= 0");
      if (!(s.check.full_check_flops >= 0)) throw InputError("--full-check-flops must be >= 0");
      ro.check = s.check;
      if (s.timeout_s <= 0) throw InputError("--timeout must be positive");
      if (s.threads < 0) throw InputError("--threads must be >= 0");
      const std::vector<bench::CpGrid> grids = grids_for(ro.gpu);
      if (grids.empty())
        throw InputError(fmt::format("{}: no grid for {} ranks", s.title, ro.gpu ? "GPU" : "CPU"));
      for (const bench::CpGrid& g : grids) {
        auto part = expand(g, group.size(), ro.gpu);
        cases.insert(cases.end(), part.begin(), part.end());
      }
      skip.assign(cases.size(), '0');
      if (root) {
        env = std::make_shared<const bench::Environment>(
            bench::collect_environment(LONGATTN_GIT_COMMIT));
        if (!s.out.empty()) {
          std::error_code ec;
          fs::create_directories(s.out, ec);
          if (ec)
            throw InputError(fmt::format("--out: cannot create '{}': {}", s.out, ec.message()));
          const fs::path records = fs::path(s.out) / "records.jsonl";
          if (s.resume && fs::exists(records)) {
            const auto done = recorded_cp_cases(records);
            for (std::size_t i = 0; i < cases.size(); ++i)
              if (done.count(case_key(cases[i], ro.kernel))) skip[i] = '1';
          }
          jsonl.open(records, std::ios::app);
          if (!jsonl) throw InputError(fmt::format("--out: cannot write into '{}'", s.out));
        }
      }
    } catch (const InputError& e) {
      problem = e.what();
    }
    for (const std::string& p : group.all_gather(problem))
      if (!p.empty()) throw InputError(p);
    skip = group.all_gather(skip).front();  // every rank skips what rank 0 found recorded
    const auto recorded = std::count(skip.begin(), skip.end(), '1');

    CpRunner runner(group, ro, env);
    if (root && !s.json) {
      fmt::print("# {}  commit {}  {}  {} ranks, {} device, {} kernel, {}\n", s.title,
                 env->git_commit, env->timestamp, group.size(), ro.gpu ? "GPU" : "CPU", ro.kernel,
                 ro.gpu ? "NCCL " + nccl_version() : std::string("MPI"));
      if (env->gpu)
        fmt::print("# GPU {} ({} SMs)  driver {}  CUDA {}\n", env->gpu_name, env->gpu_sm_count,
                   env->driver, env->cuda_runtime);
      fmt::print("# {} cases{}; timing: warm-up {}, reps {}..{} within {} s per phase; bytes "
                 "counted by the communicators vs the model (longattn comm)\n",
                 cases.size() - std::size_t(recorded),
                 recorded ? fmt::format(" ({} already recorded)", recorded) : "",
                 ro.timing.warmup, ro.timing.min_reps, ro.timing.max_reps,
                 ro.timing.time_budget_s);
      fmt::print("{}", table_header());
      std::fflush(stdout);
    }
    int failed = 0;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      if (skip[i] == '1') continue;
      CpRecord rec = runner.run(cases[i]);
      if (!root) continue;
      const auto st = rec.record.status;
      if (st == bench::Status::error || st == bench::Status::wrong) ++failed;
      const std::string line = to_json(rec).dump();
      if (s.json) fmt::print("{}\n", line);
      else fmt::print("{}{}", table_row(rec), s.steps ? step_lines(rec) : std::string());
      std::fflush(stdout);
      if (jsonl.is_open()) jsonl << line << '\n' << std::flush;
    }
    if (failed > 0) exit_code = 1;
  } catch (const InputError& e) {
    // Every rank reached the same verdict: rank 0 reports it, the others leave quietly, but only
    // after rank 0 has printed it (mpirun ends the job when the first rank exits non-zero).
    if (root) {
      fmt::print(stderr, "longattn: error: {}\n", e.what());
      std::fflush(stderr);
    }
    group.barrier();
    exit_code = 2;
  } catch (const std::exception& e) {
    // This rank failed while the others may be waiting for it: end the whole job.
    fmt::print(stderr, "{}: rank {}: error: {}\n", s.title, group.rank(), e.what());
    std::fflush(stderr);
    group.abort(3);
  }
}

}  // namespace longattn::cli

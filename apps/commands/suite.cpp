// `longattn suite NAME`: a named sweep from suites/NAME.json, for the machine at hand, resumable.
#include <fmt/format.h>

#include <chrono>
#include <ctime>

#include "commands/commands.hpp"
#include "commands/sweep.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/suite.hpp"
#include "longattn/error.hpp"
#ifdef LONGATTN_WITH_CP
#include <nlohmann/json.hpp>

#include "commands/cp_sweep.hpp"
#include "longattn/cp/sweep.hpp"
#endif

namespace longattn::cli {

namespace {

std::string utc_stamp() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

// A CP suite: every rank of the mpirun runs it (one rank without mpirun); the cases are those of
// the job's rank count, and those already in --out for that count are skipped.
void run_cp_suite(const bench::Suite& suite, SweepOptions sweep, bool dry_run, int dry_run_ranks) {
#ifdef LONGATTN_WITH_CP
  if (dry_run) {
    const bool gpu = bench::gpu_present();
    for (const bench::CpGrid& g : gpu ? suite.cp_gpu : suite.cp_cpu)
      for (const cp::CpCase& c : cp::expand(g, dry_run_ranks, gpu))
        fmt::print("{}\n", cp::describe(c));
    return;
  }
  // No time stamp in the default folder: every rank count (a separate mpirun) adds to it.
  if (sweep.out.empty()) sweep.out = fmt::format("runs/{}", suite.name);
  finish_sweep_options(sweep);
  CpSweepSettings s;
  s.timing = sweep.run.timing;
  s.check = sweep.run.check;
  s.out = sweep.out;
  s.json = sweep.json;
  s.resume = true;
  s.title = fmt::format("longattn suite {} (v{})", suite.name, suite.version);
  const nlohmann::json fingerprint{
      {"suite", suite.source}, {"version", suite.version}, {"out", s.out},
      {"warmup", s.timing.warmup}, {"min_reps", s.timing.min_reps},
      {"reps", s.timing.max_reps}, {"budget", s.timing.time_budget_s},
      {"l2", s.timing.l2_flush}, {"check", s.check.enabled}, {"rows", s.check.rows}};
  run_cp_sweep([&suite](bool gpu) { return gpu ? suite.cp_gpu : suite.cp_cpu; }, s,
               fingerprint.dump());
  if (exit_code != 2)  // 2: bad input, already reported, nothing ran
    fmt::print(stderr, "suite {}: records in {}/records.jsonl\n", suite.name, s.out);
#else
  (void)sweep, (void)dry_run, (void)dry_run_ranks;
  throw InputError(fmt::format(
      "suite {} is a context-parallel suite, but this longattn was built without MPI support "
      "(install MPI, e.g. Open MPI, and configure again so that `longattn cp` is built)",
      suite.name));
#endif
}

}  // namespace

void add_suite_command(CLI::App& app) {
  struct Options {
    std::string name;
    SweepOptions sweep;
    bool list = false;
    bool dry_run = false;
    int dry_run_ranks = 1;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "suite",
      "Run a named suite (suites/NAME.json): the grid for GPU machines when a GPU is present, the "
      "CPU one otherwise. Records go to a run folder (--out, default runs/NAME-<UTC time>); "
      "running again with the same --out resumes, skipping the cases already recorded. Turn the "
      "folder into a report with `longattn report`.\n\n"
      "A context-parallel suite (cp) runs under `mpirun -np N longattn suite cp --out DIR`, one "
      "weak-scaling point per N (without mpirun: N = 1); each N adds its records to DIR (default "
      "runs/NAME) and skips the cases already recorded for that N.");
  cmd->add_option("name", o->name, "suite name (quick, dense, sparse, ...) or a path to a suite .json");
  cmd->add_flag("--list", o->list, "list the suites and exit");
  cmd->add_flag("--dry-run", o->dry_run, "print the cases without running them");
  cmd->add_option("--ranks", o->dry_run_ranks,
                  "with --dry-run, for a CP suite: the rank count whose cases are printed")
      ->capture_default_str();
  add_sweep_options(*cmd, o->sweep);
  cmd->callback([o] {
    if (o->list || o->name.empty()) {
      if (!o->list) throw InputError("suite: name a suite (see `longattn suite --list`)");
      for (const std::string& n : bench::list_suites()) {
        const bench::Suite s = bench::load_suite(n);
        fmt::print("{:<8} {}\n", n, s.description);
      }
      return;
    }
    const bench::Suite suite = bench::load_suite(o->name);
    if (suite.is_cp()) return run_cp_suite(suite, o->sweep, o->dry_run, o->dry_run_ranks);
    const bool gpu = bench::gpu_present();
    const std::vector<bench::Case> cases = bench::suite_cases(suite, gpu);
    for (const bench::Case& c : cases)
      if (!known_backend(c.backend))
        throw InputError(fmt::format("suite {}: backend '{}' is not built into this binary",
                                     suite.name, c.backend));
    if (o->dry_run) {
      for (const bench::Case& c : cases) fmt::print("{}\n", bench::describe(c));
      return;
    }
    SweepOptions sweep = o->sweep;
    if (sweep.out.empty()) sweep.out = fmt::format("runs/{}-{}", suite.name, utc_stamp());
    sweep.resume = true;
    finish_sweep_options(sweep);
    const auto failed = run_sweep(cases, sweep,
                                  fmt::format("longattn suite {} (v{}, {} grid)", suite.name,
                                              suite.version, gpu ? "GPU" : "CPU"));
    fmt::print(stderr, "suite {}: records in {}/records.jsonl\n", suite.name, sweep.out);
    if (failed > 0) exit_code = 1;
  });
}

}  // namespace longattn::cli

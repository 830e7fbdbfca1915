// `longattn suite NAME`: a named sweep from suites/NAME.json, for the machine at hand, resumable.
#include <fmt/format.h>

#include <chrono>
#include <ctime>

#include "commands/commands.hpp"
#include "commands/sweep.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/suite.hpp"
#include "longattn/error.hpp"

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

}  // namespace

void add_suite_command(CLI::App& app) {
  struct Options {
    std::string name;
    SweepOptions sweep;
    bool list = false;
    bool dry_run = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "suite",
      "Run a named suite (suites/NAME.json): the grid for GPU machines when a GPU is present, the "
      "CPU one otherwise. Records go to a run folder (--out, default runs/NAME-<UTC time>); "
      "running again with the same --out resumes, skipping the cases already recorded. Turn the "
      "folder into a report with `longattn report`.");
  cmd->add_option("name", o->name, "suite name (quick, dense, sparse, ...) or a path to a suite .json");
  cmd->add_flag("--list", o->list, "list the suites and exit");
  cmd->add_flag("--dry-run", o->dry_run, "print the cases without running them");
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

// longattn: the command-line front end over the library.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>

#include "commands/commands.hpp"
#include "longattn/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"longattn: mask-aware benchmark and kernels for long-context attention"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("longattn 0.1.0 (") + LONGATTN_GIT_COMMIT + ")");

  using namespace longattn::cli;
  add_masks_command(app);
  add_flops_command(app);
#ifdef LONGATTN_WITH_BENCH
  add_bench_command(app);
#endif
#ifdef LONGATTN_WITH_SUITE
  add_suite_command(app);
#endif
#ifdef LONGATTN_WITH_REPORT
  add_report_command(app);
#endif
#ifdef LONGATTN_WITH_PEERS
  add_peers_command(app);
#endif
#ifdef LONGATTN_WITH_CP
  add_cp_command(app);
  add_comm_command(app);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const longattn::InputError& e) {
    fmt::print(stderr, "longattn: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "longattn: internal error: {}\n", e.what());
    return 3;
  }
  return exit_code;
}

#pragma once
// Each subcommand group registers itself on the root app; its callbacks run inside parse and throw
// longattn::InputError for bad input, which main() turns into a message and exit code 2.
#include <CLI/CLI.hpp>

namespace longattn::peers {
struct BridgeOptions;
}

namespace longattn::cli {

void add_masks_command(CLI::App& app);   // masks list | show | export
void add_flops_command(CLI::App& app);   // flops
void add_bench_command(CLI::App& app);   // bench (kernel benchmark harness)
void add_suite_command(CLI::App& app);   // suite NAME
void add_report_command(CLI::App& app);  // report RUN...
void add_cp_command(CLI::App& app);      // cp (context parallelism, under mpirun)
void add_comm_command(CLI::App& app);    // comm (communication model)
void add_peers_command(CLI::App& app);   // peers list | conformance (Python bridge)
// The flags of the peer bridge (--python, --peer-device, --case-timeout, ...), shared by bench.
void add_peer_bridge_options(CLI::App& app, peers::BridgeOptions& options);

// Set by main() from the command's exit status; callbacks that fail without an exception
// (a sweep with failed cases, say) set it.
inline int exit_code = 0;

}  // namespace longattn::cli

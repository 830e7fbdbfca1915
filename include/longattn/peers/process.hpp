#pragma once
// A child process for the peer bridge: stdin is a pipe we write request paths to; stdout and
// stderr are appended to a log file; it runs in its own process group so that a kill takes every
// process it started (compilers, workers) with it.
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace longattn::peers {

class ChildProcess {
 public:
  // Starts argv[0] (searched on PATH) with the current environment plus `env` (overriding).
  // Throws std::runtime_error when it cannot be started.
  ChildProcess(const std::vector<std::string>& argv,
               const std::vector<std::pair<std::string, std::string>>& env,
               const std::string& log_path);
  ~ChildProcess();  // kills it when still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Writes a line to its stdin; false when it no longer reads (it died).
  bool send_line(const std::string& line);
  void close_input();
  // The wait status once it ended (non-blocking); nullopt while it runs.
  std::optional<int> poll();
  // SIGKILL to its process group, then reaps it.
  void kill();
  int pid() const { return pid_; }

  // "exit code 1", "killed by signal 9 (SIGKILL)", ...
  static std::string describe(int wait_status);

 private:
  int pid_ = -1;
  int stdin_fd_ = -1;
  std::optional<int> status_;
};

}  // namespace longattn::peers

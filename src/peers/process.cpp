#include "longattn/peers/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <stdexcept>

extern char** environ;

namespace longattn::peers {

ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::vector<std::pair<std::string, std::string>>& env,
                           const std::string& log_path) {
  // A peer that dies while we write to it must not take us down with SIGPIPE: writes then fail
  // with EPIPE instead, and send_line() reports it.
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const auto eq = entry.find('=');
    bool overridden = false;
    for (const auto& [k, v] : env) overridden |= entry.compare(0, eq, k) == 0 && eq == k.size();
    if (!overridden) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    throw std::runtime_error(fmt::format("cannot open log '{}': {}", log_path, std::strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipe_fds[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, log_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, log_fd, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  const int rc = ::posix_spawnp(&pid_, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(pipe_fds[0]);
  ::close(log_fd);
  if (rc != 0) {
    ::close(pipe_fds[1]);
    pid_ = -1;
    throw std::runtime_error(fmt::format("cannot start '{}': {}", argv[0], std::strerror(rc)));
  }
  stdin_fd_ = pipe_fds[1];
}

ChildProcess::~ChildProcess() {
  close_input();
  if (!poll()) kill();
}

bool ChildProcess::send_line(const std::string& line) {
  if (stdin_fd_ < 0) return false;
  const std::string text = line + "\n";
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(stdin_fd_, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += std::size_t(n);
  }
  return true;
}

void ChildProcess::close_input() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  stdin_fd_ = -1;
}

std::optional<int> ChildProcess::poll() {
  if (status_ || pid_ < 0) return status_;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) status_ = st;
  return status_;
}

void ChildProcess::kill() {
  if (pid_ < 0 || status_) return;
  ::kill(-pid_, SIGKILL);  // the whole group
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = st;
}

std::string ChildProcess::describe(int s) {
  if (WIFEXITED(s)) return fmt::format("exit code {}", WEXITSTATUS(s));
  if (WIFSIGNALED(s)) {
    const int sig = WTERMSIG(s);
    const char* name = sig == SIGKILL ? " (SIGKILL: killed, e.g. by the kernel's OOM killer)"
                       : sig == SIGSEGV ? " (SIGSEGV)"
                       : sig == SIGABRT ? " (SIGABRT)"
                       : sig == SIGBUS  ? " (SIGBUS)"
                                        : "";
    return fmt::format("killed by signal {}{}", sig, name);
  }
  return fmt::format("wait status {}", s);
}

}  // namespace longattn::peers

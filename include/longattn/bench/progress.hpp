#pragma once
// A progress bar on stderr for long sweeps: redrawn in place on a terminal, one line per case
// otherwise (logs).
#include <cstddef>
#include <cstdio>
#include <string>

namespace longattn::bench {

class Progress {
 public:
  Progress(std::size_t total, std::FILE* out = stderr);
  ~Progress();  // ends the bar's line
  void update(std::size_t done, const std::string& label);

 private:
  std::size_t total_;
  std::FILE* out_;
  bool tty_;
  bool drawn_ = false;
};

}  // namespace longattn::bench

#include "longattn/bench/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

namespace longattn::bench {

Progress::Progress(std::size_t total, std::FILE* out)
    : total_(total), out_(out), tty_(isatty(fileno(out)) != 0) {}

Progress::~Progress() {
  if (tty_ && drawn_) fmt::print(out_, "\n");
}

void Progress::update(std::size_t done, const std::string& label) {
  const std::size_t total = total_ == 0 ? 1 : total_;
  if (!tty_) {
    fmt::print(out_, "[{}/{}] {}\n", done, total_, label);
    std::fflush(out_);
    return;
  }
  constexpr int kWidth = 30;
  const int filled = int(kWidth * done / total);
  std::string bar(std::size_t(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  // \33[K clears what a longer previous label left behind.
  fmt::print(out_, "\r[{}] {:>4}/{} {}\33[K", bar, done, total_, label);
  std::fflush(out_);
  drawn_ = true;
}

}  // namespace longattn::bench

#pragma once
// Runs cases and never stops at a bad one: each case's failure becomes its record's status, and
// everything a case allocated is released before the next (after a device fault, the device is
// reset and the GPU backends are rebuilt).
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "longattn/bench/case.hpp"
#include "longattn/bench/check.hpp"
#include "longattn/bench/result.hpp"
#include "longattn/bench/timing.hpp"

namespace longattn::bench {

class Backend;

struct RunOptions {
  TimingOptions timing;
  CheckOptions check;
};

class Runner {
 public:
  Runner(RunOptions options, std::shared_ptr<const Environment> env);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Uses this backend object for cases naming `name` instead of the registry's (test doubles).
  void use_backend(std::string name, std::unique_ptr<Backend> backend);

  Record run(const Case& c);
  // Runs all cases in order; on_record is called after each (for streaming output, progress).
  std::vector<Record> run_all(std::span<const Case> cases,
                              const std::function<void(const Record&, std::size_t index)>&
                                  on_record = {});

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace longattn::bench

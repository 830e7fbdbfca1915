#pragma once
// One exception type for bad input anywhere in the library: its message names the problem and is
// what the CLI prints before exiting non-zero.
#include <stdexcept>
#include <string>

namespace longattn {

struct InputError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

}  // namespace longattn

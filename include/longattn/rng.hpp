#pragma once
// A deterministic random stream: the same (seed, stream) gives the same numbers on every machine
// and standard library (std:: distributions are not portable, so none are used).
#include <cstdint>

namespace longattn {

class Rng {
 public:
  // Streams separate the draws of one mask (documents, prefixes, block scores) so that adding a
  // draw to one never shifts another.
  explicit Rng(std::uint64_t seed, std::uint64_t stream = 0);

  std::uint64_t next_u64();                                 // xoshiro256**
  std::int64_t uniform_int(std::int64_t lo, std::int64_t hi);  // inclusive, unbiased
  double uniform01();                                       // [0, 1), 53 bits

 private:
  std::uint64_t s_[4];
};

}  // namespace longattn

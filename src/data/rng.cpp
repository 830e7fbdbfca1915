#include "longattn/rng.hpp"

#include <fmt/format.h>

#include <limits>

#include "longattn/error.hpp"

namespace longattn {
namespace {

// SplitMix64 (Steele, Lea, Flood 2014): the seeding generator recommended for xoshiro.
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::uint64_t splitmix_next(std::uint64_t& state) {
  state += kGolden;
  return mix64(state);
}

constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(std::uint64_t seed, std::uint64_t stream) {
  // The stream is hashed (a bijection) before it is mixed in, so neighbouring (seed, stream)
  // pairs start SplitMix64 far apart instead of at overlapping points of one sequence.
  std::uint64_t state = seed ^ mix64(stream * kGolden + 0xD1B54A32D192ED03ull);
  for (auto& word : s_) word = splitmix_next(state);
  // mix64 is a bijection of four distinct inputs, so at most one word is zero: the all-zero state
  // (xoshiro's one fixed point) cannot occur.
}

std::uint64_t Rng::next_u64() {
  // xoshiro256** 1.0 (Blackman and Vigna).
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::int64_t Rng::uniform_int(std::int64_t lo, std::int64_t hi) {
  if (lo > hi) throw InputError(fmt::format("uniform_int: empty range [{}, {}]", lo, hi));
  // Width - 1 in unsigned arithmetic, which is exact for any lo <= hi.
  const std::uint64_t span = std::uint64_t(hi) - std::uint64_t(lo);
  if (span == std::numeric_limits<std::uint64_t>::max()) return std::int64_t(next_u64());
  const std::uint64_t n = span + 1;
  // Rejection: accept only draws from the largest multiple of n below 2^64, so that r % n is
  // exactly uniform. The rejected band has fewer than n values: at most one retry on average.
  const std::uint64_t reject_below = (0 - n) % n;  // 2^64 mod n
  std::uint64_t r = next_u64();
  while (r < reject_below) r = next_u64();
  return std::int64_t(std::uint64_t(lo) + r % n);
}

double Rng::uniform01() {
  // The top 53 bits, scaled by 2^-53: every double in [0, 1) on a 2^-53 grid, equally likely.
  return double(next_u64() >> 11) * 0x1.0p-53;
}

}  // namespace longattn

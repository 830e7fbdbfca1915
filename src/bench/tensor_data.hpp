#pragma once
// Host-side tensor data of a case: the seeded inputs and the conversions between fp32 and the
// stored element types (round to nearest even, as the device does).
#include <cstdint>
#include <span>
#include <vector>

#include "longattn/bench/case.hpp"
#include "longattn/bench/check.hpp"
#include "longattn/reference.hpp"

namespace longattn::bench {

std::uint16_t float_to_bf16(float x);
float bf16_to_float(std::uint16_t h);
std::uint16_t float_to_fp16(float x);
float fp16_to_float(std::uint16_t h);

// fp32 values -> bytes of the dtype, and back.
std::vector<std::byte> pack(std::span<const float> x, DType t);
void unpack(std::span<const std::byte> bytes, DType t, std::span<float> out);

// Q, K, V, dO with standard normal entries (deterministic in seed, independent of thread count),
// rounded to the dtype.
HostTensors make_inputs(const AttentionShape& s, DType t, std::uint64_t seed);

}  // namespace longattn::bench

#include "tensor_data.hpp"

#include <bit>
#include <cmath>
#include <cstring>

#include "longattn/rng.hpp"
#include "parallel.hpp"

namespace longattn::bench {

std::uint16_t float_to_bf16(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return std::uint16_t(u >> 16);
}

float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

std::uint16_t float_to_fp16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;            // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;           // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                 // below the smallest normal 2^-14
    // Subnormal: value / 2^-24, rounded to nearest even.
    const float scaled = std::bit_cast<float>(a) * 16777216.0f;  // exact (power of two)
    return sign | std::uint16_t(std::nearbyint(scaled));
  }
  std::uint32_t m = a + 0x0fffu + ((a >> 13) & 1u);      // round the 13 dropped bits
  return sign | std::uint16_t((m - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
}

float fp16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {
    const float v = float(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

std::vector<std::byte> pack(std::span<const float> x, DType t) {
  std::vector<std::byte> out(x.size() * element_size(t));
  if (t == DType::fp32) {
    std::memcpy(out.data(), x.data(), out.size());
    return out;
  }
  auto* h = reinterpret_cast<std::uint16_t*>(out.data());
  parallel_chunks(Index(x.size()), [&](Index b, Index e) {
    for (Index i = b; i < e; ++i) h[i] = t == DType::bf16 ? float_to_bf16(x[i]) : float_to_fp16(x[i]);
  });
  return out;
}

void unpack(std::span<const std::byte> bytes, DType t, std::span<float> out) {
  if (t == DType::fp32) {
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
    return;
  }
  const auto* h = reinterpret_cast<const std::uint16_t*>(bytes.data());
  parallel_chunks(Index(out.size()), [&](Index b, Index e) {
    for (Index i = b; i < e; ++i) out[i] = t == DType::bf16 ? bf16_to_float(h[i]) : fp16_to_float(h[i]);
  });
}

float round_to(DType t, float x) {
  switch (t) {
    case DType::bf16: return bf16_to_float(float_to_bf16(x));
    case DType::fp16: return fp16_to_float(float_to_fp16(x));
    case DType::fp32: break;
  }
  return x;
}

void round_all(DType t, std::span<float> x) {
  if (t == DType::fp32) return;
  parallel_chunks(Index(x.size()), [&](Index b, Index e) {
    for (Index i = b; i < e; ++i) x[i] = round_to(t, x[i]);
  });
}

namespace {
// Standard normal entries; chunk c of 4096 values is drawn from stream (tensor, c) so the result
// does not depend on how the work is split.
void fill_normal(std::vector<float>& x, std::size_t n, std::uint64_t seed, std::uint64_t tensor) {
  x.resize(n);
  constexpr Index kChunk = 4096;
  const Index chunks = ceil_div(Index(n), kChunk);
  parallel_for(chunks, [&](Index c) {
    Rng rng(seed, (tensor << 40) + std::uint64_t(c));
    const Index b = c * kChunk, e = std::min(Index(n), b + kChunk);
    for (Index i = b; i < e; i += 2) {
      // Box-Muller: two normals from two uniforms in (0, 1].
      const double u1 = 1.0 - rng.uniform01(), u2 = rng.uniform01();
      const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
      x[std::size_t(i)] = float(r * std::cos(a));
      if (i + 1 < e) x[std::size_t(i + 1)] = float(r * std::sin(a));
    }
  });
}
}  // namespace

HostTensors make_inputs(const AttentionShape& s, DType t, std::uint64_t seed) {
  HostTensors h;
  fill_normal(h.q, s.q_elements(), seed, 1);
  fill_normal(h.k, s.kv_elements(), seed, 2);
  fill_normal(h.v, s.kv_elements(), seed, 3);
  fill_normal(h.d_o, s.q_elements(), seed, 4);
  for (auto* x : {&h.q, &h.k, &h.v, &h.d_o}) round_all(t, *x);
  return h;
}

}  // namespace longattn::bench

#pragma once
// One benchmark case: which backend runs which mask, at which size, heads, dtype and direction.
// A case is plain data; the grid (grid.hpp) makes them, the runner (runner.hpp) measures them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "longattn/flops.hpp"
#include "longattn/patterns.hpp"

namespace longattn::bench {

// Element type of Q, K, V, O and the gradients (LSE is always fp32).
enum class DType { fp32, bf16, fp16 };
constexpr std::string_view to_string(DType t) {
  return t == DType::fp32 ? "fp32" : t == DType::bf16 ? "bf16" : "fp16";
}
constexpr std::size_t element_size(DType t) { return t == DType::fp32 ? 4 : 2; }
DType parse_dtype(std::string_view name);  // throws InputError listing the valid names

// fwd: forward alone. bwd: backward alone, from the saved O and LSE of an untimed forward.
// fwdbwd: both measured, each on its own; the record reports both and their sum.
enum class Direction { fwd, bwd, fwdbwd };
constexpr std::string_view to_string(Direction d) {
  return d == Direction::fwd ? "fwd" : d == Direction::bwd ? "bwd" : "fwdbwd";
}
Direction parse_direction(std::string_view name);  // throws InputError
inline bool runs_forward(Direction d) { return d != Direction::bwd; }
inline bool runs_backward(Direction d) { return d != Direction::fwd; }

struct Case {
  std::string backend;
  MaskSpec mask;              // mask.seed is this draw's seed
  int draw = 0;               // index of the draw at this grid point
  HeadConfig heads;
  DType dtype = DType::bf16;
  Direction direction = Direction::fwd;
  std::uint64_t data_seed = 0;  // Q, K, V, dO are drawn from it (independent of the backend)

  Index seqlen() const { return mask.seqlen; }
};

// "cudnn causal S=16384 H=64:8 D=128 bf16 fwd draw 0": for progress lines and messages.
std::string describe(const Case& c);

}  // namespace longattn::bench

#pragma once
// Recognises masks that are one diagonal band for every row: allowed iff
// -left <= j - i <= right (each bound optional). Full, causal and both sliding windows are; this is
// the form fused kernels with window arguments (cuDNN, FlashAttention) take exactly.
#include <optional>

#include "longattn/mask.hpp"

namespace longattn {

struct UniformBand {
  std::optional<Index> left;   // keys allowed up to `left` before the query; unset = unbounded
  std::optional<Index> right;  // keys allowed up to `right` after the query; 0 = causal
};

// Checked exactly against every row's intervals; nullopt when the mask is not such a band.
std::optional<UniformBand> uniform_band(const SliceMask& m);

}  // namespace longattn

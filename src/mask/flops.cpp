#include "longattn/flops.hpp"

#include <fmt/format.h>

#include <cmath>

#include "longattn/error.hpp"

namespace longattn {

void validate(const HeadConfig& h) {
  if (h.heads_q <= 0) throw InputError(fmt::format("heads_q must be positive, got {}", h.heads_q));
  if (h.heads_kv <= 0)
    throw InputError(fmt::format("heads_kv must be positive, got {}", h.heads_kv));
  if (h.head_dim <= 0)
    throw InputError(fmt::format("head_dim must be positive, got {}", h.head_dim));
  if (h.heads_q % h.heads_kv != 0)
    throw InputError(
        fmt::format("heads_q ({}) is not a multiple of heads_kv ({})", h.heads_q, h.heads_kv));
}

Flops flops_from_area(double area_times_heads_q, int head_dim) {
  if (head_dim <= 0) throw InputError(fmt::format("head_dim must be positive, got {}", head_dim));
  if (!std::isfinite(area_times_heads_q) || area_times_heads_q < 0)
    throw InputError(
        fmt::format("area must be finite and non-negative, got {}", area_times_heads_q));
  // Forward: two GEMMs (Q K^T and P V), 2 flops per multiply-add, over the allowed pairs.
  // Backward: five such GEMMs (recomputed Q K^T, dV, dP, dQ, dK), hence 2.5x.
  Flops f;
  f.forward = 4.0 * area_times_heads_q * head_dim;
  f.backward = 2.5 * f.forward;
  f.total = 3.5 * f.forward;
  return f;
}

Flops attention_flops(const Mask& m, const HeadConfig& h) {
  validate(h);
  if (const auto* s = std::get_if<SliceMask>(&m))
    return flops_from_area(double(s->area()) * h.heads_q, h.head_dim);

  const auto& b = std::get<BlockSparseMask>(m);
  // A single-head dynamic mask is shared by every KV head; otherwise KV head g's own area counts
  // once per query head of its group.
  if (b.num_heads() == 1) return flops_from_area(double(b.area(0)) * h.heads_q, h.head_dim);
  if (b.num_heads() != h.heads_kv)
    throw InputError(
        fmt::format("block-sparse mask has {} heads; expected 1 (shared) or heads_kv "
                    "({})",
                    b.num_heads(), h.heads_kv));
  const int group = h.heads_q / h.heads_kv;
  double area = 0;
  for (int g = 0; g < b.num_heads(); ++g) area += double(b.area(g)) * group;
  return flops_from_area(area, h.head_dim);
}

}  // namespace longattn

#pragma once
// Mask-aware FLOPs (DESIGN.md section 5): forward = 4 * area * Hq * D, backward = 2.5 x forward,
// forward+backward = 3.5 x forward. Per-head masks count each head group's own area.
#include "longattn/patterns.hpp"

namespace longattn {

struct HeadConfig {
  int heads_q = 1;
  int heads_kv = 1;
  int head_dim = 128;
};

// Throws InputError unless heads_q is a positive multiple of heads_kv and head_dim > 0.
void validate(const HeadConfig& h);

struct Flops {
  double forward = 0;
  double backward = 0;
  double total = 0;  // forward + backward
};

Flops flops_from_area(double area_times_heads_q, int head_dim);
// A dynamic mask must have 1 head (shared) or heads_kv heads; otherwise InputError.
Flops attention_flops(const Mask& m, const HeadConfig& h);

}  // namespace longattn

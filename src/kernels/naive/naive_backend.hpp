#pragma once
// The `naive` backend: cuBLAS GEMMs over a materialised S x S score matrix per head and a masked
// softmax reading the per-row key intervals view; forward and backward for any mask, GQA without
// copying K/V. Needs H * S^2 * 6 bytes (fp32 scores + P in the dtype): `oom` at long S is a result.
#include <memory>
#include <string>

#include "longattn/bench/backend.hpp"
#include "longattn/bench/cpu_backend.hpp"  // MaskAlteration

namespace longattn::bench {

struct NaiveBackendOptions {
  std::string name = "naive";
  MaskAlteration alter_mask;  // test doubles only: the mask actually run
};

std::unique_ptr<Backend> make_naive_backend(NaiveBackendOptions options);
std::unique_ptr<Backend> make_naive_backend();

}  // namespace longattn::bench

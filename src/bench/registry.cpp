// The backends built into this binary. To add one: declare its factory below and add one entry
// to kBackends. A backend in src/kernels/<folder>/ is guarded by LONGATTN_WITH_<FOLDER>, which
// src/kernels/CMakeLists.txt defines for every folder it builds.
#include <fmt/format.h>

#include <algorithm>

#include "longattn/bench/backend.hpp"
#include "longattn/error.hpp"

namespace longattn::bench {

std::unique_ptr<Backend> make_cpu_backend();  // src/bench/cpu_backend.cpp
std::unique_ptr<Backend> make_naive_backend();  // src/kernels/naive
std::unique_ptr<Backend> make_cudnn_backend();  // src/kernels/cudnn (only with its headers)
std::unique_ptr<Backend> make_flash_backend();                // src/kernels/flash
std::unique_ptr<Backend> make_flash_deterministic_backend();  // src/kernels/flash
std::unique_ptr<Backend> make_flash_hopper_backend();  // src/kernels/flash_hopper (sm_90a builds)

namespace {

constexpr BackendInfo kBackends[] = {
    {"cpu", Device::cpu, "CPU reference attention, fp32, any mask (host-clock timing)",
     make_cpu_backend},
#ifdef LONGATTN_WITH_NAIVE
    {"naive", Device::gpu,
     "cuBLAS GEMMs with the SxS score matrix materialised and a masked softmax, any mask",
     make_naive_backend},
#endif
#ifdef LONGATTN_WITH_CUDNN
    {"cudnn", Device::gpu,
     "cuDNN fused SDPA (frontend graph API): full, causal, sliding windows, document masks",
     make_cudnn_backend},
#endif
#ifdef LONGATTN_WITH_FLASH
    {"flash", Device::gpu,
     "longattn's mask-aware flash kernels (mma.sync, sm_80+): every static mask, "
     "document-aligned tiles + partial-tile bitmasks",
     make_flash_backend},
    {"flash_deterministic", Device::gpu,
     "flash with a deterministic backward (dQ from its own pass over query tiles, no atomics)",
     make_flash_deterministic_backend},
#endif
#ifdef LONGATTN_WITH_FLASH_HOPPER
    {"flash_hopper", Device::gpu,
     "longattn's sm_90a kernels (TMA + wgmma, warp-specialised), same prepared mask with "
     "128 x 128 tiles forward, 64 x 128 key-major backward (dQ by atomics, not deterministic)",
     make_flash_hopper_backend},
#endif
};

}  // namespace

std::span<const BackendInfo> registered_backends() { return kBackends; }

const BackendInfo* find_backend(std::string_view name) {
  for (const BackendInfo& b : kBackends)
    if (b.name == name) return &b;
  return nullptr;
}

std::unique_ptr<Backend> make_backend(std::string_view name) {
  if (const BackendInfo* b = find_backend(name)) return b->make();
  std::string names;
  for (const BackendInfo& b : kBackends) names += fmt::format("{}{}", names.empty() ? "" : ", ", b.name);
  throw InputError(fmt::format("unknown backend '{}' (built into this binary: {})", name, names));
}

std::optional<std::string> check_support(const Backend& b, const Problem& p) {
  const Capabilities& cap = b.capabilities();
  const AttentionShape& s = p.shape;
  if (std::find(cap.dtypes.begin(), cap.dtypes.end(), p.dtype) == cap.dtypes.end()) {
    std::string list;
    for (DType t : cap.dtypes) list += fmt::format("{}{}", list.empty() ? "" : ", ", to_string(t));
    return fmt::format("{} runs dtypes {} only, not {}", b.name(), list, to_string(p.dtype));
  }
  if (!cap.head_dims.empty() &&
      std::find(cap.head_dims.begin(), cap.head_dims.end(), s.head_dim) == cap.head_dims.end())
    return fmt::format("{} does not support head dim {}", b.name(), s.head_dim);
  if (s.heads_q <= 0 || s.heads_kv <= 0 || s.heads_q % s.heads_kv != 0)
    return fmt::format("heads_q ({}) is not a positive multiple of heads_kv ({})", s.heads_q,
                       s.heads_kv);
  if (s.heads_q != s.heads_kv && !cap.gqa)
    return fmt::format("{} does not support GQA (heads {}:{})", b.name(), s.heads_q, s.heads_kv);
  if (runs_forward(p.direction) && !cap.forward)
    return fmt::format("{} has no forward pass", b.name());
  if (runs_backward(p.direction) && !cap.backward)
    return fmt::format("{} has no backward pass", b.name());
  if (std::holds_alternative<BlockSparseMask>(p.canonical()) && !cap.dynamic_masks)
    return fmt::format("{} does not run dynamic block-sparse masks", b.name());
  return b.unsupported_reason(p);
}

}  // namespace longattn::bench

#pragma once
// The backend interface: what a kernel declares it can run, its setup outside timing, and its
// forward/backward launches inside timing. Adding a backend = one class here-shaped plus one line in
// src/bench/registry.cpp.
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "longattn/bench/case.hpp"
#include "longattn/patterns.hpp"
#include "longattn/reference.hpp"

struct CUstream_st;  // cudaStream_t without including CUDA headers

namespace longattn::bench {

using Stream = CUstream_st*;

enum class Device { cpu, gpu };
constexpr std::string_view to_string(Device d) { return d == Device::cpu ? "cpu" : "gpu"; }

// What a backend can run. The generic checks (dtype, head dim, GQA, direction, dynamic masks) are
// made from this by check_support(); mask-specific ones by Backend::supports_mask().
struct Capabilities {
  Device device = Device::gpu;
  std::vector<DType> dtypes;         // element types it accepts
  std::vector<int> head_dims;        // empty: any head dim
  bool gqa = true;                   // heads_q > heads_kv without copying K/V
  bool forward = true;
  bool backward = true;
  bool dynamic_masks = false;        // block-sparse masks with per-KV-head patterns
  bool q_row_stride = false;         // forward honours Tensors::q_row_stride (a head slice)
  std::string masks;                 // the masks it runs and the view it consumes, for --help
};

// The problem a backend is asked to prepare. The mask is the canonical one; any kernel format is
// derived from it (views/) inside Backend::prepare, never generated separately.
struct Problem {
  AttentionShape shape;                // seqlen_q = seqlen_k = S, batch 1, packed documents
  const GeneratedMask* mask = nullptr; // never null; outlives the Plan
  DType dtype = DType::bf16;
  Direction direction = Direction::fwd;

  const Mask& canonical() const { return mask->mask; }
};

// Tensors owned by the harness in reference.hpp's layouts (Q, O, dO, dQ: [S][Hq][D];
// K, V, dK, dV: [S][Hkv][D]; LSE: [Hq][S] fp32), element type Problem::dtype, in the backend's
// device memory (host memory for cpu backends). Pointers of a direction that is not run are null.
struct Tensors {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;
  const void* d_o = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  // Elements between consecutive rows of Q and O, 0 for packed rows (heads_q x head_dim): Q and O
  // may be a slice of the heads of wider tensors. Only a forward whose backend has
  // Capabilities::q_row_stride honours it; the harness never sets it.
  std::int64_t q_row_stride = 0;
};

// A prepared case. forward/backward are the timed region: on a GPU they only enqueue work on
// `stream` (no allocation, no host synchronisation, no host<->device copy, no mask building);
// cpu backends run synchronously and ignore the stream.
class Plan {
 public:
  virtual ~Plan() = default;
  // Writes O and LSE.
  virtual void forward(const Tensors& t, Stream stream) = 0;
  // From Q, K, V, O, LSE (as written by forward) and dO: writes dQ, dK, dV completely.
  virtual void backward(const Tensors& t, Stream stream) = 0;
  // Untimed, after a forward: a plan that keeps its softmax statistics in a private layout writes
  // them to t.lse in the standard one here (the correctness check reads t.lse).
  virtual void export_lse(const Tensors& t, Stream stream) {
    (void)t;
    (void)stream;
  }
  // Query-key pairs the kernel computes (tiles it visits), where it knows; for the record.
  virtual std::optional<Index> issued_area() const { return std::nullopt; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual const Capabilities& capabilities() const = 0;
  // Library and version it runs on ("cuBLAS 13.0", "cuDNN 9.19.0"), for the record.
  virtual std::string version() const { return {}; }
  // Mask-specific support, after the generic capability checks passed. No allocation.
  virtual std::optional<std::string> unsupported_reason(const Problem& p) const {
    (void)p;
    return std::nullopt;
  }
  // Setup outside timing: mask formats, workspaces, execution plans. Throws OutOfMemory,
  // Unsupported (found only while planning) or any other exception (reported as `error`).
  virtual std::unique_ptr<Plan> prepare(const Problem& p) = 0;
};

// Device memory ran out (in setup or in a launch). The harness reports `oom` and goes on.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The backend cannot run this case, discovered while planning (a library's support check).
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// nullopt when the backend can run p, else the reason (capabilities first, then the mask).
std::optional<std::string> check_support(const Backend& b, const Problem& p);

// The registry: every backend built into this binary, in src/bench/registry.cpp.
struct BackendInfo {
  std::string_view name;
  Device device;
  std::string_view summary;
  std::unique_ptr<Backend> (*make)();
};
std::span<const BackendInfo> registered_backends();
const BackendInfo* find_backend(std::string_view name);  // nullptr when not built in
std::unique_ptr<Backend> make_backend(std::string_view name);  // InputError listing the names

}  // namespace longattn::bench

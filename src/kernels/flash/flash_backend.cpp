// The `flash` backend (and `flash_deterministic`, whose backward computes dQ without atomics):
// longattn's own mask-aware kernels behind the benchmark's Backend interface. prepare() derives
// the tile lists and partial-tile bitmasks from the canonical mask and allocates the backward
// workspace; forward/backward only enqueue kernels.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <memory>

#include "device_memory.hpp"
#include "flash/flash_tensors.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/kernels/flash.hpp"

namespace longattn::bench {
namespace {

class FlashPlan final : public Plan {
 public:
  FlashPlan(const Problem& p, bool deterministic) : deterministic_(deterministic) {
    shape_ = flash_shape(p.shape);
    dtype_ = flash_dtype(p.dtype);
    const bool backward = runs_backward(p.direction);
    try {
      if (const auto* sparse = std::get_if<BlockSparseMask>(&p.canonical()))
        plan_ = flash::make_plan(*sparse, shape_, backward, deterministic);
      else
        plan_ = flash::make_plan(std::get<SliceMask>(p.canonical()), shape_, backward,
                                 deterministic);
    } catch (const flash::DeviceOutOfMemory& e) {
      throw OutOfMemory(e.what());
    }
    if (backward) workspace_ = DeviceBuffer(plan_.workspace_bytes, "flash: backward workspace");
  }

  void forward(const Tensors& t, Stream stream) override {
    flash::FwdParams p = forward_params(shape_, dtype_, t, plan_.fwd.view());
    flash::run_forward(p, stream);
  }

  void backward(const Tensors& t, Stream stream) override {
    flash::BwdParams p = backward_params(shape_, dtype_, t, workspace_.get(), plan_.bwd.view());
    p.deterministic = deterministic_;
    p.dq_mask = plan_.dq.view();
    flash::run_backward(p, stream);
  }

  // The forward's tiles (the backward visits the same pairs in its own tile shape).
  std::optional<Index> issued_area() const override { return plan_.fwd.issued_area(); }

 private:
  flash::Shape shape_;
  flash::DType dtype_ = flash::DType::bf16;
  bool deterministic_ = false;
  flash::Plan plan_;
  DeviceBuffer workspace_;
};

class FlashBackend final : public Backend {
 public:
  explicit FlashBackend(bool deterministic) : deterministic_(deterministic) {
    caps_.device = Device::gpu;
    caps_.dtypes = {DType::bf16, DType::fp16};
    caps_.head_dims = {64, 128};
    caps_.gqa = true;
    caps_.forward = true;
    caps_.backward = true;
    caps_.dynamic_masks = true;
    caps_.q_row_stride = true;
    caps_.masks =
        "all 12 static masks: document-aligned tiles of the canonical mask, exact bitmasks on "
        "partial tiles; block-sparse masks: per-KV-head tiles of the kept blocks";
  }
  std::string_view name() const override {
    return deterministic_ ? "flash_deterministic" : "flash";
  }
  const Capabilities& capabilities() const override { return caps_; }
  std::string version() const override { return "longattn flash (mma.sync, sm_80+)"; }

  std::optional<std::string> unsupported_reason(const Problem& p) const override {
    if (const auto* b = std::get_if<BlockSparseMask>(&p.canonical());
        b && b->num_heads() != 1 && b->num_heads() != p.shape.heads_kv)
      return fmt::format("block-sparse mask has {} heads; expected 1 or heads_kv", b->num_heads());
    // Grid rows are outer tiles: at most 65535 of the smallest (64 rows) tile.
    if (p.shape.seqlen_q > Index(65535) * 64 || p.shape.seqlen_k > Index(65535) * 64)
      return fmt::format("flash: sequence length {} is too long for one launch",
                         std::max(p.shape.seqlen_q, p.shape.seqlen_k));
    return std::nullopt;
  }

  std::unique_ptr<Plan> prepare(const Problem& p) override {
    return std::make_unique<FlashPlan>(p, deterministic_);
  }

 private:
  bool deterministic_;
  Capabilities caps_;
};

}  // namespace

std::unique_ptr<Backend> make_flash_backend() { return std::make_unique<FlashBackend>(false); }
std::unique_ptr<Backend> make_flash_deterministic_backend() {
  return std::make_unique<FlashBackend>(true);
}

}  // namespace longattn::bench

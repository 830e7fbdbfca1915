// The `flash_hopper` backend: longattn's sm_90a kernels (TMA + wgmma, warp-specialised) behind
// the benchmark's Backend interface. prepare() derives the tile lists and partial-tile bitmasks
// from the canonical mask, static or block-sparse (128 x 128 query-major forward, 64 x 128
// key-major backward), and allocates the backward workspace; forward/backward only enqueue
// kernels. The backward is not deterministic (dQ added to an fp32 sum by unordered TMA
// reductions); there is no deterministic variant.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <memory>
#include <utility>
#include <variant>

#include "device_memory.hpp"
#include "flash/flash_tensors.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/kernels/flash_hopper.hpp"

namespace longattn::bench {
namespace {

class HopperPlan final : public Plan {
 public:
  explicit HopperPlan(const Problem& p) {
    shape_ = flash_shape(p.shape);
    dtype_ = flash_dtype(p.dtype);
    const bool backward = runs_backward(p.direction);
    try {
      plan_ = std::visit(
          [&](const auto& mask) { return flash_hopper::make_plan(mask, shape_, backward); },
          p.canonical());
    } catch (const flash::DeviceOutOfMemory& e) {
      throw OutOfMemory(e.what());
    }
    if (backward)
      workspace_ = DeviceBuffer(plan_.workspace_bytes, "flash_hopper: backward workspace");
  }

  void forward(const Tensors& t, Stream stream) override {
    flash_hopper::run_forward(forward_params(shape_, dtype_, t, plan_.fwd.view()), stream);
  }
  void backward(const Tensors& t, Stream stream) override {
    flash_hopper::run_backward(
        backward_params(shape_, dtype_, t, workspace_.get(), plan_.bwd.view()), stream);
  }
  std::optional<Index> issued_area() const override { return plan_.fwd.issued_area(); }

 private:
  flash::Shape shape_;
  flash::DType dtype_ = flash::DType::bf16;
  flash::Plan plan_;
  DeviceBuffer workspace_;
};

class HopperBackend final : public Backend {
 public:
  HopperBackend() {
    caps_.device = Device::gpu;
    caps_.dtypes = {DType::bf16, DType::fp16};
    caps_.head_dims = {64, 128};
    caps_.gqa = true;
    caps_.forward = true;
    caps_.backward = true;
    caps_.dynamic_masks = true;
    caps_.q_row_stride = true;
    caps_.masks =
        "all 12 static masks and block-sparse (uniform, variable; per-KV-head patterns): the "
        "flash kernels' prepared mask (128 x 128 tiles forward, 64 x 128 key-major backward), "
        "exact bitmasks on partial tiles";
  }
  std::string_view name() const override { return "flash_hopper"; }
  const Capabilities& capabilities() const override { return caps_; }
  std::string version() const override { return "longattn flash_hopper (TMA + wgmma, sm_90a)"; }

  std::optional<std::string> unsupported_reason(const Problem& p) const override {
    if (p.shape.seqlen_q > Index(65535) * 64 || p.shape.seqlen_k > Index(65535) * 64)
      return fmt::format("flash_hopper: sequence length {} is too long for one launch",
                         std::max(p.shape.seqlen_q, p.shape.seqlen_k));
    int device = 0, major = 0, minor = 0;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
        (major != 9 || minor != 0))
      return fmt::format("flash_hopper needs an sm_90 GPU (H100/H200), this one is sm_{}{}", major,
                         minor);
    (void)cudaGetLastError();
    return std::nullopt;
  }

  std::unique_ptr<Plan> prepare(const Problem& p) override {
    return std::make_unique<HopperPlan>(p);
  }

 private:
  Capabilities caps_;
};

}  // namespace

std::unique_ptr<Backend> make_flash_hopper_backend() { return std::make_unique<HopperBackend>(); }

}  // namespace longattn::bench

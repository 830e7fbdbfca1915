// GPU local kernels for the context-parallel algorithms: any GPU backend of the benchmark (flash,
// cudnn, naive, ...) behind LocalAttention. A plan is the backend's own plan for the step's
// (shape, sub-mask), prepared outside timing; the calls enqueue on the device's stream.
#include <fmt/format.h>

#include "longattn/bench/backend.hpp"
#include "longattn/cp/local_attention.hpp"
#include "longattn/error.hpp"
#include "longattn/patterns.hpp"
#include "longattn/views/uniform_band.hpp"

namespace longattn::cp {

namespace {

class BackendPlan final : public LocalPlan {
 public:
  BackendPlan(bench::Backend& backend, const AttentionShape& s, const SliceMask& m, DType dtype,
              bool backward, Stream stream)
      : stream_(stream) {
    // The sub-mask travels as a generated mask of its own; its spec only labels messages.
    mask_.spec.pattern = Pattern::full;
    mask_.spec.seqlen = s.seqlen_q;
    mask_.mask = m;
    bench::Problem p{s, &mask_, dtype, backward ? bench::Direction::fwdbwd : bench::Direction::fwd};
    if (auto why = bench::check_support(backend, p)) throw bench::Unsupported(*why);
    plan_ = backend.prepare(p);
  }

  void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse) override {
    bench::Tensors t;
    t.q = q.data, t.k = k.data, t.v = v.data, t.o = o.data, t.lse = lse.f32();
    plan_->forward(t, stream_);
    plan_->export_lse(t, stream_);  // the merge reads the standard [H][S] layout
  }

  void forward_slice(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse,
                     std::size_t q_row_stride) override {
    bench::Tensors t;
    t.q = q.data, t.k = k.data, t.v = v.data, t.o = o.data, t.lse = lse.f32();
    t.q_row_stride = std::int64_t(q_row_stride);
    plan_->forward(t, stream_);
    plan_->export_lse(t, stream_);
  }

  void backward(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse, TensorRef d_o,
                TensorRef dq, TensorRef dk, TensorRef dv) override {
    bench::Tensors t;
    t.q = q.data, t.k = k.data, t.v = v.data, t.o = o.data, t.lse = lse.f32();
    t.d_o = d_o.data, t.dq = dq.data, t.dk = dk.data, t.dv = dv.data;
    plan_->backward(t, stream_);
  }

 private:
  Stream stream_;
  GeneratedMask mask_;  // outlives plan_
  std::unique_ptr<bench::Plan> plan_;
};

class BackendAttention final : public LocalAttention {
 public:
  BackendAttention(const std::string& name, Device& device)
      : backend_(bench::make_backend(name)), device_(device) {
    if (backend_->capabilities().device != bench::Device::gpu)
      throw InputError(fmt::format("'{}' is not a GPU backend", name));
  }
  std::string name() const override { return std::string(backend_->name()); }
  DType step_dtype(DType activations) const override { return activations; }
  bool slices_heads() const override { return backend_->capabilities().q_row_stride; }

  std::unique_ptr<LocalPlan> plan(const AttentionShape& shape, const SliceMask& mask, DType dtype,
                                  bool backward) override {
    const std::string_view n = backend_->name();
    const bool rectangular_ok = n.starts_with("flash");
    // The benchmark's problems are square; only flash is known to take rectangular ones
    // (ring_allgather's T x N T step).
    if (!rectangular_ok && shape.seqlen_q != shape.seqlen_k)
      throw bench::Unsupported(fmt::format("{} runs square problems; this step is {} x {}", n,
                                           shape.seqlen_q, shape.seqlen_k));
    // cuDNN keeps the statistics of document (ragged) masks in a private layout that its backward
    // reads; a context-parallel backward feeds it the merged LSE in the standard layout.
    if (backward && n == "cudnn" && !uniform_band(mask))
      throw bench::Unsupported("cudnn's backward of a ragged (document) sub-mask reads private "
                               "statistics, not the merged LSE");
    return std::make_unique<BackendPlan>(*backend_, shape, mask, dtype, backward, device_.stream());
  }

 private:
  std::unique_ptr<bench::Backend> backend_;
  Device& device_;
};

}  // namespace

std::string default_gpu_kernel() {
  if (bench::find_backend("flash_hopper")) {
    // flash_hopper itself says whether this GPU runs it (sm_90 only): asked on a tiny problem.
    MaskSpec full;
    full.seqlen = 128;
    const GeneratedMask m = make_mask(full);
    const bench::Problem p{{128, 128, 1, 1, 128, 0}, &m, DType::bf16, bench::Direction::fwd};
    if (!bench::check_support(*bench::make_backend("flash_hopper"), p)) return "flash_hopper";
  }
  return "flash";
}

std::unique_ptr<LocalAttention> make_gpu_attention(const std::string& kernel, Device& device) {
  if (!device.gpu()) throw InputError("a GPU kernel needs the GPU device");
  return std::make_unique<BackendAttention>(kernel, device);
}

}  // namespace longattn::cp

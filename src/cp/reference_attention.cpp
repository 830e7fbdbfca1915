// The CPU reference as the local kernel of the context-parallel algorithms.
#include <fmt/format.h>

#include "longattn/cp/local_attention.hpp"
#include "longattn/error.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn::cp {

namespace {

std::span<const float> in(TensorRef t, std::size_t n) {
  if (t.count != n) throw std::logic_error(fmt::format("tensor of {} elements, {} expected", t.count, n));
  return {t.f32(), n};
}
std::span<float> out(TensorRef t, std::size_t n) {
  if (t.count != n) throw std::logic_error(fmt::format("tensor of {} elements, {} expected", t.count, n));
  return {t.f32(), n};
}

class ReferencePlan final : public LocalPlan {
 public:
  ReferencePlan(const AttentionShape& s, const SliceMask& m, int threads)
      : shape_(s), rows_(row_intervals(m)) {
    opt_.threads = threads;
  }

  void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse) override {
    const std::size_t nq = shape_.q_elements(), nk = shape_.kv_elements();
    reference_forward(shape_, mask(), in(q, nq), in(k, nk), in(v, nk), out(o, nq),
                      out(lse, std::size_t(shape_.seqlen_q) * shape_.heads_q), {}, opt_);
  }

  void backward(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse, TensorRef d_o,
                TensorRef dq, TensorRef dk, TensorRef dv) override {
    const std::size_t nq = shape_.q_elements(), nk = shape_.kv_elements();
    reference_backward(shape_, mask(), in(q, nq), in(k, nk), in(v, nk), in(o, nq),
                       in(lse, std::size_t(shape_.seqlen_q) * shape_.heads_q), in(d_o, nq),
                       out(dq, nq), out(dk, nk), out(dv, nk), opt_);
  }

 private:
  MaskRows mask() const { return MaskRows{{&rows_, 1}}; }
  AttentionShape shape_;
  RowIntervals rows_;
  ReferenceOptions opt_;
};

class ReferenceAttention final : public LocalAttention {
 public:
  explicit ReferenceAttention(int threads) : threads_(threads) {}
  std::string name() const override { return "reference"; }
  DType step_dtype(DType) const override { return DType::fp32; }
  std::unique_ptr<LocalPlan> plan(const AttentionShape& shape, const SliceMask& mask, DType dtype,
                                  bool) override {
    if (dtype != DType::fp32)
      throw InputError(fmt::format("the CPU reference kernel runs fp32, not {}",
                                   bench::to_string(dtype)));
    return std::make_unique<ReferencePlan>(shape, mask, threads_);
  }

 private:
  int threads_;
};

}  // namespace

std::unique_ptr<LocalAttention> make_reference_attention(int threads) {
  return std::make_unique<ReferenceAttention>(threads);
}

}  // namespace longattn::cp

// The CPU reference as the local kernel of the context-parallel algorithms.
#include <fmt/format.h>

#include <algorithm>
#include <vector>

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

  // The rows of the slice are copied out and back: the reference itself reads packed rows.
  void forward_slice(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse,
                     std::size_t q_row_stride) override {
    const std::size_t rows = std::size_t(shape_.seqlen_q);
    const std::size_t width = std::size_t(shape_.heads_q) * shape_.head_dim;
    const std::size_t span = (rows - 1) * q_row_stride + width;
    if (q_row_stride < width || q.count < span || o.count < span)
      throw std::logic_error("forward_slice: the slice's rows do not fit its tensors");
    std::vector<float> q_packed(rows * width), o_packed(rows * width);
    for (std::size_t r = 0; r < rows; ++r)
      std::copy_n(q.f32() + r * q_row_stride, width, q_packed.data() + r * width);
    forward({q_packed.data(), q_packed.size(), DType::fp32}, k, v,
            {o_packed.data(), o_packed.size(), DType::fp32}, lse);
    for (std::size_t r = 0; r < rows; ++r)
      std::copy_n(o_packed.data() + r * width, width, o.f32() + r * q_row_stride);
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
  ReferenceAttention(int threads, bool slices_heads)
      : threads_(threads), slices_heads_(slices_heads) {}
  std::string name() const override { return "reference"; }
  DType step_dtype(DType) const override { return DType::fp32; }
  bool slices_heads() const override { return slices_heads_; }
  std::unique_ptr<LocalPlan> plan(const AttentionShape& shape, const SliceMask& mask, DType dtype,
                                  bool) override {
    if (dtype != DType::fp32)
      throw InputError(fmt::format("the CPU reference kernel runs fp32, not {}",
                                   bench::to_string(dtype)));
    return std::make_unique<ReferencePlan>(shape, mask, threads_);
  }

 private:
  int threads_;
  bool slices_heads_;
};

}  // namespace

std::unique_ptr<LocalAttention> make_reference_attention(int threads, bool slices_heads) {
  return std::make_unique<ReferenceAttention>(threads, slices_heads);
}

}  // namespace longattn::cp

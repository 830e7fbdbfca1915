// Ring AllGather (as in Llama 3's context parallelism): every rank all-gathers K and V, attends its
// queries against the whole sequence in one kernel call, and reduce-scatters dK, dV (fp32 sums) in
// the backward pass, which gathers K and V again rather than keeping them.
#include <limits>

#include "parts.hpp"

namespace longattn::cp::detail {

namespace {

class AllGather final : public Node {
 public:
  AllGather(const Kernel& kernel, const Part& p, const SliceMask& mask,
            const std::vector<Chunks>& ranks, Communicator& comm)
      : dev_(*kernel.device), p_(p), comm_(comm) {
    const int n = comm.size();
    Chunks keys;
    for (const Chunks& c : ranks) keys.insert(keys.end(), c.begin(), c.end());
    SliceMask m = local_mask(mask, ranks[comm.rank()], keys);
    const std::size_t nq = p.q_elements(), nkv = p.kv_elements(), all = nkv * n;
    const DType step = kernel.attention->step_dtype(p.dtype);
    direct_ = step == p.dtype;
    if (!m.slices().empty()) {
      work_ = double(m.area()) * p.heads_q;
      AttentionShape s = p.shape(p.tokens * n);
      plan_ = kernel.attention->plan(s, m, p.dtype, kernel.backward);
    }
    k_all_ = dev_.allocate(all, p.dtype);
    v_all_ = dev_.allocate(all, p.dtype);
    lse_ = dev_.allocate(p.lse_elements(), DType::fp32);
    if (!direct_) o_step_ = dev_.allocate(nq, step);
    if (kernel.backward) {
      if (!direct_) dq_s_ = dev_.allocate(nq, step);
      dk_all_ = dev_.allocate(all, step);
      dv_all_ = dev_.allocate(all, step);
      if (step != DType::fp32) {
        dk32_ = dev_.allocate(all, DType::fp32);
        dv32_ = dev_.allocate(all, DType::fp32);
        // Only the key rows the mask reaches carry a gradient to widen; the rest are zeros.
        std::vector<Range> keys_hit;
        for (const Slice& s : m.slices()) keys_hit.push_back(s.k);
        const Index n_keys = p.tokens * n;
        k_rest_ = dev_.row_set(rows_complement(keys_hit, n_keys), n_keys);
        k_rows_ = dev_.row_set(std::move(keys_hit), n_keys);
      }
      dk_ = dev_.allocate(nkv, DType::fp32);
      dv_ = dev_.allocate(nkv, DType::fp32);
    }
  }

  double work() const override { return work_; }

  void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o) override {
    q_ = q, o_ = o;
    gather(k, v);
    if (!plan_) {
      dev_.fill(lse_, -std::numeric_limits<float>::infinity());
      dev_.fill(o, 0.f);
      return dev_.trace().mark("elementwise");
    }
    plan_->forward(q, k_all_, v_all_, direct_ ? o : TensorRef(o_step_), lse_);
    dev_.trace().mark("attention");
    if (!direct_) dev_.convert(o, o_step_);
    dev_.trace().mark("elementwise");
  }

  void backward(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) override {
    gather(k_saved_, v_saved_);
    TensorRef dq_out = direct_ ? dq : TensorRef(dq_s_);
    if (plan_) {
      plan_->backward(q_, k_all_, v_all_, o_, lse_, d_o, dq_out, dk_all_, dv_all_);
    } else {
      dev_.fill(dq_out, 0.f);
      dev_.fill(dk_all_, 0.f);
      dev_.fill(dv_all_, 0.f);
    }
    dev_.trace().mark("attention");
    if (!direct_) dev_.convert(dq, dq_s_);
    TensorRef dk_sum = dk_all_, dv_sum = dv_all_;
    if (!dk32_.empty()) {
      dev_.convert(dk32_, dk_all_, k_rows_);
      dev_.fill(dk32_, 0.f, k_rest_);
      dev_.convert(dv32_, dv_all_, k_rows_);
      dev_.fill(dv32_, 0.f, k_rest_);
      dk_sum = dk32_, dv_sum = dv32_;
    }
    dev_.trace().mark("elementwise");
    Transfer ts[] = {{dk_sum, dk_}, {dv_sum, dv_}};
    comm_.reduce_scatter(ts);
    dev_.trace().mark("reduce-scatter dK,dV");
    dev_.convert(dk, dk_);
    dev_.convert(dv, dv_);
    dev_.trace().mark("elementwise");
  }

  void export_lse(TensorRef lse) override { dev_.convert(lse, lse_); }

 private:
  void gather(TensorRef k, TensorRef v) {
    k_saved_ = k, v_saved_ = v;
    Transfer ts[] = {{k, k_all_}, {v, v_all_}};
    comm_.all_gather(ts);
    dev_.trace().mark("all-gather K,V");
  }

  Device& dev_;
  Part p_;
  Communicator& comm_;
  std::unique_ptr<LocalPlan> plan_;
  double work_ = 0;
  bool direct_ = true;
  TensorRef q_, o_, k_saved_, v_saved_;
  RowSet k_rows_, k_rest_;  // key rows the mask reaches, and the others (bf16/fp16 steps)
  Buffer k_all_, v_all_, lse_, o_step_, dq_s_, dk_all_, dv_all_, dk32_, dv32_, dk_, dv_;
};

}  // namespace

std::unique_ptr<Node> make_all_gather(const Kernel& k, const Part& p, const SliceMask& mask,
                                      const std::vector<Chunks>& ranks, Communicator& comm) {
  return std::make_unique<AllGather>(k, p, mask, ranks, comm);
}

}  // namespace longattn::cp::detail

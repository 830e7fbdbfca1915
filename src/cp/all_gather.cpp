// Ring AllGather (as in Llama 3's context parallelism): every rank all-gathers K and V, attends its
// queries against the whole sequence in one kernel call, and reduce-scatters dK, dV (fp32 sums) in
// the backward pass, which gathers K and V again rather than keeping them.
//
// With G gather groups (Topology::gather_groups) the forward splits the heads: group g holds KV
// heads [g h, (g+1) h) and the query heads that read them. Every group's K and V are all-gathered
// on the communicator's own stream, all started at once; the kernel attends group g as soon as
// its K and V have arrived, while the next groups still travel. Heads are independent, so nothing
// is merged: a group's queries go through a packed [T][q][D] buffer, its output comes back the
// same way, and its LSE rows are the group's rows of [heads][T].
#include <fmt/format.h>

#include <limits>

#include "longattn/bench/backend.hpp"
#include "parts.hpp"

namespace longattn::cp::detail {

namespace {

class AllGather final : public Node {
 public:
  AllGather(const Kernel& kernel, const Part& p, const SliceMask& mask,
            const std::vector<Chunks>& ranks, int groups, Communicator& comm)
      : dev_(*kernel.device), p_(p), comm_(comm), groups_(groups) {
    const int n = comm.size();
    Chunks keys;
    for (const Chunks& c : ranks) keys.insert(keys.end(), c.begin(), c.end());
    SliceMask m = local_mask(mask, ranks[comm.rank()], keys);
    const std::size_t nq = p.q_elements(), nkv = p.kv_elements(), all = nkv * n;
    const DType step = kernel.attention->step_dtype(p.dtype);
    direct_ = step == p.dtype;
    if (groups_ > 1 && !direct_)
      throw bench::Unsupported(fmt::format(
          "gather groups need a kernel that writes the activation dtype ({} writes {})",
          kernel.attention->name(), to_string(step)));
    if (!m.slices().empty()) {
      work_ = double(m.area()) * p.heads_q;
      AttentionShape s = p.shape(p.tokens * n);
      if (groups_ == 1 || kernel.backward)
        plan_ = kernel.attention->plan(s, m, p.dtype, kernel.backward);
      if (groups_ > 1) {
        s.heads_q /= groups_;
        s.heads_kv /= groups_;
        group_plan_ = kernel.attention->plan(s, m, p.dtype, false);
      }
    }
    if (groups_ > 1) {
      kv_send_ = dev_.allocate(2 * nkv, p.dtype);
      q_group_ = dev_.allocate(nq / groups_, p.dtype);
      o_group_ = dev_.allocate(nq / groups_, p.dtype);
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
    if (groups_ > 1) {
      k_saved_ = k, v_saved_ = v;
      return forward_groups(q, k, v, o);
    }
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
  void forward_groups(TensorRef q, TensorRef k, TensorRef v, TensorRef o) {
    const std::size_t T = p_.tokens, D = p_.head_dim, n = comm_.size();
    const std::size_t hk = p_.heads_kv / groups_, hq = p_.heads_q / groups_;
    const std::size_t kv_block = T * hk * D, q_block = T * hq * D;
    // Each group's own K and V heads, packed: [group][K, V][T][hk][D].
    auto own = [&](int g, int kv) { return kv_send_.slice((2 * g + kv) * kv_block, kv_block); };
    auto gathered = [&](const Buffer& all, int g) {
      return all.slice(g * n * kv_block, n * kv_block);
    };
    for (int g = 0; g < groups_; ++g) {
      dev_.copy_rows({own(g, 0), 0, hk * D}, {k, g * hk * D, p_.heads_kv * D}, hk * D, T, false);
      dev_.copy_rows({own(g, 1), 0, hk * D}, {v, g * hk * D, p_.heads_kv * D}, hk * D, T, false);
    }
    dev_.trace().mark("elementwise");
    std::vector<std::unique_ptr<Pending>> arrived;
    for (int g = 0; g < groups_; ++g) {
      const Transfer ts[] = {{own(g, 0), gathered(k_all_, g)}, {own(g, 1), gathered(v_all_, g)}};
      arrived.push_back(comm_.start_all_gather(ts));
    }
    for (int g = 0; g < groups_; ++g) {
      const std::size_t first = g * hq * D;
      if (!group_plan_) {
        arrived[g]->wait();
        continue;
      }
      dev_.copy_rows({q_group_, 0, hq * D}, {q, first, p_.heads_q * D}, hq * D, T, false);
      dev_.trace().mark("elementwise");
      arrived[g]->wait();
      dev_.trace().mark("wait for K,V");
      group_plan_->forward(q_group_, gathered(k_all_, g), gathered(v_all_, g), o_group_,
                           lse_.slice(g * hq * T, hq * T));
      dev_.trace().mark("attention");
      dev_.copy_rows({o, first, p_.heads_q * D}, {o_group_, 0, hq * D}, hq * D, T, false);
      dev_.trace().mark("elementwise");
    }
    if (!group_plan_) {
      dev_.fill(lse_, -std::numeric_limits<float>::infinity());
      dev_.fill(o, 0.f);
      dev_.trace().mark("elementwise");
    }
  }

  void gather(TensorRef k, TensorRef v) {
    k_saved_ = k, v_saved_ = v;
    Transfer ts[] = {{k, k_all_}, {v, v_all_}};
    comm_.all_gather(ts);
    dev_.trace().mark("all-gather K,V");
  }

  Device& dev_;
  Part p_;
  Communicator& comm_;
  int groups_ = 1;
  std::unique_ptr<LocalPlan> plan_;        // the whole heads: the forward (one group), the backward
  std::unique_ptr<LocalPlan> group_plan_;  // one gather group's heads (groups_ > 1), forward
  double work_ = 0;
  bool direct_ = true;
  TensorRef q_, o_, k_saved_, v_saved_;
  RowSet k_rows_, k_rest_;  // key rows the mask reaches, and the others (bf16/fp16 steps)
  Buffer k_all_, v_all_, lse_, o_step_, dq_s_, dk_all_, dv_all_, dk32_, dv32_, dk_, dv_;
  Buffer kv_send_, q_group_, o_group_;  // gather groups: own K, V packed per group; one group's Q, O
};

}  // namespace

std::unique_ptr<Node> make_all_gather(const Kernel& k, const Part& p, const SliceMask& mask,
                                      const std::vector<Chunks>& ranks, int groups,
                                      Communicator& comm) {
  return std::make_unique<AllGather>(k, p, mask, ranks, groups, comm);
}

}  // namespace longattn::cp::detail

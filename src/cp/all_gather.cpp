// Ring AllGather (as in Llama 3's context parallelism): every rank all-gathers K and V, attends its
// queries against the whole sequence in one kernel call, and reduce-scatters dK, dV (fp32 sums) in
// the backward pass, which gathers K and V again rather than keeping them.
//
// With G gather groups (Topology::gather_groups) both passes split the heads: group g holds KV
// heads [g h, (g+1) h) and the query heads that read them. Every group's K and V are all-gathered
// on the communicator's own stream, all started at once; the kernel attends group g as soon as
// its K and V have arrived, while the next groups still travel. The backward also starts each
// group's dK/dV reduce-scatter as soon as its gradients are done, under the next groups' work.
// Heads are independent, so nothing is merged: a group's rows of Q, O, dO and dQ go through
// packed [T][q][D] buffers (the forward passes Q and O in place to a kernel that takes strided
// rows, LocalAttention::slices_heads), and its LSE rows are the group's rows of [heads][T].
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
      if (groups_ == 1) {
        plan_ = kernel.attention->plan(s, m, p.dtype, kernel.backward);
      } else {
        s.heads_q /= groups_;
        s.heads_kv /= groups_;
        group_plan_ = kernel.attention->plan(s, m, p.dtype, kernel.backward);
      }
    }
    if (groups_ > 1) {
      kv_send_ = dev_.allocate(2 * nkv, p.dtype);
      // The backward still packs: the kernels take a row stride in the forward only.
      in_place_ = kernel.attention->slices_heads();
      q_group_ = dev_.allocate(nq / groups_, p.dtype);
      o_group_ = dev_.allocate(nq / groups_, p.dtype);
      if (kernel.backward) {
        d_o_group_ = dev_.allocate(nq / groups_, p.dtype);
        dq_group_ = dev_.allocate(nq / groups_, p.dtype);
        dkv_own_ = dev_.allocate(2 * nkv, DType::fp32);
      }
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
    if (groups_ > 1) return backward_groups(d_o, dq, dk, dv);
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
  std::size_t kv_block() const { return std::size_t(p_.tokens) * group_kv() * p_.head_dim; }
  int group_kv() const { return p_.heads_kv / groups_; }
  int group_q() const { return p_.heads_q / groups_; }
  // Group g's part of a buffer of the gathered K/V shape, [group][n T][hk][D].
  TensorRef gathered(const Buffer& all, int g) const {
    const std::size_t n = comm_.size();
    return all.slice(g * n * kv_block(), n * kv_block());
  }
  // Heads [first, first + n) of every row of x ([T][heads][D]) into packed [T][n][D], and back.
  void pack(TensorRef x, int heads, int first, int n, TensorRef dst) {
    const std::size_t D = p_.head_dim;
    dev_.copy_rows({dst, 0, n * D}, {x, first * D, heads * D}, n * D, p_.tokens, false);
  }
  void unpack(TensorRef src, TensorRef x, int heads, int first, int n) {
    const std::size_t D = p_.head_dim;
    dev_.copy_rows({x, first * D, heads * D}, {src, 0, n * D}, n * D, p_.tokens, false);
  }

  // Each group's own K and V heads packed ([group][K, V][T][hk][D]) and all-gathered on the
  // communicator's stream, every group at once: one pending transfer per group.
  std::vector<std::unique_ptr<Pending>> start_gathers(TensorRef k, TensorRef v) {
    const int hk = group_kv();
    auto own = [&](int g, int kv) { return kv_send_.slice((2 * g + kv) * kv_block(), kv_block()); };
    for (int g = 0; g < groups_; ++g) {
      pack(k, p_.heads_kv, g * hk, hk, own(g, 0));
      pack(v, p_.heads_kv, g * hk, hk, own(g, 1));
    }
    dev_.trace().mark("elementwise");
    std::vector<std::unique_ptr<Pending>> arrived;
    for (int g = 0; g < groups_; ++g) {
      const Transfer ts[] = {{own(g, 0), gathered(k_all_, g)}, {own(g, 1), gathered(v_all_, g)}};
      arrived.push_back(comm_.start_all_gather(ts));
    }
    return arrived;
  }

  void wait(Pending& p, std::string_view label) {
    p.wait();
    dev_.trace().mark(label);
  }

  void forward_groups(TensorRef q, TensorRef k, TensorRef v, TensorRef o) {
    const std::size_t T = p_.tokens;
    const int hq = group_q();
    auto arrived = start_gathers(k, v);
    const std::size_t D = p_.head_dim, row = p_.heads_q * D, span = (T - 1) * row + hq * D;
    for (int g = 0; g < groups_; ++g) {
      if (!group_plan_) {
        arrived[g]->wait();
        continue;
      }
      const TensorRef k_g = gathered(k_all_, g), v_g = gathered(v_all_, g);
      const TensorRef lse_g = lse_.slice(g * hq * T, hq * T);
      if (in_place_) {
        wait(*arrived[g], "wait for K,V");
        const std::size_t first = g * hq * D;
        group_plan_->forward_slice(q.slice(first, span), k_g, v_g, o.slice(first, span), lse_g,
                                   row);
        dev_.trace().mark("attention");
        continue;
      }
      pack(q, p_.heads_q, g * hq, hq, q_group_);
      dev_.trace().mark("elementwise");
      wait(*arrived[g], "wait for K,V");
      group_plan_->forward(q_group_, k_g, v_g, o_group_, lse_g);
      dev_.trace().mark("attention");
      unpack(o_group_, o, p_.heads_q, g * hq, hq);
      dev_.trace().mark("elementwise");
    }
    if (!group_plan_) {
      dev_.fill(lse_, -std::numeric_limits<float>::infinity());
      dev_.fill(o, 0.f);
      dev_.trace().mark("elementwise");
    }
  }

  // Group by group, as the forward: gather a group's K/V (all started at once), run its backward
  // on packed rows, widen its dK/dV partial sums and start their reduce-scatter, which travels
  // while the next groups compute; the sums land in dK, dV once all have arrived.
  void backward_groups(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) {
    const std::size_t T = p_.tokens, D = p_.head_dim;
    const int hq = group_q(), hk = group_kv();
    auto arrived = start_gathers(k_saved_, v_saved_);
    const bool widen = !dk32_.empty();
    std::vector<std::unique_ptr<Pending>> summed;
    for (int g = 0; g < groups_; ++g) {
      const TensorRef dk_step = gathered(dk_all_, g), dv_step = gathered(dv_all_, g);
      const TensorRef dk_sum = widen ? gathered(dk32_, g) : dk_step;
      const TensorRef dv_sum = widen ? gathered(dv32_, g) : dv_step;
      if (group_plan_) {
        pack(q_, p_.heads_q, g * hq, hq, q_group_);
        pack(o_, p_.heads_q, g * hq, hq, o_group_);
        pack(d_o, p_.heads_q, g * hq, hq, d_o_group_);
        dev_.trace().mark("elementwise");
        wait(*arrived[g], "wait for K,V");
        group_plan_->backward(q_group_, gathered(k_all_, g), gathered(v_all_, g), o_group_,
                              lse_.slice(g * hq * T, hq * T), d_o_group_, dq_group_, dk_step,
                              dv_step);
        dev_.trace().mark("attention");
        unpack(dq_group_, dq, p_.heads_q, g * hq, hq);
        if (widen) {
          dev_.convert(dk_sum, dk_step, k_rows_);
          dev_.fill(dk_sum, 0.f, k_rest_);
          dev_.convert(dv_sum, dv_step, k_rows_);
          dev_.fill(dv_sum, 0.f, k_rest_);
        }
      } else {
        arrived[g]->wait();
        dev_.fill(dk_sum, 0.f);
        dev_.fill(dv_sum, 0.f);
      }
      dev_.trace().mark("elementwise");
      const Transfer ts[] = {{dk_sum, dkv_own_.slice(2 * g * T * hk * D, T * hk * D)},
                             {dv_sum, dkv_own_.slice((2 * g + 1) * T * hk * D, T * hk * D)}};
      summed.push_back(comm_.start_reduce_scatter(ts));
    }
    if (!group_plan_) dev_.fill(dq, 0.f);
    for (int g = 0; g < groups_; ++g) {
      wait(*summed[g], "wait for dK,dV");
      // fp32 [T][hk][D] of the group into its heads of the fp32 [T][Hkv][D] sums.
      dev_.copy_rows({dk_, g * hk * D, p_.heads_kv * D},
                     {dkv_own_.slice(2 * g * T * hk * D, T * hk * D), 0, hk * D}, hk * D, T,
                     false);
      dev_.copy_rows({dv_, g * hk * D, p_.heads_kv * D},
                     {dkv_own_.slice((2 * g + 1) * T * hk * D, T * hk * D), 0, hk * D}, hk * D,
                     T, false);
    }
    dev_.convert(dk, dk_);
    dev_.convert(dv, dv_);
    dev_.trace().mark("elementwise");
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
  bool in_place_ = false;  // the forward reads a group's Q and writes its O in place (strided rows)
  std::unique_ptr<LocalPlan> plan_;        // all heads (one group)
  std::unique_ptr<LocalPlan> group_plan_;  // one gather group's heads (groups_ > 1)
  double work_ = 0;
  bool direct_ = true;
  TensorRef q_, o_, k_saved_, v_saved_;
  RowSet k_rows_, k_rest_;  // key rows the mask reaches, and the others (bf16/fp16 steps)
  Buffer k_all_, v_all_, lse_, o_step_, dq_s_, dk_all_, dv_all_, dk32_, dv32_, dk_, dv_;
  // Gather groups: own K, V packed per group; one group's Q, O, dO, dQ; dK, dV sums per group.
  Buffer kv_send_, q_group_, o_group_, d_o_group_, dq_group_, dkv_own_;
};

}  // namespace

std::unique_ptr<Node> make_all_gather(const Kernel& k, const Part& p, const SliceMask& mask,
                                      const std::vector<Chunks>& ranks, int groups,
                                      Communicator& comm) {
  return std::make_unique<AllGather>(k, p, mask, ranks, groups, comm);
}

}  // namespace longattn::cp::detail

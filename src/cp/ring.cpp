// Ring attention over a double ring: R = windows x w positions; position (x, y) is window x, place
// y. In outer step o and inner step t a rank holds the K/V block of position (x - o, y - t): the
// inner ring passes blocks within the window (w - 1 hops per outer step), the outer ring passes
// each window's starting block to the next window concurrently (one hop per outer step). A single
// ring is one window of R. Each step's partial O/LSE is merged online into fp32 accumulators.
//
// Backward circulates K/V the same way and sends dK/dV partial sums (fp32) after their blocks:
// the block of position b gets its own contribution locally; the others are summed along the path
// the block took, so that each window's partial ends one place before b's column, the windows'
// partials ride the outer ring, and one last inner hop brings the total home: R - 1 transfers of a
// dK/dV block per rank, like K/V. K/V and dK/dV use separate communicators so that both travel
// at once.
//
// Steps of a document mask touch few of the rank's rows, so the per-step work is restricted to the
// rows each step touches (known at plan time): the first step to reach a query row writes it into
// the accumulators (no fill), later ones merge or add into it, and the rows no step reaches are
// written once at the end (O = 0, LSE = -inf, zero gradients).
#include <limits>
#include <optional>
#include <type_traits>

#include "parts.hpp"

namespace longattn::cp::detail {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct KV {
  TensorRef k, v;
};

// The rows one step touches (the sub-mask's slices' query and key ranges, in local rows).
struct StepRows {
  RowSet q_first;  // query rows no earlier step touched
  RowSet q_later;  // query rows an earlier step touched too
  RowSet k_rows;   // key rows of the block (backward)
  RowSet k_rest;   // the block's other key rows
};

std::vector<Range> query_rows(const SliceMask& m) {
  std::vector<Range> r;
  for (const Slice& s : m.slices()) r.push_back(s.q);
  return normalized_rows(std::move(r));
}

std::vector<Range> key_rows(const SliceMask& m) {
  std::vector<Range> r;
  for (const Slice& s : m.slices()) r.push_back(s.k);
  return normalized_rows(std::move(r));
}

class Ring final : public Node {
 public:
  Ring(const Kernel& kernel, const Part& p, const SliceMask& mask, const std::vector<Chunks>& units,
       int me, int window, const RingComms& comms)
      : dev_(*kernel.device), p_(p), R_(int(units.size())), w_(window), c_(comms) {
    nW_ = R_ / w_;
    x_ = me / w_;
    y_ = me % w_;
    const DType step = kernel.attention->step_dtype(p.dtype);
    std::vector<SliceMask> masks;
    for (int src = 0; src < R_; ++src) {
      SliceMask m = local_mask(mask, units[me], units[src]);
      masks.push_back(m);
      if (m.slices().empty()) {
        plans_.emplace_back();
        continue;
      }
      work_ += double(m.area()) * p.heads_q;
      // One plan serves both passes (a backward plan also runs the forward).
      plans_.push_back(kernel.attention->plan(p.shape(total_tokens(units[src])), m, p.dtype,
                                              kernel.backward));
    }
    if (R_ > 1) plan_rows(masks, kernel.backward);
    const std::size_t nq = p.q_elements(), nkv = p.kv_elements(), nl = p.lse_elements();
    lse_ = dev_.allocate(nl, DType::fp32);
    direct_ = step == p.dtype;
    if (R_ > 1) {
      o_acc_ = dev_.allocate(nq, DType::fp32);
      lse_step_ = dev_.allocate(nl, DType::fp32);
      for (auto& b : inner_) b = dev_.allocate(2 * nkv, p.dtype);
      if (nW_ > 1)
        for (auto& b : outer_) b = dev_.allocate(2 * nkv, p.dtype);
    }
    if (R_ > 1 || !direct_) o_step_ = dev_.allocate(nq, step);
    if (kernel.backward) {
      if (R_ > 1 || !direct_) {
        dq_s_ = dev_.allocate(nq, step);
        dk_s_ = dev_.allocate(nkv, step);
        dv_s_ = dev_.allocate(nkv, step);
      }
      if (R_ > 1) {
        dq_acc_ = dev_.allocate(nq, DType::fp32);
        own_ = dev_.allocate(2 * nkv, DType::fp32);
        for (auto& b : acc_) b = dev_.allocate(2 * nkv, DType::fp32);
        if (w_ > 1) p0_ = dev_.allocate(2 * nkv, DType::fp32);
        if (nW_ > 1) {
          chain_in_ = dev_.allocate(2 * nkv, DType::fp32);
          chain_out_ = dev_.allocate(2 * nkv, DType::fp32);
        }
      }
    }
  }

  double work() const override { return work_; }

  void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o) override {
    q_ = q, k_ = k, v_ = v, o_ = o;
    if (R_ == 1) return forward_local(q, k, v, o);
    dev_.fill(lse_, kNegInf);  // [heads][rows], small: all of it
    circulate([&](int src, KV cur) {
      if (!plans_[src]) return;
      plans_[src]->forward(q, cur.k, cur.v, o_step_, lse_step_);
      dev_.trace().mark("attention");
      const StepRows& r = rows_[src];
      dev_.merge(o_acc_, lse_, o_step_, lse_step_, p_.heads_q, p_.head_dim, r.q_first, true);
      dev_.merge(o_acc_, lse_, o_step_, lse_step_, p_.heads_q, p_.head_dim, r.q_later, false);
    });
    dev_.convert(o, o_acc_, q_touched_);
    dev_.fill(o, 0.f, q_untouched_);
    dev_.trace().mark("elementwise");
  }

  void backward(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) override {
    if (R_ == 1) return backward_local(d_o, dq, dk, dv);
    const std::size_t nkv = p_.kv_elements();
    std::unique_ptr<Pending> inner_acc, chain;
    int recv_slot = 0;  // acc_ buffer the pending inner exchange receives into
    circulate([&](int src, KV cur, int o, int t) {
      const bool computed = bool(plans_[src]);
      const StepRows& r = rows_[src];
      if (computed) {
        plans_[src]->backward(q_, cur.k, cur.v, o_, lse_, d_o, dq_s_, dk_s_, dv_s_);
        dev_.trace().mark("attention");
        dev_.convert(dq_acc_, dq_s_, r.q_first);
        dev_.add(dq_acc_, dq_s_, r.q_later);
      }
      // This step's dK/dV into a block's sum; a fresh sum starts from it (zero elsewhere).
      auto add_step = [&](TensorRef acc, bool fresh) {
        const TensorRef halves[] = {acc.slice(0, nkv), acc.slice(nkv, nkv)};
        const TensorRef steps[] = {dk_s_, dv_s_};
        for (int i = 0; i < 2; ++i) {
          if (!computed) {
            if (fresh) dev_.fill(halves[i], 0.f);
          } else if (fresh) {
            dev_.convert(halves[i], steps[i], r.k_rows);
            dev_.fill(halves[i], 0.f, r.k_rest);
          } else {
            dev_.add(halves[i], steps[i], r.k_rows);
          }
        }
      };
      if (o == 0 && t == 0) return add_step(own_, true);  // always the first step
      // The partial sum of block (x - o, y - t) as it travels the window.
      const bool fresh = (o == 0 && t == 1) || (o >= 1 && t == 0);
      int slot = 0;
      if (!fresh) {
        wait(*inner_acc, "wait for dK,dV");
        slot = recv_slot;
      }
      TensorRef a = acc_[slot];
      add_step(a, fresh);
      if (t < w_ - 1) {
        recv_slot = 1 - slot;
        P2P ops[] = {P2P::send_to(mod(y_ + 1, w_), a),
                     P2P::recv_from(mod(y_ - 1, w_), acc_[recv_slot])};
        inner_acc = c_.dkv_inner->start(ops);
        return;
      }
      // The window's partial for block (x - o, y + 1) is complete here.
      if (o == 0) return dev_.convert(p0_, a);
      if (o >= 2) wait(*chain, "wait for dK,dV");
      dev_.convert(chain_out_, a);
      if (o >= 2) dev_.add(chain_out_, chain_in_);
      P2P ops[] = {P2P::send_to(mod(x_ + 1, nW_), chain_out_),
                   P2P::recv_from(mod(x_ - 1, nW_), chain_in_)};
      chain = c_.dkv_outer->start(ops);
    });
    // Home stretch: the total for block (x, y + 1) is P0 plus the chain from the other windows.
    if (nW_ > 1) wait(*chain, "wait for dK,dV");
    if (w_ == 1) {
      dev_.add(own_, chain_in_);  // one place per window: the chain ends at the owner
    } else {
      TensorRef total = p0_;
      if (nW_ > 1) {
        dev_.add(chain_in_, p0_);
        total = chain_in_;
      }
      P2P ops[] = {P2P::send_to(mod(y_ + 1, w_), total), P2P::recv_from(mod(y_ - 1, w_), acc_[0])};
      wait(*c_.dkv_inner->start(ops), "wait for dK,dV");
      dev_.add(own_, acc_[0]);
    }
    dev_.convert(dq, dq_acc_, q_touched_);
    dev_.fill(dq, 0.f, q_untouched_);
    dev_.convert(dk, own_.slice(0, nkv));
    dev_.convert(dv, own_.slice(nkv, nkv));
    dev_.trace().mark("elementwise");
  }

  void export_lse(TensorRef lse) override { dev_.convert(lse, lse_); }

 private:
  // The order circulate() visits the source positions in.
  std::vector<int> step_order() const {
    std::vector<int> order;
    for (int o = 0; o < nW_; ++o)
      for (int t = 0; t < w_; ++t) order.push_back(mod(x_ - o, nW_) * w_ + mod(y_ - t, w_));
    return order;
  }

  // Outside timing: the rows each step touches, split by whether an earlier step touched them.
  void plan_rows(const std::vector<SliceMask>& masks, bool backward) {
    const Index T = p_.tokens;
    rows_.resize(R_);
    std::vector<Range> seen;
    for (int src : step_order()) {
      if (!plans_[src]) continue;
      const std::vector<Range> q = query_rows(masks[src]);
      StepRows& r = rows_[src];
      r.q_first = dev_.row_set(rows_minus(q, seen), T);
      r.q_later = dev_.row_set(rows_intersection(q, seen), T);
      seen = rows_union(seen, q);
      if (backward) {
        const std::vector<Range> k = key_rows(masks[src]);
        r.k_rest = dev_.row_set(rows_complement(k, T), T);
        r.k_rows = dev_.row_set(k, T);
      }
    }
    q_untouched_ = dev_.row_set(rows_complement(seen, T), T);
    q_touched_ = dev_.row_set(std::move(seen), T);
  }

  // Walks the K/V blocks through the double ring, calling step(src, block, o, t) with each.
  template <class Step>
  void circulate(Step&& step) {
    const std::size_t nkv = p_.kv_elements();
    auto buf = [&](const Buffer& b) { return KV{b.slice(0, nkv), b.slice(nkv, nkv)}; };
    KV base{k_, v_};
    for (int o = 0; o < nW_; ++o) {
      std::unique_ptr<Pending> outer;
      if (o < nW_ - 1) {
        KV next = buf(outer_[o % 2]);
        const int to = mod(x_ + 1, nW_), from = mod(x_ - 1, nW_);
        P2P ops[] = {P2P::send_to(to, base.k), P2P::send_to(to, base.v),
                     P2P::recv_from(from, next.k), P2P::recv_from(from, next.v)};
        outer = c_.kv_outer->start(ops);
      }
      KV cur = base;
      for (int t = 0; t < w_; ++t) {
        std::unique_ptr<Pending> inner;
        KV next = buf(inner_[t % 2]);
        if (t < w_ - 1) {
          const int to = mod(y_ + 1, w_), from = mod(y_ - 1, w_);
          P2P ops[] = {P2P::send_to(to, cur.k), P2P::send_to(to, cur.v),
                       P2P::recv_from(from, next.k), P2P::recv_from(from, next.v)};
          inner = c_.kv_inner->start(ops);
        }
        const int src = mod(x_ - o, nW_) * w_ + mod(y_ - t, w_);
        if constexpr (std::is_invocable_v<Step, int, KV, int, int>)
          step(src, cur, o, t);
        else
          step(src, cur);
        if (inner) {
          wait(*inner, "wait for K,V");
          cur = next;
        }
      }
      if (outer) {
        wait(*outer, "wait for K,V");
        base = buf(outer_[o % 2]);
      }
    }
  }

  void forward_local(TensorRef q, TensorRef k, TensorRef v, TensorRef o) {
    if (!plans_[0]) {
      dev_.fill(lse_, kNegInf);
      return zero(o);
    }
    plans_[0]->forward(q, k, v, direct_ ? o : TensorRef(o_step_), lse_);
    dev_.trace().mark("attention");
    if (!direct_) dev_.convert(o, o_step_);
    dev_.trace().mark("elementwise");
  }

  void backward_local(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) {
    if (!plans_[0]) {
      zero(dq), zero(dk), zero(dv);
      return;
    }
    if (direct_) {
      plans_[0]->backward(q_, k_, v_, o_, lse_, d_o, dq, dk, dv);
      return dev_.trace().mark("attention");
    }
    plans_[0]->backward(q_, k_, v_, o_, lse_, d_o, dq_s_, dk_s_, dv_s_);
    dev_.trace().mark("attention");
    dev_.convert(dq, dq_s_);
    dev_.convert(dk, dk_s_);
    dev_.convert(dv, dv_s_);
    dev_.trace().mark("elementwise");
  }

  void zero(TensorRef t) { dev_.fill(t, 0.f); }

  // Waits for started transfers; the trace shows the elementwise work before the wait apart.
  void wait(Pending& p, std::string_view label) {
    dev_.trace().mark("elementwise");
    p.wait();
    dev_.trace().mark(label);
  }

  Device& dev_;
  Part p_;
  int R_, w_, nW_ = 1, x_ = 0, y_ = 0;
  RingComms c_;
  std::vector<std::unique_ptr<LocalPlan>> plans_;  // per source position; null = no work
  std::vector<StepRows> rows_;                      // per source position (R > 1)
  RowSet q_touched_, q_untouched_;                  // query rows some step / no step touches
  double work_ = 0;
  bool direct_ = true;  // the kernel writes the activation dtype: R = 1 needs no staging
  TensorRef q_, k_, v_, o_;
  Buffer lse_, o_acc_, lse_step_, o_step_, inner_[2], outer_[2];
  Buffer dq_s_, dk_s_, dv_s_, dq_acc_, own_, acc_[2], p0_, chain_in_, chain_out_;
};

}  // namespace

std::unique_ptr<Node> make_ring(const Kernel& k, const Part& p, const SliceMask& mask,
                                const std::vector<Chunks>& units, int me, int window,
                                const RingComms& comms) {
  return std::make_unique<Ring>(k, p, mask, units, me, window, comms);
}

}  // namespace longattn::cp::detail

// Ulysses: one fused all-to-all turns this rank's tokens x all heads into the group's tokens x
// its share of the heads (Q, K and V received straight into the inner part's buffers), the inner
// part attends, and one all-to-all turns O back. The backward mirrors it: dO to heads, then dQ,
// dK, dV sent straight from the inner part's gradients in one fused all-to-all.
//
// Member p of the group takes query heads [p q, (p+1) q), q = Hq / U, and KV heads
// [p k, (p+1) k), k = Hkv / U, when U divides Hkv; otherwise (U a multiple of Hkv) the one KV head
// p / (U / Hkv) its query heads read, which is then sent to U / Hkv members (replicated) and its
// gradient summed over them on the way back.
#include <algorithm>

#include "parts.hpp"

namespace longattn::cp::detail {

Part inner_part(const Part& p, int ulysses) {
  Part in = p;
  in.tokens = p.tokens * ulysses;
  in.heads_q = p.heads_q / ulysses;
  in.heads_kv = std::max(p.heads_kv / ulysses, 1);
  return in;
}

namespace {

class HeadScatter final : public Node {
 public:
  HeadScatter(const Kernel& kernel, const Part& p, Communicator& comm, std::unique_ptr<Node> inner)
      : dev_(*kernel.device), p_(p), comm_(comm), inner_(std::move(inner)) {
    U_ = comm.size();
    in_ = inner_part(p, U_);
    replicated_ = p.heads_kv < U_;
    const std::size_t s = p.tokens, D = p.head_dim;
    qb_ = s * in_.heads_q * D;
    kb_ = s * in_.heads_kv * D;
    send_ = dev_.allocate(U_ * (qb_ + 2 * kb_), p.dtype);
    recv_ = dev_.allocate(U_ * (qb_ + 2 * kb_), p.dtype);
    q_h_ = dev_.allocate(U_ * qb_, p.dtype);
    k_h_ = dev_.allocate(U_ * kb_, p.dtype);
    v_h_ = dev_.allocate(U_ * kb_, p.dtype);
    o_h_ = dev_.allocate(U_ * qb_, p.dtype);
    lse_h_ = dev_.allocate(in_.lse_elements(), DType::fp32);
    lse_send_ = dev_.allocate(in_.lse_elements(), DType::fp32);
    if (kernel.backward) {
      d_o_h_ = dev_.allocate(U_ * qb_, p.dtype);
      dq_h_ = dev_.allocate(U_ * qb_, p.dtype);
      dk_h_ = dev_.allocate(U_ * kb_, p.dtype);
      dv_h_ = dev_.allocate(U_ * kb_, p.dtype);
      if (replicated_) {
        dk32_ = dev_.allocate(p.kv_elements(), DType::fp32);
        dv32_ = dev_.allocate(p.kv_elements(), DType::fp32);
      }
    }
  }

  double work() const override { return inner_->work(); }

  void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o) override {
    const Buffers b = buffers(send_);
    for (int m = 0; m < U_; ++m) {
      to_heads(q, p_.heads_q, m * in_.heads_q, in_.heads_q, b.q, m * qb_);
      to_heads(k, p_.heads_kv, kv_head(m), in_.heads_kv, b.k, m * kb_);
      to_heads(v, p_.heads_kv, kv_head(m), in_.heads_kv, b.v, m * kb_);
    }
    dev_.trace().mark("elementwise");
    // Member m's blocks land in the inner part's buffers as its m-th rows: [U][s][heads][D].
    const Transfer qkv[] = {{b.q, q_h_}, {b.k, k_h_}, {b.v, v_h_}};
    comm_.all_to_all(qkv);
    dev_.trace().mark("all-to-all Q,K,V");
    inner_->forward(q_h_, k_h_, v_h_, o_h_);
    // o_h_'s rows are already grouped by the member they belong to.
    const TensorRef o_recv = buffers(recv_).q;
    comm_.all_to_all({o_h_, o_recv});
    dev_.trace().mark("all-to-all O");
    for (int m = 0; m < U_; ++m)
      from_heads(o_recv, m * qb_, o, p_.heads_q, m * in_.heads_q, in_.heads_q, false);
    dev_.trace().mark("elementwise");
  }

  void backward(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) override {
    const TensorRef d_o_send = buffers(send_).q;
    for (int m = 0; m < U_; ++m)
      to_heads(d_o, p_.heads_q, m * in_.heads_q, in_.heads_q, d_o_send, m * qb_);
    dev_.trace().mark("elementwise");
    comm_.all_to_all({d_o_send, d_o_h_});
    dev_.trace().mark("all-to-all dO");
    inner_->backward(d_o_h_, dq_h_, dk_h_, dv_h_);
    const Buffers r = buffers(recv_);
    const Transfer grads[] = {{dq_h_, r.q}, {dk_h_, r.k}, {dv_h_, r.v}};
    comm_.all_to_all(grads);
    dev_.trace().mark("all-to-all dQ,dK,dV");
    if (replicated_) {
      dev_.fill(dk32_, 0.f);
      dev_.fill(dv32_, 0.f);
    }
    for (int m = 0; m < U_; ++m) {
      from_heads(r.q, m * qb_, dq, p_.heads_q, m * in_.heads_q, in_.heads_q, false);
      TensorRef dkt = replicated_ ? TensorRef(dk32_) : dk, dvt = replicated_ ? TensorRef(dv32_) : dv;
      from_heads(r.k, m * kb_, dkt, p_.heads_kv, kv_head(m), in_.heads_kv, replicated_);
      from_heads(r.v, m * kb_, dvt, p_.heads_kv, kv_head(m), in_.heads_kv, replicated_);
    }
    if (replicated_) {
      dev_.convert(dk, dk32_);
      dev_.convert(dv, dv32_);
    }
    dev_.trace().mark("elementwise");
  }

  // The inner LSE is [q heads][U s rows]; member m gets the columns of its rows for every head,
  // which arrive as [U][q][s] = [Hq][s].
  void export_lse(TensorRef lse) override {
    inner_->export_lse(lse_h_);
    const std::size_t s = p_.tokens, hq = in_.heads_q;
    for (int m = 0; m < U_; ++m)
      dev_.copy_rows({lse_send_, m * hq * s, s}, {lse_h_, m * s, U_ * s}, s, hq, false);
    comm_.all_to_all({lse_send_, lse});
  }

 private:
  // A staging buffer's three parts, member-major: Q (or O, dO, dQ) [U][s][q][D], then K and V
  // [U][s][k][D].
  struct Buffers {
    TensorRef q, k, v;
  };
  Buffers buffers(const Buffer& b) const {
    return {b.slice(0, U_ * qb_), b.slice(U_ * qb_, U_ * kb_), b.slice(U_ * (qb_ + kb_), U_ * kb_)};
  }

  int kv_head(int member) const {
    return replicated_ ? member / (U_ / p_.heads_kv) : member * in_.heads_kv;
  }

  // Heads [first, first + n) of every row of x ([s][heads][D]) into dst at offset, as [s][n][D].
  void to_heads(TensorRef x, int heads, int first, int n, TensorRef dst, std::size_t offset) {
    const std::size_t D = p_.head_dim;
    dev_.copy_rows({dst, offset, n * D}, {x, first * D, heads * D}, n * D, p_.tokens, false);
  }
  // The reverse: [s][n][D] at src offset into heads [first, first + n) of x ([s][heads][D]).
  void from_heads(TensorRef src, std::size_t offset, TensorRef x, int heads, int first, int n,
                  bool accumulate) {
    const std::size_t D = p_.head_dim;
    dev_.copy_rows({x, first * D, heads * D}, {src, offset, n * D}, n * D, p_.tokens, accumulate);
  }

  Device& dev_;
  Part p_, in_;
  Communicator& comm_;
  std::unique_ptr<Node> inner_;
  int U_ = 1;
  bool replicated_ = false;
  std::size_t qb_ = 0, kb_ = 0;  // elements of one member's Q block and K (or V) block
  Buffer send_, recv_, q_h_, k_h_, v_h_, o_h_, lse_h_, lse_send_;
  Buffer d_o_h_, dq_h_, dk_h_, dv_h_, dk32_, dv32_;
};

}  // namespace

std::unique_ptr<Node> make_head_scatter(const Kernel& k, const Part& p, Communicator& comm,
                                        std::unique_ptr<Node> inner) {
  return std::make_unique<HeadScatter>(k, p, comm, std::move(inner));
}

}  // namespace longattn::cp::detail

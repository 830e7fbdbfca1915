#pragma once
// The building blocks the five algorithms are assembled from (cp_attention.cpp):
//   ring        K/V blocks circulate over a (double) ring of R positions; a single ring is the
//               double ring with one window. R = 1 is one local kernel call.
//   all_gather  K/V all-gathered (the forward optionally in groups of heads, overlapped with
//               the attention), one local call per group, dK/dV reduce-scattered.
//   head_scatter  Ulysses: all-to-all from sequence to heads around an inner part, and back.
// Each works on one rank's tensors of a given shape ("Part"), in the layouts of reference.hpp.
#include <memory>
#include <vector>

#include "longattn/cp/communicator.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/cp/dispatch.hpp"
#include "longattn/cp/local_attention.hpp"

namespace longattn::cp::detail {

struct Part {
  Index tokens = 0;  // rows of Q, K, V held
  int heads_q = 1;
  int heads_kv = 1;
  int head_dim = 128;
  float scale = 0;
  DType dtype = DType::fp32;

  std::size_t q_elements() const { return std::size_t(tokens) * heads_q * head_dim; }
  std::size_t kv_elements() const { return std::size_t(tokens) * heads_kv * head_dim; }
  std::size_t lse_elements() const { return std::size_t(tokens) * heads_q; }
  AttentionShape shape(Index keys) const {
    return {tokens, keys, heads_q, heads_kv, head_dim, scale};
  }
};

class Node {
 public:
  virtual ~Node() = default;
  virtual void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o) = 0;
  virtual void backward(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) = 0;
  virtual void export_lse(TensorRef lse) = 0;
  virtual double work() const = 0;
};

struct Kernel {
  Device* device = nullptr;
  LocalAttention* attention = nullptr;
  bool backward = true;  // prepare the backward pass too
};

struct RingComms {
  Communicator* kv_inner = nullptr;   // size w, rank = position in the window
  Communicator* dkv_inner = nullptr;
  Communicator* kv_outer = nullptr;   // size R / w, rank = window (null when one window)
  Communicator* dkv_outer = nullptr;
};

// units: every ring position's tokens (global chunks, in local order); me: this rank's position.
std::unique_ptr<Node> make_ring(const Kernel& k, const Part& p, const SliceMask& mask,
                                const std::vector<Chunks>& units, int me, int window,
                                const RingComms& comms);
// groups: the forward's gather groups (Topology::gather_groups; they divide p.heads_kv).
std::unique_ptr<Node> make_all_gather(const Kernel& k, const Part& p, const SliceMask& mask,
                                      const std::vector<Chunks>& ranks, int groups,
                                      Communicator& comm);
// p: the rank's own (sequence) shape; the inner part sees comm.size() x the tokens and
// heads_q / U query heads, max(heads_kv / U, 1) KV heads.
std::unique_ptr<Node> make_head_scatter(const Kernel& k, const Part& p, Communicator& comm,
                                        std::unique_ptr<Node> inner);
Part inner_part(const Part& p, int ulysses);

inline int mod(int a, int m) { return ((a % m) + m) % m; }

}  // namespace longattn::cp::detail

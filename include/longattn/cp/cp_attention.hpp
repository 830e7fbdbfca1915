#pragma once
// A context-parallel attention: one rank's part of an algorithm (topology.hpp) over its mesh of
// communicators, its dispatched tokens, the canonical mask and a local kernel. Built outside the
// timed region (communicators, sub-masks and kernel plans, buffers); forward and backward are the
// timed calls and together give exactly the single-device result for this rank's tokens.
#include <memory>
#include <string>

#include "longattn/cp/communicator.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/cp/dispatch.hpp"
#include "longattn/cp/local_attention.hpp"
#include "longattn/cp/topology.hpp"
#include "longattn/flops.hpp"

namespace longattn::cp {

struct CpProblem {
  const SliceMask* mask = nullptr;      // the global mask; outlives the attention
  const Dispatch* dispatch = nullptr;   // units = topology.ring, members = topology.ulysses
  Topology topology;
  HeadConfig heads;
  float scale = 0;                      // 0: 1/sqrt(head_dim)
  DType dtype = DType::fp32;            // activations (Q, K, V, O, dO and the gradients)
  bool backward = true;                 // also prepare the backward pass
};

// Throws InputError when the heads cannot be split (U must divide heads_q; heads_kv and U must
// divide one another) or the dispatch does not match the topology.
void validate(const CpProblem& p);

// The communicators of one topology, split from the world (collective over it): a Ulysses group
// per ring position, and per Ulysses index the inner and outer rings, one communicator each for
// K/V and for dK/dV (so both directions of the backward travel at once); ring_allgather uses one
// communicator of all ranks. Reusable by every CpAttention of the same mesh_key().
class Mesh {
 public:
  Mesh(Communicator& world, const Topology& t);
  const Topology& topology() const { return topology_; }
  int rank() const { return rank_; }  // in the world it was split from
  // Opens every connection once (a tiny exchange on each communicator), so that what the
  // transport allocates on first use is not charged to the first case that runs on the mesh.
  void warm_up(Device& device);
  CommStats stats() const;
  void reset_stats();

  std::unique_ptr<Communicator> all, ulysses, kv_inner, dkv_inner, kv_outer, dkv_outer;

 private:
  Topology topology_;
  int rank_ = 0;
};
// Topologies with equal keys share a mesh ("allgather N", or "U x R w").
std::string mesh_key(const Topology& t);

class CpAttention {
 public:
  virtual ~CpAttention() = default;
  // This rank's tokens in dispatch order: q, o [T][Hq][D]; k, v [T][Hkv][D]. Forward keeps
  // references to q, k, v and o for the backward: they must stay unchanged until then.
  virtual void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o) = 0;
  // dq [T][Hq][D]; dk, dv [T][Hkv][D], from the saved forward state and d_o [T][Hq][D].
  virtual void backward(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) = 0;
  // Untimed, after a forward: the rows' LSE, fp32 [Hq][T] (may communicate; not counted).
  virtual void export_lse(TensorRef lse) = 0;
  // Allowed pairs times query heads over every kernel call of one forward (this rank's work).
  virtual double work() const = 0;
  // Bytes sent by this rank over all its communicators since the last reset.
  virtual CommStats stats() const = 0;
  virtual void reset_stats() = 0;
};

// mesh: made for a topology with the same mesh_key() as p.topology.
std::unique_ptr<CpAttention> make_cp_attention(const CpProblem& p, Mesh& mesh, Device& device,
                                               LocalAttention& kernel);

}  // namespace longattn::cp

// Assembles the five algorithms from their parts over a mesh of communicators split from the
// world: a Ulysses group per ring position, and per Ulysses index the inner and outer rings (one
// communicator each for K/V and for dK/dV, so the two directions of the backward overlap).
#include "longattn/cp/cp_attention.hpp"

#include <fmt/format.h>

#include "longattn/error.hpp"
#include "parts.hpp"

namespace longattn::cp {

using namespace detail;

void validate(const CpProblem& p) {
  if (!p.mask || !p.dispatch) throw InputError("CP problem without a mask or a dispatch");
  validate(p.heads);
  const Topology& t = p.topology;
  const int U = t.ulysses, hq = p.heads.heads_q, hkv = p.heads.heads_kv;
  if (hq % U != 0)
    throw InputError(fmt::format("cannot split {} query heads over a Ulysses degree of {} "
                                 "({} x {}): U must divide heads_q",
                                 hq, U, U, t.ring));
  if (hkv % U != 0 && U % hkv != 0)
    throw InputError(fmt::format("cannot split {} KV heads over a Ulysses degree of {}: one must "
                                 "divide the other",
                                 hkv, U));
  if (t.gather_groups < 1 || hkv % t.gather_groups != 0)
    throw InputError(fmt::format("cannot gather {} KV heads in {} groups: the groups must divide "
                                 "heads_kv",
                                 hkv, t.gather_groups));
  if (p.dispatch->units != t.ring || p.dispatch->members != U)
    throw InputError(fmt::format("dispatch for {} x {} ranks, topology {} x {}",
                                 p.dispatch->members, p.dispatch->units, U, t.ring));
  if (p.mask->seqlen_q() != p.dispatch->seqlen)
    throw InputError("the dispatch was made for another sequence length");
}

std::string mesh_key(const Topology& t) {
  if (t.algorithm == Algorithm::ring_allgather) return fmt::format("allgather {}", t.ranks);
  return fmt::format("{}x{} w{}", t.ulysses, t.ring, t.window);
}

Mesh::Mesh(Communicator& world, const Topology& t) : topology_(t), rank_(world.rank()) {
  if (world.size() != t.ranks)
    throw InputError(fmt::format("{} needs {} ranks, the communicator has {}",
                                 to_string(t.algorithm), t.ranks, world.size()));
  const int rank = world.rank(), U = t.ulysses, w = t.window, nW = t.windows();
  const int ring = t.ring_index(rank), u = t.ulysses_index(rank), x = ring / w, y = ring % w;
  // Every rank makes the same splits in the same order (they are collective).
  if (t.algorithm == Algorithm::ring_allgather) {
    all = world.split(0, rank);
    return;
  }
  if (U > 1) ulysses = world.split(ring, u);
  if (t.ring > 1) {
    kv_inner = world.split(u * nW + x, y);
    dkv_inner = world.split(u * nW + x, y);
    if (nW > 1) {
      kv_outer = world.split(u * w + y, x);
      dkv_outer = world.split(u * w + y, x);
    }
  }
}

void Mesh::warm_up(Device& device) {
  Buffer a = device.allocate(64, DType::fp32), b = device.allocate(64, DType::fp32);
  device.fill(a, 0.f);
  for (Communicator* c : {all.get(), ulysses.get()}) {
    if (!c) continue;
    const int n = c->size();
    Buffer s = device.allocate(n, DType::fp32), r = device.allocate(n, DType::fp32);
    device.fill(s, 0.f);
    c->all_to_all({s, r});
    Transfer g[] = {{a.slice(0, 1), r}};
    c->all_gather(g);
    Transfer rs[] = {{s, a.slice(0, 1)}};
    c->reduce_scatter(rs);
  }
  for (Communicator* c : {kv_inner.get(), dkv_inner.get(), kv_outer.get(), dkv_outer.get()}) {
    if (!c || c->size() == 1) continue;
    const int n = c->size(), me = c->rank();
    P2P ops[] = {P2P::send_to((me + 1) % n, a), P2P::recv_from((me + n - 1) % n, b)};
    c->start(ops)->wait();
  }
  device.synchronize();
  reset_stats();
}

CommStats Mesh::stats() const {
  CommStats s;
  for (const auto* c : {&all, &ulysses, &kv_inner, &dkv_inner, &kv_outer, &dkv_outer})
    if (*c) s += (*c)->stats();
  return s;
}

void Mesh::reset_stats() {
  for (const auto* c : {&all, &ulysses, &kv_inner, &dkv_inner, &kv_outer, &dkv_outer})
    if (*c) (*c)->reset_stats();
}

namespace {

class Cp final : public CpAttention {
 public:
  Cp(const CpProblem& p, Mesh& mesh, Device& device, LocalAttention& kernel) : mesh_(mesh) {
    validate(p);
    const Topology& t = p.topology;
    if (mesh_key(mesh.topology()) != mesh_key(t))
      throw std::logic_error("CP attention on the mesh of another topology");
    Kernel k{&device, &kernel, p.backward};
    Part part{p.dispatch->tokens_per_rank(), p.heads.heads_q, p.heads.heads_kv,
              p.heads.head_dim,                 p.scale,         p.dtype};
    if (t.algorithm == Algorithm::ring_allgather) {
      root_ = make_all_gather(k, part, *p.mask, p.dispatch->rank_chunks, t.gather_groups,
                              *mesh.all);
      return;
    }
    RingComms rc{mesh.kv_inner.get(), mesh.dkv_inner.get(), mesh.kv_outer.get(),
                 mesh.dkv_outer.get()};
    std::vector<Chunks> units(t.ring);
    for (int r = 0; r < t.ring; ++r) units[r] = p.dispatch->unit_chunks(r);
    const int U = t.ulysses;
    root_ = make_ring(k, U > 1 ? inner_part(part, U) : part, *p.mask, units,
                      t.ring_index(mesh.rank()), t.window, rc);
    if (U > 1) root_ = make_head_scatter(k, part, *mesh.ulysses, std::move(root_));
  }
  void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o) override {
    root_->forward(q, k, v, o);
  }
  void backward(TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) override {
    root_->backward(d_o, dq, dk, dv);
  }
  void export_lse(TensorRef lse) override {
    // Untimed and not counted: the model covers forward and backward only.
    CommStats before = stats();
    root_->export_lse(lse);
    excluded_ += stats() - before;
  }
  double work() const override { return root_->work(); }

  CommStats stats() const override { return mesh_.stats() - excluded_; }
  void reset_stats() override {
    mesh_.reset_stats();
    excluded_ = {};
  }

 private:
  Mesh& mesh_;
  std::unique_ptr<Node> root_;
  CommStats excluded_;
};

}  // namespace

std::unique_ptr<CpAttention> make_cp_attention(const CpProblem& p, Mesh& mesh, Device& device,
                                               LocalAttention& kernel) {
  return std::make_unique<Cp>(p, mesh, device, kernel);
}

}  // namespace longattn::cp

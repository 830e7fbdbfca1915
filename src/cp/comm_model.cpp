#include "longattn/cp/comm_model.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "longattn/error.hpp"

namespace longattn::cp {

namespace {

constexpr std::uint64_t kPartialBytes = 4;  // partial sums (dK, dV on their way) travel in fp32

void add(CommStats& s, CommOp op, std::uint64_t bytes, std::uint64_t calls) {
  s.bytes_of(op) += bytes;
  s.calls[int(op)] += calls;
}

}  // namespace

CommVolume comm_model(const CommShape& c) {
  const Topology& t = c.topology;
  validate(c.heads);
  const std::uint64_t N = t.ranks, U = t.ulysses, R = t.ring;
  if (c.seqlen <= 0 || c.seqlen % Index(N) != 0)
    throw InputError(fmt::format("S = {} is not a positive multiple of the {} ranks", c.seqlen, N));
  if (c.dtype_bytes <= 0) throw InputError("dtype bytes must be positive");
  const int hq = c.heads.heads_q, hkv = c.heads.heads_kv;
  if (hq % int(U) != 0)
    throw InputError(fmt::format("the Ulysses degree {} does not divide heads_q = {}", U, hq));
  if (hkv % int(U) != 0 && int(U) % hkv != 0)
    throw InputError(fmt::format(
        "heads_kv = {} and the Ulysses degree {}: one must divide the other", hkv, U));
  const std::uint64_t s = c.seqlen / N, D = c.heads.head_dim, b = c.dtype_bytes;
  const std::uint64_t q = hq / U, k = std::max<std::uint64_t>(hkv / U, 1), T = U * s;
  CommVolume v;
  if (t.algorithm == Algorithm::ring_allgather) {
    if (t.gather_groups < 1 || hkv % t.gather_groups != 0)
      throw InputError(fmt::format("{} gather groups do not split heads_kv = {}", t.gather_groups,
                                   hkv));
    // The collectives are called on one rank too (moving nothing), as the communicator counts.
    // Gather groups: one all-gather (and, backward, one reduce-scatter) per group.
    const std::uint64_t kv = 2 * s * hkv * D, G = t.gather_groups;
    add(v.forward, CommOp::all_gather, (N - 1) * kv * b, G);
    add(v.backward, CommOp::all_gather, (N - 1) * kv * b, G);
    add(v.backward, CommOp::reduce_scatter, (N - 1) * kv * kPartialBytes, G);
    return v;
  }
  if (U > 1) {
    add(v.forward, CommOp::all_to_all, (U - 1) * s * D * b * (q + 2 * k), 1);
    add(v.forward, CommOp::all_to_all, (U - 1) * s * D * b * q, 1);
    add(v.backward, CommOp::all_to_all, (U - 1) * s * D * b * q, 1);
    add(v.backward, CommOp::all_to_all, (U - 1) * s * D * b * (q + 2 * k), 1);
  }
  if (R > 1) {
    const std::uint64_t kv = 2 * T * k * D;
    add(v.forward, CommOp::p2p, (R - 1) * kv * b, R - 1);
    add(v.backward, CommOp::p2p, (R - 1) * kv * b + (R - 1) * kv * kPartialBytes, 2 * (R - 1));
  }
  return v;
}

}  // namespace longattn::cp

// Topologies and the communication model, against volumes worked out by hand.
#include <gtest/gtest.h>

#include "longattn/cp/comm_model.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {
namespace {

TEST(CpTopology, ResolvesDegreesAndRejectsBadOnes) {
  Topology u = make_topology(Algorithm::ulysses, 4);
  EXPECT_EQ(u.ulysses, 4);
  EXPECT_EQ(u.ring, 1);
  Topology r = make_topology(Algorithm::ring_p2p, 4);
  EXPECT_EQ(r.ulysses, 1);
  EXPECT_EQ(r.ring, 4);
  EXPECT_EQ(r.window, 4);
  Topology s = make_topology(Algorithm::usp, 8);
  EXPECT_EQ(s.ulysses, 2);  // largest U with U * U <= 8
  EXPECT_EQ(s.ring, 4);
  Topology l = make_topology(Algorithm::loongtrain, 16, 2);
  EXPECT_EQ(l.ring, 8);
  EXPECT_EQ(l.window, 4);  // smallest w with w * w >= 8
  EXPECT_EQ(l.windows(), 2);
  EXPECT_EQ(l.describe(), "2x8 w4");
  EXPECT_THROW(make_topology(Algorithm::usp, 6, 4), InputError);
  EXPECT_THROW(make_topology(Algorithm::loongtrain, 8, 1, 3), InputError);
  EXPECT_THROW(make_topology(Algorithm::ring_p2p, 4, 2), InputError);
  EXPECT_THROW(parse_algorithm("tree"), InputError);
  EXPECT_EQ(all_topologies(Algorithm::usp, 4).size(), 3u);         // 1x4, 2x2, 4x1
  EXPECT_EQ(all_topologies(Algorithm::loongtrain, 4).size(), 6u);  // w | R for each split
  Topology g = make_topology(Algorithm::ring_allgather, 4, 0, 0, 2);
  EXPECT_EQ(g.gather_groups, 2);
  EXPECT_EQ(g.describe(), "4 g2");
  EXPECT_EQ(make_topology(Algorithm::ring_allgather, 4).gather_groups, 1);
  EXPECT_EQ(make_topology(Algorithm::ring_allgather, 4).describe(), "4");
  EXPECT_THROW(make_topology(Algorithm::ring_p2p, 4, 0, 0, 2), InputError);  // groups: allgather
}

CommShape shape(Algorithm a, int n, int u, int w, Index S, int hq, int hkv, int d, int b) {
  return {make_topology(a, n, u, w), S, {hq, hkv, d}, b};
}

TEST(CpModel, RingSendsKvBlocksForwardAndDkvBackward) {
  // N = 4, S = 1024: s = 256 tokens, 4 KV heads of 16, fp32: one K (or V) block = 64 KiB.
  CommVolume v = comm_model(shape(Algorithm::ring_p2p, 4, 0, 0, 1024, 8, 4, 16, 4));
  EXPECT_EQ(v.forward.total_bytes(), 3u * 2 * 65536);
  EXPECT_EQ(v.forward.bytes_of(CommOp::p2p), 3u * 2 * 65536);
  EXPECT_EQ(v.forward.calls[int(CommOp::p2p)], 3u);
  EXPECT_EQ(v.backward.bytes_of(CommOp::p2p), 3u * 2 * 65536 + 3u * 2 * 65536);  // fp32 dK, dV
  // bf16 activations: K/V halve, the fp32 partial sums do not.
  CommVolume h = comm_model(shape(Algorithm::ring_p2p, 4, 0, 0, 1024, 8, 4, 16, 2));
  EXPECT_EQ(h.forward.total_bytes(), 3u * 2 * 32768);
  EXPECT_EQ(h.backward.total_bytes(), 3u * 2 * 32768 + 3u * 2 * 65536);
  // A double ring moves the same volume.
  CommVolume l = comm_model(shape(Algorithm::loongtrain, 4, 1, 2, 1024, 8, 4, 16, 2));
  EXPECT_EQ(l.forward.total_bytes(), h.forward.total_bytes());
  EXPECT_EQ(l.backward.total_bytes(), h.backward.total_bytes());
}

TEST(CpModel, UlyssesMovesThreeQuartersOfQkvAndO) {
  // N = U = 4, s = 256, Hq = 8 -> 2 query heads per member, Hkv = 4 -> 1, D = 16, 2 bytes.
  CommVolume v = comm_model(shape(Algorithm::ulysses, 4, 0, 0, 1024, 8, 4, 16, 2));
  const std::uint64_t row = 256 * 16 * 2;  // one head of one member's tokens
  EXPECT_EQ(v.forward.bytes_of(CommOp::all_to_all), 3 * row * (2 + 2) + 3 * row * 2);
  EXPECT_EQ(v.forward.calls[int(CommOp::all_to_all)], 2u);
  EXPECT_EQ(v.backward.bytes_of(CommOp::all_to_all), 3 * row * 2 + 3 * row * (2 + 2));
  // Hkv = 2 < U = 4: each member still receives one (replicated) KV head from every peer.
  CommVolume rep = comm_model(shape(Algorithm::ulysses, 4, 0, 0, 1024, 8, 2, 16, 2));
  EXPECT_EQ(rep.forward.bytes_of(CommOp::all_to_all), v.forward.bytes_of(CommOp::all_to_all));
}

TEST(CpModel, UspAddsItsUlyssesAndRingParts) {
  // 2 x 2 on S = 1024: s = 256, the ring carries T = 512 tokens x 2 KV heads (8:4 / U 2).
  CommVolume v = comm_model(shape(Algorithm::usp, 4, 2, 0, 1024, 8, 4, 16, 2));
  const std::uint64_t row = 256 * 16 * 2;
  EXPECT_EQ(v.forward.bytes_of(CommOp::all_to_all), 1 * row * (4 + 4) + 1 * row * 4);
  EXPECT_EQ(v.forward.bytes_of(CommOp::p2p), 1u * 2 * 512 * 2 * 16 * 2);
  EXPECT_EQ(v.backward.bytes_of(CommOp::p2p), 1u * 2 * 512 * 2 * 16 * (2 + 4));
}

TEST(CpModel, AllGatherGathersKvAndReduceScattersDkv) {
  CommVolume v = comm_model(shape(Algorithm::ring_allgather, 4, 0, 0, 1024, 8, 4, 16, 2));
  EXPECT_EQ(v.forward.bytes_of(CommOp::all_gather), 3u * 2 * 256 * 4 * 16 * 2);
  EXPECT_EQ(v.backward.bytes_of(CommOp::all_gather), 3u * 2 * 256 * 4 * 16 * 2);
  EXPECT_EQ(v.backward.bytes_of(CommOp::reduce_scatter), 3u * 2 * 256 * 4 * 16 * 4);
  EXPECT_EQ(v.forward.calls[int(CommOp::all_gather)], 1u);
}

TEST(CpModel, GatherGroupsSplitTheCollectivesIntoCallsOfTheSameBytes) {
  CommShape c = shape(Algorithm::ring_allgather, 4, 0, 0, 1024, 8, 4, 16, 2);
  c.topology = make_topology(Algorithm::ring_allgather, 4, 0, 0, 4);
  const CommVolume v = comm_model(c);
  EXPECT_EQ(v.forward.bytes_of(CommOp::all_gather), 3u * 2 * 256 * 4 * 16 * 2);
  EXPECT_EQ(v.forward.calls[int(CommOp::all_gather)], 4u);
  EXPECT_EQ(v.backward.calls[int(CommOp::all_gather)], 4u);
  EXPECT_EQ(v.backward.calls[int(CommOp::reduce_scatter)], 4u);
  EXPECT_EQ(v.backward.bytes_of(CommOp::reduce_scatter), 3u * 2 * 256 * 4 * 16 * 4);
  c.topology = make_topology(Algorithm::ring_allgather, 4, 0, 0, 3);  // 3 does not divide 4
  EXPECT_THROW(comm_model(c), InputError);
}

TEST(CpModel, OneRankSendsNothingAndBadShapesAreRejected) {
  EXPECT_EQ(comm_model(shape(Algorithm::ring_p2p, 1, 0, 0, 512, 8, 4, 16, 2)).forward.total_bytes(),
            0u);
  EXPECT_THROW(comm_model(shape(Algorithm::ulysses, 4, 0, 0, 1022, 8, 4, 16, 2)), InputError);
  EXPECT_THROW(comm_model(shape(Algorithm::ulysses, 4, 0, 0, 1024, 6, 2, 16, 2)), InputError);
  EXPECT_THROW(comm_model(shape(Algorithm::usp, 8, 4, 0, 1024, 12, 6, 16, 2)), InputError);
}

}  // namespace
}  // namespace longattn::cp

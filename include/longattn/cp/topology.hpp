#pragma once
// The five context-parallel algorithms and the mesh they run on.
//
// Every algorithm is a Ulysses degree U times a ring of degree R over N = U x R ranks:
//   ulysses         U = N, R = 1
//   ring_p2p        U = 1, R = N, one ring
//   ring_allgather  U = 1, R = N, K/V all-gathered instead of circulated
//   usp             U x R given, one ring
//   loongtrain      U x R given, double ring: R = windows x w (inner rings of w ranks, an outer
//                   ring over the windows)
// Rank = ring_index * U + ulysses_index, so a Ulysses group is U consecutive ranks (one node's
// GPUs); ring_index = window * w + position in the window.
#include <string>
#include <string_view>
#include <vector>

namespace longattn::cp {

enum class Algorithm { ulysses, ring_p2p, ring_allgather, usp, loongtrain };
std::string_view to_string(Algorithm a);
Algorithm parse_algorithm(std::string_view name);  // throws InputError listing the names
std::vector<Algorithm> all_algorithms();

struct Topology {
  Algorithm algorithm = Algorithm::ring_p2p;
  int ranks = 1;
  int ulysses = 1;  // U
  int ring = 1;     // R
  int window = 1;   // w: inner ring size (R for a single ring)
  // ring_allgather: the forward gathers K/V in this many groups of KV heads, attending each group
  // while the next one travels (1: one all-gather, then one kernel call).
  int gather_groups = 1;

  int windows() const { return ring / window; }
  int ring_index(int rank) const { return rank / ulysses; }
  int ulysses_index(int rank) const { return rank % ulysses; }
  // "4", "2x2", "1x4 w2", "4 g2"
  std::string describe() const;
};

// Resolves the degrees: ulysses = 0 means "the algorithm's own" (N for ulysses, 1 for rings; for
// usp and loongtrain the largest divisor d of N with d * d <= N), window = 0 means the default
// inner ring (the smallest divisor d of R with d * d >= R). Throws InputError when U does not
// divide N, or w does not divide R, or U/w are given where the algorithm fixes them.
// gather_groups = 0 means 1; more than 1 only for ring_allgather (that it divides heads_kv is
// checked with the heads: comm_model, the algorithm's setup).
Topology make_topology(Algorithm a, int ranks, int ulysses = 0, int window = 0,
                       int gather_groups = 0);

// Every valid U x R split of N ranks for an algorithm (one for ulysses, ring_p2p, ring_allgather).
std::vector<Topology> all_topologies(Algorithm a, int ranks);

}  // namespace longattn::cp

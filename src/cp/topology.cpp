#include "longattn/cp/topology.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "longattn/error.hpp"

namespace longattn::cp {

namespace {

constexpr Algorithm kAll[] = {Algorithm::ulysses, Algorithm::ring_p2p, Algorithm::ring_allgather,
                              Algorithm::usp, Algorithm::loongtrain};

int default_window(int ring) {
  for (int d = 1; d <= ring; ++d)
    if (ring % d == 0 && d * d >= ring) return d;
  return ring;
}

int default_ulysses(int ranks) {
  int best = 1;
  for (int d = 1; d * d <= ranks; ++d)
    if (ranks % d == 0) best = d;
  return best;
}

}  // namespace

std::string_view to_string(Algorithm a) {
  switch (a) {
    case Algorithm::ulysses: return "ulysses";
    case Algorithm::ring_p2p: return "ring_p2p";
    case Algorithm::ring_allgather: return "ring_allgather";
    case Algorithm::usp: return "usp";
    case Algorithm::loongtrain: return "loongtrain";
  }
  return "?";
}

Algorithm parse_algorithm(std::string_view name) {
  for (Algorithm a : kAll)
    if (name == to_string(a)) return a;
  throw InputError(fmt::format(
      "unknown CP algorithm '{}' (valid: ulysses, ring_p2p, ring_allgather, usp, loongtrain)",
      name));
}

std::vector<Algorithm> all_algorithms() { return {std::begin(kAll), std::end(kAll)}; }

std::string Topology::describe() const {
  switch (algorithm) {
    case Algorithm::usp: return fmt::format("{}x{}", ulysses, ring);
    case Algorithm::loongtrain: return fmt::format("{}x{} w{}", ulysses, ring, window);
    case Algorithm::ring_allgather:
      return gather_groups > 1 ? fmt::format("{} g{}", ranks, gather_groups)
                               : fmt::format("{}", ranks);
    default: return fmt::format("{}", ranks);
  }
}

Topology make_topology(Algorithm a, int ranks, int ulysses, int window, int gather_groups) {
  if (ranks < 1) throw InputError(fmt::format("CP needs at least 1 rank, got {}", ranks));
  if (ulysses < 0 || window < 0)
    throw InputError("the Ulysses degree and the LoongTrain window must be positive");
  if (gather_groups < 0) throw InputError("the gather groups must be positive");
  if (gather_groups > 1 && a != Algorithm::ring_allgather)
    throw InputError(fmt::format("only ring_allgather gathers K/V in groups; {} takes none",
                                 to_string(a)));
  Topology t;
  t.algorithm = a;
  t.ranks = ranks;
  t.gather_groups = std::max(gather_groups, 1);
  const bool two_d = a == Algorithm::usp || a == Algorithm::loongtrain;
  int fixed = a == Algorithm::ulysses ? ranks : 1;
  if (!two_d && ulysses != 0 && ulysses != fixed)
    throw InputError(fmt::format("{} fixes the Ulysses degree at {} on {} ranks (got {})",
                                 to_string(a), fixed, ranks, ulysses));
  t.ulysses = two_d ? (ulysses ? ulysses : default_ulysses(ranks)) : fixed;
  if (ranks % t.ulysses != 0)
    throw InputError(fmt::format("the Ulysses degree {} does not divide the {} ranks", t.ulysses,
                                 ranks));
  t.ring = ranks / t.ulysses;
  if (a != Algorithm::loongtrain && window != 0 && window != t.ring)
    throw InputError(fmt::format("only loongtrain takes a window (inner ring size); {} uses one "
                                 "ring of {}", to_string(a), t.ring));
  t.window = a == Algorithm::loongtrain ? (window ? window : default_window(t.ring)) : t.ring;
  if (t.ring % t.window != 0)
    throw InputError(fmt::format("the LoongTrain window {} does not divide the ring degree {}",
                                 t.window, t.ring));
  return t;
}

std::vector<Topology> all_topologies(Algorithm a, int ranks) {
  if (a != Algorithm::usp && a != Algorithm::loongtrain) return {make_topology(a, ranks)};
  std::vector<Topology> out;
  for (int u = 1; u <= ranks; ++u) {
    if (ranks % u != 0) continue;
    if (a == Algorithm::usp) {
      out.push_back(make_topology(a, ranks, u));
      continue;
    }
    int r = ranks / u;
    for (int w = 1; w <= r; ++w)
      if (r % w == 0) out.push_back(make_topology(a, ranks, u, w));
  }
  return out;
}

}  // namespace longattn::cp

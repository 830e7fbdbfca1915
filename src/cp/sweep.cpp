#include "longattn/cp/sweep.hpp"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "longattn/bench/suite.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {

std::vector<Algorithm> parse_algorithms(const std::vector<std::string>& names) {
  if (names.empty() || (names.size() == 1 && names[0] == "all")) return all_algorithms();
  std::vector<Algorithm> out;
  for (const std::string& n : names) out.push_back(parse_algorithm(n));
  return out;
}

std::vector<Topology> topologies(Algorithm a, int ranks, const std::vector<std::string>& ulysses,
                                 const std::vector<int>& inner_rings,
                                 const std::vector<int>& gather_groups) {
  if (a == Algorithm::ring_allgather) {
    std::vector<Topology> out;
    for (int g : gather_groups.empty() ? std::vector{1} : gather_groups) {
      if (g < 1) throw InputError(fmt::format("gather groups: {} is not a positive count", g));
      out.push_back(make_topology(a, ranks, 0, 0, g));
    }
    return out;
  }
  const bool two_d = a == Algorithm::usp || a == Algorithm::loongtrain;
  if (!two_d) return {make_topology(a, ranks)};
  if (!ulysses.empty() && ulysses.front() == "all") return all_topologies(a, ranks);
  std::vector<int> us;
  for (const std::string& u : ulysses) {
    int v = 0;
    auto [end, ec] = std::from_chars(u.data(), u.data() + u.size(), v);
    if (ec != std::errc() || end != u.data() + u.size() || v < 1)
      throw InputError(fmt::format("ulysses: '{}' is not a positive degree or 'all'", u));
    us.push_back(v);
  }
  if (us.empty()) us.push_back(0);
  const std::vector<int> ws =
      a == Algorithm::loongtrain && !inner_rings.empty() ? inner_rings : std::vector{0};
  std::vector<Topology> out;
  for (int u : us)
    for (int w : ws) out.push_back(make_topology(a, ranks, u, w));
  return out;
}

std::vector<Index> total_seqlens(const std::vector<Index>& seqlens,
                                 const std::vector<Index>& tokens_per_rank, int ranks) {
  if (!seqlens.empty() && !tokens_per_rank.empty())
    throw InputError("give total tokens (seqlen) or tokens per rank, not both");
  if (seqlens.empty() && tokens_per_rank.empty())
    throw InputError("give total tokens (seqlen) or tokens per rank");
  std::vector<Index> out = seqlens;
  for (Index t : tokens_per_rank) out.push_back(t * ranks);
  return out;
}

std::vector<CpCase> expand(const bench::CpGrid& grid, int ranks, bool gpu) {
  bench::CpGrid g = grid;
  if (g.heads.empty()) g.heads = {gpu ? HeadConfig{64, 8} : HeadConfig{8, 4}};
  if (g.head_dims.empty()) g.head_dims = {gpu ? 128 : 32};
  if (g.seqlens.empty() && g.tokens_per_rank.empty()) g.tokens_per_rank = {gpu ? 8192 : 256};
  if (g.dtypes.empty()) g.dtypes = {gpu ? DType::bf16 : DType::fp32};
  if (g.masks.empty())
    for (Pattern p : {Pattern::full, Pattern::causal, Pattern::full_document,
                      Pattern::causal_document})
      g.masks.push_back({p, {}});
  std::vector<DispatchKind> dispatches;
  for (const std::string& d : g.dispatches) dispatches.push_back(parse_dispatch(d));
  if (dispatches.empty()) dispatches.push_back(DispatchKind::zigzag);
  if (g.directions.empty()) throw InputError("a CP grid needs at least one direction");
  std::vector<HeadConfig> heads;
  for (HeadConfig h : g.heads)
    for (int d : g.head_dims) {
      h.head_dim = d;
      validate(h);
      heads.push_back(h);
    }
  std::vector<std::pair<Algorithm, Topology>> placements;
  for (Algorithm a : parse_algorithms(g.algorithms))
    for (const Topology& t : topologies(a, ranks, g.ulysses, g.inner_rings, g.gather_groups))
      placements.push_back({a, t});

  std::vector<CpCase> out;
  for (Index S : total_seqlens(g.seqlens, g.tokens_per_rank, ranks))
    for (const HeadConfig& h : heads)
      for (DType t : g.dtypes)
        for (bench::Direction dir : g.directions)
          for (const auto& [a, topo] : placements)
            for (const bench::MaskAxis& m : g.masks)
              for (DispatchKind d : dispatches) {
                CpCase c;
                c.topology = topo;
                c.dispatch = d;
                c.balance_chunks = g.balance_chunks;
                c.mask.pattern = m.pattern;
                c.mask.seqlen = S;
                c.mask.params = m.params;
                c.mask.seed = g.seed;
                c.heads = h;
                c.dtype = t;
                c.direction = dir;
                c.data_seed = g.seed;
                out.push_back(c);
              }
  return out;
}

bench::Case bench_case(const CpCase& c) {
  bench::Case b;
  b.backend = fmt::format("cp:{}", to_string(c.topology.algorithm));
  b.mask = c.mask;
  b.heads = c.heads;
  b.dtype = c.dtype;
  b.direction = c.direction;
  b.data_seed = c.data_seed;
  return b;
}

namespace {

std::string placement_key(const Topology& t, std::string_view dispatch, int balance_chunks,
                          std::string_view kernel) {
  return fmt::format("|{} {}x{} w{} {} k{} {}", t.ranks, t.ulysses, t.ring, t.window, dispatch,
                     balance_chunks, kernel);
}

}  // namespace

std::string case_key(const CpCase& c, std::string_view kernel) {
  return bench::case_key(bench_case(c)) +
         placement_key(c.topology, to_string(c.dispatch), c.balance_chunks, kernel);
}

std::string case_key(const nlohmann::json& record) {
  const nlohmann::json& cp = record.at("cp");
  Topology t;
  t.ranks = cp.at("ranks").get<int>();
  t.ulysses = cp.at("ulysses").get<int>();
  t.ring = cp.at("ring").get<int>();
  t.window = cp.at("window").get<int>();
  return bench::case_key(record) +
         placement_key(t, cp.at("dispatch").get<std::string>(),
                       cp.at("balance_chunks").get<int>(), cp.at("kernel").get<std::string>());
}

}  // namespace longattn::cp

#pragma once
// A context-parallel sweep for one rank count: the cases of a bench::CpGrid, and the keys that let
// a resumed run skip the cases already recorded. Shared by `longattn cp`, `longattn suite` (CP
// grids) and `longattn comm` (the topologies and sizes).
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "longattn/bench/cp_grid.hpp"
#include "longattn/cp/run.hpp"

namespace longattn::cp {

// Names, or {"all"} / {} for the five.
std::vector<Algorithm> parse_algorithms(const std::vector<std::string>& names);

// The topologies of one algorithm on `ranks`: every valid split for ulysses = {"all"}, else the
// degrees named (empty: the default); loongtrain crosses them with `inner_rings`, ring_allgather
// takes one per `gather_groups` (empty: 1).
std::vector<Topology> topologies(Algorithm a, int ranks, const std::vector<std::string>& ulysses,
                                 const std::vector<int>& inner_rings,
                                 const std::vector<int>& gather_groups = {});

// The total sequence lengths: `seqlens`, or tokens_per_rank x ranks; InputError for both or none.
std::vector<Index> total_seqlens(const std::vector<Index>& seqlens,
                                 const std::vector<Index>& tokens_per_rank, int ranks);

// The cases in run order (cases of one topology adjacent: they share its communicators), with the
// device's defaults for the axes left empty. Throws InputError for a bad name or size.
std::vector<CpCase> expand(const bench::CpGrid& g, int ranks, bool gpu);

// The benchmark case a CP case records ("cp:<algorithm>" backend, mask, heads, dtype, ...).
bench::Case bench_case(const CpCase& c);

// Identifies a CP case across runs: the record's backend and "case" (as bench::case_key) plus
// the placement (ranks, degrees, dispatch, balance chunks) and the local kernel.
std::string case_key(const CpCase& c, std::string_view kernel);
std::string case_key(const nlohmann::json& record);

}  // namespace longattn::cp

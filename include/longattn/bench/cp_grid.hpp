#pragma once
// The axes of a context-parallel sweep, as plain data: `longattn cp` fills one from its flags and
// a suite's CP grid from JSON. It lives here, beside Grid, so that suites (longattn_bench) can hold
// it without depending on MPI; longattn_cp expands it into cases for a rank count
// (cp/sweep.hpp), as the rank count is known only under mpirun.
#include <cstdint>
#include <string>
#include <vector>

#include "longattn/bench/grid.hpp"

namespace longattn::bench {

struct CpGrid {
  std::vector<std::string> algorithms;  // ulysses, ring_p2p, ...; empty or "all": the five
  std::vector<std::string> ulysses;     // usp/loongtrain Ulysses degrees, or "all" (every valid
                                        // split, inner rings included); empty: the default split
  std::vector<int> inner_rings;         // loongtrain inner ring sizes; empty: the default
  std::vector<int> gather_groups;       // ring_allgather KV-head groups gathered in turn; empty: 1
  std::vector<std::string> dispatches;  // contiguous, zigzag, balanced; empty: zigzag
  int balance_chunks = 8;
  std::vector<MaskAxis> masks;          // empty: full, causal, full_document, causal_document
  std::vector<Index> seqlens;           // total tokens S, or ...
  std::vector<Index> tokens_per_rank;   // ... S = t x ranks (weak scaling); neither: 8K GPU, 256 CPU
  std::vector<HeadConfig> heads;        // heads_q:heads_kv; empty: 64:8 on a GPU, 8:4 on the CPU
  std::vector<int> head_dims;           // empty: 128 on a GPU, 32 on the CPU
  std::vector<DType> dtypes;            // empty: bf16 GPU, fp32 CPU
  std::vector<Direction> directions{Direction::fwdbwd};
  std::uint64_t seed = 0;               // masks and inputs
};

}  // namespace longattn::bench

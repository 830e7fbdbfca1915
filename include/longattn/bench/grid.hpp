#pragma once
// The sweep as named axes (nvbench-style): the grid is the cross product of its axes, expanded in
// a fixed order so that every case of one mask draw and head shape is adjacent (the harness then
// generates each mask, input set and reference once and reuses them across backends).
#include <cstdint>
#include <string>
#include <vector>

#include "longattn/bench/case.hpp"

namespace longattn::bench {

struct MaskAxis {
  Pattern pattern = Pattern::full;
  MaskParams params;
};

struct Grid {
  std::vector<std::string> backends;
  std::vector<MaskAxis> masks;
  std::vector<Index> seqlens;
  std::vector<HeadConfig> heads;   // heads_q, heads_kv (head_dim is its own axis)
  std::vector<int> head_dims;
  std::vector<DType> dtypes;
  std::vector<Direction> directions;
  int draws = 1;                   // seeded mask draws per point: seeds seed, seed+1, ...
  std::uint64_t seed = 0;
};

// Order, outermost first: seqlen, mask, draw, heads, head dim, dtype, direction, backend.
// Throws InputError for an empty axis, draws < 1, S <= 0 or invalid heads (each named).
std::vector<Case> expand(const Grid& g);
std::size_t grid_size(const Grid& g);  // number of cases expand() makes

// The defaults. On a GPU: every GPU backend built in, the paper's dense suite, S in {1K, 2K, 4K, 8K, 16K, 24K, 32K, 40K,
// 48K}, GQA 64:8 and MHA 64:64, D = 128, bf16, fwd+bwd, every static pattern, one draw.
// Without a GPU: the cpu backend on sizes that finish in about a minute on two cores.
Grid default_gpu_grid();
Grid default_cpu_grid();

}  // namespace longattn::bench

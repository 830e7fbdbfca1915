#pragma once
// Block-sparse k->q lists built on the device (the backward's key-major view of the kept blocks):
// the transpose of every KV head's q->k CSR, in one pass over all heads, without a host loop.
//
// Stacked CSR: the lists of all KV heads in one CSR of heads x blocks rows; row h * blocks + b
// is block b of head h, its entries local block indices (0 .. blocks - 1) in ascending order.
// BlockSparseMask::kept(h) stacked head after head is the q->k input.
#include <cstddef>
#include <cstdint>

#include "longattn/kernels/flash.hpp"

namespace longattn::flash {

struct StackedBlockLists {
  const std::int64_t* offsets = nullptr;  // heads * blocks + 1, offsets[0] = 0
  const std::int32_t* indices = nullptr;  // offsets[heads * blocks] entries
};

struct StackedBlockListsOut {
  std::int64_t* offsets = nullptr;
  std::int32_t* indices = nullptr;
};

struct BlockListShape {
  std::int32_t heads = 1;
  std::int32_t blocks = 0;   // per head, rows and columns alike
  std::int64_t entries = 0;  // kept blocks, all heads
};

// Scratch bytes transpose_block_lists needs for this shape (device memory, 256-aligned).
std::size_t transpose_scratch_bytes(const BlockListShape& shape);

// k->q of every head into `out` (heads * blocks + 1 offsets, entries indices; each k->q row in
// ascending query-block order, so the result is deterministic). Asynchronous on `stream`: no
// allocation, no host synchronisation. Throws InputError for a shape beyond 32-bit counts or
// too little scratch; launch failures throw std::runtime_error.
void transpose_block_lists(const BlockListShape& shape, StackedBlockLists q_to_k,
                           StackedBlockListsOut k_to_q, void* scratch, std::size_t scratch_bytes,
                           Stream stream);

}  // namespace longattn::flash

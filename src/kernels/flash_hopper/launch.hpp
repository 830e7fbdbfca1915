#pragma once
// The launch function each .cu file instantiates once (dtype x head_dim), declared for the
// dispatch in dispatch.cpp. Plain C++: no CUDA or CuTe types cross this line.
#include "longattn/kernels/flash_hopper.hpp"

namespace longattn::flash_hopper {

template <DType Dt, int D>
void launch_forward(const FwdParams& p, Stream stream);

template <DType Dt, int D>
void launch_backward(const flash::BwdParams& p, Stream stream);

// Scheduling and tile features of the forward kernel (fwd_kernel.cuh), as bits.
enum FwdFlags : int {
  kOverlap = 1,     // S(j) and P(j-1) V(j-1) issued together, softmax under the P V
  kPingPong = 2,    // the consumer warpgroups take turns issuing GEMMs
  kPersistent = 4,  // one CTA per SM over (tile, head) units
  kWide = 8,        // 160-key chunks at head dim 128 (FwdTile::kWideCols)
  kHeadMajor = 16,  // units KV head first where K, V spill L2 (a run-time choice per launch)
  // Split tiles: each consumer warpgroup runs its own 64-row tiles over 64-key chunks, with its own
  // Q, K and V buffers fed by its own producer thread. Chosen by the plan's tile height (64 rows:
  // block-sparse masks of small blocks), not by the variable; always with overlap + persistent.
  kSplit = 32,
};
constexpr int kScheduleFlags = kOverlap | kPingPong | kPersistent | kWide;  // compile-time ones
constexpr int kDefaultFlags = kOverlap | kPingPong | kPersistent | kHeadMajor;

// LONGATTN_HOPPER_FWD_FLAGS (an integer of FwdFlags bits) or kDefaultFlags; read once. The
// planning (forward_tile) and the launch both follow it.
int forward_flags();

// Schedules of the backward kernel (bwd_kernel.cuh), as bits.
enum BwdFlags : int {
  kBwdPipelined = 1,  // dQ before dK (dK from the dS tile), next chunk's S, dP before dK's wait
  // 2 was dQ split across the warpgroups by keys at head dim 128: removed after measurement (40%
  // slower with atomics, 13% with the TMA reduction: twice the dQ bytes). Head dim 64 splits so.
  kBwdHeadMajor = 4,  // grid (key tile, KV head): resident CTAs share a head (a run-time choice)
  kBwdDqBulk = 8,     // dQ staged in shared memory, added by one TMA reduction per warpgroup
  kBwdDescending = 16,  // query chunks last to first, heads innermost, where the mask prefers
  kBwdDescendingAlways = 32,  // ... on every mask (for measuring)
};
// Pipelined, head-major, dQ by TMA reduction, descending where the mask prefers it: the fastest
// measured (NOTES.md has each measurement).
constexpr int kDefaultBwdFlags = kBwdPipelined | kBwdHeadMajor | kBwdDqBulk | kBwdDescending;

// LONGATTN_HOPPER_BWD_FLAGS (an integer of BwdFlags bits) or kDefaultBwdFlags; read once.
int backward_flags();

// Tile shape shared by the kernel and the host-side planning.
struct FwdTile {
  static constexpr int kRows = 128;      // queries per CTA: 2 consumer warpgroups x 64 rows
  static constexpr int kCols = 128;      // keys per chunk (one wgmma N)
  static constexpr int kWideCols = 160;  // keys per chunk with kWide
  static constexpr int kSplitRows = 64;  // kSplit: queries per tile (one consumer warpgroup)
  static constexpr int kSplitCols = 64;  // kSplit: keys per chunk
};

// Backward tile shape: the portable backward's (flash::backward_tile), so that its key-major
// prepared mask and workspace carve-up serve as they are.
struct BwdTile {
  static constexpr int kRows = 64;   // queries per step
  static constexpr int kCols = 128;  // keys per CTA: 2 consumer warpgroups x 64, dK, dV in registers
};

}  // namespace longattn::flash_hopper

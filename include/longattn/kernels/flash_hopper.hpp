#pragma once
// longattn's Hopper (sm_90a) kernels: warp-specialised, TMA loads into shared-memory rings on
// mbarriers, wgmma for every GEMM, driven by the same prepared masks as the portable flash kernels
// (flash.hpp); the forward with 128 x 128 tiles (128 query rows, 128-key chunks).
//
// Layouts as flash.hpp: Q, O [S][Hq][D]; K, V [S][Hkv][D]; LSE [Hq][S] fp32 natural log; rows
// without keys give O = 0, LSE = -inf. Head dim 64 or 128, forward and backward.
#include <cstddef>

#include "longattn/kernels/flash.hpp"

namespace longattn::flash_hopper {

using flash::DType;
using flash::FwdParams;
using flash::Stream;

// The tile shape the kernel is compiled for (p.mask of run_forward must be prepared with it).
TileShape forward_tile(int head_dim);
bool supported_head_dim(int head_dim);  // forward and backward

// The forward's prepared mask on the device (query-major, forward_tile(head_dim)).
flash::DeviceMask prepare_forward(const SliceMask& m, int head_dim);

// Throws InputError on unsupported shapes (head_dim, heads), std::runtime_error on launch
// failures. p.heads_per_cta is ignored (one head per CTA).
void run_forward(const FwdParams& p, Stream stream);

// ---- backward ---------------------------------------------------------------------------------
// Key-major like the portable backward (128-key tiles, 64-query chunks, the query heads of a GQA
// group walked by one CTA), dQ added to the fp32 workspace by TMA reductions (unordered, as
// atomics are). Not deterministic: the dQ sums' order varies between runs
// (BwdParams::deterministic is rejected).

using flash::BwdParams;

TileShape backward_tile(int head_dim);

// The backward's prepared mask on the device (key-major, backward_tile(head_dim), long key tiles
// split over the current device's SMs) and the workspace run_backward needs with it.
struct BwdPlan {
  flash::DeviceMask mask;
  std::size_t workspace_bytes = 0;
};
BwdPlan prepare_backward(const SliceMask& m, const flash::Shape& shape);

// ---- block-sparse masks ------------------------------------------------------------------------
// The forward's 128 x 128 tiles and the backward's key-major tiles of a block-sparse mask (one
// pattern for every KV head, or one per KV head: each work item then names its KV head), the
// backward's k->q lists transposed on the device (flash::make_plan with this kernel's forward
// tile); plan.dq is unused (no deterministic backward).
flash::Plan prepare_block_sparse(const BlockSparseMask& m, const flash::Shape& shape,
                                 bool backward);

// p.mask from prepare_backward (p.dq_mask unused), p.o / p.lse from the forward, p.workspace of
// plan.workspace_bytes. Throws InputError on unsupported shapes or missing tensors,
// std::runtime_error on launch failures.
void run_backward(const BwdParams& p, Stream stream);

}  // namespace longattn::flash_hopper

#pragma once
// longattn's Hopper (sm_90a) kernels: warp-specialised, TMA loads into shared-memory rings on
// mbarriers, wgmma for every GEMM, driven by the same prepared masks as the portable flash kernels
// (flash.hpp); the forward with 128 x 128 tiles (128 query rows, 128-key chunks).
//
// Layouts as flash.hpp: Q, O [S][Hq][D]; K, V [S][Hkv][D]; LSE [Hq][S] fp32 natural log; rows
// without keys give O = 0, LSE = -inf. Head dim 64 or 128, forward and backward.
#include "longattn/kernels/flash.hpp"

namespace longattn::flash_hopper {

using flash::DType;
using flash::FwdParams;
using flash::Stream;

// The tile shape the kernel is compiled for (p.mask of run_forward must be prepared with it:
// make_plan below).
TileShape forward_tile(int head_dim);
// The split-tile forward's tiles (64 rows, 64-key chunks; each consumer warpgroup runs its own
// tiles), which make_plan picks for block-sparse masks of small blocks. run_forward runs a mask
// prepared with either shape.
TileShape split_forward_tile();
bool supported_head_dim(int head_dim);  // forward and backward

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

// ---- plans -------------------------------------------------------------------------------------
// Both passes' prepared masks on the device and the backward's workspace size (flash::make_plan
// with this kernel's tiles): plan.fwd query-major (forward_tile), plan.bwd (when backward)
// key-major (backward_tile, long key tiles split over the current device's SMs); plan.dq is
// unused (no deterministic backward). Block-sparse masks: one pattern for every KV head, or one
// per KV head (each work item then names its KV head), the backward's k->q lists transposed on
// the device. Throws InputError when the mask does not fit the shape or the shape is not
// supported.
flash::Plan make_plan(const SliceMask& m, const flash::Shape& shape, bool backward);
flash::Plan make_plan(const BlockSparseMask& m, const flash::Shape& shape, bool backward);

// p.mask = plan.bwd (p.dq_mask unused), p.o / p.lse from the forward, p.workspace of
// plan.workspace_bytes. Throws InputError on unsupported shapes or missing tensors,
// std::runtime_error on launch failures.
void run_backward(const BwdParams& p, Stream stream);

}  // namespace longattn::flash_hopper

#pragma once
// longattn's Hopper (sm_90a) forward kernel: warp-specialised, TMA loads into a shared-memory ring
// on mbarriers, wgmma for S = Q K^T and O += P V, driven by the same prepared mask as the portable
// flash kernels (flash.hpp) but with 128 x 128 tiles (128 query rows, 128-key chunks).
//
// Layouts as flash.hpp: Q, O [S][Hq][D]; K, V [S][Hkv][D]; LSE [Hq][S] fp32 natural log; rows
// without keys give O = 0, LSE = -inf. Forward only; head_dim 64 or 128.
#include "longattn/kernels/flash.hpp"

namespace longattn::flash_hopper {

using flash::DType;
using flash::FwdParams;
using flash::Stream;

// The tile shape the kernel is compiled for (p.mask of run_forward must be prepared with it).
TileShape forward_tile(int head_dim);
bool supported_head_dim(int head_dim);

// The forward's prepared mask on the device (query-major, forward_tile(head_dim)).
flash::DeviceMask prepare_forward(const SliceMask& m, int head_dim);

// Throws InputError on unsupported shapes (head_dim, heads), std::runtime_error on launch
// failures. p.heads_per_cta is ignored (one head per CTA).
void run_forward(const FwdParams& p, Stream stream);

}  // namespace longattn::flash_hopper

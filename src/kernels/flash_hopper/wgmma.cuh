#pragma once
// Issuing a warpgroup GEMM over all k blocks of its operands (CuTe tensors (MMA, M|N, K)).
#include <cute/tensor.hpp>

namespace longattn::flash_hopper {

// acc = A B: the first k block's wgmma overwrites the accumulator (so it needs no clearing), the
// others add to it. Only issues the wgmmas; the caller fences, arrives and commits the batch.
template <class TiledMma, class TA, class TB, class TC>
__device__ __forceinline__ void gemm_overwrite(TiledMma& mma, const TA& a, const TB& b, TC& acc) {
  mma.accumulate_ = cute::GMMA::ScaleOut::Zero;
  CUTE_UNROLL
  for (int kb = 0; kb < cute::size<2>(a); ++kb) {
    cute::gemm(mma, a(cute::_, cute::_, kb), b(cute::_, cute::_, kb), acc);
    mma.accumulate_ = cute::GMMA::ScaleOut::One;
  }
}

}  // namespace longattn::flash_hopper

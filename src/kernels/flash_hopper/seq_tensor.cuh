#pragma once
// A tensor of the [S][H][D] layout (Q, K, V, O and the fp32 dQ sum) as the TMA descriptors see
// it: (sequence, D, head), the sequence stride heads x D, or row_stride elements when the tensor
// is a slice of the heads of a wider one.
#include <cstdint>

#include <cute/tensor.hpp>

namespace longattn::flash_hopper {

template <int D, class Elem>
CUTE_HOST_DEVICE auto seq_tensor(Elem* ptr, int seqlen, int heads, std::int64_t row_stride = 0) {
  using namespace cute;
  return make_tensor(make_gmem_ptr(ptr), make_shape(seqlen, Int<D>{}, heads),
                     make_stride(row_stride ? row_stride : std::int64_t(heads) * D, _1{},
                                 std::int64_t(D)));
}

// Its type, for the kernels' TMA descriptor types.
template <int D, class Elem>
using SeqTensor = decltype(seq_tensor<D>(static_cast<Elem*>(nullptr), 0, 0));

}  // namespace longattn::flash_hopper

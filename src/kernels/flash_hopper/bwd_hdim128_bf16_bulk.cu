// TODO(measure): the bulk-reduce dQ variant of the bf16 backward, while both are measured.
#include "bwd_kernel.cuh"

namespace longattn::flash_hopper {
template void launch_backward_main<DType::bf16, 128, true>(const BwdParams&, const BwdWork&,
                                                           Stream);
}

// One instantiation per file so that the kernels build in parallel.
#include "fwd_kernel.cuh"

namespace longattn::flash_hopper {
template void launch_forward<DType::fp16, 64>(const FwdParams&, Stream);
}

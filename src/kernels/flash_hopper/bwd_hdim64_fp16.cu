// One instantiation per file so that the kernels build in parallel.
#include "bwd_kernel.cuh"

namespace longattn::flash_hopper {
template void launch_backward<DType::fp16, 64>(const BwdParams&, Stream);
}

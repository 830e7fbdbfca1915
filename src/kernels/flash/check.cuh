#pragma once
// CUDA errors at launch time become exceptions carrying the call that failed.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace longattn::flash {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("flash: ") + what + ": " + cudaGetErrorString(e));
}

// Raises a kernel's dynamic shared-memory limit once per kernel (first launch).
template <auto Kernel>
void allow_smem(int bytes) {
  static const cudaError_t e =
      cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  check_cuda(e, "cudaFuncSetAttribute(max dynamic shared memory)");
}

}  // namespace longattn::flash

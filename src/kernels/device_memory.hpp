#pragma once
// What the GPU backends share on the host side: CUDA errors become the benchmark's exceptions
// (an allocation failure is OutOfMemory, so a sweep records `oom` and goes on), and device memory
// owned by a plan is freed with it.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstddef>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "longattn/bench/backend.hpp"

namespace longattn::bench {

// Throws when `e` is an error; `who` names the backend, `what` the call, in the message.
inline void check_cuda_call(cudaError_t e, std::string_view who, std::string_view what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a sticky launch error so the next case starts clean
  const std::string msg = fmt::format("{}: {}: {}", who, what, cudaGetErrorString(e));
  if (e == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  throw std::runtime_error(msg);
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t bytes, std::string_view who) {
    check_cuda_call(cudaMalloc(&p_, bytes == 0 ? 1 : bytes), who, "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

}  // namespace longattn::bench

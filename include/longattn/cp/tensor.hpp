#pragma once
// Typed, non-owning views of arrays in one device's memory (host memory on the CPU device), and
// the owning Buffer a Device hands out. The context-parallel algorithms move and combine these;
// they never look inside (the Device and the Communicator do).
#include <cstddef>
#include <functional>
#include <utility>

#include "longattn/bench/case.hpp"

namespace longattn::cp {

using bench::DType;
using bench::element_size;

struct TensorRef {
  void* data = nullptr;
  std::size_t count = 0;  // elements
  DType dtype = DType::fp32;

  std::size_t bytes() const { return count * element_size(dtype); }
  // Elements [offset, offset + n); throws std::out_of_range when they are not inside.
  TensorRef slice(std::size_t offset, std::size_t n) const;
  // Typed pointer, checked against dtype (host-side code of the CPU device only dereferences it).
  float* f32() const;
};

// Memory from Device::allocate; released through the device when destroyed.
class Buffer {
 public:
  Buffer() = default;
  Buffer(TensorRef ref, std::function<void(void*)> release)
      : ref_(ref), release_(std::move(release)) {}
  Buffer(Buffer&& o) noexcept : ref_(std::exchange(o.ref_, {})), release_(std::move(o.release_)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      ref_ = std::exchange(o.ref_, {});
      release_ = std::move(o.release_);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  const TensorRef& ref() const { return ref_; }
  operator TensorRef() const { return ref_; }  // NOLINT: buffers are passed where views are taken
  TensorRef slice(std::size_t offset, std::size_t n) const { return ref_.slice(offset, n); }
  bool empty() const { return ref_.data == nullptr; }

 private:
  void reset() {
    if (ref_.data && release_) release_(ref_.data);
    ref_ = {};
  }
  TensorRef ref_;
  std::function<void(void*)> release_;
};

}  // namespace longattn::cp

#include "longattn/cp/tensor.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace longattn::cp {

TensorRef TensorRef::slice(std::size_t offset, std::size_t n) const {
  if (offset > count || n > count - offset)
    throw std::out_of_range(
        fmt::format("tensor slice [{}, {}) outside {} elements", offset, offset + n, count));
  return {static_cast<char*>(data) + offset * element_size(dtype), n, dtype};
}

float* TensorRef::f32() const {
  if (dtype != DType::fp32)
    throw std::logic_error(fmt::format("fp32 view of a {} tensor", bench::to_string(dtype)));
  return static_cast<float*>(data);
}

}  // namespace longattn::cp

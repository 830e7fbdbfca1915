#pragma once
// .npy files: how tensors travel between longattn and the Python peers (python/longattn_peers/
// PROTOCOL.md). C order, little-endian; element types '<f4' (fp32), '<f2' (fp16) and '<u2' (bf16
// as its raw bits: numpy has no bfloat16).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "longattn/bench/case.hpp"
#include "longattn/range.hpp"

namespace longattn::peers {

struct NpyArray {
  std::string descr;          // numpy dtype string, e.g. "<f4"
  std::vector<Index> shape;
  std::vector<std::byte> data;

  std::size_t elements() const;
};

// The storage type of a case dtype, and of the LSE.
std::string_view npy_descr(bench::DType t);
inline constexpr std::string_view kLseDescr = "<f4";

// Writes a C-order array; throws InputError when the file cannot be written or the data size does
// not match the shape and element type.
void write_npy(const std::string& path, std::string_view descr, const std::vector<Index>& shape,
               const void* data, std::size_t bytes);

// Reads a .npy file (format 1.0 to 3.0, C order, the element types above). Throws InputError
// naming the file and the problem: not .npy, Fortran order, unknown type, short data.
NpyArray read_npy(const std::string& path);

// Checks a read array's type and shape; throws InputError naming what differs.
void expect_npy(const NpyArray& a, const std::string& path, std::string_view descr,
                const std::vector<Index>& shape);

}  // namespace longattn::peers

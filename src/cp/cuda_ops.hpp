#pragma once
// The CUDA device's elementwise kernels, as plain launch functions (no CUDA types cross this
// line). dtype codes are bench::DType's. All enqueue on `stream` and return at once.
#include <cstddef>

#include "longattn/bench/case.hpp"

struct CUstream_st;

namespace longattn::cp::cuda {

using bench::DType;
using Stream = CUstream_st*;

void fill(void* x, DType t, std::size_t n, float value, Stream s);
// dst[i] = src[i] converted (any pair of dtypes; rounds to nearest even).
void convert(void* dst, DType dt, const void* src, DType st, std::size_t n, Stream s);
// acc[i] += x[i]; acc fp32.
void add(float* acc, const void* x, DType xt, std::size_t n, Stream s);
// dst rows (fp32, pitch in elements) += src rows (any dtype).
void add_rows(float* dst, std::size_t dst_pitch, const void* src, DType st, std::size_t src_pitch,
              std::size_t row_elems, std::size_t rows, Stream s);
// The online softmax merge of Device::merge.
void merge(float* o_acc, float* lse_acc, const void* o_step, DType ot, const float* lse_step,
           long long rows, int heads, int dim, Stream s);

// A RowSet as the kernels read it (device arrays): begins[i] is range i's first row, starts[i]
// the set's rows before range i (starts[count] = rows). Rows of `extent`-row tensors.
struct RowList {
  const long long* begins = nullptr;
  const long long* starts = nullptr;
  int count = 0;
  long long rows = 0;
  long long extent = 0;
};

// The operations above on the listed rows only; row_elems: elements per row.
void fill(void* x, DType t, std::size_t row_elems, float value, RowList rows, Stream s);
void convert(void* dst, DType dt, const void* src, DType st, std::size_t row_elems, RowList rows,
             Stream s);
void add(float* acc, const void* x, DType xt, std::size_t row_elems, RowList rows, Stream s);
// With `first`, the accumulators' rows are taken as (0, -inf).
void merge(float* o_acc, float* lse_acc, const void* o_step, DType ot, const float* lse_step,
           int heads, int dim, RowList rows, bool first, Stream s);

}  // namespace longattn::cp::cuda

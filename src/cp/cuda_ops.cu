// Elementwise kernels of the CUDA device: grid-stride loops over plain arrays.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <type_traits>
#include <string>

#include "cuda_ops.hpp"

namespace longattn::cp::cuda {

namespace {

template <class T>
__device__ __forceinline__ float load(const T* p, std::size_t i);
template <>
__device__ __forceinline__ float load(const float* p, std::size_t i) { return p[i]; }
template <>
__device__ __forceinline__ float load(const __nv_bfloat16* p, std::size_t i) {
  return __bfloat162float(p[i]);
}
template <>
__device__ __forceinline__ float load(const __half* p, std::size_t i) { return __half2float(p[i]); }

template <class T>
__device__ __forceinline__ void store(T* p, std::size_t i, float v);
template <>
__device__ __forceinline__ void store(float* p, std::size_t i, float v) { p[i] = v; }
template <>
__device__ __forceinline__ void store(__nv_bfloat16* p, std::size_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ void store(__half* p, std::size_t i, float v) { p[i] = __float2half_rn(v); }

// Calls f with a null pointer of the C++ type of t (the type carries the dispatch).
template <class F>
void with_type(DType t, F&& f) {
  switch (t) {
    case DType::fp32: return f(static_cast<float*>(nullptr));
    case DType::bf16: return f(static_cast<__nv_bfloat16*>(nullptr));
    case DType::fp16: return f(static_cast<__half*>(nullptr));
  }
}

constexpr int kThreads = 256;

unsigned blocks_for(std::size_t n) {
  const std::size_t b = (n + kThreads - 1) / kThreads;
  return unsigned(b < 65535 * 16 ? (b == 0 ? 1 : b) : 65535 * 16);
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("cp ") + what + ": " + cudaGetErrorString(e));
}

template <class T>
__global__ void fill_kernel(T* x, std::size_t n, float v) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    store(x, i, v);
}

template <class D, class S>
__global__ void convert_kernel(D* dst, const S* src, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    store(dst, i, load(src, i));
}

template <class S>
__global__ void add_kernel(float* acc, const S* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    acc[i] += load(x, i);
}

template <class S>
__global__ void add_rows_kernel(float* dst, std::size_t dp, const S* src, std::size_t sp,
                                std::size_t width, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t r = i / width, c = i % width;
    dst[r * dp + c] += load(src, r * sp + c);
  }
}

// One warp per (row, head): the lanes read both LSEs, rescale the row's dims, lane 0 writes the
// new LSE once every lane has read the old one.
template <class S>
__global__ void merge_kernel(float* o_acc, float* lse_acc, const S* o_step, const float* lse_step,
                             long long rows, int heads, int dim) {
  const long long warp = (blockIdx.x * std::size_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= rows * heads) return;
  const long long r = warp / heads;
  const int h = int(warp % heads);
  const float b = lse_step[std::size_t(h) * rows + r];
  if (b == -INFINITY) return;
  const float a = lse_acc[std::size_t(h) * rows + r];
  const float m = fmaxf(a, b);
  const float wa = a == -INFINITY ? 0.f : __expf(a - m), wb = __expf(b - m);
  const float sum = wa + wb, ca = wa / sum, cb = wb / sum;
  const std::size_t base = (std::size_t(r) * heads + h) * dim;
  for (int d = lane; d < dim; d += 32) o_acc[base + d] = o_acc[base + d] * ca + load(o_step, base + d) * cb;
  __syncwarp();
  if (lane == 0) lse_acc[std::size_t(h) * rows + r] = m + __logf(sum);
}

// ---- row-restricted operations ----------------------------------------------------------------

// The row of compact index c (0 <= c < rows): the last range starting at or before c.
__device__ __forceinline__ long long row_of(const RowList& l, long long c) {
  int lo = 0, hi = l.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (l.starts[mid] <= c) lo = mid;
    else hi = mid - 1;
  }
  return l.begins[lo] + (c - l.starts[lo]);
}

// Calls f(i) for every element i of the set's rows. Grid: y walks the rows, x and the threads
// the elements of one row.
template <class F>
__device__ __forceinline__ void for_set_elements(const RowList& l, std::size_t width, F&& f) {
  for (long long c = blockIdx.y; c < l.rows; c += gridDim.y) {
    const std::size_t row_base = std::size_t(row_of(l, c)) * width;
    for (std::size_t e = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; e < width;
         e += std::size_t(gridDim.x) * blockDim.x)
      f(row_base + e);
  }
}

template <class T>
__global__ void fill_set_kernel(T* x, RowList l, std::size_t width, float v) {
  for_set_elements(l, width, [&](std::size_t i) { store(x, i, v); });
}

template <class D, class S>
__global__ void convert_set_kernel(D* dst, const S* src, RowList l, std::size_t width) {
  for_set_elements(l, width, [&](std::size_t i) { store(dst, i, load(src, i)); });
}

template <class S>
__global__ void add_set_kernel(float* acc, const S* x, RowList l, std::size_t width) {
  for_set_elements(l, width, [&](std::size_t i) { acc[i] += load(x, i); });
}

dim3 set_grid(const RowList& l, std::size_t width) {
  const std::size_t x = (width + 4 * kThreads - 1) / (4 * kThreads);  // ~4 elements a thread
  const long long y = l.rows < 65535 ? l.rows : 65535;
  return dim3(unsigned(x < 1 ? 1 : x), unsigned(y));
}

// merge_kernel over the set's rows: one warp per (set row, head).
template <class S>
__global__ void merge_set_kernel(float* o_acc, float* lse_acc, const S* o_step,
                                 const float* lse_step, RowList l, int heads, int dim, bool first) {
  const long long warp = (blockIdx.x * std::size_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= l.rows * heads) return;
  const long long r = row_of(l, warp / heads);
  const int h = int(warp % heads);
  const std::size_t at = std::size_t(h) * l.extent + r;
  const float b = lse_step[at];
  const std::size_t base = (std::size_t(r) * heads + h) * dim;
  if (first) {  // a merge into (0, -inf)
    for (int d = lane; d < dim; d += 32) o_acc[base + d] = b == -INFINITY ? 0.f : load(o_step, base + d);
    if (lane == 0) lse_acc[at] = b;
    return;
  }
  if (b == -INFINITY) return;
  const float a = lse_acc[at];
  const float m = fmaxf(a, b);
  const float wa = a == -INFINITY ? 0.f : __expf(a - m), wb = __expf(b - m);
  const float sum = wa + wb, ca = wa / sum, cb = wb / sum;
  for (int d = lane; d < dim; d += 32) o_acc[base + d] = o_acc[base + d] * ca + load(o_step, base + d) * cb;
  __syncwarp();
  if (lane == 0) lse_acc[at] = m + __logf(sum);
}

}  // namespace

void fill(void* x, DType t, std::size_t n, float value, Stream s) {
  with_type(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    fill_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<T*>(x), n, value);
  });
  check_launch("fill");
}

void convert(void* dst, DType dt, const void* src, DType st, std::size_t n, Stream s) {
  with_type(dt, [&](auto* dtag) {
    using D = std::remove_pointer_t<decltype(dtag)>;
    with_type(st, [&](auto* stag) {
      using S = std::remove_pointer_t<decltype(stag)>;
      convert_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<D*>(dst),
                                                         static_cast<const S*>(src), n);
    });
  });
  check_launch("convert");
}

void add(float* acc, const void* x, DType xt, std::size_t n, Stream s) {
  with_type(xt, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    add_kernel<<<blocks_for(n), kThreads, 0, s>>>(acc, static_cast<const S*>(x), n);
  });
  check_launch("add");
}

void add_rows(float* dst, std::size_t dst_pitch, const void* src, DType st, std::size_t src_pitch,
              std::size_t row_elems, std::size_t rows, Stream s) {
  const std::size_t n = row_elems * rows;
  if (n == 0) return;
  with_type(st, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    add_rows_kernel<<<blocks_for(n), kThreads, 0, s>>>(dst, dst_pitch, static_cast<const S*>(src),
                                                       src_pitch, row_elems, n);
  });
  check_launch("add_rows");
}

void merge(float* o_acc, float* lse_acc, const void* o_step, DType ot, const float* lse_step,
           long long rows, int heads, int dim, Stream s) {
  const std::size_t threads = std::size_t(rows) * heads * 32;
  if (threads == 0) return;
  with_type(ot, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    merge_kernel<<<unsigned((threads + kThreads - 1) / kThreads), kThreads, 0, s>>>(
        o_acc, lse_acc, static_cast<const S*>(o_step), lse_step, rows, heads, dim);
  });
  check_launch("merge");
}

void fill(void* x, DType t, std::size_t row_elems, float value, RowList rows, Stream s) {
  if (rows.rows == 0 || row_elems == 0) return;
  with_type(t, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    fill_set_kernel<<<set_grid(rows, row_elems), kThreads, 0, s>>>(static_cast<T*>(x), rows,
                                                                    row_elems, value);
  });
  check_launch("fill (rows)");
}

void convert(void* dst, DType dt, const void* src, DType st, std::size_t row_elems, RowList rows,
             Stream s) {
  if (rows.rows == 0 || row_elems == 0) return;
  with_type(dt, [&](auto* dtag) {
    using D = std::remove_pointer_t<decltype(dtag)>;
    with_type(st, [&](auto* stag) {
      using S = std::remove_pointer_t<decltype(stag)>;
      convert_set_kernel<<<set_grid(rows, row_elems), kThreads, 0, s>>>(
          static_cast<D*>(dst), static_cast<const S*>(src), rows, row_elems);
    });
  });
  check_launch("convert (rows)");
}

void add(float* acc, const void* x, DType xt, std::size_t row_elems, RowList rows, Stream s) {
  if (rows.rows == 0 || row_elems == 0) return;
  with_type(xt, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    add_set_kernel<<<set_grid(rows, row_elems), kThreads, 0, s>>>(acc, static_cast<const S*>(x),
                                                                   rows, row_elems);
  });
  check_launch("add (rows)");
}

void merge(float* o_acc, float* lse_acc, const void* o_step, DType ot, const float* lse_step,
           int heads, int dim, RowList rows, bool first, Stream s) {
  const std::size_t threads = std::size_t(rows.rows) * heads * 32;
  if (threads == 0) return;
  with_type(ot, [&](auto* tag) {
    using S = std::remove_pointer_t<decltype(tag)>;
    merge_set_kernel<<<unsigned((threads + kThreads - 1) / kThreads), kThreads, 0, s>>>(
        o_acc, lse_acc, static_cast<const S*>(o_step), lse_step, rows, heads, dim, first);
  });
  check_launch("merge (rows)");
}

}  // namespace longattn::cp::cuda

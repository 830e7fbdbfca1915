#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>

#include "naive_kernels.hpp"

namespace longattn::naive {
namespace {

constexpr int kThreads = 256;

template <class T> __device__ T from_float(float x);
template <> __device__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <class T> __device__ float to_float(T x);
template <> __device__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ float to_float<__half>(__half x) { return __half2float(x); }

struct RowKeys {
  const long long* keys;
  long long begin, end;  // interval indices
};

__device__ RowKeys row_keys(const DeviceRows& m, long long S, int h, long long i) {
  const int e = m.entries == 1 ? 0 : h / m.group;
  const long long* off = m.offsets + (long long)e * (S + 1);
  return {m.keys, off[i], off[i + 1]};
}

template <class Op>
__device__ float block_reduce(float v, Op op, float identity, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < blockDim.x / 32 ? shared[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// Walks columns j = tid, tid + blockDim, ... of a row, tracking which interval holds j.
struct IntervalCursor {
  RowKeys r;
  long long idx;
  __device__ explicit IntervalCursor(RowKeys rk) : r(rk), idx(rk.begin) {}
  __device__ bool allowed(long long j) {
    while (idx < r.end && r.keys[2 * idx + 1] <= j) ++idx;
    return idx < r.end && r.keys[2 * idx] <= j;
  }
};

// One block per (row, head).
template <class T>
__global__ void masked_softmax_kernel(const float* __restrict__ scores, T* __restrict__ p,
                                      float* __restrict__ lse, DeviceRows m, long long S) {
  __shared__ float shared[32];
  const long long i = blockIdx.x;
  const int h = blockIdx.y;
  const size_t row = ((size_t)h * S + i) * S;
  const RowKeys rk = row_keys(m, S, h, i);
  float mx = -FLT_MAX;
  for (long long t = rk.begin; t < rk.end; ++t)
    for (long long j = rk.keys[2 * t] + threadIdx.x; j < rk.keys[2 * t + 1]; j += blockDim.x)
      mx = fmaxf(mx, scores[row + j]);
  mx = block_reduce(mx, MaxOp{}, -FLT_MAX, shared);
  const bool empty = rk.begin == rk.end;
  float sum = 0;
  if (!empty)
    for (long long t = rk.begin; t < rk.end; ++t)
      for (long long j = rk.keys[2 * t] + threadIdx.x; j < rk.keys[2 * t + 1]; j += blockDim.x)
        sum += __expf(scores[row + j] - mx);
  sum = block_reduce(sum, SumOp{}, 0.0f, shared);
  const float inv = empty ? 0.0f : 1.0f / sum;
  IntervalCursor cur(rk);
  for (long long j = threadIdx.x; j < S; j += blockDim.x)
    p[row + j] = from_float<T>(!empty && cur.allowed(j) ? __expf(scores[row + j] - mx) * inv : 0.0f);
  if (threadIdx.x == 0) lse[(size_t)h * S + i] = empty ? -INFINITY : mx + logf(sum);
}

template <class T>
__global__ void recompute_p_kernel(const float* __restrict__ scores, T* __restrict__ p,
                                   const float* __restrict__ lse, DeviceRows m, long long S) {
  const long long i = blockIdx.x;
  const int h = blockIdx.y;
  const size_t row = ((size_t)h * S + i) * S;
  const float l = lse[(size_t)h * S + i];
  IntervalCursor cur(row_keys(m, S, h, i));
  for (long long j = threadIdx.x; j < S; j += blockDim.x)
    p[row + j] = from_float<T>(l != -INFINITY && cur.allowed(j) ? __expf(scores[row + j] - l) : 0.0f);
}

// One warp per (row, head).
template <class T>
__global__ void row_dot_kernel(const T* __restrict__ d_o, const T* __restrict__ o, float* __restrict__ delta,
                               long long S, int H, int D) {
  const long long task = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (task >= S * H) return;
  const long long i = task / H;
  const int h = int(task % H);
  const size_t base = ((size_t)i * H + h) * D;
  float s = 0;
  for (int d = threadIdx.x % 32; d < D; d += 32) s += to_float(d_o[base + d]) * to_float(o[base + d]);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (threadIdx.x % 32 == 0) delta[(size_t)h * S + i] = s;
}

template <class T>
__global__ void softmax_grad_kernel(T* __restrict__ p, const float* __restrict__ dp,
                                    const float* __restrict__ delta, long long S, size_t n) {
  for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (size_t)gridDim.x * blockDim.x) {
    const float pv = to_float(p[x]);
    // Row (h * S + i) of the [H][S][S] layout is x / S; delta is laid out [H][S] the same way.
    p[x] = from_float<T>(pv * (dp[x] - delta[x / (size_t)S]));
  }
}

template <class T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, size_t n) {
  for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (size_t)gridDim.x * blockDim.x)
    dst[x] = from_float<T>(src[x]);
}

unsigned grid_for(size_t n) {
  const size_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 * 16 ? (blocks == 0 ? 1 : blocks) : 65536 * 16);
}

}  // namespace

#define LONGATTN_DISPATCH(t, F)                 \
  do {                                          \
    if ((t) == Elem::bf16) F(__nv_bfloat16);    \
    else F(__half);                             \
  } while (0)

void masked_softmax(const float* scores, void* p, float* lse, DeviceRows rows, long long S, int H,
                    Elem t, cudaStream_t stream) {
  const dim3 grid{unsigned(S), unsigned(H)};
#define F(T) masked_softmax_kernel<T><<<grid, kThreads, 0, stream>>>(scores, static_cast<T*>(p), lse, rows, S)
  LONGATTN_DISPATCH(t, F);
#undef F
}

void recompute_p(const float* scores, void* p, const float* lse, DeviceRows rows, long long S, int H,
                 Elem t, cudaStream_t stream) {
  const dim3 grid{unsigned(S), unsigned(H)};
#define F(T) recompute_p_kernel<T><<<grid, kThreads, 0, stream>>>(scores, static_cast<T*>(p), lse, rows, S)
  LONGATTN_DISPATCH(t, F);
#undef F
}

void row_dot(const void* d_o, const void* o, float* delta, long long S, int H, int D, Elem t,
             cudaStream_t stream) {
  const long long warps = S * H;
  const unsigned blocks = unsigned((warps + kThreads / 32 - 1) / (kThreads / 32));
#define F(T) \
  row_dot_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(d_o), static_cast<const T*>(o), delta, S, H, D)
  LONGATTN_DISPATCH(t, F);
#undef F
}

void softmax_grad(void* p, const float* dp, const float* delta, long long S, int H, Elem t,
                  cudaStream_t stream) {
  const size_t n = size_t(H) * size_t(S) * size_t(S);
#define F(T) softmax_grad_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(p), dp, delta, S, n)
  LONGATTN_DISPATCH(t, F);
#undef F
}

void convert_from_f32(const float* src, void* dst, long long n, Elem t, cudaStream_t stream) {
#define F(T) convert_kernel<T><<<grid_for(size_t(n)), kThreads, 0, stream>>>(src, static_cast<T*>(dst), size_t(n))
  LONGATTN_DISPATCH(t, F);
#undef F
}

}  // namespace longattn::naive

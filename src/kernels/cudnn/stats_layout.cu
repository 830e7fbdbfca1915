#include "stats_layout.hpp"

namespace longattn::cudnn_sdpa {
namespace {

__global__ void unpad_stats_kernel(const float* __restrict__ padded, const int* __restrict__ starts,
                                   int heads, long long max_len, long long seqlen, float* __restrict__ lse) {
  const int b = blockIdx.x, h = blockIdx.y;
  const int begin = starts[b], len = starts[b + 1] - starts[b];
  const float* src = padded + ((long long)b * heads + h) * max_len;
  float* dst = lse + (long long)h * seqlen + begin;
  for (int s = threadIdx.x; s < len; s += blockDim.x) dst[s] = src[s];
}

}  // namespace

void unpad_stats(const float* padded, const int* starts, int batch, int heads, long long max_len,
                 long long seqlen, float* lse, cudaStream_t stream) {
  unpad_stats_kernel<<<dim3(unsigned(batch), unsigned(heads)), 256, 0, stream>>>(padded, starts, heads,
                                                                                max_len, seqlen, lse);
}

}  // namespace longattn::cudnn_sdpa

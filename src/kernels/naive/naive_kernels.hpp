#pragma once
// Kernels of the naive backend: masked softmax over a materialised score matrix and the
// elementwise steps of the backward pass. Plain launch functions; cuBLAS does the GEMMs.
#include <cuda_runtime.h>

#include <cstdint>

namespace longattn::naive {

enum class Elem { bf16, fp16 };

// Per-row key intervals of `entries` masks (1 shared, or one per KV head), concatenated:
// entry e, row i: keys[offsets[e * (S + 1) + i] .. offsets[e * (S + 1) + i + 1]) as (begin, end).
struct DeviceRows {
  const long long* offsets = nullptr;
  const long long* keys = nullptr;  // pairs
  int entries = 1;
  int group = 1;  // query heads per KV head
};

// scores: fp32 [H][S][S], already scaled. Writes P (masked softmax, in the element type) and LSE
// [H][S]; rows without keys get P = 0 and LSE = -inf.
void masked_softmax(const float* scores, void* p, float* lse, DeviceRows rows, long long S, int H,
                    Elem t, cudaStream_t stream);
// P = exp(scores - LSE) on allowed pairs, 0 elsewhere (backward recomputation).
void recompute_p(const float* scores, void* p, const float* lse, DeviceRows rows, long long S, int H,
                 Elem t, cudaStream_t stream);
// delta[h][i] = sum_d dO[i][h][d] * O[i][h][d].
void row_dot(const void* d_o, const void* o, float* delta, long long S, int H, int D, Elem t,
             cudaStream_t stream);
// In place: P <- P * (dP - delta[h][i]) (dS), over all H*S*S elements.
void softmax_grad(void* p, const float* dp, const float* delta, long long S, int H, Elem t,
                  cudaStream_t stream);
void convert_from_f32(const float* src, void* dst, long long n, Elem t, cudaStream_t stream);

}  // namespace longattn::naive

#pragma once
// cuDNN's padded softmax statistics of a ragged (packed documents) batch -> the standard LSE
// layout [H][S]. Plain launch function.
#include <cuda_runtime.h>

namespace longattn::cudnn_sdpa {

// padded: [B][H][Smax] fp32; starts: B + 1 token offsets (int32, device). lse: [H][S].
void unpad_stats(const float* padded, const int* starts, int batch, int heads, long long max_len,
                 long long seqlen, float* lse, cudaStream_t stream);

}  // namespace longattn::cudnn_sdpa

#pragma once
// The CPU reference attention: the judge of every kernel. Forward (O, LSE) and backward
// (dQ, dK, dV) for any mask given as per-row key intervals, GQA without copying K/V.
//
// Layouts (batch 1, packed documents; row-major):
//   Q, O, dO, dQ: [seqlen_q][heads_q][head_dim]
//   K, V, dK, dV: [seqlen_k][heads_kv][head_dim]
//   LSE:          [heads_q][seqlen_q], natural log of the row's sum of exp(scale * q.k)
// A row with no allowed key has O = 0, LSE = -inf and zero gradients.
#include <cstdint>
#include <span>
#include <vector>

#include "longattn/views/row_intervals.hpp"

namespace longattn {

struct AttentionShape {
  Index seqlen_q = 0;
  Index seqlen_k = 0;
  int heads_q = 1;
  int heads_kv = 1;
  int head_dim = 128;
  float scale = 0;  // softmax scale; 0 means 1/sqrt(head_dim)

  float softmax_scale() const;
  std::size_t q_elements() const { return std::size_t(seqlen_q) * heads_q * head_dim; }
  std::size_t kv_elements() const { return std::size_t(seqlen_k) * heads_kv * head_dim; }
};

enum class Accumulate { fp32, fp64 };

// The mask seen by each KV head: one entry shared by all heads, or one per KV head (dynamic
// masks). Query head h uses entry h / (heads_q / heads_kv).
struct MaskRows {
  std::span<const RowIntervals> per_kv_head;
  const RowIntervals& for_q_head(int h, const AttentionShape& s) const;
};

struct ReferenceOptions {
  Accumulate accumulate = Accumulate::fp32;
  int threads = 0;  // 0 = hardware concurrency
};

// Computes O and LSE for the listed query rows (all rows when `rows` is empty); other rows of
// o and lse are left untouched.
void reference_forward(const AttentionShape& s, const MaskRows& mask, std::span<const float> q,
                       std::span<const float> k, std::span<const float> v, std::span<float> o,
                       std::span<float> lse, std::span<const Index> rows = {},
                       ReferenceOptions opt = {});

// Full backward from saved O and LSE: writes dq, dk, dv completely.
void reference_backward(const AttentionShape& s, const MaskRows& mask, std::span<const float> q,
                        std::span<const float> k, std::span<const float> v,
                        std::span<const float> o, std::span<const float> lse,
                        std::span<const float> d_o, std::span<float> dq, std::span<float> dk,
                        std::span<float> dv, ReferenceOptions opt = {});

// Sampled backward for large S: dQ of the listed query rows and dK, dV of the listed key rows,
// with everything they depend on (LSE and rowsum(dO * O) of every row that attends a listed key)
// recomputed from Q, K, V, dO alone. Rows not listed are left untouched; here an empty list
// means no rows (unlike reference_forward, where it means all).
void reference_backward_sampled(const AttentionShape& s, const MaskRows& mask,
                                std::span<const float> q, std::span<const float> k,
                                std::span<const float> v, std::span<const float> d_o,
                                std::span<const Index> q_rows, std::span<const Index> k_rows,
                                std::span<float> dq, std::span<float> dk, std::span<float> dv,
                                ReferenceOptions opt = {});

// ||x - ref|| / ||ref|| over the listed rows (all when empty) of a [rows][width] array; 0 when
// both are zero, +inf when x has a NaN.
double relative_l2_error(std::span<const float> x, std::span<const float> ref, Index width,
                         std::span<const Index> rows = {});

}  // namespace longattn

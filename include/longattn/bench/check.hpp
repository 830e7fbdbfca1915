#pragma once
// Correctness of a backend's outputs against the CPU reference (DESIGN.md section 5).
//
// Judge: reference.hpp in fp32 on the case's inputs rounded to its dtype (so input rounding is not
// counted as error). Metric: relative L2 error ||x - ref|| / ||ref|| of O, dQ, dK, dV.
//
// Tolerance: 2x the error of a plain low-precision implementation on the same inputs and the same
// rows: plain_forward / plain_backward below emulate an unfused kernel (fp32 scores and
// accumulation, P and dS rounded to the dtype before their GEMMs, outputs rounded to the dtype),
// computed here for every check. fp32 cases use max(2x plain, 1e-5).
//
// Rows: when the full check costs at most CheckOptions::full_check_flops, every row and head is
// compared (the backward reference then starts from the reference's own O and LSE). Otherwise:
//   forward  - `rows` seeded query rows (always row 0 and row S-1), every head;
//   backward - one seeded KV-head group sliced out as its own problem (Hq/Hkv query heads, one KV
//              head): dQ at the sampled query rows and dK, dV at `rows` seeded key rows, each
//              computed exactly (a dK/dV column needs every query row that attends it) from the
//              backend's saved O and LSE, which is exactly the function a backward pass computes;
//              those O and LSE are themselves checked at the sampled rows.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "longattn/bench/case.hpp"
#include "longattn/patterns.hpp"
#include "longattn/reference.hpp"

namespace longattn::bench {

struct CheckOptions {
  bool enabled = true;
  Index rows = 64;                  // sampled query rows (and key rows) of a partial check
  double full_check_flops = 1e10;   // above this (forward+backward reference work), sample
};

struct OutputCheck {
  double error = 0;      // relative L2 error against the reference
  double plain = 0;      // the plain low-precision emulation's error on the same rows
  double tolerance = 0;
  bool pass() const { return error <= tolerance; }  // false for NaN
};

struct CheckResult {
  std::optional<OutputCheck> o, dq, dk, dv;
  std::optional<double> lse_max_abs;  // max |LSE - ref| over compared rows (-inf rows must agree)
  bool full = true;                   // every row and head compared
  Index q_rows = 0;                   // query rows compared
  Index k_rows = 0;                   // key rows compared for dK, dV
  int kv_group = -1;                  // backward restricted to this KV head group; -1 = all
  bool passed() const;
  std::string failure() const;        // "dQ error 3.1e-2 > tolerance 6.0e-3", empty when passed
};

inline constexpr double kLseTolerance = 1e-2;  // absolute, natural-log units (fp32 statistics)

// x rounded to the dtype (round to nearest even); identity for fp32.
float round_to(DType t, float x);
void round_all(DType t, std::span<float> x);

// `count` distinct indices of [0, n), ascending, always holding 0 and n-1; all when count >= n.
std::vector<Index> sample_rows(Index n, Index count, std::uint64_t seed);

// The plain low-precision implementation (see above), same layouts and semantics as
// reference_forward / reference_backward. plain_backward starts from the given O and LSE.
void plain_forward(const AttentionShape& s, const MaskRows& mask, DType t, std::span<const float> q,
                   std::span<const float> k, std::span<const float> v, std::span<float> o,
                   std::span<float> lse, std::span<const Index> rows = {});
void plain_backward(const AttentionShape& s, const MaskRows& mask, DType t,
                    std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<const float> o, std::span<const float> lse,
                    std::span<const float> d_o, std::span<float> dq, std::span<float> dk,
                    std::span<float> dv);

// The entries of a backend's outputs a check reads (so that a distributed backend can hand over
// just these). Full: every entry. Otherwise:
//   O and LSE   every head at q_rows; and, for the backward, the query heads of KV group
//               kv_group at every row (dK, dV need the saved O and LSE of all queries)
//   dQ          the query heads of kv_group at q_rows
//   dK, dV      KV head kv_group at k_rows
struct CheckSample {
  bool full = true;
  std::vector<Index> q_rows;  // ascending
  std::vector<Index> k_rows;  // ascending
  int kv_group = -1;
};

// The sample a Checker made with the same arguments uses (cheap: no reference is computed).
CheckSample check_sample(const AttentionShape& shape, const Mask& mask, const CheckOptions& options,
                         std::uint64_t seed);

// Host fp32 tensors of one case in reference.hpp's layouts.
struct HostTensors {
  std::vector<float> q, k, v, d_o;   // inputs (rounded to the dtype)
  std::vector<float> o, lse;         // forward outputs
  std::vector<float> dq, dk, dv;     // backward outputs
};

// Checks one backend's outputs. Built once per (mask, inputs) and reused across backends: the
// forward reference and everything else that does not depend on a backend's outputs is cached.
class Checker {
 public:
  // mask and inputs must outlive the Checker.
  Checker(const AttentionShape& shape, const Mask& mask, DType dtype, const HostTensors& inputs,
          CheckOptions options, std::uint64_t seed);
  ~Checker();
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;

  bool full() const;
  const CheckSample& sample() const;
  // Fills o (and lse_max_abs) of r from the backend's O and LSE.
  void check_forward(std::span<const float> o, std::span<const float> lse, CheckResult& r);
  // Fills dq, dk, dv of r; o and lse are the backend's saved forward outputs.
  void check_backward(std::span<const float> o, std::span<const float> lse,
                      std::span<const float> dq, std::span<const float> dk,
                      std::span<const float> dv, CheckResult& r);

 private:
  struct State;
  State* state_;
};

}  // namespace longattn::bench

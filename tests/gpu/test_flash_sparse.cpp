// The flash kernels on block-sparse masks against the CPU reference: uniform blocks of 64 and
// 128, variable blocks of 128 / 256 / 512 on average, keep 0.2 / 0.5 / 0.8, causal or not, one
// pattern per KV head (GQA and MHA) or one shared by all, odd S; forward O and LSE, backward dQ,
// dK, dV, and the deterministic backward; the same cases through flash_hopper (sm_90a builds).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flash_test_support.hpp"
#include "longattn/error.hpp"
#include "flash/flash_tensors.hpp"
#include "longattn/kernels/flash.hpp"
#ifdef LONGATTN_WITH_FLASH_HOPPER
#include "longattn/kernels/flash_hopper.hpp"
#endif
#include "longattn/patterns.hpp"
#include "longattn/reference.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn {
namespace {

using namespace gpu_test;

struct Tensor16 {
  std::vector<float> host;  // the values, exactly representable in the 16-bit type
  DevBuf dev;
  Tensor16(std::size_t n, flash::DType t, std::uint64_t seed) : host(n), dev(n * 2) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<std::uint16_t> bits(n);
    for (std::size_t i = 0; i < n; ++i) {
      bits[i] = to_16(d(gen), t);
      host[i] = from_16(bits[i], t);
    }
    EXPECT_EQ(cudaMemcpy(dev.p, bits.data(), n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  }
};

std::vector<float> download16(const DevBuf& b, std::size_t n, flash::DType t) {
  std::vector<std::uint16_t> bits(n);
  EXPECT_EQ(cudaMemcpy(bits.data(), b.p, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = from_16(bits[i], t);
  return out;
}

struct Case {
  Pattern pattern;
  Index block;  // uniform: the block; variable: the average (min_block 64)
  double keep;
  bool causal;
  Index seqlen;
  int heads_q, heads_kv, sparse_heads, head_dim;
  flash::DType dtype = flash::DType::bf16;
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  const Case& c = i.param;
  return std::string(c.pattern == Pattern::block_sparse_uniform ? "uniform" : "variable") +
         std::to_string(c.block) + "_keep" + std::to_string(int(c.keep * 10)) +
         (c.causal ? "_causal" : "") + "_S" + std::to_string(c.seqlen) + "_H" +
         std::to_string(c.heads_q) + "x" + std::to_string(c.heads_kv) + "_P" +
         std::to_string(c.sparse_heads) + "_D" + std::to_string(c.head_dim) +
         (c.dtype == flash::DType::bf16 ? "_bf16" : "_fp16");
}

BlockSparseMask sparse_mask(const Case& c, std::uint64_t seed) {
  MaskSpec spec;
  spec.pattern = c.pattern;
  spec.seqlen = c.seqlen;
  spec.seed = seed;
  spec.params.sparse_block = c.block;
  spec.params.min_block = 64;
  spec.params.average_block = c.block;
  spec.params.keep = c.keep;
  spec.params.sparse_causal = c.causal;
  spec.params.sparse_heads = c.sparse_heads;
  return std::get<BlockSparseMask>(make_mask(spec).mask);
}

enum class Kernel { portable, hopper };

// Forward and backward of the kernels on one case, compared with the reference.
void check_case(const Case& c, bool deterministic, std::uint64_t seed,
                Kernel kernel = Kernel::portable) {
  const BlockSparseMask mask = sparse_mask(c, seed);
  const std::string what = case_name({c, 0}) + (deterministic ? " deterministic" : "") +
                           (kernel == Kernel::hopper ? " flash_hopper" : "");
  AttentionShape s{c.seqlen, c.seqlen, c.heads_q, c.heads_kv, c.head_dim, 0.f};
  const flash::Shape fs{int(s.seqlen_q), int(s.seqlen_k), s.heads_q, s.heads_kv, s.head_dim,
                        s.softmax_scale()};
  const std::size_t nq = s.q_elements(), nkv = s.kv_elements();
  const std::size_t nl = std::size_t(s.heads_q) * s.seqlen_q;
  Tensor16 q(nq, c.dtype, seed * 4), k(nkv, c.dtype, seed * 4 + 1), v(nkv, c.dtype, seed * 4 + 2),
      d_o(nq, c.dtype, seed * 4 + 3);
  DevBuf o(nq * 2), lse(nl * 4), dq(nq * 2), dk(nkv * 2), dv(nkv * 2);
  for (DevBuf* b : {&o, &lse, &dq, &dk, &dv})  // poison: every element must be written
    ASSERT_EQ(cudaMemset(b->p, 0x7f, b == &lse ? nl * 4 : (b == &o || b == &dq ? nq : nkv) * 2),
              cudaSuccess);

  const bench::Tensors t{q.dev.p, k.dev.p, v.dev.p, o.p, static_cast<float*>(lse.p),
                         d_o.dev.p, dq.p,     dk.p,     dv.p};
  if (kernel == Kernel::hopper) {
#ifdef LONGATTN_WITH_FLASH_HOPPER
    flash::Plan plan = flash_hopper::make_plan(mask, fs, true);
    DevBuf ws(plan.workspace_bytes);
    flash_hopper::run_forward(bench::forward_params(fs, c.dtype, t, plan.fwd.view()), nullptr);
    flash_hopper::run_backward(
        bench::backward_params(fs, c.dtype, t, ws.p, plan.bwd.view()), nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
#endif
  } else {
    flash::Plan plan = flash::make_plan(mask, fs, true, deterministic);
    DevBuf ws(plan.workspace_bytes);
    flash::FwdParams fp = bench::forward_params(fs, c.dtype, t, plan.fwd.view());
    flash::run_forward(fp, nullptr);
    flash::BwdParams bp = bench::backward_params(fs, c.dtype, t, ws.p, plan.bwd.view());
    bp.deterministic = deterministic;
    bp.dq_mask = plan.dq.view();
    flash::run_backward(bp, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  }

  std::vector<RowIntervals> rows;
  for (int h = 0; h < mask.num_heads(); ++h) rows.push_back(row_intervals(mask, h));
  const MaskRows mr{std::span<const RowIntervals>(rows)};
  std::vector<float> ro(nq), rlse(nl), rdq(nq), rdk(nkv), rdv(nkv);
  reference_forward(s, mr, q.host, k.host, v.host, ro, rlse);
  reference_backward(s, mr, q.host, k.host, v.host, ro, rlse, d_o.host, rdq, rdk, rdv);

  const bool bf16 = c.dtype == flash::DType::bf16;
  const double tol_o = bf16 ? 1.5e-2 : 4e-3, tol_grad = bf16 ? 3e-2 : 1e-2;
  const double tol_lse = bf16 ? 2e-2 : 1e-2;
  compare(download16(o, nq, c.dtype), ro, tol_o, 1e-3, what + " O");
  std::vector<float> got_lse(nl);
  ASSERT_EQ(cudaMemcpy(got_lse.data(), lse.p, nl * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  int bad = 0;
  for (std::size_t i = 0; i < nl; ++i) {
    const bool ok = std::isinf(rlse[i]) ? std::isinf(got_lse[i]) && got_lse[i] < 0
                                        : std::abs(got_lse[i] - rlse[i]) <= tol_lse * (1 + std::abs(rlse[i]));
    if (!ok && bad++ < 3)
      ADD_FAILURE() << what << " LSE[" << i << "] = " << got_lse[i] << ", reference " << rlse[i];
  }
  EXPECT_EQ(bad, 0) << what << ": LSE mismatches";
  compare(download16(dq, nq, c.dtype), rdq, tol_grad, 2e-3, what + " dQ");
  compare(download16(dk, nkv, c.dtype), rdk, tol_grad, 2e-3, what + " dK");
  compare(download16(dv, nkv, c.dtype), rdv, tol_grad, 2e-3, what + " dV");
}

// Every layout x keep x causal, each with one of five (S, heads, patterns, head dim) settings in
// turn: GQA with a pattern per KV head, MHA, one pattern shared by every head, head dim 64, fp16.
std::vector<Case> sparse_cases() {
  struct Layout {
    Pattern pattern;
    Index block;
  };
  struct Setting {
    Index seqlen;
    int hq, hkv, patterns, d;
    flash::DType dtype;
  };
  const Setting settings[] = {{1000, 6, 2, 2, 128, flash::DType::bf16},
                              {2049, 4, 2, 2, 128, flash::DType::bf16},
                              {1000, 2, 2, 2, 64, flash::DType::bf16},
                              {2049, 4, 2, 1, 128, flash::DType::bf16},
                              {1000, 3, 3, 3, 128, flash::DType::fp16}};
  std::vector<Case> cases;
  int i = 0;
  for (const Layout l : {Layout{Pattern::block_sparse_uniform, 64},
                         Layout{Pattern::block_sparse_uniform, 128},
                         Layout{Pattern::block_sparse_variable, 128},
                         Layout{Pattern::block_sparse_variable, 256},
                         Layout{Pattern::block_sparse_variable, 512}})
    for (double keep : {0.2, 0.5, 0.8})
      for (bool causal : {false, true}) {
        const Setting& st = settings[i++ % 5];
        cases.push_back({l.pattern, l.block, keep, causal, st.seqlen, st.hq, st.hkv, st.patterns,
                         st.d, st.dtype});
      }
  return cases;
}

class FlashSparse : public ::testing::TestWithParam<Case> {};

TEST_P(FlashSparse, MatchesReference) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device";
  check_case(GetParam(), false, 300 + std::uint64_t(GetParam().seqlen));
}

INSTANTIATE_TEST_SUITE_P(All, FlashSparse, ::testing::ValuesIn(sparse_cases()), case_name);

#ifdef LONGATTN_WITH_FLASH_HOPPER
class FlashHopperSparse : public ::testing::TestWithParam<Case> {};

TEST_P(FlashHopperSparse, MatchesReference) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  check_case(GetParam(), false, 300 + std::uint64_t(GetParam().seqlen), Kernel::hopper);
}

INSTANTIATE_TEST_SUITE_P(All, FlashHopperSparse, ::testing::ValuesIn(sparse_cases()), case_name);

TEST(FlashHopperSparseEdges, OneBlockAndTinyKeep) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  check_case({Pattern::block_sparse_uniform, 128, 0.5, false, 77, 4, 2, 2, 128}, false, 10,
             Kernel::hopper);
  check_case({Pattern::block_sparse_uniform, 64, 0.01, true, 1500, 4, 2, 2, 128}, false, 11,
             Kernel::hopper);
}
#endif

TEST(FlashSparseEdges, DeterministicBackward) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device";
  for (bool causal : {false, true}) {
    check_case({Pattern::block_sparse_uniform, 64, 0.5, causal, 777, 6, 2, 2, 128}, true, 8);
    check_case({Pattern::block_sparse_variable, 256, 0.5, causal, 777, 4, 2, 1, 64}, true, 9);
  }
}

TEST(FlashSparseEdges, OneBlockAndTinyKeep) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device";
  // A single block (S below the block), and keep so small that most rows keep one block.
  check_case({Pattern::block_sparse_uniform, 128, 0.5, false, 77, 4, 2, 2, 128}, false, 10);
  check_case({Pattern::block_sparse_uniform, 64, 0.01, true, 1500, 4, 2, 2, 128}, false, 11);
}

TEST(FlashSparseEdges, BothForwardTileHeights) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device";
  // Plans pick 64-row forward tiles for blocks under 128 on average; force each height on
  // layouts that would get the other.
  for (const char* rows : {"64", "128"}) {
    ASSERT_EQ(setenv("LONGATTN_FLASH_SPARSE_FWD_ROWS", rows, 1), 0);
    check_case({Pattern::block_sparse_variable, 256, 0.5, true, 1000, 6, 2, 2, 128}, false, 12);
    check_case({Pattern::block_sparse_uniform, 64, 0.5, true, 1000, 4, 2, 1, 64}, false, 13);
    check_case({Pattern::block_sparse_uniform, 128, 0.2, false, 2049, 4, 4, 4, 128,
                flash::DType::fp16}, false, 14);
  }
  unsetenv("LONGATTN_FLASH_SPARSE_FWD_ROWS");
}

TEST(FlashSparseEdges, MaskHeadsMustMatch) {
  Case c{Pattern::block_sparse_uniform, 128, 0.5, false, 512, 6, 2, 3, 128};
  const BlockSparseMask m = sparse_mask(c, 1);
  EXPECT_THROW(flash::make_plan(m, {512, 512, 6, 2, 128, 0.1f}, false, false), InputError);
  EXPECT_THROW(flash::make_plan(m, {500, 500, 6, 3, 128, 0.1f}, false, false), InputError);
}

}  // namespace
}  // namespace longattn

// The sm_90a kernels (flash_hopper) against the CPU reference: all 12 static masks x
// S in {1, 77, 1000, 2049, 4096} x bf16, fp16 x MHA, GQA, forward O and LSE at head dim 128 and
// 64 (S up to 2049 at 64), backward dQ, dK, dV likewise, plus hand-made masks with empty rows and
// tiles, seqlen_q != seqlen_k, rejected inputs and the benchmark backend's support answers.
// LONGATTN_HOPPER_FWD_FLAGS and LONGATTN_HOPPER_BWD_FLAGS pick the kernels' scheduling variants
// (launch.hpp) for the whole run. Built only when the flash_hopper backend is (CUDA architectures with 90a).
#include <gtest/gtest.h>

#ifdef LONGATTN_WITH_FLASH_HOPPER

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "flash/flash_tensors.hpp"
#include "flash_test_support.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/error.hpp"
#include "longattn/kernels/flash_hopper.hpp"
#include "longattn/patterns.hpp"
#include "longattn/reference.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn {
namespace {

using namespace gpu_test;

struct Inputs {
  AttentionShape shape;
  flash::DType dtype;
  std::vector<float> q, k, v;  // rounded to dtype
};

Inputs make_inputs(Index sq, Index sk, int hq, int hkv, flash::DType t, std::uint64_t seed,
                   int head_dim = 128) {
  Inputs in;
  in.shape = {sq, sk, hq, hkv, head_dim, 0.f};
  in.dtype = t;
  auto rounded = [&](std::size_t n, std::uint64_t s) {
    return from_16(to_16(random_normal(n, s), t), t);
  };
  in.q = rounded(in.shape.q_elements(), seed * 3 + 0);
  in.k = rounded(in.shape.kv_elements(), seed * 3 + 1);
  in.v = rounded(in.shape.kv_elements(), seed * 3 + 2);
  return in;
}

struct Outputs {
  std::vector<float> o, lse;
};

// tile: the forward's tiles when not make_plan's (64 x 64: the split-tile kernel on a static mask).
Outputs run_hopper(const Inputs& in, const SliceMask& mask, std::optional<TileShape> tile = {}) {
  Outputs out;
  const AttentionShape& s = in.shape;
  const std::size_t nq = s.q_elements(), nkv = s.kv_elements();
  const std::size_t nl = std::size_t(s.heads_q) * s.seqlen_q;
  const flash::Shape fs{int(s.seqlen_q), int(s.seqlen_k), s.heads_q, s.heads_kv, s.head_dim,
                        s.softmax_scale()};
  const flash::Plan plan = flash_hopper::make_plan(mask, fs, false);
  const flash::DeviceMask split = tile ? flash::DeviceMask(flash::prepare_mask(mask, *tile, false))
                                       : flash::DeviceMask();
  const flash::DeviceMask& dm = tile ? split : plan.fwd;
  DevBuf q(nq * 2), k(nkv * 2), v(nkv * 2), o(nq * 2), lse(nl * 4);
  auto up = [&](DevBuf& b, const std::vector<float>& x) {
    const auto h = to_16(x, in.dtype);
    cuda_ok(cudaMemcpy(b.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice), "upload");
  };
  up(q, in.q);
  up(k, in.k);
  up(v, in.v);
  // Poison the outputs: every element must be written.
  cuda_ok(cudaMemset(o.p, 0x7f, nq * 2), "poison");
  cuda_ok(cudaMemset(lse.p, 0x7f, nl * 4), "poison");
  bench::Tensors t;
  t.q = q.p;
  t.k = k.p;
  t.v = v.p;
  t.o = o.p;
  t.lse = static_cast<float*>(lse.p);
  flash_hopper::run_forward(bench::forward_params(fs, in.dtype, t, dm.view()), nullptr);
  cuda_ok(cudaDeviceSynchronize(), "forward");
  std::vector<std::uint16_t> h(nq);
  cuda_ok(cudaMemcpy(h.data(), o.p, nq * 2, cudaMemcpyDeviceToHost), "download O");
  out.o = from_16(h, in.dtype);
  out.lse.resize(nl);
  cuda_ok(cudaMemcpy(out.lse.data(), lse.p, nl * 4, cudaMemcpyDeviceToHost), "download LSE");
  return out;
}

void check_against_reference(const Inputs& in, const SliceMask& mask, const std::string& what,
                             Outputs* got_out = nullptr, std::optional<TileShape> tile = {}) {
  const AttentionShape& s = in.shape;
  const RowIntervals rows = row_intervals(mask);
  const MaskRows mr{std::span<const RowIntervals>(&rows, 1)};
  std::vector<float> o(s.q_elements()), lse(std::size_t(s.heads_q) * s.seqlen_q);
  reference_forward(s, mr, in.q, in.k, in.v, o, lse);
  Outputs got = run_hopper(in, mask, tile);
  if (::testing::Test::HasFatalFailure()) return;
  // bf16 keeps 8 significant bits, fp16 11: O carries the rounding of P and of the result.
  const bool bf16 = in.dtype == flash::DType::bf16;
  compare(got.o, o, bf16 ? 1.5e-2 : 4e-3, 1e-3, what + " O");
  const double tol_lse = bf16 ? 2e-2 : 1e-2;
  int bad_lse = 0;
  for (std::size_t i = 0; i < lse.size(); ++i) {
    const bool ok = std::isinf(lse[i])
                        ? (std::isinf(got.lse[i]) && got.lse[i] < 0)
                        : std::abs(got.lse[i] - lse[i]) <= tol_lse * (1 + std::abs(lse[i]));
    if (!ok && bad_lse++ < 3)
      ADD_FAILURE() << what << " LSE[" << i << "] = " << got.lse[i] << ", reference " << lse[i];
  }
  EXPECT_EQ(bad_lse, 0) << what << ": LSE mismatches";
  if (got_out) *got_out = std::move(got);
}

struct Case {
  Pattern pattern;
  Index seqlen;
  flash::DType dtype;
  int heads_q, heads_kv;
  int head_dim = 128;
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  const Case& c = i.param;
  return std::string(to_string(c.pattern)) + "_S" + std::to_string(c.seqlen) +
         (c.dtype == flash::DType::bf16 ? "_bf16" : "_fp16") + "_H" + std::to_string(c.heads_q) +
         "x" + std::to_string(c.heads_kv) + (c.head_dim == 128 ? "" : "_D" + std::to_string(c.head_dim));
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const PatternInfo& pi : all_patterns()) {
    if (pi.family == PatternFamily::dynamic) continue;
    for (Index s : {Index(1), Index(77), Index(1000), Index(2049), Index(4096)})
      for (flash::DType t : {flash::DType::bf16, flash::DType::fp16})
        for (auto [hq, hkv] : {std::pair{2, 2}, std::pair{6, 2}}) {
          // The CPU reference's time bounds the larger sizes: from 1000 on, bf16 with GQA and
          // fp16 with MHA; at 4096 with 4:2 heads instead of 6:2.
          const bool gqa = hq != hkv, bf16 = t == flash::DType::bf16;
          if (s >= 1000 && gqa != bf16) continue;
          cases.push_back({pi.pattern, s, t, s == 4096 && gqa ? 4 : hq, hkv});
        }
    // Head dim 64: bf16 with GQA, fp16 with MHA, up to 2049.
    for (Index s : {Index(1), Index(77), Index(1000), Index(2049)}) {
      cases.push_back({pi.pattern, s, flash::DType::bf16, 6, 2, 64});
      cases.push_back({pi.pattern, s, flash::DType::fp16, 2, 2, 64});
    }
  }
  return cases;
}

class FlashHopperPatterns : public ::testing::TestWithParam<Case> {};

TEST_P(FlashHopperPatterns, ForwardMatchesReference) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  const Case& c = GetParam();
  const std::uint64_t seed = 2000 + std::uint64_t(c.seqlen) * 31 + std::uint64_t(c.pattern);
  const SliceMask mask = test_mask(c.pattern, c.seqlen, seed);
  const Inputs in = make_inputs(c.seqlen, c.seqlen, c.heads_q, c.heads_kv, c.dtype, seed, c.head_dim);
  check_against_reference(in, mask, case_name({c, 0}));
}

INSTANTIATE_TEST_SUITE_P(All, FlashHopperPatterns, ::testing::ValuesIn(all_cases()), case_name);

// The split-tile forward (each consumer warpgroup its own 64-row tiles over 64-key chunks, as
// block-sparse plans of small blocks pick) on every static mask: its masking, empty rows and
// tails, on masks whose shapes the sparse tests do not reach.
std::vector<Case> split_cases() {
  std::vector<Case> cases;
  for (const PatternInfo& pi : all_patterns()) {
    if (pi.family == PatternFamily::dynamic) continue;
    for (Index s : {Index(77), Index(1000), Index(2049)}) {
      cases.push_back({pi.pattern, s, flash::DType::bf16, 6, 2});
      cases.push_back({pi.pattern, s, flash::DType::fp16, 2, 2, 64});
    }
  }
  return cases;
}

class FlashHopperSplitTiles : public ::testing::TestWithParam<Case> {};

TEST_P(FlashHopperSplitTiles, ForwardMatchesReference) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  const Case& c = GetParam();
  const std::uint64_t seed = 2500 + std::uint64_t(c.seqlen) * 31 + std::uint64_t(c.pattern);
  const SliceMask mask = test_mask(c.pattern, c.seqlen, seed);
  const Inputs in = make_inputs(c.seqlen, c.seqlen, c.heads_q, c.heads_kv, c.dtype, seed, c.head_dim);
  check_against_reference(in, mask, case_name({c, 0}) + " split", nullptr,
                          flash_hopper::split_forward_tile());
}

INSTANTIATE_TEST_SUITE_P(All, FlashHopperSplitTiles, ::testing::ValuesIn(split_cases()),
                         case_name);

TEST(FlashHopperEdges, EmptyRowsAndTiles) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  // Rows [128, 300) have no keys (a whole 128-row tile among them).
  const Index s = 600;
  const SliceMask mask(s, {{{0, 100}, {0, 60}, SliceType::full},
                           {{100, 128}, {30, 190}, SliceType::causal},
                           {{300, 600}, {450, 600}, SliceType::causal},
                           {{300, 600}, {0, 20}, SliceType::full}});
  const TileShape split = flash_hopper::split_forward_tile();
  for (int d : {128, 64})
    for (flash::DType t : {flash::DType::bf16, flash::DType::fp16})
      for (const auto tile : {std::optional<TileShape>{}, std::optional<TileShape>(split)}) {
        const Inputs in = make_inputs(s, s, 4, 2, t, 5, d);
        Outputs got;
        check_against_reference(in, mask, "edges D" + std::to_string(d) + (tile ? " split" : ""),
                                &got, tile);
        if (got.o.empty()) continue;
        for (int h = 0; h < 4; ++h)
          for (Index i = 128; i < 300; ++i) {
            EXPECT_TRUE(std::isinf(got.lse[h * s + i]) && got.lse[h * s + i] < 0) << "row " << i;
            for (int c = 0; c < d; ++c) EXPECT_EQ(got.o[(i * 4 + h) * d + c], 0.f);
          }
      }
}

TEST(FlashHopperEdges, RectangularAndRestricted) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  // A query chunk against a longer key range, as context parallelism hands them out.
  const SliceMask full = test_mask(Pattern::causal_document, 1500, 3);
  const SliceMask part = full.restrict({700, 1033}, {0, 1033});
  const Inputs in = make_inputs(part.seqlen_q(), part.seqlen_k(), 8, 2, flash::DType::bf16, 9);
  check_against_reference(in, part, "restricted");
}

TEST(FlashHopperEdges, ManyHeadsLongRows) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  // Full attention over many key chunks (the ring wraps many times) and a GQA group of 8.
  const Index s = 3000;
  const SliceMask mask(s, {{{0, s}, {0, s}, SliceType::full}});
  const Inputs in = make_inputs(s, s, 16, 2, flash::DType::bf16, 11);
  check_against_reference(in, mask, "full 16:2");
  const Inputs in64 = make_inputs(s, s, 16, 2, flash::DType::fp16, 12, 64);
  check_against_reference(in64, mask, "full 16:2 D64");
}

TEST(FlashHopperEdges, HeadSliceWithRowStrideEqualsPackedHeads) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  for (int d : {128, 64})
    expect_head_slice_equals_packed(
        [](const SliceMask& m, const flash::Shape& s) { return flash_hopper::make_plan(m, s, false); },
        [](const flash::FwdParams& p) { flash_hopper::run_forward(p, nullptr); }, d);
}

TEST(FlashHopperEdges, BadInputIsRejected) {
  const SliceMask mask(64, {{{0, 64}, {0, 64}, SliceType::causal}});
  EXPECT_THROW(flash_hopper::make_plan(mask, {64, 64, 4, 2, 96, 0.1f}, false), InputError);
  flash::FwdParams p;
  p.shape = {64, 64, 3, 2, 128, 0.1f};  // heads_q not a multiple of heads_kv
  EXPECT_THROW(flash_hopper::run_forward(p, nullptr), InputError);
  p.shape = {64, 64, 4, 2, 96, 0.1f};  // head_dim 96: not built
  EXPECT_THROW(flash_hopper::run_forward(p, nullptr), InputError);
  if (!hopper_present()) return;
  // A mask prepared for the portable kernel's tiles (128 x 64): a message, not wrong rows.
  const flash::DeviceMask portable(flash::prepare_mask(mask, flash::forward_tile(128), false));
  p.shape = {64, 64, 4, 2, 128, 0.1f};
  p.mask = portable.view();
  int dummy = 0;
  p.q = p.k = p.v = p.o = &dummy;
  p.lse = reinterpret_cast<float*>(&dummy);
  EXPECT_THROW(flash_hopper::run_forward(p, nullptr), InputError);
}

TEST(FlashHopperBackend, RunsBothDirections) {
  const bench::BackendInfo* info = bench::find_backend("flash_hopper");
  ASSERT_NE(info, nullptr) << "flash_hopper is not registered";
  auto b = info->make();
  EXPECT_TRUE(b->capabilities().backward);
  MaskSpec spec;
  spec.pattern = Pattern::causal;
  spec.seqlen = 256;
  const GeneratedMask gm = make_mask(spec);
  bench::Problem p;
  p.shape = {256, 256, 4, 2, 128, 0.f};
  p.mask = &gm;
  for (bench::Direction d : {bench::Direction::fwd, bench::Direction::fwdbwd}) {
    p.direction = d;
    if (hopper_present()) EXPECT_FALSE(bench::check_support(*b, p).has_value());
  }
  // Head dim 64 both ways; 96 in neither, with its reason.
  p.shape.head_dim = 64;
  for (bench::Direction d : {bench::Direction::fwd, bench::Direction::fwdbwd}) {
    p.direction = d;
    if (hopper_present()) EXPECT_FALSE(bench::check_support(*b, p).has_value());
  }
  p.shape.head_dim = 96;
  const auto why = bench::check_support(*b, p);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("head dim 96"), std::string::npos) << *why;
}

// ---- backward ---------------------------------------------------------------------------------

struct Grads {
  std::vector<float> dq, dk, dv;
};

// Forward, then backward from the kernel's own O and LSE.
Grads run_hopper_backward(const Inputs& in, const std::vector<float>& d_o_host,
                          const SliceMask& mask) {
  Grads out;
  const AttentionShape& s = in.shape;
  const std::size_t nq = s.q_elements(), nkv = s.kv_elements();
  const std::size_t nl = std::size_t(s.heads_q) * s.seqlen_q;
  const flash::Shape fs{int(s.seqlen_q), int(s.seqlen_k), s.heads_q, s.heads_kv, s.head_dim,
                        s.softmax_scale()};
  const flash::Plan plan = flash_hopper::make_plan(mask, fs, true);
  const flash::DeviceMask& fwd = plan.fwd;
  DevBuf q(nq * 2), k(nkv * 2), v(nkv * 2), o(nq * 2), lse(nl * 4), d_o(nq * 2), dq(nq * 2),
      dk(nkv * 2), dv(nkv * 2), ws(plan.workspace_bytes);
  auto up = [&](DevBuf& b, const std::vector<float>& x) {
    const auto h = to_16(x, in.dtype);
    cuda_ok(cudaMemcpy(b.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice), "upload");
  };
  auto down = [&](const DevBuf& b, std::size_t n) {
    std::vector<std::uint16_t> h(n);
    cuda_ok(cudaMemcpy(h.data(), b.p, n * 2, cudaMemcpyDeviceToHost), "download");
    return from_16(h, in.dtype);
  };
  up(q, in.q);
  up(k, in.k);
  up(v, in.v);
  up(d_o, d_o_host);
  // Poison the gradients (and the workspace): every element must be written.
  cuda_ok(cudaMemset(dq.p, 0x7f, nq * 2), "poison");
  cuda_ok(cudaMemset(dk.p, 0x7f, nkv * 2), "poison");
  cuda_ok(cudaMemset(dv.p, 0x7f, nkv * 2), "poison");
  cuda_ok(cudaMemset(ws.p, 0x7f, plan.workspace_bytes), "poison");
  const bench::Tensors t{q.p, k.p, v.p, o.p, static_cast<float*>(lse.p), d_o.p, dq.p, dk.p, dv.p};
  flash_hopper::run_forward(bench::forward_params(fs, in.dtype, t, fwd.view()), nullptr);
  flash_hopper::run_backward(
      bench::backward_params(fs, in.dtype, t, ws.p, plan.bwd.view()), nullptr);
  cuda_ok(cudaDeviceSynchronize(), "forward + backward");
  out.dq = down(dq, nq);
  out.dk = down(dk, nkv);
  out.dv = down(dv, nkv);
  return out;
}

std::vector<float> make_d_o(const Inputs& in, std::uint64_t seed) {
  return from_16(to_16(random_normal(in.shape.q_elements(), seed * 3 + 1000003), in.dtype),
                 in.dtype);
}

void check_backward(const Inputs& in, const SliceMask& mask, std::uint64_t seed,
                    const std::string& what, Grads* got_out = nullptr) {
  const AttentionShape& s = in.shape;
  const std::vector<float> d_o = make_d_o(in, seed);
  const RowIntervals rows = row_intervals(mask);
  const MaskRows mr{std::span<const RowIntervals>(&rows, 1)};
  std::vector<float> o(s.q_elements()), lse(std::size_t(s.heads_q) * s.seqlen_q);
  reference_forward(s, mr, in.q, in.k, in.v, o, lse);
  std::vector<float> dq(s.q_elements()), dk(s.kv_elements()), dv(s.kv_elements());
  reference_backward(s, mr, in.q, in.k, in.v, o, lse, d_o, dq, dk, dv);
  Grads got = run_hopper_backward(in, d_o, mask);
  if (::testing::Test::HasFatalFailure()) return;
  // As the portable backward's tests: the gradients carry the rounding of P and dS to the input
  // type plus the rounding of the result.
  const double tol = in.dtype == flash::DType::bf16 ? 3e-2 : 1e-2;
  compare(got.dq, dq, tol, 2e-3, what + " dQ");
  compare(got.dk, dk, tol, 2e-3, what + " dK");
  compare(got.dv, dv, tol, 2e-3, what + " dV");
  if (got_out) *got_out = std::move(got);
}

std::vector<Case> backward_cases() {
  std::vector<Case> cases;
  for (const PatternInfo& pi : all_patterns()) {
    if (pi.family == PatternFamily::dynamic) continue;
    for (Index s : {Index(1), Index(77), Index(1000), Index(2049)})
      for (flash::DType t : {flash::DType::bf16, flash::DType::fp16})
        for (auto [hq, hkv] : {std::pair{2, 2}, std::pair{6, 2}}) {
          // The CPU reference bounds the larger sizes: from 1000 on, bf16 with GQA and fp16
          // with MHA.
          const bool gqa = hq != hkv, bf16 = t == flash::DType::bf16;
          if (s >= 1000 && gqa != bf16) continue;
          cases.push_back({pi.pattern, s, t, hq, hkv});
        }
    // Head dim 64 (dQ split by keys across the warpgroups): bf16 with GQA, fp16 with MHA.
    for (Index s : {Index(1), Index(77), Index(1000), Index(2049)}) {
      cases.push_back({pi.pattern, s, flash::DType::bf16, 6, 2, 64});
      cases.push_back({pi.pattern, s, flash::DType::fp16, 2, 2, 64});
    }
  }
  for (Pattern p : {Pattern::causal, Pattern::causal_document, Pattern::sliding_window}) {
    cases.push_back({p, 4096, flash::DType::bf16, 4, 2});
    cases.push_back({p, 4096, flash::DType::fp16, 4, 2, 64});
  }
  return cases;
}

class FlashHopperBackward : public ::testing::TestWithParam<Case> {};

TEST_P(FlashHopperBackward, GradientsMatchReference) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  const Case& c = GetParam();
  const std::uint64_t seed = 5000 + std::uint64_t(c.seqlen) * 31 + std::uint64_t(c.pattern);
  const SliceMask mask = test_mask(c.pattern, c.seqlen, seed);
  const Inputs in =
      make_inputs(c.seqlen, c.seqlen, c.heads_q, c.heads_kv, c.dtype, seed, c.head_dim);
  check_backward(in, mask, seed, case_name({c, 0}));
}

INSTANTIATE_TEST_SUITE_P(All, FlashHopperBackward, ::testing::ValuesIn(backward_cases()),
                         case_name);

TEST(FlashHopperBackwardEdges, EmptyRowsAndColumns) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  // Rows [128, 300) have no keys; keys [200, 450) are attended by nobody (whole backward key
  // tiles among them): zero dQ rows, zero dK, dV rows.
  const Index s = 600;
  const SliceMask mask(s, {{{0, 100}, {0, 60}, SliceType::full},
                           {{100, 128}, {30, 190}, SliceType::causal},
                           {{300, 600}, {450, 600}, SliceType::causal},
                           {{300, 600}, {0, 20}, SliceType::full}});
  for (int d : {128, 64})
    for (flash::DType t : {flash::DType::bf16, flash::DType::fp16}) {
      const Inputs in = make_inputs(s, s, 4, 2, t, 5, d);
      Grads got;
      check_backward(in, mask, 5, "edges D" + std::to_string(d), &got);
      if (got.dq.empty()) continue;
      for (int h = 0; h < 4; ++h)
        for (Index i = 128; i < 300; ++i)
          for (int c = 0; c < d; ++c) EXPECT_EQ(got.dq[(i * 4 + h) * d + c], 0.f);
      for (int h = 0; h < 2; ++h)
        for (Index j = 200; j < 450; ++j)
          for (int c = 0; c < d; ++c) {
            EXPECT_EQ(got.dk[(j * 2 + h) * d + c], 0.f);
            EXPECT_EQ(got.dv[(j * 2 + h) * d + c], 0.f);
          }
    }
}

TEST(FlashHopperBackwardEdges, RectangularAndRestricted) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  const SliceMask full = test_mask(Pattern::causal_document, 1500, 3);
  const SliceMask part = full.restrict({700, 1033}, {0, 1033});
  const Inputs in = make_inputs(part.seqlen_q(), part.seqlen_k(), 8, 2, flash::DType::bf16, 9);
  check_backward(in, part, 9, "restricted");
}

TEST(FlashHopperBackwardEdges, ManyHeadsLongColumns) {
  if (!hopper_present()) GTEST_SKIP() << "no sm_90 device";
  // Full attention, a GQA group of 8 over few key tiles: the plan splits key tiles (dK, dV
  // through the workspace) and the ring wraps many times.
  const Index s = 3000;
  const SliceMask mask(s, {{{0, s}, {0, s}, SliceType::full}});
  const Inputs in = make_inputs(s, s, 16, 2, flash::DType::bf16, 11);
  check_backward(in, mask, 11, "full 16:2");
  const Inputs in64 = make_inputs(s, s, 16, 2, flash::DType::fp16, 12, 64);
  check_backward(in64, mask, 12, "full 16:2 D64");
}

TEST(FlashHopperBackwardEdges, BadInputIsRejected) {
  const SliceMask mask(64, {{{0, 64}, {0, 64}, SliceType::causal}});
  EXPECT_THROW(flash_hopper::backward_tile(96), InputError);
  EXPECT_THROW(flash_hopper::make_plan(mask, {64, 64, 3, 2, 128, 0.1f}, true), InputError);
  EXPECT_THROW(flash_hopper::make_plan(mask, {65, 64, 4, 2, 128, 0.1f}, true), InputError);
  int dummy = 0;
  flash::BwdParams p;
  p.q = p.k = p.v = p.o = p.d_o = &dummy;
  p.dq = p.dk = p.dv = p.workspace = &dummy;
  p.lse = reinterpret_cast<const float*>(&dummy);
  p.shape = {64, 64, 3, 2, 128, 0.1f};  // heads_q not a multiple of heads_kv
  EXPECT_THROW(flash_hopper::run_backward(p, nullptr), InputError);
  p.shape = {64, 64, 4, 2, 96, 0.1f};  // head_dim 96: not built
  EXPECT_THROW(flash_hopper::run_backward(p, nullptr), InputError);
  p.shape = {64, 64, 4, 2, 128, 0.f};  // no scale
  EXPECT_THROW(flash_hopper::run_backward(p, nullptr), InputError);
  p.shape = {64, 64, 4, 2, 128, 0.1f};  // no mask
  EXPECT_THROW(flash_hopper::run_backward(p, nullptr), InputError);
  if (hopper_present()) {
    const flash::Plan plan = flash_hopper::make_plan(mask, p.shape, true);
    p.mask = plan.bwd.view();
    p.deterministic = true;  // not implemented
    EXPECT_THROW(flash_hopper::run_backward(p, nullptr), InputError);
    p.deterministic = false;
    p.workspace = nullptr;
    EXPECT_THROW(flash_hopper::run_backward(p, nullptr), InputError);
  }
}

}  // namespace
}  // namespace longattn

#endif  // LONGATTN_WITH_FLASH_HOPPER

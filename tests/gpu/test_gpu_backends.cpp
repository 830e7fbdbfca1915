// The GPU backends against the CPU reference through the harness: every mask a backend runs, odd
// sizes, GQA and MHA, bf16 and fp16; the wrong double caught on the device; out of memory
// reported and survived; the same case timed twice agrees.
#include <gtest/gtest.h>

#include <cmath>

#include "longattn/bench/backend.hpp"
#include "longattn/bench/cpu_backend.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/runner.hpp"
#include "naive/naive_backend.hpp"

using namespace longattn;
using namespace longattn::bench;

namespace {

RunOptions quick() {
  RunOptions o;
  o.timing.warmup = 1;
  o.timing.min_reps = 3;
  o.timing.max_reps = 5;
  o.timing.time_budget_s = 0;
  return o;
}

Case make_case(std::string backend, Pattern p, Index S, HeadConfig h, DType t = DType::bf16,
               Direction d = Direction::fwdbwd) {
  Case c;
  c.backend = std::move(backend);
  c.mask.pattern = p;
  c.mask.seqlen = S;
  c.mask.seed = 5;
  c.mask.params.window = 200;
  c.mask.params.global = 64;
  c.mask.params.block = 128;
  c.mask.params.sparse_block = 128;
  c.data_seed = 5;
  c.heads = h;
  c.dtype = t;
  c.direction = d;
  return c;
}

std::shared_ptr<const Environment> env() {
  return std::make_shared<const Environment>(collect_environment("test"));
}

void expect_ok(const Record& r) {
  ASSERT_EQ(r.status, Status::ok) << describe(r.c) << ": " << r.reason;
  ASSERT_TRUE(r.check);
  for (const auto* o : {&r.check->o, &r.check->dq, &r.check->dk, &r.check->dv}) {
    ASSERT_TRUE(o->has_value());
    EXPECT_TRUE((*o)->pass()) << describe(r.c);
    EXPECT_GT((*o)->tolerance, 0) << describe(r.c);
  }
  ASSERT_TRUE(r.forward && r.backward);
  EXPECT_GT(r.forward->timing.median_ms, 0);
  ASSERT_TRUE(r.memory.case_gib);
  EXPECT_GT(*r.memory.case_gib, 0);  // at least the tensors
}

const Pattern kAllStatic[] = {Pattern::full,
                              Pattern::causal,
                              Pattern::full_document,
                              Pattern::causal_document,
                              Pattern::sliding_window,
                              Pattern::sliding_window_causal,
                              Pattern::shared_question,
                              Pattern::causal_blockwise,
                              Pattern::prefix_lm_causal,
                              Pattern::prefix_lm_document,
                              Pattern::global_sliding_window,
                              Pattern::block_causal_document};

}  // namespace

TEST(GpuBackends, NaiveMatchesReferenceOnEveryMask) {
  ASSERT_TRUE(gpu_present());
  Runner runner(quick(), env());
  for (Pattern p : kAllStatic) expect_ok(runner.run(make_case("naive", p, 1000, {4, 2, 64})));
  for (Pattern p : {Pattern::block_sparse_uniform, Pattern::block_sparse_variable})
    expect_ok(runner.run(make_case("naive", p, 1037, {6, 3, 64})));
  expect_ok(runner.run(make_case("naive", Pattern::causal, 777, {3, 3, 128}, DType::fp16)));
  expect_ok(runner.run(make_case("naive", Pattern::causal_document, 1537, {8, 1, 96})));
}

TEST(GpuBackends, FlashRunsBlockSparseMasks) {
  ASSERT_TRUE(gpu_present());
  if (!find_backend("flash")) GTEST_SKIP() << "flash backend not built";
  Runner runner(quick(), env());
  // One pattern shared by every KV head, and one per KV head (the harness's own plan path).
  for (int patterns : {1, 3})
    for (Pattern p : {Pattern::block_sparse_uniform, Pattern::block_sparse_variable}) {
      Case c = make_case("flash", p, 1037, {6, 3, 128});
      c.mask.params.sparse_heads = patterns;
      expect_ok(runner.run(c));
    }
}

TEST(GpuBackends, CudnnMatchesReferenceOrSaysUnsupported) {
  ASSERT_TRUE(gpu_present());
  if (!find_backend("cudnn")) GTEST_SKIP() << "cudnn backend not built";
  Runner runner(quick(), env());
  for (Pattern p : {Pattern::full, Pattern::causal, Pattern::sliding_window_causal,
                    Pattern::full_document, Pattern::causal_document})
    for (Index S : {1000, 2048}) expect_ok(runner.run(make_case("cudnn", p, S, {8, 2, 128})));
  expect_ok(runner.run(make_case("cudnn", Pattern::causal, 1537, {4, 4, 64}, DType::fp16)));
  // Masks cuDNN cannot express are unsupported with a reason, never attempted.
  for (Pattern p : {Pattern::shared_question, Pattern::prefix_lm_causal, Pattern::block_sparse_uniform}) {
    const Record r = runner.run(make_case("cudnn", p, 1024, {8, 2, 128}));
    EXPECT_EQ(r.status, Status::unsupported) << to_string(p);
    EXPECT_FALSE(r.reason.empty());
  }
  // A bidirectional window is one band, but only some cuDNN versions take a right bound > 0.
  const Record sw = runner.run(make_case("cudnn", Pattern::sliding_window, 1024, {8, 2, 128}));
  if (sw.status == Status::ok) expect_ok(sw);
  else EXPECT_EQ(sw.status, Status::unsupported) << sw.reason;
}

TEST(GpuBackends, WrongDoubleIsCaughtOnTheDevice) {
  ASSERT_TRUE(gpu_present());
  Runner runner(quick(), env());
  NaiveBackendOptions o;
  o.name = "naive_drops_tile";
  o.alter_mask = drop_key_tile({128, 128}, 2, 1);
  runner.use_backend(o.name, make_naive_backend(o));
  const Record r = runner.run(make_case(o.name, Pattern::causal, 1024, {4, 2, 64}));
  EXPECT_EQ(r.status, Status::wrong) << r.reason;
  expect_ok(runner.run(make_case("naive", Pattern::causal, 1024, {4, 2, 64})));
}

TEST(GpuBackends, OutOfMemoryIsReportedAndTheNextCaseRuns) {
  ASSERT_TRUE(gpu_present());
  Runner runner(quick(), env());
  // 64 heads x (64K)^2 fp32 scores: a terabyte.
  const Record big = runner.run(make_case("naive", Pattern::causal, 64 * 1024, {64, 8, 128},
                                          DType::bf16, Direction::fwd));
  EXPECT_EQ(big.status, Status::oom) << big.reason;
  const Record next = runner.run(make_case("naive", Pattern::causal, 1024, {4, 2, 64}));
  expect_ok(next);
  // Nothing of the failed case is still held: the next case's peak is small.
  EXPECT_LT(*next.memory.case_gib, 1.0);
}

TEST(GpuBackends, MediansRepeatWithinThreePercent) {
  ASSERT_TRUE(gpu_present());
  RunOptions o;
  o.check.enabled = false;
  Runner runner(o, env());
  const std::string backend = find_backend("cudnn") ? "cudnn" : "naive";
  const Case c = make_case(backend, Pattern::causal, 8192, {64, 8, 128}, DType::bf16, Direction::fwd);
  const Record a = runner.run(c), b = runner.run(c);
  ASSERT_EQ(a.status, Status::ok) << a.reason;
  ASSERT_EQ(b.status, Status::ok) << b.reason;
  EXPECT_GE(a.forward->timing.reps, 20);
  const double ma = a.forward->timing.median_ms, mb = b.forward->timing.median_ms;
  EXPECT_LT(std::abs(ma - mb) / std::min(ma, mb), 0.03) << ma << " vs " << mb;
}

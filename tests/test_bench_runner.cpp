// The runner on the cpu backend: statuses, the wrong test double, unsupported cases, OOM, and a
// sweep that goes on after every kind of failure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "longattn/bench/backend.hpp"
#include "longattn/bench/check.hpp"
#include "longattn/bench/cpu_backend.hpp"
#include "longattn/bench/runner.hpp"

using namespace longattn;
using namespace longattn::bench;

namespace {

RunOptions quick() {
  RunOptions o;
  o.timing.warmup = 1;
  o.timing.min_reps = 2;
  o.timing.max_reps = 3;
  o.timing.time_budget_s = 0;
  return o;
}

Case make_case(std::string backend, Pattern p, Index S, Direction d = Direction::fwdbwd,
               HeadConfig h = {4, 2, 32}, DType t = DType::fp32) {
  Case c;
  c.backend = std::move(backend);
  c.mask.pattern = p;
  c.mask.seqlen = S;
  c.mask.seed = 3;
  c.data_seed = 3;
  c.heads = h;
  c.dtype = t;
  c.direction = d;
  return c;
}

auto env() { return std::make_shared<const Environment>(); }

// Allocates nothing and reports that the device ran out of memory, as a too-large case would.
class OomBackend final : public Backend {
 public:
  OomBackend() {
    cap_.device = Device::cpu;
    cap_.dtypes = {DType::fp32};
  }
  std::string_view name() const override { return "oom_double"; }
  const Capabilities& capabilities() const override { return cap_; }
  std::unique_ptr<Plan> prepare(const Problem&) override { throw OutOfMemory("needs 1 TiB"); }

 private:
  Capabilities cap_;
};

}  // namespace

TEST(BenchRunner, CpuBackendIsCorrectAndTimed) {
  Runner runner(quick(), env());
  for (Pattern p : {Pattern::causal, Pattern::causal_document, Pattern::shared_question,
                    Pattern::block_sparse_uniform}) {
    Case c = make_case("cpu", p, 300);
    c.mask.params.sparse_block = 64;
    const Record r = runner.run(c);
    ASSERT_EQ(r.status, Status::ok) << to_string(p) << ": " << r.reason;
    ASSERT_TRUE(r.forward && r.backward && r.check);
    EXPECT_GE(r.forward->timing.reps, 2);
    EXPECT_GT(r.forward->timing.median_ms, 0);
    EXPECT_GT(r.forward->tflops, 0);
    EXPECT_TRUE(r.check->full);
    for (const auto* o : {&r.check->o, &r.check->dq, &r.check->dk, &r.check->dv}) {
      ASSERT_TRUE(o->has_value());
      EXPECT_LE((*o)->error, 1e-5);
    }
    EXPECT_GT(r.flops.forward, 0);
    EXPECT_GT(r.mask.area, 0);
  }
}

TEST(BenchRunner, WrongDoubleIsCaught) {
  Runner runner(quick(), env());
  CpuBackendOptions o;
  o.name = "cpu_drops_tile";
  o.alter_mask = drop_key_tile({128, 128}, 1, 0);
  runner.use_backend(o.name, make_cpu_backend(o));
  const Record r = runner.run(make_case(o.name, Pattern::causal, 384));
  EXPECT_EQ(r.status, Status::wrong);
  EXPECT_NE(r.reason.find("error"), std::string::npos) << r.reason;
  ASSERT_TRUE(r.check && r.check->o);
  EXPECT_GT(r.check->o->error, 10 * r.check->o->tolerance);
}

TEST(BenchRunner, WrongDoubleIsCaughtBySampledCheck) {
  RunOptions opt = quick();
  opt.check.rows = 24;
  opt.check.full_check_flops = 0;  // force the sampled path
  Runner runner(opt, env());
  CpuBackendOptions o;
  o.name = "cpu_drops_tile";
  o.alter_mask = drop_key_tile({64, 64}, 0, 0);
  runner.use_backend(o.name, make_cpu_backend(o));
  const Record good = runner.run(make_case("cpu", Pattern::causal_document, 512));
  ASSERT_EQ(good.status, Status::ok) << good.reason;
  EXPECT_FALSE(good.check->full);
  EXPECT_EQ(good.check->q_rows, 24);
  EXPECT_GE(good.check->kv_group, 0);
  EXPECT_EQ(good.check->k_rows, 24);
  const Record bad = runner.run(make_case(o.name, Pattern::causal, 512));
  EXPECT_EQ(bad.status, Status::wrong) << bad.reason;
}

TEST(BenchRunner, ImpossibleCasesAreUnsupported) {
  Runner runner(quick(), env());
  const Record heads = runner.run(make_case("cpu", Pattern::causal, 128, Direction::fwd, {6, 4, 32}));
  EXPECT_EQ(heads.status, Status::unsupported);
  EXPECT_NE(heads.reason.find("multiple"), std::string::npos) << heads.reason;
  EXPECT_FALSE(heads.forward);
  const Record dtype = runner.run(make_case("cpu", Pattern::causal, 128, Direction::fwd, {4, 2, 32}, DType::bf16));
  EXPECT_EQ(dtype.status, Status::unsupported);
  EXPECT_NE(dtype.reason.find("fp32"), std::string::npos) << dtype.reason;
}

TEST(BenchRunner, SweepGoesOnAfterEveryFailure) {
  Runner runner(quick(), env());
  runner.use_backend("oom_double", std::make_unique<OomBackend>());
  const std::vector<Case> cases = {
      make_case("oom_double", Pattern::causal, 256),
      make_case("cpu", Pattern::causal, 256, Direction::bwd),
      make_case("no_such_backend", Pattern::causal, 256),
      make_case("cpu", Pattern::causal, 256, Direction::fwd, {6, 4, 32}),
      make_case("cpu", Pattern::sliding_window_causal, 256, Direction::fwd),
  };
  std::vector<std::size_t> seen;
  const auto records = runner.run_all(cases, [&](const Record&, std::size_t i) { seen.push_back(i); });
  ASSERT_EQ(records.size(), cases.size());
  EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(records[0].status, Status::oom);
  EXPECT_NE(records[0].reason.find("1 TiB"), std::string::npos);
  EXPECT_EQ(records[1].status, Status::ok) << records[1].reason;
  EXPECT_FALSE(records[1].forward);  // bwd: the forward ran untimed
  EXPECT_TRUE(records[1].backward);
  EXPECT_EQ(records[2].status, Status::error);
  EXPECT_NE(records[2].reason.find("no_such_backend"), std::string::npos);
  EXPECT_EQ(records[3].status, Status::unsupported);
  EXPECT_EQ(records[4].status, Status::ok) << records[4].reason;
}

TEST(BenchCheck, PlainBf16ErrorIsTheScaleOfRounding) {
  // The tolerance's yardstick: a plain bf16 implementation lands between 1e-4 and 2e-2.
  const auto g = make_mask({Pattern::causal, 256, {}, 1});
  AttentionShape s;
  s.seqlen_q = s.seqlen_k = 256;
  s.heads_q = 4;
  s.heads_kv = 2;
  s.head_dim = 64;
  HostTensors in;
  for (auto* x : {&in.q, &in.k, &in.v, &in.d_o}) {
    x->resize(x == &in.k || x == &in.v ? s.kv_elements() : s.q_elements());
    for (std::size_t i = 0; i < x->size(); ++i) (*x)[i] = round_to(DType::bf16, float(std::sin(double(i) * 0.37 + double(x->size()))));
  }
  Checker checker(s, g.mask, DType::bf16, in, CheckOptions{}, 1);
  // The backend's outputs are the reference itself: zero error, pass.
  std::vector<RowIntervals> rows{row_intervals(std::get<SliceMask>(g.mask))};
  std::vector<float> o(s.q_elements()), lse(std::size_t(s.heads_q * s.seqlen_q));
  reference_forward(s, MaskRows{rows}, in.q, in.k, in.v, o, lse);
  CheckResult r;
  checker.check_forward(o, lse, r);
  ASSERT_TRUE(r.o);
  EXPECT_LT(r.o->error, 1e-6);
  EXPECT_GT(r.o->plain, 1e-4);
  EXPECT_LT(r.o->plain, 2e-2);
  EXPECT_DOUBLE_EQ(r.o->tolerance, 2 * r.o->plain);
  EXPECT_TRUE(r.passed());
  // A NaN in the output fails.
  o[5] = std::nanf("");
  checker.check_forward(o, lse, r);
  EXPECT_FALSE(r.passed());
}

TEST(BenchCheck, SampleRowsKeepsTheEnds) {
  const auto rows = sample_rows(1000, 10, 7);
  ASSERT_LE(rows.size(), 10u);
  EXPECT_GE(rows.size(), 9u);
  EXPECT_EQ(rows.front(), 0);
  EXPECT_EQ(rows.back(), 999);
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end()));
  EXPECT_EQ(sample_rows(5, 10, 7).size(), 5u);
  EXPECT_EQ(sample_rows(1000, 10, 7), rows);  // deterministic
}

TEST(BenchCheck, RoundingMatchesTheFormats) {
  EXPECT_EQ(round_to(DType::bf16, 1.0f + 1.0f / 512), 1.0f);            // ties to even
  EXPECT_EQ(round_to(DType::bf16, 1.0f + 3.0f / 512), 1.0f + 4.0f / 512);
  EXPECT_EQ(round_to(DType::fp16, 1.0f + 1.0f / 4096), 1.0f);
  EXPECT_EQ(round_to(DType::fp16, 65504.0f), 65504.0f);
  EXPECT_TRUE(std::isinf(round_to(DType::fp16, 70000.0f)));
  EXPECT_EQ(round_to(DType::fp16, 3e-8f), 5.9604645e-8f);  // just over half of 2^-24: rounds up
  EXPECT_EQ(round_to(DType::fp16, 2.9e-8f), 0.0f);
  EXPECT_EQ(round_to(DType::fp32, 0.1f), 0.1f);
}

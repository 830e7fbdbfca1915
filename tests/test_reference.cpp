// The CPU reference is the judge of every kernel, so it is checked against a plain fp64 formula
// (dense scores, explicit softmax, explicit gradient formulas) and against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/patterns.hpp"
#include "longattn/reference.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn {
namespace {

const float kSentinel = 12345.0f;
const double kNegInf = -std::numeric_limits<double>::infinity();

// ---- inputs -------------------------------------------------------------------------------

std::vector<float> random_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<float> x(n);
  for (float& e : x) e = float(double(gen() >> 11) * 0x1.0p-53 * 2.0 - 1.0);  // [-1, 1)
  return x;
}

struct Inputs {
  AttentionShape s;
  std::vector<float> q, k, v, d_o;
};

Inputs make_inputs(Index seqlen_q, Index seqlen_k, int hq, int hkv, int d, float scale,
                   std::uint64_t seed) {
  Inputs in;
  in.s = AttentionShape{seqlen_q, seqlen_k, hq, hkv, d, scale};
  in.q = random_values(in.s.q_elements(), seed * 4 + 0);
  in.k = random_values(in.s.kv_elements(), seed * 4 + 1);
  in.v = random_values(in.s.kv_elements(), seed * 4 + 2);
  in.d_o = random_values(in.s.q_elements(), seed * 4 + 3);
  // Larger q makes the softmax peaked, so the test sees more than near-uniform weights.
  for (float& e : in.q) e *= 3.0f;
  return in;
}

// A mask as the reference consumes it (row intervals per entry) together with the canonical
// mask's own allows(), which the dense formula uses.
struct TestMask {
  Mask mask;
  std::vector<RowIntervals> entries;

  MaskRows rows() const { return MaskRows{entries}; }
  bool allows(std::size_t entry, Index i, Index j) const {
    if (auto* sm = std::get_if<SliceMask>(&mask)) return sm->allows(i, j);
    return std::get<BlockSparseMask>(mask).allows(int(entry), i, j);
  }
};

TestMask test_mask(Mask m) {
  TestMask t{std::move(m), {}};
  if (auto* sm = std::get_if<SliceMask>(&t.mask)) {
    t.entries.push_back(row_intervals(*sm));
  } else {
    const auto& bs = std::get<BlockSparseMask>(t.mask);
    for (int h = 0; h < bs.num_heads(); ++h) t.entries.push_back(row_intervals(bs, h));
  }
  return t;
}

// ---- the plain fp64 formula ---------------------------------------------------------------

struct Dense {
  std::vector<double> o, lse, dq, dk, dv;
};

Dense dense_attention(const Inputs& in, const TestMask& m) {
  const AttentionShape& s = in.s;
  const int D = s.head_dim;
  const double scale = s.scale != 0 ? s.scale : 1.0 / std::sqrt(double(D));
  const int group = s.heads_q / s.heads_kv;
  auto at = [&](const std::vector<float>& x, Index row, int heads, int h, int d) {
    return double(x[std::size_t((row * heads + h) * D + d)]);
  };
  Dense r;
  r.o.assign(s.q_elements(), 0);
  r.dq.assign(s.q_elements(), 0);
  r.dk.assign(s.kv_elements(), 0);
  r.dv.assign(s.kv_elements(), 0);
  r.lse.assign(std::size_t(s.heads_q * s.seqlen_q), kNegInf);
  for (int h = 0; h < s.heads_q; ++h) {
    const int g = h / group;
    const std::size_t entry = m.entries.size() == 1 ? 0 : std::size_t(g);
    for (Index i = 0; i < s.seqlen_q; ++i) {
      // Scores of the allowed keys, then softmax.
      std::vector<Index> keys;
      std::vector<double> score;
      for (Index j = 0; j < s.seqlen_k; ++j) {
        if (!m.allows(entry, i, j)) continue;
        double dotp = 0;
        for (int d = 0; d < D; ++d)
          dotp += at(in.q, i, s.heads_q, h, d) * at(in.k, j, s.heads_kv, g, d);
        keys.push_back(j);
        score.push_back(scale * dotp);
      }
      if (keys.empty()) continue;
      double mx = kNegInf;
      for (double x : score) mx = std::max(mx, x);
      double sum = 0;
      for (double x : score) sum += std::exp(x - mx);
      std::vector<double> p(keys.size());
      for (std::size_t t = 0; t < keys.size(); ++t) p[t] = std::exp(score[t] - mx) / sum;
      r.lse[std::size_t(h * s.seqlen_q + i)] = mx + std::log(sum);
      for (std::size_t t = 0; t < keys.size(); ++t)
        for (int d = 0; d < D; ++d)
          r.o[std::size_t((i * s.heads_q + h) * D + d)] +=
              p[t] * at(in.v, keys[t], s.heads_kv, g, d);
      // Gradients through the softmax Jacobian: dS = P * (dP - sum_k P_k dP_k).
      std::vector<double> dp(keys.size());
      double pdp = 0;
      for (std::size_t t = 0; t < keys.size(); ++t) {
        for (int d = 0; d < D; ++d)
          dp[t] += at(in.d_o, i, s.heads_q, h, d) * at(in.v, keys[t], s.heads_kv, g, d);
        pdp += p[t] * dp[t];
      }
      for (std::size_t t = 0; t < keys.size(); ++t) {
        const double ds = p[t] * (dp[t] - pdp);
        const Index j = keys[t];
        for (int d = 0; d < D; ++d) {
          r.dq[std::size_t((i * s.heads_q + h) * D + d)] +=
              scale * ds * at(in.k, j, s.heads_kv, g, d);
          r.dk[std::size_t((j * s.heads_kv + g) * D + d)] +=
              scale * ds * at(in.q, i, s.heads_q, h, d);
          r.dv[std::size_t((j * s.heads_kv + g) * D + d)] += p[t] * at(in.d_o, i, s.heads_q, h, d);
        }
      }
    }
  }
  return r;
}

// ---- the reference under test -------------------------------------------------------------

struct Result {
  std::vector<float> o, lse, dq, dk, dv;
};

Result run_reference(const Inputs& in, const TestMask& m, ReferenceOptions opt) {
  const AttentionShape& s = in.s;
  Result r;
  r.o.assign(s.q_elements(), kSentinel);
  r.lse.assign(std::size_t(s.heads_q * s.seqlen_q), kSentinel);
  r.dq.assign(s.q_elements(), kSentinel);
  r.dk.assign(s.kv_elements(), kSentinel);
  r.dv.assign(s.kv_elements(), kSentinel);
  reference_forward(s, m.rows(), in.q, in.k, in.v, r.o, r.lse, {}, opt);
  reference_backward(s, m.rows(), in.q, in.k, in.v, r.o, r.lse, in.d_o, r.dq, r.dk, r.dv, opt);
  return r;
}

// max |x - ref| / max |ref| (an absolute error when ref is all zero).
double max_error(const std::vector<float>& x, const std::vector<double>& ref) {
  EXPECT_EQ(x.size(), ref.size());
  double err = 0, norm = 0;
  for (std::size_t e = 0; e < x.size(); ++e) {
    if (!std::isfinite(x[e])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(double(x[e]) - ref[e]));
    norm = std::max(norm, std::abs(ref[e]));
  }
  return norm > 0 ? err / norm : err;
}

// LSE: -inf exactly where the formula has -inf, else close in absolute terms.
void expect_lse(const std::vector<float>& lse, const std::vector<double>& ref, double tol,
                const std::string& what) {
  ASSERT_EQ(lse.size(), ref.size());
  for (std::size_t e = 0; e < lse.size(); ++e) {
    if (std::isinf(ref[e])) {
      EXPECT_EQ(double(lse[e]), kNegInf) << what << " lse " << e;
    } else {
      EXPECT_NEAR(double(lse[e]), ref[e], tol * (1 + std::abs(ref[e]))) << what << " lse " << e;
    }
  }
}

void expect_matches_dense(const Inputs& in, const TestMask& m, const std::string& what) {
  const Dense want = dense_attention(in, m);
  struct Mode {
    Accumulate acc;
    double tol;
  };
  for (Mode mode : {Mode{Accumulate::fp64, 2e-6}, Mode{Accumulate::fp32, 2e-5}}) {
    const std::string tag = what + (mode.acc == Accumulate::fp64 ? " fp64" : " fp32");
    const Result got = run_reference(in, m, {mode.acc, 2});
    EXPECT_LE(max_error(got.o, want.o), mode.tol) << tag << " O";
    expect_lse(got.lse, want.lse, mode.tol, tag);
    EXPECT_LE(max_error(got.dq, want.dq), mode.tol) << tag << " dQ";
    EXPECT_LE(max_error(got.dk, want.dk), mode.tol) << tag << " dK";
    EXPECT_LE(max_error(got.dv, want.dv), mode.tol) << tag << " dV";
  }
}

// Small parameters so that every pattern has structure at S <= 33.
MaskSpec small_spec(Pattern p, Index seqlen, int kv_heads, std::uint64_t seed) {
  MaskSpec spec;
  spec.pattern = p;
  spec.seqlen = seqlen;
  spec.seed = seed;
  spec.params.window = 3;
  spec.params.global = 2;
  spec.params.block = 4;
  spec.params.sparse_block = 4;
  spec.params.min_block = 2;
  spec.params.average_block = 4;
  spec.params.keep = 0.5;
  spec.params.sparse_heads = kv_heads;
  spec.params.sparse_causal = seed % 2 == 1;
  if (info(p).uses_documents) {
    if (seqlen == 33) spec.params.doc_lens = std::vector<Index>{10, 5, 1, 17};
    if (seqlen == 7) spec.params.doc_lens = std::vector<Index>{3, 1, 3};
    if (seqlen == 1) spec.params.doc_lens = std::vector<Index>{1};
  }
  return spec;
}

// ---- tests --------------------------------------------------------------------------------

struct HeadConfig {
  int hq, hkv, d;
  float scale;
};

TEST(Reference, MatchesDenseFormulaForEveryPattern) {
  // Head dims 8, 16, 24 and 13 (not a multiple of any vector width); MHA and two GQA groupings.
  const HeadConfig configs[] = {
      {1, 1, 8, 0}, {4, 2, 16, 0.37f}, {6, 1, 24, 0}, {3, 3, 24, 1.3f}, {2, 1, 13, 0}};
  std::uint64_t seed = 1;
  for (Index seqlen : {7, 33}) {
    for (const PatternInfo& pi : all_patterns()) {
      for (const HeadConfig& c : configs) {
        ++seed;
        const GeneratedMask g = make_mask(small_spec(pi.pattern, seqlen, c.hkv, seed));
        const TestMask m = test_mask(g.mask);
        const Inputs in = make_inputs(seqlen, seqlen, c.hq, c.hkv, c.d, c.scale, seed);
        expect_matches_dense(in, m,
                             std::string(pi.name) + " S=" + std::to_string(seqlen) +
                                 " Hq=" + std::to_string(c.hq) + " Hkv=" + std::to_string(c.hkv) +
                                 " D=" + std::to_string(c.d));
      }
    }
  }
}

TEST(Reference, MatchesDenseFormulaAtSeqlenOne) {
  for (Pattern p : {Pattern::full, Pattern::causal, Pattern::causal_document,
                    Pattern::sliding_window, Pattern::shared_question}) {
    const TestMask m = test_mask(make_mask(small_spec(p, 1, 1, 3)).mask);
    expect_matches_dense(make_inputs(1, 1, 4, 2, 8, 0, 5), m, std::string(to_string(p)) + " S=1");
  }
}

TEST(Reference, MatchesDenseFormulaWithPerHeadBlockSparseMasks) {
  // Each KV head has its own kept blocks; query heads 0,1 use head 0's and 2,3 use head 1's.
  MaskSpec spec = small_spec(Pattern::block_sparse_uniform, 33, 2, 11);
  spec.params.keep = 0.3;
  const GeneratedMask g = make_mask(spec);
  ASSERT_EQ(mask_heads(g.mask), 2);
  const TestMask m = test_mask(g.mask);
  expect_matches_dense(make_inputs(33, 33, 4, 2, 16, 0, 12), m, "block-sparse per head");
  // The same masks through head_mask() and the slice view.
  TestMask via_slices{g.mask, {}};
  for (int h = 0; h < 2; ++h)
    via_slices.entries.push_back(row_intervals(std::get<BlockSparseMask>(g.mask).head_mask(h)));
  expect_matches_dense(make_inputs(33, 33, 4, 2, 16, 0, 12), via_slices, "block-sparse head_mask");
}

TEST(Reference, MatchesDenseFormulaWithDifferentQueryAndKeyLengths) {
  // 6 queries over 9 keys, as a context-parallel rank sees its chunk: a full block and a band.
  const SliceMask sm(
      6, 9,
      {Slice{{0, 3}, {0, 4}, SliceType::full}, Slice{{3, 6}, {2, 9}, SliceType::band},
       Slice{{0, 3}, {6, 9}, SliceType::causal}});
  const TestMask m = test_mask(sm);
  expect_matches_dense(make_inputs(6, 9, 4, 2, 24, 0.5f, 21), m, "6x9");
  const TestMask restricted = test_mask(make_mask(small_spec(Pattern::causal, 33, 1, 0)).mask);
  const SliceMask part = std::get<SliceMask>(restricted.mask).restrict({20, 33}, {0, 16});
  expect_matches_dense(make_inputs(13, 16, 2, 1, 8, 0, 22), test_mask(part), "causal restricted");
}

TEST(Reference, EmptyRowsGiveZeroOutputMinusInfLseAndZeroGradients) {
  // Row 2 has no keys; key 4 is attended by no row.
  const SliceMask sm(
      5, {Slice{{0, 2}, {0, 3}, SliceType::full}, Slice{{3, 5}, {1, 4}, SliceType::causal}});
  const TestMask m = test_mask(sm);
  const Inputs in = make_inputs(5, 5, 2, 1, 8, 0, 31);
  expect_matches_dense(in, m, "empty row");
  for (Accumulate acc : {Accumulate::fp32, Accumulate::fp64}) {
    const Result r = run_reference(in, m, {acc, 3});
    for (float x : r.o) EXPECT_TRUE(std::isfinite(x));
    for (float x : r.dq) EXPECT_TRUE(std::isfinite(x));
    for (float x : r.dk) EXPECT_TRUE(std::isfinite(x));
    for (float x : r.dv) EXPECT_TRUE(std::isfinite(x));
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ(r.lse[std::size_t(h * 5 + 2)], -std::numeric_limits<float>::infinity());
      for (int d = 0; d < 8; ++d) {
        EXPECT_EQ(r.o[std::size_t((2 * 2 + h) * 8 + d)], 0.0f);
        EXPECT_EQ(r.dq[std::size_t((2 * 2 + h) * 8 + d)], 0.0f);
      }
    }
    for (int d = 0; d < 8; ++d) {
      EXPECT_EQ(r.dk[std::size_t(4 * 8 + d)], 0.0f);
      EXPECT_EQ(r.dv[std::size_t(4 * 8 + d)], 0.0f);
    }
  }
}

TEST(Reference, MaskWithoutAnyPairGivesZerosEverywhere) {
  const TestMask m = test_mask(SliceMask(4, {}));
  const Inputs in = make_inputs(4, 4, 2, 2, 16, 0, 41);
  const Result r = run_reference(in, m, {Accumulate::fp32, 2});
  for (float x : r.lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
  for (const auto* t : {&r.o, &r.dq, &r.dk, &r.dv})
    for (float x : *t) EXPECT_EQ(x, 0.0f);
  // The sampled backward recomputes the (empty) rows and agrees.
  std::vector<float> dq(in.s.q_elements(), kSentinel), dk(in.s.kv_elements(), kSentinel),
      dv(in.s.kv_elements(), kSentinel);
  const std::vector<Index> rows{0, 3};
  reference_backward_sampled(in.s, m.rows(), in.q, in.k, in.v, in.d_o, rows, rows, dq, dk, dv);
  for (Index i : rows)
    for (int c = 0; c < 2 * 16; ++c) {
      EXPECT_EQ(dq[std::size_t(i * 32 + c)], 0.0f);
      EXPECT_EQ(dk[std::size_t(i * 32 + c)], 0.0f);
      EXPECT_EQ(dv[std::size_t(i * 32 + c)], 0.0f);
    }
}

// loss = sum(O * dO) through reference_forward in fp64; central differences on every input.
TEST(Reference, GradientsMatchFiniteDifferences) {
  for (Pattern p :
       {Pattern::causal_document, Pattern::global_sliding_window, Pattern::block_sparse_uniform}) {
    const TestMask m = test_mask(make_mask(small_spec(p, 7, 2, 4)).mask);
    Inputs in = make_inputs(7, 7, 4, 2, 8, 0.6f, 51);
    const AttentionShape& s = in.s;
    const ReferenceOptions opt{Accumulate::fp64, 1};
    std::vector<float> o(s.q_elements()), lse(std::size_t(s.heads_q * s.seqlen_q));
    auto loss = [&] {
      reference_forward(s, m.rows(), in.q, in.k, in.v, o, lse, {}, opt);
      double sum = 0;
      for (std::size_t e = 0; e < o.size(); ++e) sum += double(o[e]) * double(in.d_o[e]);
      return sum;
    };
    loss();
    std::vector<float> dq(s.q_elements()), dk(s.kv_elements()), dv(s.kv_elements());
    reference_backward(s, m.rows(), in.q, in.k, in.v, o, lse, in.d_o, dq, dk, dv, opt);

    auto check = [&](std::vector<float>& x, const std::vector<float>& grad, const char* name) {
      const float eps = 1.0f / 64;
      std::vector<double> numeric(x.size());
      for (std::size_t e = 0; e < x.size(); ++e) {
        const float saved = x[e];
        x[e] = saved + eps;
        const double up = loss();
        const double step_up = double(x[e]);
        x[e] = saved - eps;
        const double down = loss();
        const double step = step_up - double(x[e]);
        x[e] = saved;
        numeric[e] = (up - down) / step;
      }
      EXPECT_LE(max_error(grad, numeric), 5e-4) << to_string(p) << " " << name;
    };
    check(in.q, dq, "dQ");
    check(in.k, dk, "dK");
    check(in.v, dv, "dV");
  }
}

// A mid-sized problem: several key blocks, tiles of rows and a head_dim with a vector tail.
struct Medium {
  TestMask mask;
  Inputs in;
};

Medium medium_problem(Pattern p) {
  MaskSpec spec;
  spec.pattern = p;
  spec.seqlen = 211;
  spec.seed = 7;
  spec.params.window = 40;
  spec.params.global = 9;
  spec.params.sparse_block = 16;
  spec.params.sparse_heads = 2;
  return {test_mask(make_mask(spec).mask), make_inputs(211, 211, 4, 2, 42, 0, 61)};
}

TEST(Reference, MediumProblemsMatchDenseFormula) {
  for (Pattern p : {Pattern::causal_document, Pattern::global_sliding_window,
                    Pattern::block_sparse_uniform, Pattern::full}) {
    const Medium pr = medium_problem(p);
    expect_matches_dense(pr.in, pr.mask, std::string(to_string(p)) + " S=211");
  }
}

TEST(Reference, ResultsDoNotDependOnThreadCount) {
  for (Pattern p : {Pattern::causal_document, Pattern::block_sparse_uniform}) {
    const Medium pr = medium_problem(p);
    for (Accumulate acc : {Accumulate::fp32, Accumulate::fp64}) {
      const Result one = run_reference(pr.in, pr.mask, {acc, 1});
      for (int threads : {4, 3, 0}) {
        const Result many = run_reference(pr.in, pr.mask, {acc, threads});
        EXPECT_EQ(one.o, many.o) << threads;
        EXPECT_EQ(one.lse, many.lse) << threads;
        EXPECT_EQ(one.dq, many.dq) << threads;
        EXPECT_EQ(one.dk, many.dk) << threads;
        EXPECT_EQ(one.dv, many.dv) << threads;
      }
    }
  }
}

std::vector<double> widen(const std::vector<float>& x) { return {x.begin(), x.end()}; }

TEST(Reference, Fp32AndFp64ModesAgree) {
  const Medium pr = medium_problem(Pattern::global_sliding_window);
  const Result f32 = run_reference(pr.in, pr.mask, {Accumulate::fp32, 2});
  const Result f64 = run_reference(pr.in, pr.mask, {Accumulate::fp64, 2});
  EXPECT_LE(max_error(f32.o, widen(f64.o)), 2e-5);
  EXPECT_LE(max_error(f32.lse, widen(f64.lse)), 2e-5);
  EXPECT_LE(max_error(f32.dq, widen(f64.dq)), 5e-5);
  EXPECT_LE(max_error(f32.dk, widen(f64.dk)), 5e-5);
  EXPECT_LE(max_error(f32.dv, widen(f64.dv)), 5e-5);
  EXPECT_NE(f32.o, f64.o);  // the modes really differ
}

TEST(Reference, ForwardOnRowSubsetComputesOnlyThoseRows) {
  const Medium pr = medium_problem(Pattern::causal_document);
  const AttentionShape& s = pr.in.s;
  const Result all = run_reference(pr.in, pr.mask, {Accumulate::fp32, 2});
  std::vector<float> o(s.q_elements(), kSentinel),
      lse(std::size_t(s.heads_q * s.seqlen_q), kSentinel);
  const std::vector<Index> rows{150, 2, 0, 210, 33};
  reference_forward(s, pr.mask.rows(), pr.in.q, pr.in.k, pr.in.v, o, lse, rows,
                    {Accumulate::fp32, 3});
  const std::size_t width = std::size_t(s.heads_q * s.head_dim);
  for (Index i = 0; i < s.seqlen_q; ++i) {
    const bool listed = std::find(rows.begin(), rows.end(), i) != rows.end();
    for (std::size_t c = 0; c < width; ++c) {
      const std::size_t e = std::size_t(i) * width + c;
      EXPECT_EQ(o[e], listed ? all.o[e] : kSentinel) << "row " << i;
    }
    for (int h = 0; h < s.heads_q; ++h) {
      const std::size_t e = std::size_t(h * s.seqlen_q + i);
      EXPECT_EQ(lse[e], listed ? all.lse[e] : kSentinel) << "row " << i;
    }
  }
}

TEST(Reference, SampledBackwardEqualsFullBackwardOnItsRows) {
  for (Pattern p :
       {Pattern::causal_document, Pattern::global_sliding_window, Pattern::block_sparse_uniform}) {
    const Medium pr = medium_problem(p);
    const AttentionShape& s = pr.in.s;
    for (Accumulate acc : {Accumulate::fp32, Accumulate::fp64}) {
      const Result full = run_reference(pr.in, pr.mask, {acc, 2});
      std::vector<float> dq(s.q_elements(), kSentinel), dk(s.kv_elements(), kSentinel),
          dv(s.kv_elements(), kSentinel);
      const std::vector<Index> q_rows{0, 5, 77, 210, 120};
      const std::vector<Index> k_rows{3, 50, 210, 0, 181};
      reference_backward_sampled(s, pr.mask.rows(), pr.in.q, pr.in.k, pr.in.v, pr.in.d_o, q_rows,
                                 k_rows, dq, dk, dv, {acc, 3});
      const std::size_t qw = std::size_t(s.heads_q * s.head_dim);
      const std::size_t kw = std::size_t(s.heads_kv * s.head_dim);
      for (Index i = 0; i < s.seqlen_q; ++i) {
        const bool listed = std::find(q_rows.begin(), q_rows.end(), i) != q_rows.end();
        for (std::size_t c = 0; c < qw; ++c) {
          const std::size_t e = std::size_t(i) * qw + c;
          if (listed)
            EXPECT_NEAR(dq[e], full.dq[e], 1e-6 * (1 + std::abs(full.dq[e]))) << to_string(p);
          else
            EXPECT_EQ(dq[e], kSentinel);
        }
      }
      for (Index j = 0; j < s.seqlen_k; ++j) {
        const bool listed = std::find(k_rows.begin(), k_rows.end(), j) != k_rows.end();
        for (std::size_t c = 0; c < kw; ++c) {
          const std::size_t e = std::size_t(j) * kw + c;
          if (listed) {
            EXPECT_NEAR(dk[e], full.dk[e], 1e-6 * (1 + std::abs(full.dk[e]))) << to_string(p);
            EXPECT_NEAR(dv[e], full.dv[e], 1e-6 * (1 + std::abs(full.dv[e]))) << to_string(p);
          } else {
            EXPECT_EQ(dk[e], kSentinel);
            EXPECT_EQ(dv[e], kSentinel);
          }
        }
      }
    }
  }
}

TEST(Reference, SoftmaxScaleDefaultsToInverseSqrtHeadDim) {
  EXPECT_FLOAT_EQ((AttentionShape{1, 1, 1, 1, 64, 0}).softmax_scale(), 0.125f);
  EXPECT_FLOAT_EQ((AttentionShape{1, 1, 1, 1, 64, 0.3f}).softmax_scale(), 0.3f);
}

TEST(Reference, MaskEntryOfQueryHeadFollowsGqaGroups) {
  std::vector<RowIntervals> entries(3);
  const AttentionShape s{4, 4, 6, 3, 8, 0};
  const MaskRows rows{entries};
  EXPECT_EQ(&rows.for_q_head(0, s), &entries[0]);
  EXPECT_EQ(&rows.for_q_head(1, s), &entries[0]);
  EXPECT_EQ(&rows.for_q_head(2, s), &entries[1]);
  EXPECT_EQ(&rows.for_q_head(5, s), &entries[2]);
  const MaskRows shared{std::span<const RowIntervals>(entries.data(), 1)};
  EXPECT_EQ(&shared.for_q_head(5, s), &entries[0]);
  EXPECT_THROW(rows.for_q_head(6, s), InputError);
}

TEST(Reference, RejectsBadInput) {
  const TestMask m = test_mask(make_mask(small_spec(Pattern::causal, 7, 1, 0)).mask);
  const Inputs in = make_inputs(7, 7, 4, 2, 8, 0, 71);
  const AttentionShape& s = in.s;
  std::vector<float> o(s.q_elements()), lse(std::size_t(s.heads_q * s.seqlen_q));
  std::vector<float> dq(s.q_elements()), dk(s.kv_elements()), dv(s.kv_elements());
  auto fwd = [&](const AttentionShape& shape, std::span<const float> q, std::span<const Index> rows,
                 const MaskRows& mask) {
    reference_forward(shape, mask, q, in.k, in.v, o, lse, rows);
  };
  EXPECT_NO_THROW(fwd(s, in.q, {}, m.rows()));
  EXPECT_THROW(fwd(s, std::span(in.q).first(10), {}, m.rows()), InputError);  // q too short
  AttentionShape bad = s;
  bad.heads_kv = 3;  // 4 query heads are not a multiple of 3
  EXPECT_THROW(fwd(bad, in.q, {}, m.rows()), InputError);
  bad = s;
  bad.head_dim = 0;
  EXPECT_THROW(fwd(bad, in.q, {}, m.rows()), InputError);
  const std::vector<Index> outside{0, 7}, twice{3, 3};
  EXPECT_THROW(fwd(s, in.q, outside, m.rows()), InputError);
  EXPECT_THROW(fwd(s, in.q, twice, m.rows()), InputError);
  // Three mask entries for two KV heads, and a mask of the wrong length.
  const std::vector<RowIntervals> three(3, m.entries[0]);
  EXPECT_THROW(fwd(s, in.q, {}, MaskRows{three}), InputError);
  const TestMask longer = test_mask(make_mask(small_spec(Pattern::causal, 8, 1, 0)).mask);
  EXPECT_THROW(fwd(s, in.q, {}, longer.rows()), InputError);
  // A hand-made interval past seqlen_k.
  RowIntervals broken = m.entries[0];
  broken.keys.back().end = 9;
  EXPECT_THROW(fwd(s, in.q, {}, MaskRows{std::span(&broken, 1)}), InputError);

  EXPECT_THROW(reference_backward(s, m.rows(), in.q, in.k, in.v, o, lse, in.d_o,
                                  std::span(dq).first(3), dk, dv),
               InputError);
  EXPECT_THROW(
      reference_backward_sampled(s, m.rows(), in.q, in.k, in.v, in.d_o, outside, {}, dq, dk, dv),
      InputError);
}

TEST(RelativeL2Error, EdgeCases) {
  const std::vector<float> ref{1, 1, 0, 0, 3, 4};
  EXPECT_EQ(relative_l2_error(ref, ref, 2), 0.0);
  const std::vector<float> x{1, 2, 0, 0, 3, 4};  // row 0 differs by (0, 1)
  EXPECT_DOUBLE_EQ(relative_l2_error(x, ref, 2), std::sqrt(1.0 / 27.0));
  const std::vector<Index> row0{0}, rows12{1, 2};
  EXPECT_DOUBLE_EQ(relative_l2_error(x, ref, 2, row0), std::sqrt(1.0 / 2.0));
  EXPECT_EQ(relative_l2_error(x, ref, 2, rows12), 0.0);
  // Both zero (row 1) -> 0; x nonzero against a zero reference -> +inf.
  const std::vector<Index> row1{1};
  EXPECT_EQ(relative_l2_error(x, ref, 2, row1), 0.0);
  const std::vector<float> x1{1, 1, 5, 0, 3, 4};
  EXPECT_EQ(relative_l2_error(x1, ref, 2, row1), std::numeric_limits<double>::infinity());
  // NaN in x -> +inf, but only in the rows compared.
  std::vector<float> nan = ref;
  nan[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(relative_l2_error(nan, ref, 2), std::numeric_limits<double>::infinity());
  EXPECT_EQ(relative_l2_error(nan, ref, 2, row0), 0.0);
  EXPECT_EQ(relative_l2_error(std::span<const float>{}, std::span<const float>{}, 4), 0.0);
  // Malformed arguments.
  EXPECT_THROW(relative_l2_error(x, std::span(ref).first(4), 2), InputError);
  EXPECT_THROW(relative_l2_error(x, ref, 4), InputError);
  EXPECT_THROW(relative_l2_error(x, ref, 0), InputError);
  const std::vector<Index> row3{3};
  EXPECT_THROW(relative_l2_error(x, ref, 2, row3), InputError);
}

}  // namespace
}  // namespace longattn

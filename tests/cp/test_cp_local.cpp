// The pieces a ring step is made of, on the CPU device: attention over key blocks merged online
// equals attention over all keys, and per-block backward contributions computed with the final O
// and LSE sum to the full gradient (rows without keys included).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "longattn/cp/device.hpp"
#include "longattn/cp/row_set.hpp"
#include "longattn/error.hpp"
#include "longattn/cp/dispatch.hpp"
#include "longattn/cp/local_attention.hpp"
#include "longattn/patterns.hpp"
#include "longattn/rng.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn::cp {
namespace {

std::vector<float> random(std::size_t n, std::uint64_t seed) {
  Rng r(seed);
  std::vector<float> x(n);
  for (float& v : x) v = float(r.uniform01() * 2 - 1);
  return x;
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return n == 0 ? std::sqrt(d) : std::sqrt(d / n);
}

struct Fixture {
  Index S = 90;
  int hq = 4, hkv = 2, D = 8;
  std::vector<float> q, k, v, d_o;
  Fixture() {
    q = random(S * hq * D, 1);
    k = random(S * hkv * D, 2);
    v = random(S * hkv * D, 3);
    d_o = random(S * hq * D, 4);
  }
};

TEST(CpLocal, BlockwiseMergeAndGradientSumsEqualTheWholeAttention) {
  Fixture f;
  auto dev = make_cpu_device();
  auto kernel = make_reference_attention(1);
  // Three key blocks of unequal sizes; the mask leaves some rows without keys in some blocks
  // (and row 0 of causal_blockwise-like masks has keys only in block 0).
  const Chunks blocks{{0, 20}, {20, 61}, {61, 90}};
  for (Pattern p : {Pattern::causal, Pattern::sliding_window_causal, Pattern::causal_document,
                    Pattern::prefix_lm_causal}) {
    MaskSpec spec{p, f.S, {}, 5};
    spec.params.window = 13;
    spec.params.histogram = pile_histogram();
    const SliceMask mask = std::get<SliceMask>(make_mask(spec).mask);
    AttentionShape whole{f.S, f.S, f.hq, f.hkv, f.D, 0};
    // Whole attention through the reference.
    RowIntervals rows = row_intervals(mask);
    std::vector<float> o(f.q.size()), lse(f.S * f.hq), dq(f.q.size()), dk(f.k.size()), dv(f.v.size());
    reference_forward(whole, MaskRows{{&rows, 1}}, f.q, f.k, f.v, o, lse);
    reference_backward(whole, MaskRows{{&rows, 1}}, f.q, f.k, f.v, o, lse, f.d_o, dq, dk, dv);

    Buffer q = dev->allocate(f.q.size(), DType::fp32), dO = dev->allocate(f.q.size(), DType::fp32);
    dev->upload(q, f.q);
    dev->upload(dO, f.d_o);
    Buffer o_acc = dev->allocate(f.q.size(), DType::fp32), lse_acc = dev->allocate(lse.size(), DType::fp32);
    Buffer o_s = dev->allocate(f.q.size(), DType::fp32), lse_s = dev->allocate(lse.size(), DType::fp32);
    dev->fill(o_acc, 0.f);
    dev->fill(lse_acc, -std::numeric_limits<float>::infinity());
    const Range all{0, f.S};
    for (Range b : blocks) {
      SliceMask m = local_mask(mask, {&all, 1}, {&b, 1});
      if (m.slices().empty()) continue;
      Buffer kb = dev->allocate(b.size() * f.hkv * f.D, DType::fp32), vb = dev->allocate(kb.ref().count, DType::fp32);
      dev->upload(kb, gather_rows({&b, 1}, f.k, f.hkv * f.D));
      dev->upload(vb, gather_rows({&b, 1}, f.v, f.hkv * f.D));
      kernel->plan({f.S, b.size(), f.hq, f.hkv, f.D, 0}, m, DType::fp32, false)->forward(q, kb, vb, o_s, lse_s);
      dev->merge(o_acc, lse_acc, o_s, lse_s, f.S, f.hq, f.D);
    }
    std::vector<float> o_m(f.q.size()), lse_m(lse.size());
    dev->download(o_m, o_acc);
    dev->download(lse_m, lse_acc);
    EXPECT_LT(rel(o_m, o), 1e-6) << to_string(p);
    for (std::size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(lse[i])) EXPECT_EQ(lse_m[i], lse[i]);
      else EXPECT_NEAR(lse_m[i], lse[i], 1e-5) << to_string(p) << " " << i;
    }

    // Backward per key block from the final O and LSE.
    Buffer o_f = dev->allocate(o.size(), DType::fp32);
    dev->upload(o_f, o_m);
    Buffer dq_acc = dev->allocate(dq.size(), DType::fp32), dq_s = dev->allocate(dq.size(), DType::fp32);
    dev->fill(dq_acc, 0.f);
    std::vector<float> dk_m(dk.size(), 0.f), dv_m(dv.size(), 0.f);
    for (Range b : blocks) {
      SliceMask m = local_mask(mask, {&all, 1}, {&b, 1});
      if (m.slices().empty()) continue;
      const std::size_t n = b.size() * f.hkv * f.D;
      Buffer kb = dev->allocate(n, DType::fp32), vb = dev->allocate(n, DType::fp32);
      Buffer dkb = dev->allocate(n, DType::fp32), dvb = dev->allocate(n, DType::fp32);
      dev->upload(kb, gather_rows({&b, 1}, f.k, f.hkv * f.D));
      dev->upload(vb, gather_rows({&b, 1}, f.v, f.hkv * f.D));
      kernel->plan({f.S, b.size(), f.hq, f.hkv, f.D, 0}, m, DType::fp32, true)
          ->backward(q, kb, vb, o_f, lse_acc, dO, dq_s, dkb, dvb);
      dev->add(dq_acc, dq_s);
      std::vector<float> x(n);
      dev->download(x, dkb);
      scatter_rows({&b, 1}, x, dk_m, f.hkv * f.D);
      dev->download(x, dvb);
      scatter_rows({&b, 1}, x, dv_m, f.hkv * f.D);
    }
    std::vector<float> dq_m(dq.size());
    dev->download(dq_m, dq_acc);
    EXPECT_LT(rel(dq_m, dq), 1e-5) << to_string(p);
    EXPECT_LT(rel(dk_m, dk), 1e-5) << to_string(p);
    EXPECT_LT(rel(dv_m, dv), 1e-5) << to_string(p);
  }
}

TEST(CpLocal, StridedCopiesMoveHeadsBetweenLayouts) {
  auto dev = make_cpu_device();
  // [3 rows][4 heads][2 dims]: take heads 1..2 of every row, then add them back twice.
  Buffer x = dev->allocate(24, DType::fp32), y = dev->allocate(12, DType::fp32);
  std::vector<float> xs(24);
  for (int i = 0; i < 24; ++i) xs[i] = float(i);
  dev->upload(x, xs);
  dev->copy_rows({y, 0, 4}, {x, 2, 8}, 4, 3, false);
  std::vector<float> ys(12);
  dev->download(ys, y);
  EXPECT_EQ(ys, (std::vector<float>{2, 3, 4, 5, 10, 11, 12, 13, 18, 19, 20, 21}));
  dev->copy_rows({x, 2, 8}, {y, 0, 4}, 4, 3, true);
  dev->download(xs, x);
  EXPECT_EQ(xs[2], 4.f);
  EXPECT_EQ(xs[21], 42.f);
  EXPECT_EQ(xs[0], 0.f);
  EXPECT_THROW(dev->copy_rows({y, 0, 4}, {x, 2, 8}, 4, 4, false), std::out_of_range);
  EXPECT_THROW(dev->allocate(4, DType::bf16), InputError);
}

TEST(CpLocal, RowSetAlgebra) {
  const std::vector<Range> a{{5, 8}, {0, 2}, {2, 3}, {7, 10}, {12, 12}};
  EXPECT_EQ(normalized_rows(a), (std::vector<Range>{{0, 3}, {5, 10}}));
  const std::vector<Range> b{{1, 6}, {9, 11}};
  EXPECT_EQ(rows_union(a, b), (std::vector<Range>{{0, 11}}));
  EXPECT_EQ(rows_intersection(a, b), (std::vector<Range>{{1, 3}, {5, 6}, {9, 10}}));
  EXPECT_EQ(rows_minus(a, b), (std::vector<Range>{{0, 1}, {6, 9}}));
  EXPECT_EQ(rows_complement(a, 12), (std::vector<Range>{{3, 5}, {10, 12}}));
  EXPECT_TRUE(rows_complement(std::vector<Range>{{0, 4}}, 4).empty());
  const RowSet s(a, 12);
  EXPECT_EQ(s.rows(), 8);
  EXPECT_THROW(RowSet(a, 9), std::out_of_range);
}

// The row-restricted operations touch exactly the rows of the set, and a first merge writes the
// step as a merge into (0, -inf) does.
TEST(CpLocal, RowRestrictedOperationsLeaveOtherRowsAlone) {
  auto dev = make_cpu_device();
  const Index rows = 6;
  const int heads = 2, dim = 3, w = heads * dim;
  const RowSet set = dev->row_set({{1, 3}, {4, 5}}, rows);
  const auto in_set = [](Index r) { return r == 1 || r == 2 || r == 4; };
  auto make = [&](std::vector<float> x) {
    Buffer b = dev->allocate(x.size(), DType::fp32);
    dev->upload(b, x);
    return b;
  };
  auto read = [&](TensorRef t) {
    std::vector<float> x(t.count);
    dev->download(x, t);
    return x;
  };
  const std::vector<float> xs = random(rows * w, 11), ys = random(rows * w, 12);
  Buffer a = make(xs), b = make(ys);
  dev->add(a, b, set);
  std::vector<float> got = read(a);
  for (Index r = 0; r < rows; ++r)
    for (int i = 0; i < w; ++i) {
      const std::size_t at = r * w + i;
      EXPECT_EQ(got[at], in_set(r) ? xs[at] + ys[at] : xs[at]);
    }
  dev->convert(a, b, set);
  dev->fill(b, 7.f, set);
  got = read(a);
  std::vector<float> got_b = read(b);
  for (Index r = 0; r < rows; ++r)
    for (int i = 0; i < w; ++i) {
      const std::size_t at = r * w + i;
      EXPECT_EQ(got[at], in_set(r) ? ys[at] : xs[at]);
      EXPECT_EQ(got_b[at], in_set(r) ? 7.f : ys[at]);
    }

  // Merges: the restricted ones against full merges on copies.
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> lse_a = random(rows * heads, 13), lse_s = random(rows * heads, 14);
  lse_a[1] = ninf;           // head 0, row 1: an empty accumulator
  lse_s[2] = ninf;         // head 0, row 2: a step without keys
  lse_s[rows + 4] = ninf;    // head 1, row 4
  for (bool first : {false, true}) {
    Buffer oa = make(xs), la = make(lse_a), os = make(ys), ls = make(lse_s);
    dev->merge(oa, la, os, ls, heads, dim, set, first);
    Buffer full_o = make(first ? std::vector<float>(xs.size(), 0.f) : xs);
    Buffer full_l = make(first ? std::vector<float>(lse_a.size(), ninf) : lse_a);
    dev->merge(full_o, full_l, os, ls, rows, heads, dim);
    const std::vector<float> o = read(oa), l = read(la), fo = read(full_o), fl = read(full_l);
    for (Index r = 0; r < rows; ++r)
      for (int h = 0; h < heads; ++h) {
        const std::size_t li = h * rows + r;
        EXPECT_EQ(l[li], in_set(r) ? fl[li] : lse_a[li]) << first << " " << r << " " << h;
        for (int d = 0; d < dim; ++d) {
          const std::size_t oi = (r * heads + h) * dim + d;
          EXPECT_EQ(o[oi], in_set(r) ? fo[oi] : xs[oi]) << first << " " << r << " " << h;
        }
      }
  }
}

}  // namespace
}  // namespace longattn::cp

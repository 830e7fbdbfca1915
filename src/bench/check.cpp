#include "longattn/bench/check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "longattn/error.hpp"
#include "longattn/rng.hpp"
#include "parallel.hpp"

namespace longattn::bench {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  for (; d + 8 <= n; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] += a[d + u] * b[d + u];
  float s = 0;
  for (; d < n; ++d) s += a[d] * b[d];
  for (float x : acc) s += x;
  return s;
}

// Row indices of the pairs of one mask entry, per key column (CSR): what a dK/dV pass walks.
struct Columns {
  std::vector<Index> offsets;
  std::vector<std::int32_t> rows;
};

Columns transpose(const RowIntervals& m) {
  Columns c;
  c.offsets.assign(std::size_t(m.seqlen_k) + 1, 0);
  for (Index i = 0; i < m.seqlen_q(); ++i)
    for (Range r : m.row(i))
      for (Index j = r.begin; j < r.end; ++j) ++c.offsets[std::size_t(j) + 1];
  for (std::size_t j = 0; j + 1 < c.offsets.size(); ++j) c.offsets[j + 1] += c.offsets[j];
  c.rows.resize(std::size_t(c.offsets.back()));
  std::vector<Index> fill(c.offsets.begin(), c.offsets.end() - 1);
  for (Index i = 0; i < m.seqlen_q(); ++i)
    for (Range r : m.row(i))
      for (Index j = r.begin; j < r.end; ++j) c.rows[std::size_t(fill[std::size_t(j)]++)] = std::int32_t(i);
  return c;
}

}  // namespace

std::vector<Index> sample_rows(Index n, Index count, std::uint64_t seed) {
  std::vector<Index> out;
  if (n <= 0) return out;
  if (count <= 0 || count >= n) {
    out.resize(std::size_t(n));
    for (Index i = 0; i < n; ++i) out[std::size_t(i)] = i;
    return out;
  }
  // Floyd's algorithm: `count` distinct values, then the two ends forced in.
  Rng rng(seed, 0x5a3e1e);
  std::vector<Index> picked;
  for (Index j = n - count; j < n; ++j) {
    const Index t = rng.uniform_int(0, j);
    picked.push_back(std::find(picked.begin(), picked.end(), t) == picked.end() ? t : j);
  }
  std::sort(picked.begin(), picked.end());
  if (picked.front() != 0) picked.front() = 0;
  if (picked.back() != n - 1) picked.back() = n - 1;
  picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
  return picked;
}

void plain_forward(const AttentionShape& s, const MaskRows& mask, DType t, std::span<const float> q,
                   std::span<const float> k, std::span<const float> v, std::span<float> o,
                   std::span<float> lse, std::span<const Index> rows) {
  const int D = s.head_dim, group = s.heads_q / s.heads_kv;
  const float scale = s.softmax_scale();
  const Index n = rows.empty() ? s.seqlen_q : Index(rows.size());
  parallel_for(n * s.heads_q, [&](Index task) {
    const Index i = rows.empty() ? task / s.heads_q : rows[std::size_t(task / s.heads_q)];
    const int h = int(task % s.heads_q), g = h / group;
    const float* qi = &q[std::size_t((i * s.heads_q + h) * D)];
    float* oi = &o[std::size_t((i * s.heads_q + h) * D)];
    const auto keys = mask.for_q_head(h, s).row(i);
    std::vector<float> sc;
    float m = kNegInf;
    for (Range r : keys)
      for (Index j = r.begin; j < r.end; ++j) {
        sc.push_back(scale * dot(qi, &k[std::size_t((j * s.heads_kv + g) * D)], D));
        m = std::max(m, sc.back());
      }
    std::fill(oi, oi + D, 0.0f);
    float& l_out = lse[std::size_t(Index(h) * s.seqlen_q + i)];
    if (sc.empty()) {
      l_out = kNegInf;
      return;
    }
    float l = 0;
    for (float& x : sc) l += (x = std::exp(x - m));
    std::vector<float> acc(std::size_t(D), 0.0f);
    std::size_t idx = 0;
    for (Range r : keys)
      for (Index j = r.begin; j < r.end; ++j) {
        const float p = round_to(t, sc[idx++] / l);  // P stored in the dtype before P V
        const float* vj = &v[std::size_t((j * s.heads_kv + g) * D)];
        for (int d = 0; d < D; ++d) acc[std::size_t(d)] += p * vj[d];
      }
    for (int d = 0; d < D; ++d) oi[d] = round_to(t, acc[std::size_t(d)]);
    l_out = m + std::log(l);
  });
}

void plain_backward(const AttentionShape& s, const MaskRows& mask, DType t,
                    std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<const float> o, std::span<const float> lse,
                    std::span<const float> d_o, std::span<float> dq, std::span<float> dk,
                    std::span<float> dv) {
  const int D = s.head_dim, Hq = s.heads_q, Hkv = s.heads_kv, group = Hq / Hkv;
  const float scale = s.softmax_scale();
  const Index Sq = s.seqlen_q, Sk = s.seqlen_k;
  auto qrow = [&](Index i, int h) { return &q[std::size_t((i * Hq + h) * D)]; };
  auto dorow = [&](Index i, int h) { return &d_o[std::size_t((i * Hq + h) * D)]; };
  auto krow = [&](Index j, int g) { return &k[std::size_t((j * Hkv + g) * D)]; };
  auto vrow = [&](Index j, int g) { return &v[std::size_t((j * Hkv + g) * D)]; };
  auto lse_of = [&](int h, Index i) { return lse[std::size_t(Index(h) * Sq + i)]; };

  // Delta = rowsum(dO * O), as the plain implementation computes it from its saved O.
  std::vector<float> delta(std::size_t(Hq * Sq));
  parallel_chunks(Sq, [&](Index b, Index e) {
    for (Index i = b; i < e; ++i)
      for (int h = 0; h < Hq; ++h)
        delta[std::size_t(Index(h) * Sq + i)] = dot(dorow(i, h), &o[std::size_t((i * Hq + h) * D)], D);
  });
  // P~ and dS~ of one pair, rounded to the dtype as they are stored for the GEMMs.
  auto pair = [&](Index i, int h, Index j, float& p, float& ds) {
    const float l = lse_of(h, i);
    const int g = h / group;
    p = l == kNegInf ? 0.0f : round_to(t, std::exp(scale * dot(qrow(i, h), krow(j, g), D) - l));
    const float dp = dot(dorow(i, h), vrow(j, g), D);
    ds = round_to(t, p * (dp - delta[std::size_t(Index(h) * Sq + i)]));
  };

  // dQ over query rows.
  parallel_for(Sq * Hq, [&](Index task) {
    const Index i = task / Hq;
    const int h = int(task % Hq), g = h / group;
    std::vector<float> acc(std::size_t(D), 0.0f);
    for (Range r : mask.for_q_head(h, s).row(i))
      for (Index j = r.begin; j < r.end; ++j) {
        float p, ds;
        pair(i, h, j, p, ds);
        const float* kj = krow(j, g);
        for (int d = 0; d < D; ++d) acc[std::size_t(d)] += ds * kj[d];
      }
    float* out = &dq[std::size_t((i * Hq + h) * D)];
    for (int d = 0; d < D; ++d) out[d] = round_to(t, scale * acc[std::size_t(d)]);
  });

  // dK, dV over key columns of each KV head.
  std::vector<Columns> cols;
  for (const RowIntervals& r : mask.per_kv_head) cols.push_back(transpose(r));
  parallel_for(Sk * Hkv, [&](Index task) {
    const Index j = task / Hkv;
    const int g = int(task % Hkv);
    const Columns& c = cols.size() == 1 ? cols[0] : cols[std::size_t(g)];
    std::vector<float> ak(std::size_t(D), 0.0f), av(std::size_t(D), 0.0f);
    for (int h = g * group; h < (g + 1) * group; ++h)
      for (Index x = c.offsets[std::size_t(j)]; x < c.offsets[std::size_t(j) + 1]; ++x) {
        const Index i = c.rows[std::size_t(x)];
        float p, ds;
        pair(i, h, j, p, ds);
        const float* qi = qrow(i, h);
        const float* doi = dorow(i, h);
        for (int d = 0; d < D; ++d) {
          ak[std::size_t(d)] += ds * qi[d];
          av[std::size_t(d)] += p * doi[d];
        }
      }
    float* ok = &dk[std::size_t((j * Hkv + g) * D)];
    float* ov = &dv[std::size_t((j * Hkv + g) * D)];
    for (int d = 0; d < D; ++d) {
      ok[d] = round_to(t, scale * ak[std::size_t(d)]);
      ov[d] = round_to(t, av[std::size_t(d)]);
    }
  });
}

bool CheckResult::passed() const { return failure().empty(); }

std::string CheckResult::failure() const {
  const std::pair<const char*, const std::optional<OutputCheck>*> outs[] = {
      {"O", &o}, {"dQ", &dq}, {"dK", &dk}, {"dV", &dv}};
  for (auto [name, c] : outs)
    if (*c && !(*c)->pass())
      return fmt::format("{} error {:.3e} > tolerance {:.3e} (2x plain {:.3e})", name, (*c)->error,
                         (*c)->tolerance, (*c)->plain);
  if (lse_max_abs && !(*lse_max_abs <= kLseTolerance))
    return fmt::format("LSE max abs error {:.3e} > {:.0e}", *lse_max_abs, kLseTolerance);
  return {};
}

// ---------------------------------------------------------------------------------------------

namespace {

OutputCheck compare(DType t, std::span<const float> x, std::span<const float> plain,
                    std::span<const float> ref, Index width, std::span<const Index> rows) {
  OutputCheck c;
  c.error = relative_l2_error(x, ref, width, rows);
  c.plain = relative_l2_error(plain, ref, width, rows);
  c.tolerance = 2 * c.plain;
  if (t == DType::fp32) c.tolerance = std::max(c.tolerance, 1e-5);
  if (std::isnan(c.error)) c.error = std::numeric_limits<double>::infinity();
  return c;
}

RowIntervals rows_subset(const RowIntervals& m, std::span<const Index> rows) {
  RowIntervals out;
  out.seqlen_k = m.seqlen_k;
  out.offsets.push_back(0);
  for (Index i : rows) {
    for (Range r : m.row(i)) out.keys.push_back(r);
    out.offsets.push_back(Index(out.keys.size()));
  }
  return out;
}

// Every row, keys restricted to `cols` (ascending) and renumbered 0..cols.size()-1.
RowIntervals keys_subset(const RowIntervals& m, std::span<const Index> cols) {
  RowIntervals out;
  out.seqlen_k = Index(cols.size());
  out.offsets.push_back(0);
  for (Index i = 0; i < m.seqlen_q(); ++i) {
    std::size_t c = 0;
    for (Range r : m.row(i)) {
      while (c < cols.size() && cols[c] < r.begin) ++c;
      const std::size_t first = c;
      while (c < cols.size() && cols[c] < r.end) ++c;
      if (c > first) {
        const Range run{Index(first), Index(c)};
        if (out.keys.size() > std::size_t(out.offsets.back()) && out.keys.back().end == run.begin)
          out.keys.back().end = run.end;  // keep intervals non-adjacent
        else
          out.keys.push_back(run);
      }
    }
    out.offsets.push_back(Index(out.keys.size()));
  }
  return out;
}

// Rows `rows` (all when empty) of heads [h0, h0 + nh) of a [S][H][D] tensor, compacted.
std::vector<float> slice(std::span<const float> x, Index S, int H, int D, int h0, int nh,
                         std::span<const Index> rows = {}) {
  const Index n = rows.empty() ? S : Index(rows.size());
  std::vector<float> out(std::size_t(n) * std::size_t(nh) * std::size_t(D));
  for (Index t = 0; t < n; ++t) {
    const Index i = rows.empty() ? t : rows[std::size_t(t)];
    std::copy_n(&x[std::size_t((i * H + h0) * D)], std::size_t(nh) * std::size_t(D),
                &out[std::size_t(t * nh * D)]);
  }
  return out;
}

std::vector<float> slice_lse(std::span<const float> lse, Index S, int h0, int nh,
                             std::span<const Index> rows = {}) {
  const Index n = rows.empty() ? S : Index(rows.size());
  std::vector<float> out(std::size_t(n) * std::size_t(nh));
  for (int h = 0; h < nh; ++h)
    for (Index t = 0; t < n; ++t)
      out[std::size_t(Index(h) * n + t)] =
          lse[std::size_t(Index(h0 + h) * S + (rows.empty() ? t : rows[std::size_t(t)]))];
  return out;
}

}  // namespace

CheckSample check_sample(const AttentionShape& shape, const Mask& mask, const CheckOptions& options,
                         std::uint64_t seed) {
  CheckSample c;
  HeadConfig heads{shape.heads_q, shape.heads_kv, shape.head_dim};
  const double work = attention_flops(mask, heads).total;
  c.full = options.rows <= 0 || work <= options.full_check_flops || shape.seqlen_q <= options.rows;
  if (c.full) return c;
  c.q_rows = sample_rows(shape.seqlen_q, options.rows, seed);
  c.k_rows = sample_rows(shape.seqlen_k, options.rows, seed ^ 0x9e3779b97f4a7c15ull);
  c.kv_group = int(Rng(seed, 0x6b7).uniform_int(0, shape.heads_kv - 1));
  return c;
}

struct Checker::State {
  AttentionShape shape;
  DType dtype;
  const HostTensors& in;
  CheckOptions opt;
  std::uint64_t seed;
  std::vector<RowIntervals> masks;  // 1 or heads_kv entries
  CheckSample sample;
  bool full = true;
  std::vector<Index> rows;          // compared query rows; empty = all
  // Cached, independent of any backend.
  bool have_forward = false;
  std::vector<float> ref_o, ref_lse, plain_o, plain_lse;
  bool have_backward = false;
  std::vector<float> ref_dq, ref_dk, ref_dv, plain_dq, plain_dk, plain_dv;

  State(const AttentionShape& s, DType t, const HostTensors& i, CheckOptions o, std::uint64_t sd)
      : shape(s), dtype(t), in(i), opt(o), seed(sd) {}
  MaskRows mask_rows() const { return MaskRows{masks}; }

  void ensure_forward() {
    if (have_forward) return;
    ref_o.assign(shape.q_elements(), 0.0f);
    plain_o.assign(shape.q_elements(), 0.0f);
    ref_lse.assign(std::size_t(shape.heads_q) * std::size_t(shape.seqlen_q), 0.0f);
    plain_lse = ref_lse;
    reference_forward(shape, mask_rows(), in.q, in.k, in.v, ref_o, ref_lse, rows);
    plain_forward(shape, mask_rows(), dtype, in.q, in.k, in.v, plain_o, plain_lse, rows);
    have_forward = true;
  }
  void ensure_full_backward() {
    if (have_backward) return;
    ensure_forward();
    for (auto* x : {&ref_dq, &plain_dq}) x->assign(shape.q_elements(), 0.0f);
    for (auto* x : {&ref_dk, &ref_dv, &plain_dk, &plain_dv}) x->assign(shape.kv_elements(), 0.0f);
    reference_backward(shape, mask_rows(), in.q, in.k, in.v, ref_o, ref_lse, in.d_o, ref_dq, ref_dk,
                       ref_dv);
    plain_backward(shape, mask_rows(), dtype, in.q, in.k, in.v, ref_o, ref_lse, in.d_o, plain_dq,
                   plain_dk, plain_dv);
    have_backward = true;
  }
};

Checker::Checker(const AttentionShape& shape, const Mask& mask, DType dtype, const HostTensors& inputs,
                 CheckOptions options, std::uint64_t seed)
    : state_(new State(shape, dtype, inputs, options, seed)) {
  State& st = *state_;
  st.masks = row_intervals_per_head(mask);
  st.sample = check_sample(shape, mask, options, seed);
  st.full = st.sample.full;
  st.rows = st.sample.q_rows;
}

Checker::~Checker() { delete state_; }

bool Checker::full() const { return state_->full; }
const CheckSample& Checker::sample() const { return state_->sample; }

void Checker::check_forward(std::span<const float> o, std::span<const float> lse, CheckResult& r) {
  State& st = *state_;
  st.ensure_forward();
  const Index width = Index(st.shape.heads_q) * st.shape.head_dim;
  r.o = compare(st.dtype, o, st.plain_o, st.ref_o, width, st.rows);
  r.full = st.full;
  r.q_rows = st.full ? st.shape.seqlen_q : Index(st.rows.size());
  double worst = 0;
  const Index S = st.shape.seqlen_q;
  for (int h = 0; h < st.shape.heads_q; ++h)
    for (Index t = 0; t < r.q_rows; ++t) {
      const Index i = st.full ? t : st.rows[std::size_t(t)];
      const float a = lse[std::size_t(Index(h) * S + i)], b = st.ref_lse[std::size_t(Index(h) * S + i)];
      double d;
      if (a == kNegInf && b == kNegInf) d = 0;
      else if (std::isnan(a) || a == kNegInf || b == kNegInf) d = std::numeric_limits<double>::infinity();
      else d = std::abs(double(a) - double(b));
      worst = std::max(worst, d);
    }
  r.lse_max_abs = worst;
}

void Checker::check_backward(std::span<const float> o, std::span<const float> lse,
                             std::span<const float> dq, std::span<const float> dk,
                             std::span<const float> dv, CheckResult& r) {
  State& st = *state_;
  const AttentionShape& s = st.shape;
  const int D = s.head_dim, Hq = s.heads_q, Hkv = s.heads_kv, group = Hq / Hkv;
  if (st.full) {
    st.ensure_full_backward();
    r.dq = compare(st.dtype, dq, st.plain_dq, st.ref_dq, Index(Hq) * D, {});
    r.dk = compare(st.dtype, dk, st.plain_dk, st.ref_dk, Index(Hkv) * D, {});
    r.dv = compare(st.dtype, dv, st.plain_dv, st.ref_dv, Index(Hkv) * D, {});
    r.k_rows = s.seqlen_k;
    r.kv_group = -1;
    return;
  }
  // One seeded KV-head group as its own problem, from the backend's saved O and LSE.
  const int g = st.sample.kv_group;
  const Index S = s.seqlen_q;
  const RowIntervals& mg = st.masks.size() == 1 ? st.masks[0] : st.masks[std::size_t(g)];
  const std::vector<Index>& R = st.rows;
  const std::vector<Index>& C = st.sample.k_rows;
  const int h0 = g * group;
  const auto kg = slice(st.in.k, s.seqlen_k, Hkv, D, g, 1), vg = slice(st.in.v, s.seqlen_k, Hkv, D, g, 1);

  // dQ at rows R: queries R against every key.
  {
    AttentionShape a = s;
    a.seqlen_q = Index(R.size());
    a.heads_q = group;
    a.heads_kv = 1;
    const std::vector<RowIntervals> ma{rows_subset(mg, R)};
    const auto qa = slice(st.in.q, S, Hq, D, h0, group, R), oa = slice(o, S, Hq, D, h0, group, R);
    const auto doa = slice(st.in.d_o, S, Hq, D, h0, group, R);
    const auto la = slice_lse(lse, S, h0, group, R);
    std::vector<float> ref(qa.size()), plain(qa.size()), jk(kg.size()), jv(vg.size());
    reference_backward(a, MaskRows{ma}, qa, kg, vg, oa, la, doa, ref, jk, jv);
    plain_backward(a, MaskRows{ma}, st.dtype, qa, kg, vg, oa, la, doa, plain, jk, jv);
    const auto got = slice(dq, S, Hq, D, h0, group, R);
    r.dq = compare(st.dtype, got, plain, ref, Index(group) * D, {});
  }
  // dK, dV at key rows C: every query against the keys C.
  {
    AttentionShape b = s;
    b.seqlen_k = Index(C.size());
    b.heads_q = group;
    b.heads_kv = 1;
    const std::vector<RowIntervals> mb{keys_subset(mg, C)};
    const auto qb = slice(st.in.q, S, Hq, D, h0, group), ob = slice(o, S, Hq, D, h0, group);
    const auto dob = slice(st.in.d_o, S, Hq, D, h0, group);
    const auto lb = slice_lse(lse, S, h0, group);
    const auto kb = slice(st.in.k, s.seqlen_k, Hkv, D, g, 1, C), vb = slice(st.in.v, s.seqlen_k, Hkv, D, g, 1, C);
    std::vector<float> jq(qb.size()), rk(kb.size()), rv(vb.size()), pk(kb.size()), pv(vb.size());
    reference_backward(b, MaskRows{mb}, qb, kb, vb, ob, lb, dob, jq, rk, rv);
    plain_backward(b, MaskRows{mb}, st.dtype, qb, kb, vb, ob, lb, dob, jq, pk, pv);
    const auto gk = slice(dk, s.seqlen_k, Hkv, D, g, 1, C), gv = slice(dv, s.seqlen_k, Hkv, D, g, 1, C);
    r.dk = compare(st.dtype, gk, pk, rk, D, {});
    r.dv = compare(st.dtype, gv, pv, rv, D, {});
  }
  r.k_rows = Index(C.size());
  r.kv_group = g;
}

}  // namespace longattn::bench

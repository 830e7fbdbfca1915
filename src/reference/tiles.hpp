#pragma once
// The math of the CPU reference, one tile of rows (or key columns) at a time: forward with an
// online softmax, the dQ pass over query rows and the dK/dV pass over key columns. Everything is
// accumulated in Acc (float or double); inputs and saved O/LSE are float.
#include <cmath>
#include <limits>
#include <vector>

#include "detail.hpp"

namespace longattn::reference_detail {

// Pointers into the packed [seqlen][heads][head_dim] tensors.
struct Operands {
  const AttentionShape& s;
  float scale;
  const float* q;
  const float* k;
  const float* v;
  const float* d_o = nullptr;
  const float* lse = nullptr;   // [heads_q][seqlen_q], saved or recomputed
  const void* delta = nullptr;  // Acc[heads_q][seqlen_q]: rowsum(dO * O)

  int group() const { return s.heads_q / s.heads_kv; }
  const float* q_row(Index i, int h) const { return q + (i * s.heads_q + h) * s.head_dim; }
  const float* do_row(Index i, int h) const { return d_o + (i * s.heads_q + h) * s.head_dim; }
  const float* k_row(Index j, int g) const { return k + (j * s.heads_kv + g) * s.head_dim; }
  const float* v_row(Index j, int g) const { return v + (j * s.heads_kv + g) * s.head_dim; }
  std::size_t row_stat(Index i, int h) const { return std::size_t(h * s.seqlen_q + i); }
};

inline std::vector<std::span<const Range>> tile_lines(const RowIntervals& m,
                                                      std::span<const Index> idx) {
  std::vector<std::span<const Range>> lines;
  lines.reserve(idx.size());
  for (Index i : idx) lines.push_back(m.row(i));
  return lines;
}

// O and LSE of `rows` of query head h: emit(i, const Acc* o, Acc lse) per row. A row without
// keys emits O = 0, LSE = -inf.
template <class Acc, class Emit>
void forward_tile(const Operands& x, const RowIntervals& mask, int h, std::span<const Index> rows,
                  Emit&& emit) {
  const int D = x.s.head_dim;
  const int g = h / x.group();
  const Acc scale = x.scale;
  const Acc neg_inf = -std::numeric_limits<Acc>::infinity();
  const std::size_t n = rows.size();
  std::vector<Acc> qa(n * D), acc(n * D, Acc(0)), m(n, neg_inf), l(n, Acc(0)), score(kBlock);
  for (std::size_t r = 0; r < n; ++r) load(&qa[r * D], x.q_row(rows[r], h), D);

  walk_tile(tile_lines(mask, rows), [&](std::size_t r, Range keys) {
    const Acc* qr = &qa[r * D];
    Acc* o = &acc[r * D];
    auto sc = [&](Index j) -> Acc& { return score[std::size_t(j - keys.begin)]; };
    Acc mx = neg_inf;
    in_groups(keys.begin, keys.end, [&](Index j, auto group) {
      constexpr int N = decltype(group)::value;
      const float* kj[N];
      Acc dp[N];
      for (int t = 0; t < N; ++t) kj[t] = x.k_row(j + t, g);
      dots<Acc, N>(qr, kj, D, dp);
      for (int t = 0; t < N; ++t) mx = std::max(mx, sc(j + t) = scale * dp[t]);
    });
    if (mx > m[r]) {  // rescale what was summed under the old maximum
      const Acc c = std::exp(m[r] - mx);
      l[r] *= c;
      for (int d = 0; d < D; ++d) o[d] *= c;
      m[r] = mx;
    }
    in_groups(keys.begin, keys.end, [&](Index j, auto group) {
      constexpr int N = decltype(group)::value;
      const float* vj[N];
      Acc p[N];
      for (int t = 0; t < N; ++t) {
        p[t] = std::exp(sc(j + t) - m[r]);
        l[r] += p[t];
        vj[t] = x.v_row(j + t, g);
      }
      axpys<Acc, N>(o, p, vj, D);
    });
  });

  for (std::size_t r = 0; r < n; ++r) {
    Acc* o = &acc[r * D];
    if (l[r] == Acc(0)) {
      emit(rows[r], o, neg_inf);  // no keys: o is still all zero
      continue;
    }
    const Acc inv = Acc(1) / l[r];
    for (int d = 0; d < D; ++d) o[d] *= inv;
    emit(rows[r], o, m[r] + std::log(l[r]));
  }
}

// dQ of `rows` of query head h: emit(i, const Acc* dq) per row (zero for a row without keys).
template <class Acc, class Emit>
void dq_tile(const Operands& x, const RowIntervals& mask, int h, std::span<const Index> rows,
             Emit&& emit) {
  const int D = x.s.head_dim;
  const int g = h / x.group();
  const Acc scale = x.scale;
  const Acc* delta = static_cast<const Acc*>(x.delta);
  const std::size_t n = rows.size();
  std::vector<Acc> qa(n * D), doa(n * D), dq(n * D, Acc(0));
  for (std::size_t r = 0; r < n; ++r) {
    load(&qa[r * D], x.q_row(rows[r], h), D);
    load(&doa[r * D], x.do_row(rows[r], h), D);
  }

  walk_tile(tile_lines(mask, rows), [&](std::size_t r, Range keys) {
    const std::size_t stat = x.row_stat(rows[r], h);
    const Acc lse = x.lse[stat];
    const Acc di = delta[stat];
    in_groups(keys.begin, keys.end, [&](Index j, auto group) {
      constexpr int N = decltype(group)::value;
      const float* kj[N];
      const float* vj[N];
      for (int t = 0; t < N; ++t) kj[t] = x.k_row(j + t, g), vj[t] = x.v_row(j + t, g);
      Acc s[N], dp[N], ds[N];
      dots<Acc, N>(&qa[r * D], kj, D, s);
      dots<Acc, N>(&doa[r * D], vj, D, dp);
      for (int t = 0; t < N; ++t) ds[t] = scale * (std::exp(scale * s[t] - lse) * (dp[t] - di));
      axpys<Acc, N>(&dq[r * D], ds, kj, D);
    });
  });

  for (std::size_t r = 0; r < n; ++r) emit(rows[r], &dq[r * D]);
}

// dK and dV of key columns `cols` of KV head g, summed over the group's query heads:
// emit(j, const Acc* dk, const Acc* dv). columns is the transpose of the head's mask.
template <class Acc, class Emit>
void dkv_tile(const Operands& x, const RowIntervals& columns, int g, std::span<const Index> cols,
              Emit&& emit) {
  const int D = x.s.head_dim;
  const int group = x.group();
  const Acc scale = x.scale;
  const Acc* delta = static_cast<const Acc*>(x.delta);
  const std::size_t n = cols.size();
  std::vector<Acc> ka(n * D), va(n * D), dk(n * D, Acc(0)), dv(n * D, Acc(0));
  for (std::size_t c = 0; c < n; ++c) {
    load(&ka[c * D], x.k_row(cols[c], g), D);
    load(&va[c * D], x.v_row(cols[c], g), D);
  }

  walk_tile(tile_lines(columns, cols), [&](std::size_t c, Range rows) {
    for (int h = g * group; h < (g + 1) * group; ++h) {
      in_groups(rows.begin, rows.end, [&](Index i, auto batch) {
        constexpr int N = decltype(batch)::value;
        const float* qi[N];
        const float* doi[N];
        for (int t = 0; t < N; ++t) qi[t] = x.q_row(i + t, h), doi[t] = x.do_row(i + t, h);
        // The same products and summation order as the row passes: P and dS match bit for bit.
        Acc s[N], dp[N], p[N], ds[N];
        dots<Acc, N>(&ka[c * D], qi, D, s);
        dots<Acc, N>(&va[c * D], doi, D, dp);
        for (int t = 0; t < N; ++t) {
          const std::size_t stat = x.row_stat(i + t, h);
          p[t] = std::exp(scale * s[t] - Acc(x.lse[stat]));
          ds[t] = scale * (p[t] * (dp[t] - delta[stat]));
        }
        axpys<Acc, N>(&dv[c * D], p, doi, D);
        axpys<Acc, N>(&dk[c * D], ds, qi, D);
      });
    }
  });

  for (std::size_t c = 0; c < n; ++c) emit(cols[c], &dk[c * D], &dv[c * D]);
}

}  // namespace longattn::reference_detail

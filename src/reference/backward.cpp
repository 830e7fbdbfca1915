// reference_backward and reference_backward_sampled. dQ is computed over query rows and dK/dV
// over key columns (the transposed mask), so no two threads ever write the same output and the
// result does not depend on the thread count.
#include "longattn/reference.hpp"
#include "tiles.hpp"

namespace longattn {
namespace {

using namespace reference_detail;

// The mask entry of KV head g (entries are shared by a KV head's query heads).
std::size_t entry_of_kv(const MaskRows& mask, int g) {
  return mask.per_kv_head.size() == 1 ? 0 : std::size_t(g);
}

// The transpose of every mask entry.
std::vector<RowIntervals> transpose_all(const MaskRows& mask, int threads) {
  std::vector<RowIntervals> columns(mask.per_kv_head.size());
  parallel_for(columns.size(), threads,
               [&](std::size_t e) { columns[e] = transpose(mask.per_kv_head[e]); });
  return columns;
}

// dQ of `q_rows` (every query head) and dK/dV of `k_rows` (every KV head), given x.lse and
// x.delta for every row those depend on.
template <class Acc>
void gradients(const Operands& x, const MaskRows& mask, const std::vector<RowIntervals>& columns,
               std::span<const Index> q_rows, std::span<const Index> k_rows, std::span<float> dq,
               std::span<float> dk, std::span<float> dv, int threads) {
  const AttentionShape& s = x.s;
  const int D = s.head_dim;
  parallel_tiles(
      s.heads_q, [&](int) { return q_rows; }, threads,
      [&](int h, std::span<const Index> tile) {
        dq_tile<Acc>(x, mask.for_q_head(h, s), h, tile, [&](Index i, const Acc* g) {
          store(dq.data() + (i * s.heads_q + h) * D, g, D);
        });
      });
  parallel_tiles(
      s.heads_kv, [&](int) { return k_rows; }, threads,
      [&](int g, std::span<const Index> tile) {
        dkv_tile<Acc>(x, columns[entry_of_kv(mask, g)], g, tile,
                      [&](Index j, const Acc* gk, const Acc* gv) {
                        store(dk.data() + (j * s.heads_kv + g) * D, gk, D);
                        store(dv.data() + (j * s.heads_kv + g) * D, gv, D);
                      });
      });
}

template <class Acc>
void backward(Operands x, const MaskRows& mask, std::span<const float> o, std::span<float> dq,
              std::span<float> dk, std::span<float> dv, int threads) {
  const AttentionShape& s = x.s;
  const int D = s.head_dim;
  std::vector<Acc> delta(std::size_t(s.heads_q) * std::size_t(s.seqlen_q));
  const std::vector<Index> rows = row_list({}, s.seqlen_q, "rows", true);
  const std::vector<Index> cols = row_list({}, s.seqlen_k, "columns", true);
  parallel_tiles(
      s.heads_q, [&](int) { return std::span<const Index>(rows); }, threads,
      [&](int h, std::span<const Index> tile) {
        for (Index i : tile)
          delta[x.row_stat(i, h)] =
              row_delta<Acc>(o.data() + (i * s.heads_q + h) * D, x.do_row(i, h), D);
      });
  x.delta = delta.data();
  gradients<Acc>(x, mask, transpose_all(mask, threads), rows, cols, dq, dk, dv, threads);
}

template <class Acc>
void backward_sampled(Operands x, const MaskRows& mask, std::span<const Index> q_rows,
                      std::span<const Index> k_rows, std::span<float> dq, std::span<float> dk,
                      std::span<float> dv, int threads) {
  const AttentionShape& s = x.s;
  const int D = s.head_dim;
  const std::vector<RowIntervals> columns = transpose_all(mask, threads);

  // Rows whose LSE and delta are needed, per mask entry: the listed query rows and every row that
  // attends a listed key (marked by a difference array over the column intervals).
  std::vector<std::vector<Index>> needed(columns.size());
  for (std::size_t e = 0; e < columns.size(); ++e) {
    std::vector<Index> mark(std::size_t(s.seqlen_q) + 1, 0);
    for (Index i : q_rows) ++mark[std::size_t(i)], --mark[std::size_t(i) + 1];
    for (Index j : k_rows)
      for (Range r : columns[e].row(j)) ++mark[std::size_t(r.begin)], --mark[std::size_t(r.end)];
    Index depth = 0;
    for (Index i = 0; i < s.seqlen_q; ++i)
      if ((depth += mark[std::size_t(i)]) > 0) needed[e].push_back(i);
  }

  // Recompute O and LSE of those rows exactly as reference_forward would save them (float), so
  // that this equals reference_backward on the forward's output.
  std::vector<float> lse(std::size_t(s.heads_q) * std::size_t(s.seqlen_q));
  std::vector<Acc> delta(lse.size());
  const int group = s.heads_q / s.heads_kv;
  auto needed_of = [&](int h) {
    return std::span<const Index>(needed[entry_of_kv(mask, h / group)]);
  };
  parallel_tiles(s.heads_q, needed_of, threads, [&](int h, std::span<const Index> tile) {
    std::vector<float> o(static_cast<std::size_t>(D));
    forward_tile<Acc>(x, mask.for_q_head(h, s), h, tile, [&](Index i, const Acc* out, Acc l) {
      store(o.data(), out, D);
      lse[x.row_stat(i, h)] = float(l);
      delta[x.row_stat(i, h)] = row_delta<Acc>(o.data(), x.do_row(i, h), D);
    });
  });
  x.lse = lse.data();
  x.delta = delta.data();
  gradients<Acc>(x, mask, columns, q_rows, k_rows, dq, dk, dv, threads);
}

void check_gradient_sizes(const AttentionShape& s, std::span<const float> dq,
                          std::span<const float> dk, std::span<const float> dv) {
  check_size(dq, s.q_elements(), "dq");
  check_size(dk, s.kv_elements(), "dk");
  check_size(dv, s.kv_elements(), "dv");
}

}  // namespace

void reference_backward(const AttentionShape& s, const MaskRows& mask, std::span<const float> q,
                        std::span<const float> k, std::span<const float> v,
                        std::span<const float> o, std::span<const float> lse,
                        std::span<const float> d_o, std::span<float> dq, std::span<float> dk,
                        std::span<float> dv, ReferenceOptions opt) {
  check_shape(s);
  check_mask(s, mask);
  check_size(q, s.q_elements(), "q");
  check_size(k, s.kv_elements(), "k");
  check_size(v, s.kv_elements(), "v");
  check_size(o, s.q_elements(), "o");
  check_size(lse, std::size_t(s.heads_q) * std::size_t(s.seqlen_q), "lse");
  check_size(d_o, s.q_elements(), "d_o");
  check_gradient_sizes(s, dq, dk, dv);
  Operands x{s, s.softmax_scale(), q.data(), k.data(), v.data(), d_o.data(), lse.data()};
  if (opt.accumulate == Accumulate::fp64)
    backward<double>(x, mask, o, dq, dk, dv, opt.threads);
  else
    backward<float>(x, mask, o, dq, dk, dv, opt.threads);
}

void reference_backward_sampled(const AttentionShape& s, const MaskRows& mask,
                                std::span<const float> q, std::span<const float> k,
                                std::span<const float> v, std::span<const float> d_o,
                                std::span<const Index> q_rows, std::span<const Index> k_rows,
                                std::span<float> dq, std::span<float> dk, std::span<float> dv,
                                ReferenceOptions opt) {
  check_shape(s);
  check_mask(s, mask);
  check_size(q, s.q_elements(), "q");
  check_size(k, s.kv_elements(), "k");
  check_size(v, s.kv_elements(), "v");
  check_size(d_o, s.q_elements(), "d_o");
  check_gradient_sizes(s, dq, dk, dv);
  const std::vector<Index> qs = row_list(q_rows, s.seqlen_q, "q_rows", false);
  const std::vector<Index> ks = row_list(k_rows, s.seqlen_k, "k_rows", false);
  Operands x{s, s.softmax_scale(), q.data(), k.data(), v.data(), d_o.data()};
  if (opt.accumulate == Accumulate::fp64)
    backward_sampled<double>(x, mask, qs, ks, dq, dk, dv, opt.threads);
  else
    backward_sampled<float>(x, mask, qs, ks, dq, dk, dv, opt.threads);
}

}  // namespace longattn

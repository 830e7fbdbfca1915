// The shape and mask helpers of reference.hpp and the shared machinery of detail.hpp.
#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

#include "detail.hpp"
#include "longattn/error.hpp"

namespace longattn {

float AttentionShape::softmax_scale() const {
  return scale != 0 ? scale : 1.0f / std::sqrt(float(head_dim));
}

const RowIntervals& MaskRows::for_q_head(int h, const AttentionShape& s) const {
  if (h < 0 || h >= s.heads_q)
    throw InputError(fmt::format("query head {} is outside [0, {})", h, s.heads_q));
  if (per_kv_head.size() == 1) return per_kv_head[0];
  if (s.heads_kv <= 0 || s.heads_q % s.heads_kv != 0 ||
      per_kv_head.size() != std::size_t(s.heads_kv))
    throw InputError(fmt::format("mask has {} entries; expected 1 or heads_kv = {}",
                                 per_kv_head.size(), s.heads_kv));
  return per_kv_head[std::size_t(h / (s.heads_q / s.heads_kv))];
}

namespace reference_detail {

void parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body) {
  std::size_t n = threads > 0 ? std::size_t(threads) : std::thread::hardware_concurrency();
  n = std::max<std::size_t>(1, std::min(n, count));
  if (n == 1) {
    for (std::size_t i = 0; i < count; ++i) body(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (std::size_t i; !failed.load(std::memory_order_relaxed) && (i = next++) < count;) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
  };
  {
    std::vector<std::jthread> pool;
    pool.reserve(n - 1);
    for (std::size_t t = 1; t < n; ++t) pool.emplace_back(worker);
    worker();
  }
  if (error) std::rethrow_exception(error);
}

void check_shape(const AttentionShape& s) {
  if (s.seqlen_q < 0 || s.seqlen_k < 0)
    throw InputError(fmt::format("sequence lengths must be >= 0 (seqlen_q {}, seqlen_k {})",
                                 s.seqlen_q, s.seqlen_k));
  if (s.heads_q <= 0 || s.heads_kv <= 0)
    throw InputError(fmt::format("head counts must be positive (heads_q {}, heads_kv {})",
                                 s.heads_q, s.heads_kv));
  if (s.heads_q % s.heads_kv != 0)
    throw InputError(
        fmt::format("heads_q = {} is not a multiple of heads_kv = {}", s.heads_q, s.heads_kv));
  if (s.head_dim <= 0)
    throw InputError(fmt::format("head_dim must be positive, got {}", s.head_dim));
  if (!std::isfinite(s.scale))
    throw InputError(fmt::format("softmax scale must be finite, got {}", s.scale));
}

void check_mask(const AttentionShape& s, const MaskRows& mask) {
  const std::size_t n = mask.per_kv_head.size();
  if (n != 1 && n != std::size_t(s.heads_kv))
    throw InputError(
        fmt::format("mask has {} entries; expected 1 or heads_kv = {}", n, s.heads_kv));
  for (std::size_t e = 0; e < n; ++e) {
    const RowIntervals& r = mask.per_kv_head[e];
    if (r.seqlen_q() != s.seqlen_q || r.seqlen_k != s.seqlen_k)
      throw InputError(fmt::format("mask entry {} is {} x {}; the attention is {} x {}", e,
                                   r.seqlen_q(), r.seqlen_k, s.seqlen_q, s.seqlen_k));
    if (r.offsets.empty()) continue;
    if (r.offsets.front() != 0 || r.offsets.back() != Index(r.keys.size()))
      throw InputError(
          fmt::format("mask entry {}: offsets do not span its {} intervals", e, r.keys.size()));
    for (Index i = 0; i < s.seqlen_q; ++i) {
      if (r.offsets[i + 1] < r.offsets[i])
        throw InputError(fmt::format("mask entry {}: offsets decrease at row {}", e, i));
      Index prev_end = 0;
      for (Range k : r.row(i)) {
        if (k.begin < prev_end || k.end <= k.begin || k.end > s.seqlen_k)
          throw InputError(fmt::format(
              "mask entry {}, row {}: interval [{}, {}) is empty, unsorted, overlapping or "
              "outside [0, {})",
              e, i, k.begin, k.end, s.seqlen_k));
        prev_end = k.end;
      }
    }
  }
}

void check_size(std::span<const float> x, std::size_t expected, const char* name) {
  if (x.size() != expected)
    throw InputError(
        fmt::format("{} has {} elements; the shape needs {}", name, x.size(), expected));
}

std::vector<Index> row_list(std::span<const Index> rows, Index n, const char* name,
                            bool empty_means_all) {
  std::vector<Index> out;
  if (rows.empty() && empty_means_all) {
    out.resize(std::size_t(n));
    for (Index i = 0; i < n; ++i) out[std::size_t(i)] = i;
    return out;
  }
  std::vector<bool> seen(std::size_t(n), false);
  for (Index i : rows) {
    if (i < 0 || i >= n)
      throw InputError(fmt::format("{} lists row {}, outside [0, {})", name, i, n));
    if (seen[std::size_t(i)]) throw InputError(fmt::format("{} lists row {} twice", name, i));
    seen[std::size_t(i)] = true;
  }
  out.assign(rows.begin(), rows.end());
  return out;
}

namespace {

// Calls f(range) for every maximal range of columns in a but not in b (both sorted, disjoint).
template <class F>
void for_each_difference(std::span<const Range> a, std::span<const Range> b, F&& f) {
  std::size_t bi = 0;
  for (Range r : a) {
    Index pos = r.begin;
    while (bi < b.size() && b[bi].end <= pos) ++bi;
    for (std::size_t k = bi; k < b.size() && b[k].begin < r.end; ++k) {
      if (b[k].begin > pos) f(Range{pos, b[k].begin});
      pos = std::max(pos, b[k].end);
    }
    if (pos < r.end) f(Range{pos, r.end});
  }
}

}  // namespace

RowIntervals transpose(const RowIntervals& rows) {
  const Index sq = rows.seqlen_q();
  const Index sk = rows.seqlen_k;
  // A column's run of rows opens where a row gains it and closes where a row loses it, so only
  // the differences between consecutive rows are visited.
  struct Run {
    Index column;
    Range rows;
  };
  std::vector<Index> open(std::size_t(sk), -1);
  std::vector<Run> runs;
  std::span<const Range> prev;
  for (Index i = 0; i <= sq; ++i) {
    std::span<const Range> cur = i < sq ? rows.row(i) : std::span<const Range>{};
    for_each_difference(prev, cur, [&](Range cols) {
      for (Index j = cols.begin; j < cols.end; ++j) runs.push_back({j, {open[std::size_t(j)], i}});
    });
    for_each_difference(cur, prev, [&](Range cols) {
      for (Index j = cols.begin; j < cols.end; ++j) open[std::size_t(j)] = i;
    });
    prev = cur;
  }
  // Counting sort by column; runs of one column were closed in increasing row order.
  RowIntervals out;
  out.seqlen_k = sq;
  out.offsets.assign(std::size_t(sk) + 1, 0);
  for (const Run& r : runs) ++out.offsets[std::size_t(r.column) + 1];
  for (Index j = 0; j < sk; ++j) out.offsets[std::size_t(j) + 1] += out.offsets[std::size_t(j)];
  out.keys.resize(runs.size());
  std::vector<Index> fill(out.offsets.begin(), out.offsets.end() - 1);
  for (const Run& r : runs) out.keys[std::size_t(fill[std::size_t(r.column)]++)] = r.rows;
  return out;
}

}  // namespace reference_detail
}  // namespace longattn

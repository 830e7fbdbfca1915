#pragma once
// Shared machinery of the CPU reference: the vector primitives of its inner loops, the tile walk
// that lets a few rows share each block of keys while it sits in cache, the thread pool, input
// checks, and the row -> column transpose of a mask the backward pass needs.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "longattn/reference.hpp"

namespace longattn::reference_detail {

// Lines (query rows or key columns) processed together in one tile, and the aligned block of the
// other dimension they walk in step: 16 lines x 64 keys of K and V stay in L1/L2.
inline constexpr Index kTileLines = 16;
inline constexpr Index kBlock = 64;

// Inner-loop primitives. A dot product keeps one SSE vector of partial sums (4 floats or 2 doubles,
// in GCC/Clang vector extensions since auto-vectorisation of several interleaved reductions is
// poor), and N of them run together to share the loads of their common operand. The summation
// order of each dot product depends only on n, never on N, so every pass, tile and thread count
// computes bit-identical scores.
template <class Acc>
struct Lanes;
template <>
struct Lanes<float> {
  typedef float type __attribute__((vector_size(16)));
  typedef float narrow __attribute__((vector_size(16)));
};
template <>
struct Lanes<double> {
  typedef double type __attribute__((vector_size(16)));
  typedef float narrow __attribute__((vector_size(8)));  // the floats that widen to one type
};
template <class Acc>
using Vec = typename Lanes<Acc>::type;
template <class Acc>
inline constexpr int kLanes = int(sizeof(Vec<Acc>) / sizeof(Acc));

template <class Acc, class T>
inline Vec<Acc> load_lanes(const T* p) {
  if constexpr (std::is_same_v<T, Acc>) {
    Vec<Acc> v;
    std::memcpy(&v, p, sizeof v);
    return v;
  } else {
    typename Lanes<Acc>::narrow v;
    std::memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, Vec<Acc>);
  }
}

// out[t] = sum_d a[d] * b[t][d]
template <class Acc, int N, class A>
inline void dots(const A* a, const float* const* b, int n, Acc* out) {
  constexpr int W = kLanes<Acc>;
  Vec<Acc> part[N] = {};
  int d = 0;
  for (; d + W <= n; d += W) {
    const Vec<Acc> av = load_lanes<Acc>(a + d);
    for (int t = 0; t < N; ++t) part[t] += av * load_lanes<Acc>(b[t] + d);
  }
  for (int t = 0; t < N; ++t) {
    Acc tail = 0;
    for (int e = d; e < n; ++e) tail += Acc(a[e]) * Acc(b[t][e]);
    Acc lane[W];
    std::memcpy(lane, &part[t], sizeof lane);
    for (int w = W / 2; w > 0; w /= 2)  // pairwise reduction of the lanes
      for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
    out[t] = lane[0] + tail;
  }
}

// y[d] += sum_t alpha[t] * x[t][d]
template <class Acc, int N>
inline void axpys(Acc* y, const Acc* alpha, const float* const* x, int n) {
  for (int d = 0; d < n; ++d) {
    Acc sum = alpha[0] * Acc(x[0][d]);
    for (int t = 1; t < N; ++t) sum += alpha[t] * Acc(x[t][d]);
    y[d] += sum;
  }
}

// Calls f(first, std::integral_constant<int, N>) over [begin, end) in groups of N = 4, then 1.
template <class F>
inline void in_groups(Index begin, Index end, F&& f) {
  Index j = begin;
  for (; j + 4 <= end; j += 4) f(j, std::integral_constant<int, 4>{});
  for (; j < end; ++j) f(j, std::integral_constant<int, 1>{});
}

template <class Acc>
inline void load(Acc* dst, const float* src, int n) {
  for (int d = 0; d < n; ++d) dst[d] = Acc(src[d]);
}

template <class Acc>
inline void store(float* dst, const Acc* src, int n) {
  for (int d = 0; d < n; ++d) dst[d] = float(src[d]);
}

// D_i = rowsum(dO_i * O_i), the softmax-backward correction of row i.
template <class Acc>
inline Acc row_delta(const float* o, const float* d_o, int n) {
  Acc sum;
  dots<Acc, 1>(o, &d_o, n, &sum);
  return sum;
}

// Walks the intervals of a few lines block by block over the other dimension: every call
// f(line, piece) gets a piece of one line's intervals inside one aligned block of kBlock, and all
// lines finish a block before any starts the next, so the block's data is reused from cache.
// Each line sees its own pieces in ascending order, cut only at block boundaries: what a line
// computes does not depend on which other lines share its tile.
template <class F>
void walk_tile(std::span<const std::span<const Range>> lines, F&& f) {
  struct Cursor {
    const Range* it;
    const Range* end;
    Index pos;
  };
  std::vector<Cursor> cur;
  cur.reserve(lines.size());
  for (auto l : lines) {
    const Range* it = l.data();
    const Range* end = l.data() + l.size();
    while (it != end && it->empty()) ++it;
    cur.push_back({it, end, it != end ? it->begin : 0});
  }
  for (;;) {
    Index block = std::numeric_limits<Index>::max();
    for (const Cursor& c : cur)
      if (c.it != c.end) block = std::min(block, c.pos / kBlock);
    if (block == std::numeric_limits<Index>::max()) return;
    const Index block_end = (block + 1) * kBlock;
    for (std::size_t line = 0; line < cur.size(); ++line) {
      Cursor& c = cur[line];
      while (c.it != c.end && c.pos < block_end) {
        const Index e = std::min(c.it->end, block_end);
        f(line, Range{c.pos, e});
        c.pos = e;
        if (c.pos == c.it->end) {
          do ++c.it;
          while (c.it != c.end && c.it->empty());
          if (c.it != c.end) c.pos = c.it->begin;
        }
      }
    }
  }
}

// Runs body(item) for item in [0, count) on up to `threads` threads (0 = hardware concurrency);
// the first exception is rethrown after all threads stop.
void parallel_for(std::size_t count, int threads, const std::function<void(std::size_t)>& body);

// Work items of (head, tile of up to kTileLines consecutive entries of lines_of(head)), head-major
// so that concurrent threads share one head's K and V in the last-level cache.
template <class Lines, class F>
void parallel_tiles(int heads, Lines&& lines_of, int threads, F&& f) {
  std::vector<std::size_t> first(std::size_t(heads) + 1, 0);  // first item of each head
  for (int h = 0; h < heads; ++h)
    first[h + 1] = first[h] + (std::span<const Index>(lines_of(h)).size() + kTileLines - 1) /
                                  std::size_t(kTileLines);
  parallel_for(first.back(), threads, [&](std::size_t item) {
    const int h = int(std::upper_bound(first.begin(), first.end(), item) - first.begin()) - 1;
    const std::span<const Index> lines = lines_of(h);
    const std::size_t begin = (item - first[h]) * kTileLines;
    f(h, lines.subspan(begin, std::min<std::size_t>(kTileLines, lines.size() - begin)));
  });
}

// Throws InputError unless the shape is valid, every span has the shape's size and the mask has
// one entry (or one per KV head) with seqlen_q rows of sorted, disjoint intervals inside
// [0, seqlen_k).
void check_shape(const AttentionShape& s);
void check_mask(const AttentionShape& s, const MaskRows& mask);
void check_size(std::span<const float> x, std::size_t expected, const char* name);
// Returns `rows` (every index in [0, n) when empty and empty_means_all); throws InputError on an
// index outside [0, n) or a repeated one, since two threads would write the same row.
std::vector<Index> row_list(std::span<const Index> rows, Index n, const char* name,
                            bool empty_means_all);

// The transpose of a mask: for every key column, the query rows that attend it, as sorted,
// disjoint, non-adjacent ranges. O(rows + columns + changes between consecutive rows).
RowIntervals transpose(const RowIntervals& rows);

}  // namespace longattn::reference_detail

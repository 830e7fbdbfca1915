// Host side of the flash kernels' mask (flash.hpp, "prepared masks"): outer tiles aligned to the
// slices' boundaries, inner chunks cut from the union of each outer tile's allowed intervals,
// exact bitmasks of the partial chunks from the per-row key intervals, and work items ordered
// heaviest first (long outer tiles split across items when allowed). No CUDA here: the CPU tests
// check it; device_mask.cpp copies the result to the device.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "longattn/error.hpp"
#include "longattn/kernels/flash.hpp"
#include "longattn/views/row_intervals.hpp"
#include "tile_prep.hpp"

namespace longattn::flash {

namespace {

// Appends the bitmask of the tile with query rows q and keys k (each at most the tile's size).
void append_tile_bits(std::vector<std::uint32_t>& bits, const RowIntervals& rows, TileShape shape,
                      Range q, Range k) {
  const Index words = shape.cols / 32;
  const size_t at = bits.size();
  bits.resize(at + size_t(shape.rows * words), 0u);
  for (Index i = q.begin; i < q.end; ++i) {
    std::uint32_t* row = bits.data() + at + (i - q.begin) * words;
    const auto line = rows.row(i);
    auto it = std::upper_bound(line.begin(), line.end(), k.begin,
                               [](Index x, const Range& r) { return x < r.end; });
    for (; it != line.end() && it->begin < k.end; ++it) {
      const Range cut = it->intersect(k);
      set_bits(row, cut.begin - k.begin, cut.end - k.begin);
    }
  }
}

}  // namespace

Index MaskTiles::listed_tiles() const {
  const Index chunk = key_major ? shape.rows : shape.cols;
  Index n = 0;
  for (const TileRun32& r : runs) n += ceil_div(r.end - r.begin, chunk);
  return n;
}

Index MaskTiles::mean_span() const {
  if (per_head()) return 0;
  Index rows = 0;
  for (const TileSpan& t : outer) rows += t.end - t.begin;
  return rows > 0 ? issued_area / rows : 0;
}

namespace {

// Key-major walks, compared by the chunks that two neighbouring key tiles t, t + 1 both read and
// read within kReuseSteps chunk steps of each other (then the second read finds the rows in L2:
// 132 CTAs x 8 steps x 32 KB of Q and dO is about 34 MB). For chunk c of pass h:
// - ascending, passes outermost: t reads it at step h n_t + (c - first_t), so the two reads are
//   h (n_t - n_t+1) + (first_t+1 - first_t) steps apart;
// - descending, passes innermost, from a pass rotated per tile (so that tiles on one chunk add to
//   different heads' dQ rows): passes (last_t - c) + rotation, so passes |last_t - last_t+1|
//   apart, plus up to passes - 1.
// Causal-like spans (shared ends) favour descending; spans shifting together (sliding windows)
// and equal spans (full, documents) ascending.
constexpr double kReuseSteps = 8;

bool prefer_descending(const MaskTiles& t, Index chunk, const std::vector<Index>& chunks_of,
                       int passes) {
  if (!t.key_major || passes < 1) return false;
  double asc = 0, desc = 0;  // chunk reads served by L2
  for (size_t i = 0; i + 1 < t.outer.size(); ++i) {
    const auto r0 = t.offsets[i], r1 = t.offsets[i + 1], r2 = t.offsets[i + 2];
    if (r0 == r1 || r1 == r2) continue;
    const Index first0 = t.runs[size_t(r0)].begin, last0 = t.runs[size_t(r1) - 1].end;
    const Index first1 = t.runs[size_t(r1)].begin, last1 = t.runs[size_t(r2) - 1].end;
    const Index shared = std::min(last0, last1) - std::max(first0, first1);
    if (shared <= 0) continue;
    const double chunks = double(ceil_div(shared, chunk));
    const double dn = double(chunks_of[i]) - double(chunks_of[i + 1]);
    const double dfirst = double(first1 - first0) / double(chunk);
    for (int h = 0; h < passes; ++h)
      if (std::abs(h * dn + dfirst) <= kReuseSteps) asc += chunks;
    const double apart = double(passes) * double(std::abs(last0 - last1)) / double(chunk);
    if (apart + passes - 1 <= kReuseSteps) desc += chunks * passes;
  }
  return desc > asc;
}

}  // namespace

MaskTiles prepare_mask(const SliceMask& m, TileShape shape, bool key_major,
                       const PrepareOptions& opt) {
  check_prepare_args(shape, opt);
  const Index sq = m.seqlen_q(), sk = m.seqlen_k();
  check_positions(sq, sk);

  MaskTiles out;
  out.shape = shape;
  out.key_major = key_major;
  out.seqlen_q = sq;
  out.seqlen_k = sk;
  const Index outer_tile = key_major ? shape.cols : shape.rows;
  const Index chunk = key_major ? shape.rows : shape.cols;
  const Index extent = key_major ? sk : sq;
  const RowIntervals rows = row_intervals(m);
  const RowIntervals cols = key_major ? column_intervals(m) : RowIntervals{};
  const RowIntervals& lines = key_major ? cols : rows;

  std::vector<Index> bounds;
  for (const Slice& s : m.slices()) {
    const Range r = key_major ? s.k : s.q;
    bounds.push_back(r.begin);
    bounds.push_back(r.end);
  }
  out.outer = cut_outer(std::move(bounds), extent, outer_tile);

  std::vector<Index> chunks_of(out.outer.size(), 0);
  std::vector<Range> uni;
  std::vector<Index> count;
  out.offsets.push_back(0);
  for (size_t t = 0; t < out.outer.size(); ++t) {
    const Range span{out.outer[t].begin, out.outer[t].end};
    // Union of the lines' intervals, sorted and merged.
    uni.clear();
    for (Index l = span.begin; l < span.end; ++l)
      for (const Range r : lines.row(l)) uni.push_back(r);
    std::sort(uni.begin(), uni.end(), [](Range a, Range b) { return a.begin < b.begin; });
    size_t n_uni = 0;
    for (const Range r : uni) {
      if (n_uni > 0 && r.begin <= uni[n_uni - 1].end)
        uni[n_uni - 1].end = std::max(uni[n_uni - 1].end, r.end);
      else
        uni[n_uni++] = r;
    }
    uni.resize(n_uni);
    for (const Range u : uni) {
      // Per chunk of u, the number of lines allowing all of it (a difference array).
      const Index n_chunks = ceil_div(u.size(), chunk);
      count.assign(size_t(n_chunks + 1), 0);
      for (Index l = span.begin; l < span.end; ++l)
        for (const Range r : lines.row(l)) {
          if (r.end <= u.begin || r.begin >= u.end) continue;
          const Index first = ceil_div(r.begin - u.begin, chunk);
          const Index last = std::min(n_chunks, (r.end - u.begin) / chunk +
                                                    (r.end == u.end && u.size() % chunk ? 1 : 0));
          if (first < last) {
            ++count[size_t(first)];
            --count[size_t(last)];
          }
        }
      Index covering = 0;
      for (Index c = 0; c < n_chunks;) {
        // A run of chunks of one kind.
        auto full_at = [&](Index i) {
          const Index len = std::min(chunk, u.end - (u.begin + i * chunk));
          return covering == span.size() && (key_major || len == chunk);
        };
        covering += count[size_t(c)];
        const bool full = full_at(c);
        Index e = c + 1;
        for (; e < n_chunks; ++e) {
          const Index next = covering + count[size_t(e)];
          const Index len = std::min(chunk, u.end - (u.begin + e * chunk));
          const bool f = next == span.size() && (key_major || len == chunk);
          if (f != full) break;
          covering = next;
        }
        TileRun32 run;
        run.begin = std::int32_t(u.begin + c * chunk);
        run.end = std::int32_t(std::min(u.end, u.begin + e * chunk));
        run.bits = -1;
        if (!full) {
          run.bits = std::int32_t(out.partial_tiles());
          if (Index(run.bits) + (e - c) >= kMaxPosition) throw InputError("flash: too many partial tiles");
          for (Index i = c; i < e; ++i) {
            const Range ch{u.begin + i * chunk, std::min(u.end, u.begin + (i + 1) * chunk)};
            append_tile_bits(out.bits, rows, shape, key_major ? ch : span, key_major ? span : ch);
          }
        }
        for (Index i = c; i < e; ++i)
          out.issued_area += span.size() * std::min(chunk, u.end - (u.begin + i * chunk));
        out.runs.push_back(run);
        chunks_of[t] += e - c;
        c = e;
      }
    }
    out.offsets.push_back(std::int32_t(out.runs.size()));
    if (Index(out.runs.size()) >= kMaxPosition) throw InputError("flash: too many tile runs");
  }

  out.descending = prefer_descending(out, chunk, chunks_of, opt.passes);
  add_work_items(out, chunks_of, opt);
  return out;
}


}  // namespace longattn::flash

// Host side of the flash kernels' mask (flash.hpp, "prepared masks"): outer tiles aligned to the
// slices' boundaries, inner chunks cut from the union of each outer tile's allowed intervals,
// exact bitmasks of the partial chunks from the per-row key intervals, and work items ordered
// heaviest first (long outer tiles split across items when allowed). Then one device allocation
// holding all of it.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "longattn/error.hpp"
#include "longattn/kernels/flash.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn::flash {

namespace {

// Sets bits [begin, end) of a row of words.
void set_bits(std::uint32_t* row, Index begin, Index end) {
  while (begin < end) {
    const Index w = begin / 32, lo = begin % 32;
    const Index hi = std::min<Index>(32, lo + (end - begin));
    const std::uint32_t span = hi - lo == 32 ? ~0u : ((1u << (hi - lo)) - 1u) << lo;
    row[w] |= span;
    begin += hi - lo;
  }
}

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

// Outer tiles of at most `tile` positions over [0, extent) starting at the given boundaries; a
// tile holding fewer than tile / 2 positions when the next segment begins runs on into it.
std::vector<TileSpan> cut_outer(std::vector<Index> bounds, Index extent, Index tile) {
  bounds.push_back(0);
  bounds.push_back(extent);
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  std::vector<TileSpan> out;
  auto close = [&](Index b, Index e) { out.push_back({std::int32_t(b), std::int32_t(e)}); };
  Index t0 = 0;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    const Index a = bounds[s], b = bounds[s + 1];
    while (b - t0 > tile) {
      if (a > t0 && a - t0 >= tile / 2) {
        close(t0, a);
        t0 = a;
      } else {
        close(t0, t0 + tile);
        t0 += tile;
      }
    }
  }
  if (t0 < extent) close(t0, extent);
  return out;
}

}  // namespace

Index MaskTiles::listed_tiles() const {
  const Index chunk = key_major ? shape.rows : shape.cols;
  Index n = 0;
  for (const TileRun32& r : runs) n += ceil_div(r.end - r.begin, chunk);
  return n;
}

MaskTiles prepare_mask(const SliceMask& m, TileShape shape, bool key_major,
                       const PrepareOptions& opt) {
  if (shape.rows <= 0 || shape.cols <= 0 || shape.cols % 32 != 0)
    throw InputError(fmt::format(
        "flash tile shape {}x{}: rows must be positive and keys a positive multiple of 32",
        shape.rows, shape.cols));
  if (opt.passes < 1 || opt.passes > 32767 || opt.heads < 1)
    throw InputError(fmt::format("flash: {} passes of {} heads", opt.passes, opt.heads));
  const Index sq = m.seqlen_q(), sk = m.seqlen_k();
  constexpr Index kMax = std::numeric_limits<std::int32_t>::max() / 2;
  if (sq >= kMax || sk >= kMax)
    throw InputError(
        fmt::format("flash: sequence lengths {} x {} exceed 32-bit positions", sq, sk));

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
          if (Index(run.bits) + (e - c) >= kMax) throw InputError("flash: too many partial tiles");
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
    if (Index(out.runs.size()) >= kMax) throw InputError("flash: too many tile runs");
  }

  // Work items: one per outer tile, or, when a tile outweighs a fair share of a CTA's work, its
  // passes and then its chunks split across several.
  Index total = 0;
  for (Index c : chunks_of) total += c * opt.passes;
  const Index target =
      opt.allow_split && opt.num_sms > 0
          ? std::max<Index>(8, ceil_div(total * opt.heads, Index(2) * opt.num_sms))
          : std::numeric_limits<Index>::max();
  std::vector<TileRun32> runs;
  std::vector<std::int32_t> offsets{0};
  std::vector<Index> weight;
  for (size_t t = 0; t < out.outer.size(); ++t) {
    const Index w = chunks_of[t] * opt.passes;
    const size_t first_run = runs.size();
    runs.insert(runs.end(), out.runs.begin() + out.offsets[t],
                out.runs.begin() + out.offsets[t + 1]);
    auto item = [&](size_t r0, size_t r1, int p0, int p1, Index chunks) {
      WorkItem it;
      it.outer = std::int32_t(t);
      it.run_begin = std::int32_t(r0);
      it.run_end = std::int32_t(r1);
      it.pass_begin = std::int16_t(p0);
      it.pass_end = std::int16_t(p1);
      out.items.push_back(it);
      weight.push_back(chunks * (p1 - p0));
    };
    const Index pieces = ceil_div(std::max<Index>(w, 1), target);
    if (pieces <= 1) {
      item(first_run, runs.size(), 0, opt.passes, chunks_of[t]);
    } else if (pieces <= opt.passes) {
      for (Index i = 0; i < pieces; ++i)
        item(first_run, runs.size(), int(i * opt.passes / pieces),
             int((i + 1) * opt.passes / pieces), chunks_of[t]);
      out.split = true;
    } else {
      // Every pass alone, its chunks cut into `per_pass` pieces at chunk boundaries.
      const Index per_pass = ceil_div(pieces, opt.passes);
      std::vector<TileRun32> cut;
      std::vector<size_t> piece_end;  // in `cut`
      Index done = 0, piece = 1;
      for (size_t r = first_run; r < runs.size(); ++r) {
        TileRun32 run = runs[r];
        while (run.begin < run.end) {
          const Index boundary = piece * chunks_of[t] / per_pass;  // chunks before the cut
          const Index n = ceil_div(run.end - run.begin, chunk);
          if (done + n <= boundary) {
            cut.push_back(run);
            done += n;
            break;
          }
          const Index take = boundary - done;
          if (take > 0) {
            TileRun32 head = run;
            head.end = std::int32_t(run.begin + take * chunk);
            cut.push_back(head);
            run.begin = head.end;
            if (run.bits >= 0) run.bits += std::int32_t(take);
            done += take;
          }
          piece_end.push_back(cut.size());
          ++piece;
        }
      }
      piece_end.push_back(cut.size());
      runs.resize(first_run);
      runs.insert(runs.end(), cut.begin(), cut.end());
      for (int p = 0; p < opt.passes; ++p) {
        size_t b = 0;
        for (size_t e : piece_end) {
          if (e > b) {
            Index n = 0;
            for (size_t r = b; r < e; ++r) n += ceil_div(cut[r].end - cut[r].begin, chunk);
            item(first_run + b, first_run + e, p, p + 1, n);
          }
          b = e;
        }
      }
      out.split = true;
    }
    offsets.push_back(std::int32_t(runs.size()));
  }
  out.runs = std::move(runs);
  out.offsets = std::move(offsets);

  std::vector<size_t> order(out.items.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return weight[a] > weight[b]; });
  std::vector<WorkItem> sorted(order.size());
  for (size_t i = 0; i < order.size(); ++i) sorted[i] = out.items[order[i]];
  out.items = std::move(sorted);
  return out;
}

// ---- device copy ------------------------------------------------------------------------------

namespace {

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

template <class T>
void put(std::vector<unsigned char>& staging, size_t at, const std::vector<T>& v) {
  if (!v.empty()) std::memcpy(staging.data() + at, v.data(), v.size() * sizeof(T));
}

}  // namespace

DeviceMask::DeviceMask(const MaskTiles& host) : shape_(host.shape), issued_area_(host.issued_area) {
  std::vector<ItemRecord> items(host.items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const WorkItem& it = host.items[i];
    ItemRecord& r = items[i];
    r.outer_begin = host.outer[size_t(it.outer)].begin;
    r.outer_end = host.outer[size_t(it.outer)].end;
    r.run_begin = it.run_begin;
    r.run_end = it.run_end;
    r.passes = (std::int32_t(it.pass_begin) & 0xffff) | (std::int32_t(it.pass_end) << 16);
    if (it.run_begin < it.run_end) {
      const TileRun32& first = host.runs[size_t(it.run_begin)];
      r.first_begin = first.begin;
      r.first_end = first.end;
      r.first_bits = first.bits;
    }
  }
  const size_t o_runs = 0;
  const size_t o_bits = o_runs + align_up(host.runs.size() * sizeof(TileRun32));
  const size_t o_items = o_bits + align_up(host.bits.size() * sizeof(std::uint32_t));
  const size_t total = o_items + align_up(items.size() * sizeof(ItemRecord)) + 256;
  std::vector<unsigned char> staging(total, 0);
  put(staging, o_runs, host.runs);
  put(staging, o_bits, host.bits);
  put(staging, o_items, items);
  if (const cudaError_t e = cudaMalloc(&block_, total); e != cudaSuccess) {
    (void)cudaGetLastError();
    block_ = nullptr;
    if (e == cudaErrorMemoryAllocation)
      throw DeviceOutOfMemory(fmt::format("flash: {} bytes for the mask tiles", total));
    throw std::runtime_error(std::string("flash: cudaMalloc: ") + cudaGetErrorString(e));
  }
  if (const cudaError_t e = cudaMemcpy(block_, staging.data(), total, cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    cudaFree(block_);
    block_ = nullptr;
    throw std::runtime_error(std::string("flash: copying the mask tiles: ") +
                             cudaGetErrorString(e));
  }
  auto* base = static_cast<unsigned char*>(block_);
  view_.runs = reinterpret_cast<const TileRun32*>(base + o_runs);
  view_.bits = reinterpret_cast<const std::uint32_t*>(base + o_bits);
  view_.items = reinterpret_cast<const ItemRecord*>(base + o_items);
  view_.num_items = std::int32_t(host.items.size());
  view_.has_partial = host.bits.empty() ? 0 : 1;
  view_.split = host.split ? 1 : 0;
}

DeviceMask::DeviceMask(DeviceMask&& o) noexcept
    : block_(o.block_), view_(o.view_), shape_(o.shape_), issued_area_(o.issued_area_) {
  o.block_ = nullptr;
  o.view_ = {};
}

DeviceMask& DeviceMask::operator=(DeviceMask&& o) noexcept {
  if (this != &o) {
    if (block_) cudaFree(block_);
    block_ = o.block_;
    view_ = o.view_;
    shape_ = o.shape_;
    issued_area_ = o.issued_area_;
    o.block_ = nullptr;
    o.view_ = {};
  }
  return *this;
}

DeviceMask::~DeviceMask() {
  if (block_) cudaFree(block_);
}

}  // namespace longattn::flash

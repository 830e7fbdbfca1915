// Shared pieces of the MaskTiles producers (tile_prep.hpp).
#include "tile_prep.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "longattn/error.hpp"

namespace longattn::flash {

void check_prepare_args(TileShape shape, const PrepareOptions& opt) {
  if (shape.rows <= 0 || shape.cols <= 0 || shape.cols % 32 != 0)
    throw InputError(fmt::format(
        "flash tile shape {}x{}: rows must be positive and keys a positive multiple of 32",
        shape.rows, shape.cols));
  if (opt.passes < 1 || opt.passes > 32767 || opt.heads < 1)
    throw InputError(fmt::format("flash: {} passes of {} heads", opt.passes, opt.heads));
}

void check_positions(Index sq, Index sk) {
  if (sq >= kMaxPosition || sk >= kMaxPosition)
    throw InputError(
        fmt::format("flash: sequence lengths {} x {} exceed 32-bit positions", sq, sk));
}

void set_bits(std::uint32_t* row, Index begin, Index end) {
  while (begin < end) {
    const Index w = begin / 32, lo = begin % 32;
    const Index hi = std::min<Index>(32, lo + (end - begin));
    const std::uint32_t span = hi - lo == 32 ? ~0u : ((1u << (hi - lo)) - 1u) << lo;
    row[w] |= span;
    begin += hi - lo;
  }
}

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

void add_work_items(MaskTiles& out, const std::vector<Index>& chunks_of, const PrepareOptions& opt) {
  const Index chunk = out.key_major ? out.shape.rows : out.shape.cols;
  // Per-KV-head masks: the head whose outer tiles hold tile t.
  auto kv_head_of = [&](size_t t) {
    if (out.head_outer.empty()) return 0;
    return int(std::upper_bound(out.head_outer.begin(), out.head_outer.end(), std::int32_t(t)) -
               out.head_outer.begin()) - 1;
  };
  // Work items: one per outer tile, or, when a tile outweighs a fair share of a CTA's work, its
  // passes and then its chunks split across several.
  Index total = 0;
  for (Index c : chunks_of) total += c * opt.passes;
  const bool split = opt.allow_split && opt.num_sms > 0;
  const Index target =
      split ? std::max<Index>(8, ceil_div(total * opt.heads, Index(2) * opt.num_sms)) : 0;
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
      it.kv_head = std::int16_t(kv_head_of(t));
      it.run_begin = std::int32_t(r0);
      it.run_end = std::int32_t(r1);
      it.pass_begin = std::int16_t(p0);
      it.pass_end = std::int16_t(p1);
      out.items.push_back(it);
      weight.push_back(chunks * (p1 - p0));
    };
    const Index pieces = split ? ceil_div(std::max<Index>(w, 1), target) : 1;
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
}

}  // namespace longattn::flash

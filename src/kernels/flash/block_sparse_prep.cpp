// MaskTiles for block-sparse masks (flash.hpp, prepare_block_sparse_mask): per KV head, from its
// kept lists (q->k forward, the host transpose k->q backward), without rasterising. The lines of
// an outer tile fall into the blocks it overlaps; every line of one block sees the same kept
// positions (cut by the diagonal when causal), so unions, full chunks and bitmasks all follow
// from a few position ranges per block.
#include <algorithm>
#include <span>

#include <fmt/format.h>

#include "longattn/error.hpp"
#include "longattn/kernels/flash.hpp"
#include "longattn/views/block_lists.hpp"
#include "tile_prep.hpp"

namespace longattn::flash {

namespace {

// Per block row, its kept blocks as merged position ranges (adjacent blocks joined), ascending.
class KeptRanges {
 public:
  KeptRanges(const BlockLists& lists, const BlockPartition& blocks) : offsets_{0} {
    for (Index r = 0; r < lists.num_rows(); ++r) {
      for (auto e = lists.offsets[r]; e < lists.offsets[r + 1]; ++e) {
        const Range b = blocks.block(lists.indices[e]);
        const bool joins = Index(ranges_.size()) > offsets_.back() && ranges_.back().end == b.begin;
        if (joins) ranges_.back().end = b.end;
        else ranges_.push_back(b);
      }
      offsets_.push_back(Index(ranges_.size()));
    }
  }
  std::span<const Range> row(Index r) const {
    return {ranges_.data() + offsets_[r], size_t(offsets_[r + 1] - offsets_[r])};
  }

 private:
  std::vector<Index> offsets_;
  std::vector<Range> ranges_;
};

bool covers(std::span<const Range> ranges, Range c) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), c.begin,
                             [](Index x, const Range& r) { return x < r.end; });
  return it != ranges.end() && it->begin <= c.begin && c.end <= it->end;
}

// The lines of one outer tile inside one block, and what each of them may see.
struct LineGroup {
  Range lines;
  std::span<const Range> kept;  // inner positions, before the causal cut
};

// Which side of the diagonal a pair must be on, seen from the outer axis.
struct CausalCut {
  bool on = false;
  bool key_major = false;
  // The inner positions some line of the group sees: forward keys <= the last row, backward
  // queries >= the first key.
  Range visible(const LineGroup& g, Index extent) const {
    if (!on) return {0, extent};
    return key_major ? Range{g.lines.begin, extent} : Range{0, g.lines.end};
  }
  // Every line of the group sees every position of chunk c.
  bool whole(const LineGroup& g, Range c) const {
    if (!on) return true;
    return key_major ? c.begin >= g.lines.end - 1 : c.end - 1 <= g.lines.begin;
  }
};

// The bitmask of tile (queries q, keys k) of one head: per query row, its kept keys in k.
void append_tile_bits(std::vector<std::uint32_t>& bits, const KeptRanges& q_to_k,
                      const BlockPartition& blocks, bool causal, TileShape shape, Range q,
                      Range k) {
  const Index words = shape.cols / 32;
  const size_t at = bits.size();
  bits.resize(at + size_t(shape.rows * words), 0u);
  for (Index i = q.begin; i < q.end; ++i) {
    std::uint32_t* row = bits.data() + at + (i - q.begin) * words;
    const Range keys = causal ? k.intersect({0, i + 1}) : k;
    const auto line = q_to_k.row(blocks.block_of(i));
    auto it = std::upper_bound(line.begin(), line.end(), keys.begin,
                               [](Index x, const Range& r) { return x < r.end; });
    for (; it != line.end() && it->begin < keys.end; ++it) {
      const Range cut = it->intersect(keys);
      if (!cut.empty()) set_bits(row, cut.begin - k.begin, cut.end - k.begin);
    }
  }
}

}  // namespace

MaskTiles prepare_block_sparse_mask(const BlockSparseMask& m, TileShape shape, bool key_major,
                                    const PrepareOptions& opt) {
  check_prepare_args(shape, opt);
  const Index s = m.seqlen();
  check_positions(s, s);
  const BlockPartition& blocks = m.blocks();

  MaskTiles out;
  out.shape = shape;
  out.key_major = key_major;
  out.seqlen_q = out.seqlen_k = s;
  const Index outer_tile = key_major ? shape.cols : shape.rows;
  const Index chunk = key_major ? shape.rows : shape.cols;
  const std::vector<TileSpan> tiles = cut_outer(blocks.starts(), s, outer_tile);
  const BlockIndexLists lists = block_index_lists(m);
  const CausalCut causal{m.causal(), key_major};

  std::vector<Index> chunks_of;
  std::vector<LineGroup> groups;
  std::vector<Range> uni;
  out.offsets.push_back(0);
  for (int h = 0; h < m.num_heads(); ++h) {
    const KeptRanges q_to_k(lists.q_to_k[size_t(h)], blocks);
    const KeptRanges outer_lists = key_major ? KeptRanges(lists.k_to_q[size_t(h)], blocks) : q_to_k;
    out.head_outer.push_back(std::int32_t(out.outer.size()));
    for (const TileSpan& tile : tiles) {
      const Range span{tile.begin, tile.end};
      groups.clear();
      for (Index b = blocks.block_of(span.begin); b < blocks.num_blocks(); ++b) {
        const Range lines = blocks.block(b).intersect(span);
        if (lines.empty()) break;
        groups.push_back({lines, outer_lists.row(b)});
      }
      // Union of what the tile's lines see, sorted and merged.
      uni.clear();
      for (const LineGroup& g : groups)
        for (const Range r : g.kept) {
          const Range seen = r.intersect(causal.visible(g, s));
          if (!seen.empty()) uni.push_back(seen);
        }
      std::sort(uni.begin(), uni.end(), [](Range a, Range b) { return a.begin < b.begin; });
      size_t n_uni = 0;
      for (const Range r : uni) {
        if (n_uni > 0 && r.begin <= uni[n_uni - 1].end)
          uni[n_uni - 1].end = std::max(uni[n_uni - 1].end, r.end);
        else
          uni[n_uni++] = r;
      }
      uni.resize(n_uni);

      Index chunks = 0;
      for (const Range u : uni) {
        auto chunk_at = [&](Index i) {
          return Range{u.begin + i * chunk, std::min(u.end, u.begin + (i + 1) * chunk)};
        };
        auto full = [&](Range c) {
          if (!key_major && c.size() != chunk) return false;  // forward full chunks hold 64 keys
          return std::all_of(groups.begin(), groups.end(), [&](const LineGroup& g) {
            return causal.whole(g, c) && covers(g.kept, c);
          });
        };
        const Index n_chunks = ceil_div(u.size(), chunk);
        for (Index c = 0; c < n_chunks;) {
          // A run of chunks of one kind.
          const bool kind = full(chunk_at(c));
          Index e = c + 1;
          while (e < n_chunks && full(chunk_at(e)) == kind) ++e;
          TileRun32 run;
          run.begin = std::int32_t(chunk_at(c).begin);
          run.end = std::int32_t(chunk_at(e - 1).end);
          run.bits = -1;
          if (!kind) {
            run.bits = std::int32_t(out.partial_tiles());
            if (Index(run.bits) + (e - c) >= kMaxPosition)
              throw InputError("flash: too many partial tiles");
            for (Index i = c; i < e; ++i)
              append_tile_bits(out.bits, q_to_k, blocks, m.causal(), shape,
                               key_major ? chunk_at(i) : span, key_major ? span : chunk_at(i));
          }
          for (Index i = c; i < e; ++i) out.issued_area += span.size() * chunk_at(i).size();
          out.runs.push_back(run);
          chunks += e - c;
          c = e;
        }
      }
      out.outer.push_back(tile);
      out.offsets.push_back(std::int32_t(out.runs.size()));
      chunks_of.push_back(chunks);
      if (Index(out.runs.size()) >= kMaxPosition) throw InputError("flash: too many tile runs");
    }
  }
  out.head_outer.push_back(std::int32_t(out.outer.size()));
  add_work_items(out, chunks_of, opt);
  return out;
}

}  // namespace longattn::flash

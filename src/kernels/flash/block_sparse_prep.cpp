// MaskTiles for block-sparse masks (flash.hpp, prepare_block_sparse_mask): per KV head, from its
// kept lists (q->k forward; k->q backward, transposed on the host or handed in from the device),
// without rasterising. The lines of an outer tile fall into the blocks it overlaps; every line of
// one block sees the same kept positions (cut by the diagonal when causal), so unions, full
// chunks and bitmasks all follow from a few position ranges per block. Partial chunks repeat a
// handful of shapes (a dropped neighbour block, a short tail, the diagonal), so their bitmasks
// are stored once per shape: each partial chunk is a run of its own pointing at its shape's.
#include <algorithm>
#include <limits>
#include <span>
#include <unordered_map>
#include <vector>

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

// A bitmask shape's key (tile_signature) and its hash.
using Signature = std::vector<std::int32_t>;
struct SignatureHash {
  size_t operator()(const Signature& s) const {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the values
    for (const std::int32_t v : s) h = (h ^ std::uint32_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

// What decides the bitmask of tile (queries q, keys k), relative to the tile's corner: each query
// block's rows and its kept keys inside k, and where the diagonal crosses (causal). Equal
// signatures give equal bitmasks.
void tile_signature(Signature& sig, const KeptRanges& q_to_k,
                    const BlockPartition& blocks, bool causal, Range q, Range k) {
  sig.clear();
  const bool cut = causal && q.begin < k.end - 1;  // some row misses some key of k
  sig.push_back(cut ? std::int32_t(q.begin - k.begin) : std::numeric_limits<std::int32_t>::min());
  for (Index b = blocks.block_of(q.begin); b < blocks.num_blocks(); ++b) {
    const Range rows = blocks.block(b).intersect(q);
    if (rows.empty()) break;
    sig.push_back(std::int32_t(rows.begin - q.begin));
    sig.push_back(std::int32_t(rows.end - q.begin));
    const auto line = q_to_k.row(b);
    auto it = std::upper_bound(line.begin(), line.end(), k.begin,
                               [](Index x, const Range& r) { return x < r.end; });
    for (; it != line.end() && it->begin < k.end; ++it) {
      const Range seen = it->intersect(k);
      sig.push_back(std::int32_t(seen.begin - k.begin));
      sig.push_back(std::int32_t(seen.end - k.begin));
    }
    sig.push_back(-1);
  }
}

}  // namespace

MaskTiles prepare_block_sparse_mask(const BlockSparseMask& m, TileShape shape, bool key_major,
                                    std::span<const BlockLists> k_to_q,
                                    const PrepareOptions& opt) {
  check_prepare_args(shape, opt);
  const Index s = m.seqlen();
  check_positions(s, s);
  const BlockPartition& blocks = m.blocks();
  if (key_major) {
    if (Index(k_to_q.size()) != m.num_heads())
      throw InputError(fmt::format("flash: {} k->q lists for a block-sparse mask of {} heads",
                                   k_to_q.size(), m.num_heads()));
    for (const BlockLists& l : k_to_q)
      if (l.num_rows() != blocks.num_blocks() ||
          Index(l.indices.size()) != m.kept_blocks(int(&l - k_to_q.data())))
        throw InputError(fmt::format("flash: k->q lists of {} rows, {} entries for {} blocks",
                                     l.num_rows(), l.indices.size(), blocks.num_blocks()));
  }

  MaskTiles out;
  out.shape = shape;
  out.key_major = key_major;
  out.seqlen_q = out.seqlen_k = s;
  const Index outer_tile = key_major ? shape.cols : shape.rows;
  const Index chunk = key_major ? shape.rows : shape.cols;
  const std::vector<TileSpan> tiles = cut_outer(blocks.starts(), s, outer_tile);
  const CausalCut causal{m.causal(), key_major};

  std::vector<Index> chunks_of;
  std::vector<LineGroup> groups;
  std::vector<Range> uni;
  // Bitmask shapes seen so far: signature -> partial tile index.
  std::unordered_map<Signature, std::int32_t, SignatureHash> shapes;
  Signature sig;
  out.offsets.push_back(0);
  for (int h = 0; h < m.num_heads(); ++h) {
    const KeptRanges q_to_k(m.kept(h), blocks);
    const KeptRanges outer_ranges = key_major ? KeptRanges(k_to_q[size_t(h)], blocks) : q_to_k;
    out.head_outer.push_back(std::int32_t(out.outer.size()));
    for (const TileSpan& tile : tiles) {
      const Range span{tile.begin, tile.end};
      groups.clear();
      for (Index b = blocks.block_of(span.begin); b < blocks.num_blocks(); ++b) {
        const Range lines = blocks.block(b).intersect(span);
        if (lines.empty()) break;
        groups.push_back({lines, outer_ranges.row(b)});
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
        for (Index c = 0; c < n_chunks; ++c)
          out.issued_area += span.size() * chunk_at(c).size();
        chunks += n_chunks;
        for (Index c = 0; c < n_chunks;) {
          if (!full(chunk_at(c))) {
            // A partial chunk: a run of its own, with its shape's bitmask.
            const Range q = key_major ? chunk_at(c) : span, k = key_major ? span : chunk_at(c);
            tile_signature(sig, q_to_k, blocks, m.causal(), q, k);
            auto [at, added] = shapes.try_emplace(sig, std::int32_t(out.partial_tiles()));
            if (added) {
              if (Index(at->second) + 1 >= kMaxPosition)
                throw InputError("flash: too many partial tiles");
              append_tile_bits(out.bits, q_to_k, blocks, m.causal(), shape, q, k);
            }
            out.runs.push_back({std::int32_t(chunk_at(c).begin), std::int32_t(chunk_at(c).end),
                                at->second, 0});
            ++c;
            continue;
          }
          // A run of full chunks.
          Index e = c + 1;
          while (e < n_chunks && full(chunk_at(e))) ++e;
          out.runs.push_back({std::int32_t(chunk_at(c).begin), std::int32_t(chunk_at(e - 1).end),
                              -1, 0});
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
  // out.descending stays false: the static masks' rule (prepare_mask) models a key tile's
  // queries as one span, but kept blocks are scattered, and neighbouring tiles' positions in their
  // lists drift apart per chunk, which the descending walk's heads-innermost order multiplies
  // (blocks of 128 at keep 0.5: 488 -> 464 TF/s at 32K, 413 -> 330 at 64K;
  // docs/results/hopper_h100/s7/, call k).
  // Items grouped by KV head, each head's heaviest first. Query-major (never split: one per outer
  // tile, as many per head), the kernels' grid z is the head, y its items; key-major, the CTAs
  // resident together then walk one head's Q, dO and dQ rows, which stay in L2, instead of every
  // head's at once.
  std::stable_sort(out.items.begin(), out.items.end(),
                   [](const WorkItem& a, const WorkItem& b) { return a.kv_head < b.kv_head; });
  return out;
}

MaskTiles prepare_block_sparse_mask(const BlockSparseMask& m, TileShape shape, bool key_major,
                                    const PrepareOptions& opt) {
  if (!key_major) return prepare_block_sparse_mask(m, shape, false, {}, opt);
  const BlockIndexLists lists = block_index_lists(m);  // the host transpose
  return prepare_block_sparse_mask(m, shape, key_major, lists.k_to_q, opt);
}

}  // namespace longattn::flash

// Conformance of every view with the dense mask, for all 14 patterns at odd and even sizes and many
// seeds, and for random slice masks of every slice type. The reference bitmap is built pair by
// pair from the rule of DESIGN.md section 2 (with the documents and prefixes the generator
// reports), independently of the slices; every view is rasterised back and compared bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <variant>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/patterns.hpp"
#include "longattn/rng.hpp"
#include "longattn/views/block_lists.hpp"
#include "longattn/views/cu_seqlens.hpp"
#include "longattn/views/dense.hpp"
#include "longattn/views/flashmask.hpp"
#include "longattn/views/row_intervals.hpp"
#include "longattn/views/tile_map.hpp"
#include "longattn/views/uniform_band.hpp"

namespace longattn {
namespace {

std::string str(Range r) {
  return "[" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ")";
}

// ----------------------------------------------------------------------------------------------
// The reference: DESIGN.md section 2, one pair at a time.

class Rule {
 public:
  explicit Rule(const GeneratedMask& g) : g_(g), p_(g.spec.params) {
    const Index s = g.spec.seqlen;
    if (g.documents) {
      doc_.resize(size_t(s));
      for (Index d = 0; d < g.documents->count(); ++d)
        for (Index i = g.documents->doc(d).begin; i < g.documents->doc(d).end; ++i) doc_[i] = d;
    }
    if (auto* b = std::get_if<BlockSparseMask>(&g.mask)) {
      block_.resize(size_t(s));
      const Index n = b->blocks().num_blocks();
      for (Index blk = 0; blk < n; ++blk)
        for (Index i = b->blocks().block(blk).begin; i < b->blocks().block(blk).end; ++i)
          block_[i] = blk;
      for (int h = 0; h < b->num_heads(); ++h) {
        std::vector<char> kept(size_t(n * n), 0);
        const BlockLists& l = b->kept(h);
        for (Index r = 0; r < l.num_rows(); ++r)
          for (Index e = l.offsets[r]; e < l.offsets[r + 1]; ++e) kept[r * n + l.indices[e]] = 1;
        kept_.push_back(std::move(kept));
      }
      blocks_ = n;
    }
  }

  bool allows(int head, Index i, Index j) const {
    const Index w = p_.window, g = p_.global;
    auto same = [&] { return doc_[i] == doc_[j]; };
    auto start = [&] { return g_.documents->doc(doc_[i]).begin; };
    switch (g_.spec.pattern) {
      case Pattern::full:
        return true;
      case Pattern::causal:
        return j <= i;
      case Pattern::full_document:
        return same();
      case Pattern::causal_document:
        return same() && j <= i;
      case Pattern::sliding_window:
        return std::abs(i - j) <= w;
      case Pattern::sliding_window_causal:
        return 0 <= i - j && i - j <= w;
      case Pattern::shared_question:
        return (doc_[j] == 0 || same()) && j <= i;
      case Pattern::causal_blockwise:
        return (doc_[i] == g_.documents->count() - 1 || same()) && j <= i;
      case Pattern::prefix_lm_causal:
        return j < std::max(g_.prefixes.at(0), i + 1);
      case Pattern::prefix_lm_document:
        return same() && (j - start() < g_.prefixes.at(size_t(doc_[i])) || j <= i);
      case Pattern::global_sliding_window:
        return i < g || j < g || std::abs(i - j) <= w;
      case Pattern::block_causal_document:
        return same() && (j - start()) / p_.block <= (i - start()) / p_.block;
      case Pattern::block_sparse_uniform:
      case Pattern::block_sparse_variable:
        return kept_[head][block_[i] * blocks_ + block_[j]] &&
               (!std::get<BlockSparseMask>(g_.mask).causal() || j <= i);
    }
    return false;
  }

  DenseMask dense(int head = 0) const {
    const Index s = g_.spec.seqlen;
    DenseMask d(s, s);
    for (Index i = 0; i < s; ++i)
      for (Index j = 0; j < s; ++j)
        if (allows(head, i, j)) d.set(i, j);
    return d;
  }

 private:
  const GeneratedMask& g_;
  const MaskParams& p_;
  std::vector<Index> doc_, block_;
  std::vector<std::vector<char>> kept_;
  Index blocks_ = 0;
};

// The slice semantics of mask.hpp, from the row/column formulas (not from Slice's helpers).
bool slice_rule(const Slice& s, Index i, Index j) {
  if (!s.q.contains(i) || !s.k.contains(j)) return false;
  const Index r = i - s.q.begin, c = j - s.k.begin, d = s.k.size() - s.q.size();
  const bool causal = c <= r + d, inv = c >= r;
  switch (s.type) {
    case SliceType::full:
      return true;
    case SliceType::causal:
      return causal;
    case SliceType::inv_causal:
      return inv;
    case SliceType::band:
      return causal && inv;
  }
  return false;
}

DenseMask slice_rule_dense(const SliceMask& m) {
  DenseMask d(m.seqlen_q(), m.seqlen_k());
  for (const Slice& s : m.slices())
    for (Index i = s.q.begin; i < s.q.end; ++i)
      for (Index j = s.k.begin; j < s.k.end; ++j)
        if (slice_rule(s, i, j)) d.set(i, j);
  return d;
}

// ----------------------------------------------------------------------------------------------
// Comparisons and rasterisers.

testing::AssertionResult same_bits(const DenseMask& got, const DenseMask& want) {
  if (got.rows() != want.rows() || got.cols() != want.cols())
    return testing::AssertionFailure() << "shape " << got.rows() << "x" << got.cols()
                                       << " != " << want.rows() << "x" << want.cols();
  for (Index i = 0; i < want.rows(); ++i)
    for (Index j = 0; j < want.cols(); ++j)
      if (got.get(i, j) != want.get(i, j))
        return testing::AssertionFailure()
               << "first difference at (" << i << ", " << j << "): view " << got.get(i, j)
               << ", mask " << want.get(i, j);
  return testing::AssertionSuccess();
}

DenseMask transpose(const DenseMask& d) {
  DenseMask t(d.cols(), d.rows());
  for (Index i = 0; i < d.rows(); ++i)
    for (Index j = 0; j < d.cols(); ++j)
      if (d.get(i, j)) t.set(j, i);
  return t;
}

// Lines must be sorted, non-empty, inside the extent, disjoint and not even adjacent.
testing::AssertionResult well_formed(const RowIntervals& r, Index lines, Index extent) {
  if (r.seqlen_q() != lines || r.seqlen_k != extent)
    return testing::AssertionFailure() << "shape " << r.seqlen_q() << "x" << r.seqlen_k;
  if (r.offsets.front() != 0 || r.offsets.back() != Index(r.keys.size()))
    return testing::AssertionFailure() << "offsets do not span the intervals";
  Index most = 0;
  for (Index i = 0; i < lines; ++i) {
    most = std::max<Index>(most, Index(r.row(i).size()));
    Index prev_end = -1;
    for (Range k : r.row(i)) {
      if (k.empty() || k.begin < 0 || k.end > extent || k.begin <= prev_end)
        return testing::AssertionFailure()
               << "line " << i << " interval " << str(k) << " after end " << prev_end;
      prev_end = k.end;
    }
  }
  if (most != r.max_intervals_per_row())
    return testing::AssertionFailure()
           << "max_intervals_per_row " << r.max_intervals_per_row() << " != " << most;
  return testing::AssertionSuccess();
}

DenseMask rasterise(const RowIntervals& r) {
  DenseMask d(r.seqlen_q(), r.seqlen_k);
  for (Index i = 0; i < r.seqlen_q(); ++i)
    for (Range k : r.row(i))
      for (Index j = k.begin; j < k.end; ++j) d.set(i, j);
  return d;
}

void check_row_intervals(const RowIntervals& r, const DenseMask& want) {
  ASSERT_TRUE(well_formed(r, want.rows(), want.cols()));
  EXPECT_TRUE(same_bits(rasterise(r), want)) << "row intervals";
  for (Index i = 0; i < want.rows(); ++i) {
    Index n = 0;
    for (Index j = 0; j < want.cols(); ++j) n += want.get(i, j);
    ASSERT_EQ(r.row_count(i), n) << "row " << i;
  }
}

// 2-D prefix sums of the bitmap: the allowed pairs of any rectangle in O(1).
class PairCounts {
 public:
  explicit PairCounts(const DenseMask& d)
      : cols_(d.cols() + 1), sum_(size_t((d.rows() + 1) * cols_), 0) {
    for (Index i = 0; i < d.rows(); ++i)
      for (Index j = 0; j < d.cols(); ++j)
        sum_[(i + 1) * cols_ + j + 1] =
            sum_[i * cols_ + j + 1] + sum_[(i + 1) * cols_ + j] - sum_[i * cols_ + j] + d.get(i, j);
  }
  Index count(Range rows, Range keys) const {
    return sum_[rows.end * cols_ + keys.end] - sum_[rows.begin * cols_ + keys.end] -
           sum_[rows.end * cols_ + keys.begin] + sum_[rows.begin * cols_ + keys.begin];
  }

 private:
  Index cols_;
  std::vector<Index> sum_;
};

void check_tile_map(const TileMap& map, const DenseMask& want, const PairCounts& pairs,
                    TileShape shape) {
  SCOPED_TRACE("tile shape " + std::to_string(shape.rows) + "x" + std::to_string(shape.cols));
  const Index nq = ceil_div(want.rows(), shape.rows), nk = ceil_div(want.cols(), shape.cols);
  ASSERT_EQ(map.num_q_tiles(), nq);
  ASSERT_EQ(map.num_k_tiles(), nk);
  ASSERT_EQ(map.offsets.front(), 0);
  ASSERT_EQ(map.offsets.back(), Index(map.runs.size()));
  Index full = 0, partial = 0, issued = 0;
  std::vector<int> kind(static_cast<size_t>(nk));  // -1 absent, else TileKind
  for (Index t = 0; t < nq; ++t) {
    const Range rows{t * shape.rows, std::min((t + 1) * shape.rows, want.rows())};
    ASSERT_EQ(map.q_tile(t), rows);
    std::fill(kind.begin(), kind.end(), -1);
    Index tile_full = 0, tile_partial = 0;
    for (Index r = map.offsets[t]; r < map.offsets[t + 1]; ++r) {
      const TileRun& run = map.runs[r];
      ASSERT_FALSE(run.tiles.empty()) << "q tile " << t;
      ASSERT_TRUE(run.tiles.begin >= 0 && run.tiles.end <= nk) << "q tile " << t;
      if (r > map.offsets[t]) {
        const TileRun& prev = map.runs[r - 1];
        ASSERT_LE(prev.tiles.end, run.tiles.begin) << "q tile " << t << ": runs not ascending";
        ASSERT_FALSE(prev.tiles.end == run.tiles.begin && prev.kind == run.kind)
            << "q tile " << t << ": adjacent runs of one kind are not merged";
      }
      for (Index k = run.tiles.begin; k < run.tiles.end; ++k) kind[k] = int(run.kind);
      (run.kind == TileKind::full ? tile_full : tile_partial) += run.tiles.size();
    }
    ASSERT_EQ(map.full_tiles(t), tile_full);
    ASSERT_EQ(map.partial_tiles(t), tile_partial);
    for (Index k = 0; k < nk; ++k) {
      const Range keys{k * shape.cols, std::min((k + 1) * shape.cols, want.cols())};
      ASSERT_EQ(map.k_tile(k), keys);
      const Index allowed = pairs.count(rows, keys), area = rows.size() * keys.size();
      const int expected =
          allowed == 0 ? -1 : int(allowed == area ? TileKind::full : TileKind::partial);
      ASSERT_EQ(kind[k], expected) << "tile (" << t << ", " << k << ") has " << allowed << " of "
                                   << area << " pairs allowed (-1 absent, 0 full, 1 partial)";
      if (expected >= 0) issued += area;
      full += expected == int(TileKind::full);
      partial += expected == int(TileKind::partial);
    }
  }
  EXPECT_EQ(map.total_full(), full);
  EXPECT_EQ(map.total_partial(), partial);
  EXPECT_EQ(map.issued_area(), issued);
}

// FlashMask, from the bitmap: each column's maximal masked row runs, placed by the header's rule.
void check_flashmask(const SliceMask& m, const DenseMask& want) {
  const Index sq = want.rows();
  FlashMaskBounds expected;
  expected.seqlen_q = sq;
  Index bad_column = -1;
  for (Index j = 0; j < want.cols(); ++j) {
    std::vector<Range> masked;
    for (Index i = 0; i < sq; ++i)
      if (!want.get(i, j)) {
        if (!masked.empty() && masked.back().end == i)
          ++masked.back().end;
        else
          masked.push_back({i, i + 1});
      }
    if (masked.size() > 2) {
      bad_column = j;
      break;
    }
    Range ut{0, 0}, lt{sq, sq};
    if (masked.size() == 2) {
      ut = masked[0];
      lt = masked[1];
    } else if (masked.size() == 1) {
      (masked[0].end <= j + 1 ? ut : lt) = masked[0];
    }
    expected.uts.push_back(ut.begin);
    expected.ute.push_back(ut.end);
    expected.lts.push_back(lt.begin);
    expected.lte.push_back(lt.end);
  }
  const auto got = flashmask_bounds(m);
  if (bad_column >= 0) {
    ASSERT_TRUE(std::holds_alternative<NotExpressible>(got))
        << "column " << bad_column << " has more than two masked intervals";
    const std::string& reason = std::get<NotExpressible>(got).reason;
    EXPECT_NE(reason.find("column " + std::to_string(bad_column) + " "), std::string::npos)
        << reason;
    return;
  }
  ASSERT_TRUE(std::holds_alternative<FlashMaskBounds>(got)) << std::get<NotExpressible>(got).reason;
  const FlashMaskBounds& f = std::get<FlashMaskBounds>(got);
  EXPECT_EQ(f.seqlen_q, sq);
  EXPECT_EQ(f.uts, expected.uts);
  EXPECT_EQ(f.ute, expected.ute);
  EXPECT_EQ(f.lts, expected.lts);
  EXPECT_EQ(f.lte, expected.lte);
  DenseMask back(sq, want.cols());
  for (Index j = 0; j < want.cols(); ++j) {
    ASSERT_TRUE(0 <= f.uts[j] && f.uts[j] <= f.ute[j] && f.ute[j] <= f.lts[j] &&
                f.lts[j] <= f.lte[j] && f.lte[j] <= sq)
        << "column " << j;
    for (Index i = 0; i < sq; ++i)
      if (f.allows(i, j)) back.set(i, j);
  }
  EXPECT_TRUE(same_bits(back, want)) << "flashmask bounds";
}

// Document masks from the bitmap: a document starts at row i when (i, i - 1) is masked; the mask
// is a document mask when it equals the full or the causal mask of those documents.
void check_cu_seqlens(const SliceMask& m, const DenseMask& want) {
  const auto got = cu_seqlens(m);
  const Index s = want.rows();
  std::optional<CuSeqlens> expected;
  if (want.rows() == want.cols()) {
    std::vector<Index> starts;
    for (Index i = 0; i < s; ++i)
      if (i == 0 || !want.get(i, i - 1)) starts.push_back(i);
    starts.push_back(s);
    for (bool causal : {false, true}) {
      bool match = true;
      for (size_t d = 0; d + 1 < starts.size() && match; ++d)
        for (Index i = starts[d]; i < starts[d + 1] && match; ++i)
          for (Index j = 0; j < s && match; ++j)
            match = want.get(i, j) == (starts[d] <= j && j < starts[d + 1] && (!causal || j <= i));
      if (match) {
        expected = CuSeqlens{starts, causal};
        break;
      }
    }
  }
  if (!expected) {
    EXPECT_TRUE(std::holds_alternative<NotDocumentMask>(got)) << "not a document mask";
    if (auto* n = std::get_if<NotDocumentMask>(&got)) {
      EXPECT_FALSE(n->reason.empty());
    }
    return;
  }
  ASSERT_TRUE(std::holds_alternative<CuSeqlens>(got)) << std::get<NotDocumentMask>(got).reason;
  const CuSeqlens& c = std::get<CuSeqlens>(got);
  EXPECT_EQ(c.offsets, expected->offsets);
  EXPECT_EQ(c.causal, expected->causal);
  EXPECT_TRUE(same_bits(to_dense(document_mask(c)), want)) << "document_mask(cu_seqlens)";
}

// Uniform bands from the bitmap: the mask is a band iff every diagonal j - i is all allowed or all
// masked and the allowed diagonals are consecutive [lo, hi]; then left = -lo, right = hi, unset
// when the bound never clips (lo = -(Sq - 1), hi = Sk - 1). The empty mask is not reported.
std::optional<UniformBand> brute_band(const DenseMask& want) {
  const Index sq = want.rows(), sk = want.cols();
  std::vector<Index> allowed_diagonals;
  for (Index d = -(sq - 1); d <= sk - 1; ++d) {
    int seen = 0;  // bit 0: some allowed, bit 1: some masked
    for (Index i = std::max<Index>(0, -d); i < sq && i + d < sk; ++i)
      seen |= want.get(i, i + d) ? 1 : 2;
    if (seen == 3) return std::nullopt;
    if (seen == 1) allowed_diagonals.push_back(d);
  }
  if (allowed_diagonals.empty()) return std::nullopt;
  const Index lo = allowed_diagonals.front(), hi = allowed_diagonals.back();
  if (hi - lo + 1 != Index(allowed_diagonals.size())) return std::nullopt;
  UniformBand b;
  if (lo > -(sq - 1)) b.left = -lo;
  if (hi < sk - 1) b.right = hi;
  return b;
}

void check_uniform_band(const SliceMask& m, const DenseMask& want) {
  const auto got = uniform_band(m);
  const auto expected = brute_band(want);
  ASSERT_EQ(got.has_value(), expected.has_value());
  if (!got) return;
  EXPECT_EQ(got->left, expected->left);
  EXPECT_EQ(got->right, expected->right);
}

const std::vector<TileShape> kTileShapes{{16, 16}, {32, 64}, {64, 32}, {128, 128},
                                         {7, 13},  {1, 1},   {5, 300}};

// Every view of a static mask against its bitmap.
void check_static_views(const SliceMask& m, const DenseMask& want) {
  EXPECT_EQ(m.area(), want.popcount());
  EXPECT_TRUE(same_bits(to_dense(m), want)) << "to_dense";
  check_row_intervals(row_intervals(m), want);
  const DenseMask want_t = transpose(want);
  check_row_intervals(column_intervals(m), want_t);
  check_flashmask(m, want);
  check_cu_seqlens(m, want);
  check_uniform_band(m, want);
  const PairCounts pairs(want);
  for (TileShape shape : kTileShapes) check_tile_map(tile_map(m, shape), want, pairs, shape);
  // Backward passes walk the transposed mask's tile map.
  const PairCounts pairs_t(want_t);
  check_tile_map(tile_map(m.transposed(), {32, 16}), want_t, pairs_t, {32, 16});
}

void check_block_sparse_views(const BlockSparseMask& b, const Rule& rule) {
  const BlockIndexLists lists = block_index_lists(b);
  ASSERT_EQ(int(lists.q_to_k.size()), b.num_heads());
  ASSERT_EQ(int(lists.k_to_q.size()), b.num_heads());
  const Index n = b.blocks().num_blocks();
  Index total = 0;
  for (int h = 0; h < b.num_heads(); ++h) {
    SCOPED_TRACE("head " + std::to_string(h));
    const DenseMask want = rule.dense(h);
    total += want.popcount();
    EXPECT_EQ(b.area(h), want.popcount());
    EXPECT_TRUE(same_bits(to_dense(b, h), want)) << "to_dense(block sparse)";
    const RowIntervals rows = row_intervals(b, h);
    check_row_intervals(rows, want);

    // q->k is the kept lists; k->q its transpose, ascending; both rasterise to the mask.
    const BlockLists& qk = lists.q_to_k[h];
    const BlockLists& kq = lists.k_to_q[h];
    EXPECT_EQ(qk.offsets, b.kept(h).offsets);
    EXPECT_EQ(qk.indices, b.kept(h).indices);
    ASSERT_EQ(kq.num_rows(), n);
    ASSERT_EQ(kq.offsets.back(), Index(qk.indices.size()));
    std::vector<char> from_q(size_t(n * n), 0), from_k(size_t(n * n), 0);
    for (Index r = 0; r < n; ++r)
      for (Index e = qk.offsets[r]; e < qk.offsets[r + 1]; ++e) from_q[r * n + qk.indices[e]] = 1;
    DenseMask back(b.seqlen(), b.seqlen());
    for (Index c = 0; c < n; ++c)
      for (Index e = kq.offsets[c]; e < kq.offsets[c + 1]; ++e) {
        const Index r = kq.indices[e];
        ASSERT_TRUE(0 <= r && r < n);
        if (e > kq.offsets[c]) {
          ASSERT_LT(kq.indices[e - 1], r) << "k->q list " << c << " not ascending";
        }
        from_k[r * n + c] = 1;
        for (Index i = b.blocks().block(r).begin; i < b.blocks().block(r).end; ++i)
          for (Index j = b.blocks().block(c).begin; j < b.blocks().block(c).end; ++j)
            if (!b.causal() || j <= i) back.set(i, j);
      }
    EXPECT_EQ(from_q, from_k) << "k->q is not the transpose of q->k";
    EXPECT_TRUE(same_bits(back, want)) << "k->q lists";

    // The head as a static mask: the same intervals, and every static view.
    const SliceMask hm = b.head_mask(h);
    const RowIntervals via_slices = row_intervals(hm);
    EXPECT_EQ(via_slices.offsets, rows.offsets);
    EXPECT_EQ(via_slices.keys, rows.keys);
    check_static_views(hm, want);
  }
  EXPECT_EQ(b.total_area(), total);
}

// ----------------------------------------------------------------------------------------------
// The sweep over patterns, sizes, parameters and seeds.

const std::vector<Index> kSizes{1, 2, 7, 64, 127, 128, 129, 300, 513, 1000};

Histogram short_documents() { return {"short", {{{1, 8}, 0.5}, {{8, 40}, 0.5}}}; }

// Explicit documents of 1 to 6 tokens, so that one-token documents come first, last and between.
std::vector<Index> tiny_documents(Index s, int seed) {
  Rng rng(std::uint64_t(seed), 99);
  std::vector<Index> lens;
  for (Index filled = 0; filled < s; filled += lens.back())
    lens.push_back(std::min(rng.uniform_int(1, 6), s - filled));
  return lens;
}

// Parameter choices small enough to matter at size s.
std::vector<MaskParams> variants(Pattern p, Index s, int seed) {
  std::vector<MaskParams> out;
  MaskParams base;
  switch (p) {
    case Pattern::full:
    case Pattern::causal:
    case Pattern::prefix_lm_causal:
      out.push_back(base);
      break;
    case Pattern::full_document:
    case Pattern::causal_document:
    case Pattern::shared_question:
    case Pattern::causal_blockwise:
    case Pattern::prefix_lm_document: {
      out.push_back(base);  // the built-in histogram for S
      MaskParams shorts = base;
      shorts.histogram = short_documents();
      out.push_back(shorts);
      MaskParams tiny = base;
      tiny.doc_lens = tiny_documents(s, seed);
      out.push_back(tiny);
      break;
    }
    case Pattern::sliding_window:
    case Pattern::sliding_window_causal:
      for (Index w : {0, 5, 17, 50}) {
        MaskParams v = base;
        v.window = w;
        out.push_back(v);
      }
      break;
    case Pattern::global_sliding_window:
      for (auto [g, w] : {std::pair<Index, Index>{3, 5}, {7, 17}, {20, 50}}) {
        MaskParams v = base;
        v.global = g;
        v.window = w;
        out.push_back(v);
      }
      break;
    case Pattern::block_causal_document:
      for (Index b : {4, 16, 64}) {
        MaskParams v = base;
        v.block = b;
        out.push_back(v);
      }
      break;
    case Pattern::block_sparse_uniform:
    case Pattern::block_sparse_variable:
      for (Index blk : {16, 32})
        for (double keep : {0.2, 0.5, 0.8})
          for (bool causal : {false, true})
            for (int heads : {1, 2}) {
              MaskParams v = base;
              v.sparse_block = blk;
              v.min_block = 16;
              v.average_block = blk == 16 ? 32 : 48;
              v.keep = keep;
              v.sparse_causal = causal;
              v.sparse_heads = heads;
              out.push_back(v);
            }
      break;
  }
  return out;
}

// What the generator reports must be well formed, as the rule reads it.
void check_reported(const GeneratedMask& g) {
  const Index s = g.spec.seqlen;
  ASSERT_EQ(g.documents.has_value(), info(g.spec.pattern).uses_documents);
  if (g.documents) {
    ASSERT_EQ(g.documents->seqlen(), s);
  }
  if (g.spec.pattern == Pattern::prefix_lm_causal) {
    ASSERT_EQ(g.prefixes.size(), 1u);
    ASSERT_TRUE(1 <= g.prefixes[0] && g.prefixes[0] <= s);
  }
  if (g.spec.pattern == Pattern::prefix_lm_document) {
    ASSERT_EQ(Index(g.prefixes.size()), g.documents->count());
    for (Index d = 0; d < g.documents->count(); ++d)
      ASSERT_TRUE(1 <= g.prefixes[d] && g.prefixes[d] <= g.documents->lengths()[d]);
  }
  if (g.spec.pattern == Pattern::block_causal_document) {
    for (Index d = 0; d + 1 < g.documents->count(); ++d)
      ASSERT_EQ(g.documents->lengths()[d] % g.spec.params.block, 0) << "document " << d;
  }
}

// What each pattern is known to be, beyond the generic checks.
void check_pattern_specifics(const GeneratedMask& g, const SliceMask& m) {
  const Index s = g.spec.seqlen, w = g.spec.params.window;
  auto bound = [&](Index v) { return v < s - 1 ? std::optional<Index>(v) : std::nullopt; };
  const auto band = uniform_band(m);
  switch (g.spec.pattern) {
    case Pattern::full:
    case Pattern::causal:
    case Pattern::sliding_window:
    case Pattern::sliding_window_causal: {
      ASSERT_TRUE(band.has_value());
      const bool windowed = g.spec.pattern == Pattern::sliding_window ||
                            g.spec.pattern == Pattern::sliding_window_causal;
      const bool causal =
          g.spec.pattern == Pattern::causal || g.spec.pattern == Pattern::sliding_window_causal;
      EXPECT_EQ(band->left, windowed ? bound(w) : std::nullopt);
      EXPECT_EQ(band->right, causal ? bound(0) : windowed ? bound(w) : std::nullopt);
      break;
    }
    default:
      break;
  }
  // FlashMask must take the plain and document masks.
  if (g.spec.pattern == Pattern::full || g.spec.pattern == Pattern::causal ||
      g.spec.pattern == Pattern::causal_document || g.spec.pattern == Pattern::full_document) {
    EXPECT_TRUE(std::holds_alternative<FlashMaskBounds>(flashmask_bounds(m)));
  }
  // Document patterns give back exactly their documents.
  if (g.spec.pattern == Pattern::full_document || g.spec.pattern == Pattern::causal_document) {
    const auto c = cu_seqlens(m);
    ASSERT_TRUE(std::holds_alternative<CuSeqlens>(c)) << std::get<NotDocumentMask>(c).reason;
    EXPECT_EQ(std::get<CuSeqlens>(c).offsets, g.documents->starts());
    const bool any_long = std::any_of(g.documents->lengths().begin(), g.documents->lengths().end(),
                                      [](Index l) { return l > 1; });
    EXPECT_EQ(std::get<CuSeqlens>(c).causal,
              g.spec.pattern == Pattern::causal_document && any_long);
  }
}

class PatternViews : public testing::TestWithParam<Pattern> {};

TEST_P(PatternViews, EveryViewEqualsTheRule) {
  const Pattern pattern = GetParam();
  for (size_t size_index = 0; size_index < kSizes.size(); ++size_index) {
    const Index s = kSizes[size_index];
    const int seeds = s <= 300 ? 20 : 6;
    for (int seed = 0; seed < seeds; ++seed) {
      const std::vector<MaskParams> params = variants(pattern, s, seed);
      // Many variants: one per seed, rotating with the size so every one runs somewhere.
      const bool rotate = params.size() > 4;
      const size_t first = rotate ? (size_t(seed) + 5 * size_index) % params.size() : 0;
      const size_t last = rotate ? first + 1 : params.size();
      for (size_t v = first; v < last; ++v) {
        MaskSpec spec{pattern, s, params[v], std::uint64_t(seed)};
        spec.params.global = std::min(spec.params.global, s);  // global rows must fit in S
        const GeneratedMask g = make_mask(spec);
        SCOPED_TRACE(std::string(to_string(pattern)) + " S=" + std::to_string(s) + " variant " +
                     std::to_string(v) + " seed " + std::to_string(seed));
        check_reported(g);
        if (HasFatalFailure()) return;
        const Rule rule(g);
        if (auto* m = std::get_if<SliceMask>(&g.mask)) {
          check_static_views(*m, rule.dense());
          check_pattern_specifics(g, *m);
        } else {
          check_block_sparse_views(std::get<BlockSparseMask>(g.mask), rule);
        }
        if (HasFailure()) return;  // one failing case tells the story
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllPatterns, PatternViews,
    testing::Values(Pattern::full, Pattern::causal, Pattern::full_document,
                    Pattern::causal_document, Pattern::sliding_window,
                    Pattern::sliding_window_causal, Pattern::shared_question,
                    Pattern::causal_blockwise, Pattern::prefix_lm_causal,
                    Pattern::prefix_lm_document, Pattern::global_sliding_window,
                    Pattern::block_causal_document, Pattern::block_sparse_uniform,
                    Pattern::block_sparse_variable),
    [](const testing::TestParamInfo<Pattern>& p) { return std::string(to_string(p.param)); });

TEST(PatternViews, CoversEveryPattern) { EXPECT_EQ(all_patterns().size(), 14u); }

// ----------------------------------------------------------------------------------------------
// Random slice masks: every slice type, non-square shapes, slices with empty rows or no pairs.

SliceMask random_slice_mask(Rng& rng) {
  const Index sq = rng.uniform_int(1, 150), sk = rng.uniform_int(1, 150);
  auto cuts = [&](Index n) {
    std::vector<Index> c{0, n};
    for (int k = int(rng.uniform_int(0, 5)); k > 0; --k) c.push_back(rng.uniform_int(0, n));
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    return c;
  };
  const std::vector<Index> qc = cuts(sq), kc = cuts(sk);
  std::vector<Slice> slices;
  for (size_t a = 0; a + 1 < qc.size(); ++a)
    for (size_t b = 0; b + 1 < kc.size(); ++b) {
      if (rng.uniform01() < 0.3) continue;
      // A random sub-rectangle of the grid cell, so slices need not touch.
      Range q{qc[a], qc[a + 1]}, k{kc[b], kc[b + 1]};
      if (rng.uniform01() < 0.5) {
        q.begin = rng.uniform_int(q.begin, q.end - 1);
        q.end = rng.uniform_int(q.begin + 1, q.end);
        k.begin = rng.uniform_int(k.begin, k.end - 1);
        k.end = rng.uniform_int(k.begin + 1, k.end);
      }
      slices.push_back({q, k, SliceType(rng.uniform_int(0, 3))});
    }
  return SliceMask(sq, sk, std::move(slices));
}

TEST(SliceViews, RandomSliceMasksOfEveryType) {
  Rng rng(2024, 7);
  for (int n = 0; n < 400; ++n) {
    const SliceMask m = random_slice_mask(rng);
    SCOPED_TRACE("random mask " + std::to_string(n) + ": " + std::to_string(m.seqlen_q()) + "x" +
                 std::to_string(m.seqlen_k()) + ", " + std::to_string(m.slices().size()) +
                 " slices");
    check_static_views(m, slice_rule_dense(m));
    if (HasFailure()) return;
  }
}

// Single diagonal bands of any offsets (negative, past the edges, missing) on any shape, including
// one-column masks whose empty rows alone fix a bound.
TEST(SliceViews, RandomDiagonalBands) {
  Rng rng(7, 11);
  for (int n = 0; n < 600; ++n) {
    const Index limit = n % 2 ? 12 : 80;
    const Index sq = rng.uniform_int(1, limit), sk = rng.uniform_int(1, limit);
    auto bound = [&]() -> std::optional<Index> {
      if (rng.uniform01() < 0.2) return std::nullopt;
      return rng.uniform_int(-limit, limit);
    };
    const std::optional<Index> lower = bound(), upper = bound();
    std::vector<Slice> slices;
    append_diagonal_band(slices, {0, sq}, {0, sk}, lower, upper);
    const SliceMask m(sq, sk, std::move(slices));
    DenseMask want(sq, sk);
    for (Index i = 0; i < sq; ++i)
      for (Index j = 0; j < sk; ++j)
        if ((!lower || j - i >= *lower) && (!upper || j - i <= *upper)) want.set(i, j);
    SCOPED_TRACE("band " + std::to_string(sq) + "x" + std::to_string(sk) + " lower " +
                 (lower ? std::to_string(*lower) : "-") + " upper " +
                 (upper ? std::to_string(*upper) : "-"));
    check_static_views(m, want);
    if (HasFailure()) return;
  }
}

// ----------------------------------------------------------------------------------------------
// Hand-made cases.

TEST(TileMapView, TileFullOnlyThroughTwoSlicesIsFull) {
  // Two slices split the first 4x4 tile by keys, two more split the next one by rows.
  const SliceMask m(8, 8,
                    {{{0, 4}, {0, 2}, SliceType::full},
                     {{0, 4}, {2, 4}, SliceType::full},
                     {{4, 6}, {4, 8}, SliceType::full},
                     {{6, 8}, {4, 8}, SliceType::full},
                     {{4, 8}, {0, 3}, SliceType::full}});
  const TileMap map = tile_map(m, {4, 4});
  ASSERT_EQ(map.num_q_tiles(), 2);
  EXPECT_EQ(
      std::vector<TileRun>(map.runs.begin() + map.offsets[0], map.runs.begin() + map.offsets[1]),
      (std::vector<TileRun>{{{0, 1}, TileKind::full}}));
  EXPECT_EQ(std::vector<TileRun>(map.runs.begin() + map.offsets[1], map.runs.end()),
            (std::vector<TileRun>{{{0, 1}, TileKind::partial}, {{1, 2}, TileKind::full}}));
  EXPECT_EQ(map.issued_area(), 3 * 16);
}

TEST(TileMapView, TrianglesSideBySideArePartial) {
  // A causal triangle and an inv_causal one side by side: row r allows [0, r] and [4 + r, 8).
  const SliceMask m(4, 8,
                    {{{0, 4}, {0, 4}, SliceType::causal}, {{0, 4}, {4, 8}, SliceType::inv_causal}});
  // Neither 4x4 tile is full.
  const TileMap map = tile_map(m, {4, 4});
  EXPECT_EQ(map.runs, (std::vector<TileRun>{{{0, 2}, TileKind::partial}}));
  EXPECT_EQ(map.total_full(), 0);
  EXPECT_EQ(map.total_partial(), 2);
  // With 1x1 tiles every allowed pair is a full tile of its own.
  EXPECT_EQ(tile_map(m, {1, 1}).total_full(), m.area());
}

TEST(TileMapView, RejectsEmptyTileShapes) {
  const SliceMask m(8, {{{0, 8}, {0, 8}, SliceType::causal}});
  EXPECT_THROW(tile_map(m, {0, 16}), InputError);
  EXPECT_THROW(tile_map(m, {16, -1}), InputError);
}

TEST(TileMapView, TilesLargerThanTheMaskAreClipped) {
  const SliceMask m(5, 3, {{{0, 5}, {0, 3}, SliceType::full}});
  const TileMap map = tile_map(m, {128, 128});
  EXPECT_EQ(map.runs, (std::vector<TileRun>{{{0, 1}, TileKind::full}}));
  EXPECT_EQ(map.issued_area(), 15);
}

TEST(FlashMaskView, CausalDocumentBoundsFollowTheConvention) {
  const SliceMask m(6, {{{0, 2}, {0, 2}, SliceType::causal}, {{2, 6}, {2, 6}, SliceType::causal}});
  const auto got = flashmask_bounds(m);
  ASSERT_TRUE(std::holds_alternative<FlashMaskBounds>(got));
  const FlashMaskBounds& f = std::get<FlashMaskBounds>(got);
  // Column 1: rows [0, 1) masked above, [2, 6) below. Column 3: rows [0, 3) above, none below.
  EXPECT_EQ(f.uts[1], 0);
  EXPECT_EQ(f.ute[1], 1);
  EXPECT_EQ(f.lts[1], 2);
  EXPECT_EQ(f.lte[1], 6);
  EXPECT_EQ(f.uts[3], 0);
  EXPECT_EQ(f.ute[3], 3);
  EXPECT_EQ(f.lts[3], 6);
  EXPECT_EQ(f.lte[3], 6);
  // Column 0: only [2, 6) masked, below the diagonal: a lower interval.
  EXPECT_EQ(f.uts[0], 0);
  EXPECT_EQ(f.ute[0], 0);
  EXPECT_EQ(f.lts[0], 2);
  EXPECT_EQ(f.lte[0], 6);
}

TEST(FlashMaskView, ThreeMaskedIntervalsAreNotExpressible) {
  // Column 0 is allowed at rows 1 and 3 only: masked [0,1), [2,3), [4,5).
  const SliceMask m(5, 2, {{{1, 2}, {0, 2}, SliceType::full}, {{3, 4}, {0, 1}, SliceType::full}});
  const auto got = flashmask_bounds(m);
  ASSERT_TRUE(std::holds_alternative<NotExpressible>(got));
  EXPECT_NE(std::get<NotExpressible>(got).reason.find("column 0 "), std::string::npos)
      << std::get<NotExpressible>(got).reason;
}

TEST(CuSeqlensView, RecognisesDocumentsHoweverTheSlicesSplitThem) {
  // One causal document of length 6, written as a causal square plus a full block and a causal
  // tail: still the document [0, 6) followed by a full one [6, 8).
  const SliceMask m(8, {{{0, 3}, {0, 3}, SliceType::causal},
                        {{3, 6}, {0, 3}, SliceType::full},
                        {{3, 6}, {3, 6}, SliceType::causal},
                        {{6, 8}, {6, 8}, SliceType::full}});
  // A causal then a full document (longer than one token) is neither kind throughout.
  const auto mixed = cu_seqlens(m);
  ASSERT_TRUE(std::holds_alternative<NotDocumentMask>(mixed));
  EXPECT_NE(std::get<NotDocumentMask>(mixed).reason.find("row"), std::string::npos);

  const SliceMask causal(8, {{{0, 3}, {0, 3}, SliceType::causal},
                             {{3, 6}, {0, 3}, SliceType::full},
                             {{3, 6}, {3, 6}, SliceType::causal},
                             {{6, 8}, {6, 8}, SliceType::causal}});
  const auto got = cu_seqlens(causal);
  ASSERT_TRUE(std::holds_alternative<CuSeqlens>(got));
  EXPECT_EQ(std::get<CuSeqlens>(got).offsets, (std::vector<Index>{0, 6, 8}));
  EXPECT_TRUE(std::get<CuSeqlens>(got).causal);
}

TEST(CuSeqlensView, RejectsNonSquareAndBadOffsets) {
  EXPECT_TRUE(std::holds_alternative<NotDocumentMask>(
      cu_seqlens(SliceMask(4, 5, {{{0, 4}, {0, 4}, SliceType::full}}))));
  EXPECT_THROW(document_mask({{0, 3, 3, 5}, false}), InputError);
  EXPECT_THROW(document_mask({{1, 5}, true}), InputError);
  EXPECT_THROW(document_mask({{}, true}), InputError);
  const SliceMask back = document_mask({{0, 2, 5}, true});
  EXPECT_EQ(back.area(), 3 + 6);
}

TEST(UniformBandView, WindowsAndNonBands) {
  MaskSpec spec{Pattern::sliding_window_causal, 100, {}, 0};
  spec.params.window = 7;
  const GeneratedMask g = make_mask(spec);
  const auto sw = uniform_band(std::get<SliceMask>(g.mask));
  ASSERT_TRUE(sw.has_value());
  EXPECT_EQ(sw->left, 7);
  EXPECT_EQ(sw->right, 0);
  // A strictly lower band: right = -1, the first row empty.
  std::vector<Slice> strict;
  append_diagonal_band(strict, {0, 10}, {0, 10}, -3, -1);
  const auto lower = uniform_band(SliceMask(10, std::move(strict)));
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ(lower->left, 3);
  EXPECT_EQ(lower->right, -1);
  // Documents are not one band.
  MaskSpec docs{Pattern::causal_document, 64, {}, 0};
  docs.params.doc_lens = std::vector<Index>{30, 34};
  EXPECT_FALSE(uniform_band(std::get<SliceMask>(make_mask(docs).mask)).has_value());
}

TEST(DenseView, RejectsHugeOrNegativeShapes) {
  EXPECT_THROW(DenseMask(Index(1) << 16, (Index(1) << 14) + 1), InputError);
  EXPECT_THROW(DenseMask(-1, 4), InputError);
  const DenseMask empty(3, 0);
  EXPECT_EQ(empty.popcount(), 0);
}

TEST(BlockSparseViews, HeadOutOfRangeIsAnInputError) {
  MaskSpec spec{Pattern::block_sparse_uniform, 64, {}, 1};
  spec.params.sparse_block = 16;
  spec.params.sparse_heads = 2;
  const GeneratedMask g = make_mask(spec);
  const auto& b = std::get<BlockSparseMask>(g.mask);
  EXPECT_THROW(to_dense(b, 2), InputError);
  EXPECT_THROW(row_intervals(b, -1), InputError);
}

}  // namespace
}  // namespace longattn

// Mask pictures and records (src/report): the density grid against the dense mask cell by cell for
// every pattern, and the text, raster, SVG and PNG renderings of it.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/patterns.hpp"
#include "longattn/report/density_grid.hpp"
#include "longattn/report/image.hpp"
#include "longattn/report/mask_picture.hpp"
#include "longattn/report/mask_record.hpp"
#include "longattn/report/svg.hpp"
#include "longattn/rng.hpp"
#include "longattn/views/dense.hpp"

namespace longattn {
namespace {

// Small parameters so that every pattern has structure at S below 100.
MaskSpec small_spec(Pattern p, Index seqlen, std::uint64_t seed) {
  MaskSpec s;
  s.pattern = p;
  s.seqlen = seqlen;
  s.seed = seed;
  s.params.window = 5;
  s.params.global = 3;
  s.params.block = 4;
  s.params.sparse_block = 8;
  s.params.min_block = 4;
  s.params.average_block = 8;
  s.params.sparse_heads = 2;
  return s;
}

DenseMask dense_of(const Mask& m, int head) {
  if (const auto* s = std::get_if<SliceMask>(&m)) return to_dense(*s);
  return to_dense(std::get<BlockSparseMask>(m), head);
}

Index dense_count(const DenseMask& d, Range rows, Range cols) {
  Index n = 0;
  for (Index i = rows.begin; i < rows.end; ++i)
    for (Index j = cols.begin; j < cols.end; ++j) n += d.get(i, j);
  return n;
}

TEST(BandArea, MatchesCountingPairs) {
  Rng rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    const Index q0 = rng.uniform_int(0, 20), k0 = rng.uniform_int(0, 20);
    const Range q{q0, q0 + rng.uniform_int(0, 15)}, k{k0, k0 + rng.uniform_int(0, 15)};
    std::optional<Index> lo, hi;
    if (rng.uniform_int(0, 3) > 0) lo = rng.uniform_int(-30, 30);
    if (rng.uniform_int(0, 3) > 0) hi = rng.uniform_int(-30, 30);
    Index expected = 0;
    for (Index i = q.begin; i < q.end; ++i)
      for (Index j = k.begin; j < k.end; ++j)
        expected += (!lo || j - i >= *lo) && (!hi || j - i <= *hi);
    ASSERT_EQ(band_area(q, k, lo, hi), expected)
        << "q [" << q.begin << "," << q.end << ") k [" << k.begin << "," << k.end << ") lo "
        << (lo ? std::to_string(*lo) : "-") << " hi " << (hi ? std::to_string(*hi) : "-");
  }
}

TEST(DensityGrid, EveryCellMatchesTheDenseMaskForEveryPattern) {
  const std::vector<std::pair<Index, Index>> grids = {{1, 1}, {3, 5}, {7, 7}, {16, 9}, {1000, 1000}};
  for (const PatternInfo& pi : all_patterns()) {
    for (Index seqlen : {37, 64, 97}) {
      for (std::uint64_t seed : {1u, 2u, 3u}) {
        const GeneratedMask g = make_mask(small_spec(pi.pattern, seqlen, seed));
        for (int head = 0; head < mask_heads(g.mask); ++head) {
          const DenseMask dense = dense_of(g.mask, head);
          for (auto [rows, cols] : grids) {
            const DensityGrid grid = density_grid(g.mask, head, rows, cols);
            ASSERT_EQ(grid.rows(), std::min(rows, seqlen));
            ASSERT_EQ(grid.cols(), std::min(cols, seqlen));
            ASSERT_EQ(grid.total(), dense.popcount());
            for (Index r = 0; r < grid.rows(); ++r)
              for (Index c = 0; c < grid.cols(); ++c)
                ASSERT_EQ(grid.allowed(r, c), dense_count(dense, grid.row_span(r), grid.col_span(c)))
                    << pi.name << " S=" << seqlen << " seed=" << seed << " head=" << head << " grid "
                    << rows << "x" << cols << " cell " << r << "," << c;
          }
        }
      }
    }
  }
}

TEST(DensityGrid, CellsPartitionTheMaskAndLocateRows) {
  const DensityGrid g(1000, 777, 64, 33);
  Index covered = 0;
  for (Index r = 0; r < g.rows(); ++r) {
    covered += g.row_span(r).size();
    for (Index i = g.row_span(r).begin; i < g.row_span(r).end; ++i) ASSERT_EQ(g.row_of(i), r);
  }
  EXPECT_EQ(covered, 1000);
  for (Index c = 0; c < g.cols(); ++c)
    for (Index j = g.col_span(c).begin; j < g.col_span(c).end; ++j) ASSERT_EQ(g.col_of(j), c);
}

TEST(DensityGrid, LargeMasksNeedNoRasterising) {
  // S = 1M: a dense bitmap would take 128 GiB; the grid is built from the slices.
  const GeneratedMask g = make_mask({Pattern::causal_document, Index(1) << 20, {}, 0});
  const DensityGrid grid = density_grid(g.mask, 0, 512, 512);
  EXPECT_EQ(grid.total(), total_area(g.mask));
  EXPECT_DOUBLE_EQ(grid.density(0, 511), 0.0);  // above the diagonal
}

TEST(DensityGrid, RejectsBadArguments) {
  const GeneratedMask g = make_mask({Pattern::causal, 16, {}, 0});
  EXPECT_THROW(density_grid(g.mask, 1, 4, 4), InputError);
  EXPECT_THROW(density_grid(g.mask, 0, 0, 4), InputError);
  const GeneratedMask b = make_mask(small_spec(Pattern::block_sparse_uniform, 32, 1));
  EXPECT_THROW(density_grid(b.mask, 2, 4, 4), InputError);
}

TEST(MaskPicture, TextShowsEveryPairOfASmallMask) {
  const GeneratedMask g = make_mask(small_spec(Pattern::sliding_window_causal, 12, 0));
  const DenseMask dense = to_dense(std::get<SliceMask>(g.mask));
  const std::string text = render_text(density_grid(g.mask, 0, 12, 12), 1, TextShading::ascii);
  std::vector<std::string> lines;
  for (std::size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1)
    lines.push_back(text.substr(pos, nl - pos));
  ASSERT_EQ(lines.size(), 14u);  // frame + 12 rows + frame
  EXPECT_EQ(lines.front(), "+" + std::string(12, '-') + "+");
  for (Index i = 0; i < 12; ++i) {
    ASSERT_EQ(lines[i + 1].size(), 14u);
    for (Index j = 0; j < 12; ++j)
      EXPECT_EQ(lines[i + 1][j + 1], dense.get(i, j) ? '@' : ' ') << "pair " << i << "," << j;
  }
}

TEST(MaskPicture, ShadesByDensity) {
  DensityGrid g(4, 4, 1, 1);  // one cell of 16 pairs
  g.add_band({0, 4}, {0, 4}, 0, 0);  // the diagonal: density 1/4
  EXPECT_EQ(render_text(g, 1, TextShading::ascii), "+-+\n|.|\n+-+\n");
  g.add_band({0, 4}, {0, 4}, 1, std::nullopt);  // + strictly above: 10/16
  EXPECT_EQ(render_text(g, 2, TextShading::ascii), "+--+\n|::|\n+--+\n");
}

TEST(MaskPicture, ImageColoursAllowedCellsOnly) {
  const GeneratedMask g = make_mask({Pattern::causal, 40, {}, 0});
  const DensityGrid grid = density_grid(g.mask, 0, 40, 40);
  const Image img = mask_image(grid, 3);
  ASSERT_EQ(img.width(), 120);
  ASSERT_EQ(img.height(), 120);
  const Rgb white{255, 255, 255};
  for (int i = 0; i < 40; ++i)
    for (int j = 0; j < 40; ++j) {
      const Rgb c = img.at(3 * j + 1, 3 * i + 1);
      EXPECT_EQ(c == white, j > i) << i << "," << j;
    }
  EXPECT_EQ(density_color(1.0), (Rgb{8, 48, 107}));
  EXPECT_NE(density_color(1e-9), white);  // a nearly empty cell stays visible
}

// Tags balance: every opened element is closed in order (self-closing ones count as both).
bool tags_balance(const std::string& xml) {
  std::vector<std::string> open;
  for (std::size_t pos = xml.find('<'); pos != std::string::npos; pos = xml.find('<', pos + 1)) {
    const std::size_t end = xml.find('>', pos);
    if (end == std::string::npos) return false;
    const std::string tag = xml.substr(pos + 1, end - pos - 1);
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag.back() == '/') continue;
    const std::string name = tag.substr(tag[0] == '/' ? 1 : 0, tag.find_first_of(" \t\n") - (tag[0] == '/'));
    if (tag[0] == '/') {
      if (open.empty() || open.back() != name) return false;
      open.pop_back();
    } else {
      open.push_back(name);
    }
  }
  return open.empty();
}

TEST(MaskPicture, SvgIsWellFormedAndMergesRuns) {
  const GeneratedMask g = make_mask({Pattern::causal, 64, {}, 0});
  const std::string svg = mask_svg(density_grid(g.mask, 0, 64, 64), 256, "causal <S=64> & more");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("causal &lt;S=64&gt; &amp; more"), std::string::npos);
  EXPECT_TRUE(tags_balance(svg)) << svg.substr(0, 400);
  // A causal grid at full resolution is one run per row, plus background and frame.
  std::size_t rects = 0;
  for (std::size_t p = svg.find("<rect"); p != std::string::npos; p = svg.find("<rect", p + 1)) ++rects;
  EXPECT_EQ(rects, 64u + 2u);
}

TEST(Svg, EscapesText) {
  EXPECT_EQ(xml_escape(R"(a<b>&"c'd)"), "a&lt;b&gt;&amp;&quot;c&apos;d");
  Svg s(10, 20);
  s.text(1, 2, "x<y");
  EXPECT_NE(s.str().find(">x&lt;y</text>"), std::string::npos);
  EXPECT_TRUE(tags_balance(s.str()));
}

TEST(Png, EncodesSignatureHeaderAndEnd) {
  if (!png_supported()) {
    EXPECT_THROW(encode_png(Image(2, 2)), InputError);
    GTEST_SKIP() << "built without libpng";
  }
  Image img(5, 3);
  img.set(4, 2, {1, 2, 3});
  const std::vector<std::uint8_t> png = encode_png(img);
  const std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  ASSERT_GT(png.size(), 33u + 12u);
  EXPECT_TRUE(std::equal(signature, signature + 8, png.begin()));
  EXPECT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t(png[at]) << 24) | (std::uint32_t(png[at + 1]) << 16) |
           (std::uint32_t(png[at + 2]) << 8) | png[at + 3];
  };
  EXPECT_EQ(be32(16), 5u);
  EXPECT_EQ(be32(20), 3u);
  EXPECT_EQ(std::string(png.end() - 8, png.end() - 4), "IEND");
}

TEST(Image, RejectsEmptySizes) {
  EXPECT_THROW(Image(0, 4), InputError);
  EXPECT_THROW(Image(4, -1), InputError);
}

TEST(MaskRecord, DescribesDocumentsSlicesAndParameters) {
  MaskSpec spec{Pattern::causal_document, 4096, {}, 9};
  spec.params.doc_lens = std::vector<Index>{1000, 250, 2846};
  MaskRecordOptions opt;
  opt.max_slices = 2;
  const nlohmann::json r = mask_record(make_mask(spec), opt);
  EXPECT_EQ(r["pattern"], "causal_document");
  EXPECT_EQ(r["family"], "regular");
  EXPECT_EQ(r["seqlen"], 4096);
  EXPECT_EQ(r["seed"], 9);
  EXPECT_EQ(r["area"], 1000 * 1001 / 2 + 250 * 251 / 2 + 2846 * 2847 / 2);
  EXPECT_EQ(r["documents"]["count"], 3);
  EXPECT_EQ(r["documents"]["min"], 250);
  EXPECT_EQ(r["documents"]["max"], 2846);
  EXPECT_EQ(r["slices"]["count"], 3);
  EXPECT_EQ(r["slices"]["first"].size(), 2u);
  EXPECT_EQ(r["slices"]["first"][1]["q"], nlohmann::json({1000, 1250}));
  EXPECT_EQ(r["parameters"]["doc_lens"], nlohmann::json({1000, 250, 2846}));
  EXPECT_TRUE(r["blocks"].is_null());

  const nlohmann::json w = mask_record(make_mask({Pattern::global_sliding_window, 2000, {}, 0}));
  EXPECT_EQ(w["parameters"], nlohmann::json({{"global", 512}, {"window", 1024}}));
  EXPECT_TRUE(w["documents"].is_null());
}

TEST(MaskRecord, DescribesBlockSparseMasks) {
  const GeneratedMask g = make_mask(small_spec(Pattern::block_sparse_uniform, 64, 4));
  const nlohmann::json r = mask_record(g);
  EXPECT_EQ(r["mask_heads"], 2);
  EXPECT_TRUE(r["slices"].is_null());
  EXPECT_EQ(r["blocks"]["count"], 8);
  const auto& b = std::get<BlockSparseMask>(g.mask);
  EXPECT_EQ(r["blocks"]["kept"], b.kept_blocks(0) + b.kept_blocks(1));
  EXPECT_EQ(r["area"], b.total_area());
  EXPECT_EQ(r["parameters"]["sparse_block"], 8);
}

}  // namespace
}  // namespace longattn

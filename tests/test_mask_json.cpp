#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "longattn/error.hpp"
#include "longattn/mask_json.hpp"

using namespace longattn;
using nlohmann::json;

namespace {

void expect_same(const SliceMask& a, const SliceMask& b) {
  EXPECT_EQ(a.seqlen_q(), b.seqlen_q());
  EXPECT_EQ(a.seqlen_k(), b.seqlen_k());
  EXPECT_EQ(a.slices(), b.slices());
  EXPECT_EQ(a.area(), b.area());
}

void expect_same(const BlockSparseMask& a, const BlockSparseMask& b) {
  EXPECT_EQ(a.blocks().starts(), b.blocks().starts());
  EXPECT_EQ(a.causal(), b.causal());
  ASSERT_EQ(a.num_heads(), b.num_heads());
  for (int h = 0; h < a.num_heads(); ++h) {
    EXPECT_EQ(a.kept(h).offsets, b.kept(h).offsets) << "head " << h;
    EXPECT_EQ(a.kept(h).indices, b.kept(h).indices) << "head " << h;
  }
  EXPECT_EQ(a.total_area(), b.total_area());
}

// The readable form of a static mask, written by hand here so that the reader is checked against
// an independent writer.
json readable(const SliceMask& m) {
  json slices = json::array();
  for (const Slice& s : m.slices())
    slices.push_back({{"q", {s.q.begin, s.q.end}},
                      {"k", {s.k.begin, s.k.end}},
                      {"type", std::string(to_string(s.type))}});
  return {{"seqlen", m.seqlen_q()}, {"slices", slices}};
}

// Expects an InputError whose message contains `needle`.
void expect_error(const json& j, const std::string& needle) {
  SCOPED_TRACE(j.dump());
  try {
    mask_from_json(j);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "'" << needle << "' not in: " << e.what();
  }
}

json parse(const char* text) { return json::parse(text); }

}  // namespace

TEST(MaskJson, EveryStaticPatternRoundTrips) {
  for (const PatternInfo& info : all_patterns()) {
    if (info.family == PatternFamily::dynamic) continue;
    for (Index s : {Index(777), Index(4096), Index(20000)}) {
      for (std::uint64_t seed : {0u, 1u, 2u}) {
        SCOPED_TRACE(fmt::format("{} S={} seed={}", info.name, s, seed));
        MaskParams p;
        p.window = 300;
        p.global = 100;
        p.block = 256;
        const GeneratedMask g = make_mask({info.pattern, s, p, seed});
        const auto& m = std::get<SliceMask>(g.mask);

        const json j = to_json(g.mask);
        EXPECT_EQ(j, to_json(m));
        ASSERT_TRUE(j.contains("q_ranges"));
        EXPECT_EQ(j["q_ranges"].size(), m.slices().size());
        // Through text, as a file would carry it.
        const Mask back = mask_from_json(json::parse(j.dump()));
        ASSERT_TRUE(std::holds_alternative<SliceMask>(back));
        expect_same(std::get<SliceMask>(back), m);
        // The readable form reads to the same mask.
        const Mask back2 = mask_from_json(readable(m));
        expect_same(std::get<SliceMask>(back2), m);
      }
    }
  }
}

TEST(MaskJson, BlockSparseRoundTrips) {
  for (Pattern pattern : {Pattern::block_sparse_uniform, Pattern::block_sparse_variable}) {
    for (bool causal : {false, true}) {
      SCOPED_TRACE(fmt::format("{} causal={}", to_string(pattern), causal));
      MaskParams p;
      p.sparse_heads = 3;
      p.sparse_causal = causal;
      p.keep = 0.3;
      const GeneratedMask g = make_mask({pattern, 3000, p, 11});
      const auto& m = std::get<BlockSparseMask>(g.mask);
      const json j = to_json(g.mask);
      EXPECT_EQ(j["kept"].size(), 3u);
      EXPECT_EQ(j["causal"], causal);
      const Mask back = mask_from_json(json::parse(j.dump()));
      ASSERT_TRUE(std::holds_alternative<BlockSparseMask>(back));
      expect_same(std::get<BlockSparseMask>(back), m);
    }
  }
}

TEST(MaskJson, ReadsMagiAttentionForm) {
  // Two documents of 4 and 6 tokens, the first causal, the second full; a band and an inv_causal
  // slice in a second block of queries; one type given by name.
  const Mask m = mask_from_json(parse(R"({
      "seqlen_q": 10, "seqlen_k": 12,
      "q_ranges": [[0, 4], [4, 10]], "k_ranges": [[0, 4], [4, 12]],
      "attn_type_map": [1, "full"]})"));
  const auto& s = std::get<SliceMask>(m);
  EXPECT_EQ(s.seqlen_q(), 10);
  EXPECT_EQ(s.seqlen_k(), 12);
  ASSERT_EQ(s.slices().size(), 2u);
  EXPECT_EQ(s.slices()[0], (Slice{{0, 4}, {0, 4}, SliceType::causal}));
  EXPECT_EQ(s.slices()[1], (Slice{{4, 10}, {4, 12}, SliceType::full}));
  EXPECT_EQ(s.area(), 10 + 6 * 8);
  EXPECT_TRUE(s.allows(2, 1));
  EXPECT_FALSE(s.allows(1, 2));
  EXPECT_FALSE(s.allows(5, 3));

  // Codes 2 and 3, and "seqlen" standing for both lengths.
  const Mask m2 = mask_from_json(parse(R"({"seqlen": 8,
      "q_ranges": [[0, 4], [4, 8]], "k_ranges": [[0, 4], [4, 8]], "attn_type_map": [2, 3]})"));
  const auto& s2 = std::get<SliceMask>(m2);
  EXPECT_EQ(s2.slices()[0].type, SliceType::inv_causal);
  EXPECT_EQ(s2.slices()[1].type, SliceType::band);
  EXPECT_EQ(s2.area(), 10 + 4);  // inv_causal 4x4: 10 pairs; band 4x4: the diagonal
}

TEST(MaskJson, WritesMagiAttentionForm) {
  const SliceMask m(6, {{{0, 3}, {0, 3}, SliceType::causal}, {{3, 6}, {0, 6}, SliceType::band}});
  EXPECT_EQ(to_json(m), parse(R"({"seqlen_q": 6, "seqlen_k": 6,
      "q_ranges": [[0, 3], [3, 6]], "k_ranges": [[0, 3], [0, 6]], "attn_type_map": [1, 3]})"));
  BlockLists kept{{0, 1, 3}, {1, 0, 1}};
  const BlockSparseMask b(BlockPartition({0, 2, 5}), {kept}, true);
  EXPECT_EQ(to_json(b), parse(R"({"seqlen": 5, "block_starts": [0, 2, 5], "causal": true,
      "kept": [[[1], [0, 1]]]})"));
}

TEST(MaskJson, MalformedInputNamesTheField) {
  expect_error(parse("[1, 2]"), "must be an object");
  expect_error(parse("{}"), "q_ranges");
  expect_error(parse(R"({"seqlen": 4})"), "q_ranges");
  const char* good = R"({"seqlen_q": 8, "seqlen_k": 8, "q_ranges": [[0, 4], [4, 8]],
                         "k_ranges": [[0, 4], [4, 8]], "attn_type_map": [0, 1]})";
  const auto with = [&](const char* key, json value) {
    json j = parse(good);
    j[key] = std::move(value);
    return j;
  };
  const auto without = [&](const char* key) {
    json j = parse(good);
    j.erase(key);
    return j;
  };
  expect_error(without("q_ranges"), "q_ranges");
  expect_error(without("k_ranges"), "k_ranges");
  expect_error(without("attn_type_map"), "attn_type_map");
  expect_error(without("seqlen_q"), "seqlen_q");
  expect_error(without("seqlen_k"), "seqlen_k");
  expect_error(with("seqlen_q", "8"), "seqlen_q");
  expect_error(with("seqlen_q", 8.5), "seqlen_q");
  expect_error(with("seqlen_k", -3), "positive");  // SliceMask's own check
  expect_error(with("q_ranges", 5), "q_ranges");
  expect_error(with("q_ranges", parse("[[0, 4, 6], [4, 8]]")), "q_ranges[0]");
  expect_error(with("q_ranges", parse("[[0, 4], [4]]")), "q_ranges[1]");
  expect_error(with("q_ranges", parse("[[0, 4], \"4-8\"]")), "q_ranges[1]");
  expect_error(with("k_ranges", parse("[[0, 4], [4, 8.0]]")), "k_ranges[1][1]");
  expect_error(with("k_ranges", parse("[[0, 4]]")), "k_ranges");
  expect_error(with("attn_type_map", parse("[0]")), "attn_type_map");
  expect_error(with("attn_type_map", parse("[0, 4]")), "attn_type_map[1]");
  expect_error(with("attn_type_map", parse("[0, -1]")), "attn_type_map[1]");
  expect_error(with("attn_type_map", parse("[0, \"diagonal\"]")), "diagonal");
  expect_error(with("attn_type_map", parse("[0, null]")), "attn_type_map[1]");
  expect_error(with("q_ranges", parse("[[0, 4], [4, 9]]")), "outside");  // out of bounds
  expect_error(with("k_ranges", parse("[[0, 4], [4, 4]]")), "empty");    // empty slice
  {
    json j = with("q_ranges", parse("[[0, 4], [2, 6]]"));
    j["k_ranges"] = parse("[[0, 4], [2, 6]]");
    expect_error(j, "overlap");
  }
  expect_error(with("q_ranges", parse("[[0, 4], [4, 18446744073709551615]]")), "too large");

  // Readable form.
  expect_error(parse(R"({"slices": []})"), "seqlen");
  expect_error(parse(R"({"seqlen": 4, "slices": {}})"), "slices");
  expect_error(parse(R"({"seqlen": 4, "slices": [5]})"), "slices[0]");
  expect_error(parse(R"({"seqlen": 4, "slices": [{"q": [0, 4], "type": "full"}]})"), "'k'");
  expect_error(parse(R"({"seqlen": 4, "slices": [{"q": [0, 4], "k": [0, 4]}]})"), "'type'");
  expect_error(parse(R"({"seqlen": 4, "slices": [{"q": [0, 4], "k": [0, 4, 1], "type": "full"}]})"),
               "slices[0].k");
  expect_error(parse(R"({"seqlen": 4, "slices": [{"q": [0, 4], "k": [0, 4], "type": "half"}]})"),
               "slices[0].type");

  // Block-sparse form.
  const char* sparse = R"({"seqlen": 5, "block_starts": [0, 2, 5], "causal": false,
                           "kept": [[[1], [0, 1]]]})";
  const auto sparse_with = [&](const char* key, json value) {
    json j = parse(sparse);
    j[key] = std::move(value);
    return j;
  };
  EXPECT_NO_THROW(mask_from_json(parse(sparse)));
  {
    json j = parse(sparse);
    j.erase("causal");
    expect_error(j, "causal");
    j = parse(sparse);
    j.erase("seqlen");
    expect_error(j, "seqlen");
    j = parse(sparse);
    j.erase("block_starts");
    expect_error(j, "block_starts");
  }
  expect_error(sparse_with("causal", 1), "causal");
  expect_error(sparse_with("seqlen", 6), "seqlen");
  expect_error(sparse_with("block_starts", parse("[0, 3, 2, 5]")), "block_starts");
  expect_error(sparse_with("block_starts", parse("[0, \"2\", 5]")), "block_starts[1]");
  expect_error(sparse_with("kept", parse("[]")), "kept");
  expect_error(sparse_with("kept", parse("[[[1]]]")), "kept[0]");
  expect_error(sparse_with("kept", parse("[[[1], 7]]")), "kept[0][1]");
  expect_error(sparse_with("kept", parse("[[[1], [0, 2]]]")), "kept[0][1][1]");
  expect_error(sparse_with("kept", parse("[[[1], [0, -1]]]")), "kept[0][1][1]");
  expect_error(sparse_with("kept", parse("[[[1], [0, true]]]")), "kept[0][1][1]");
  expect_error(sparse_with("kept", parse("[[[1], [1, 0]]]")), "kept");  // unsorted
  expect_error(sparse_with("kept", parse("[[[1], [1, 1]]]")), "kept");  // duplicate
}

TEST(MaskJson, LoadsFilesWithClearErrors) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto good = dir / "longattn_test_mask_good.json";
  const auto bad_json = dir / "longattn_test_mask_bad.json";
  const auto bad_mask = dir / "longattn_test_mask_badmask.json";
  const SliceMask m(16, {{{0, 16}, {0, 16}, SliceType::causal}});
  std::ofstream(good) << to_json(m).dump(2);
  std::ofstream(bad_json) << "{\"seqlen\": 16, ";
  std::ofstream(bad_mask)
      << R"({"seqlen": 16, "slices": [{"q": [0, 16], "k": [0, 17], "type": "full"}]})";

  expect_same(std::get<SliceMask>(load_mask_file(good.string())), m);
  const auto expect_file_error = [](const std::filesystem::path& p, const std::string& needle) {
    try {
      load_mask_file(p.string());
      ADD_FAILURE() << "no InputError for " << p;
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(p.string()), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  expect_file_error(bad_json, "not valid JSON");
  expect_file_error(bad_mask, "outside");
  expect_file_error(dir / "longattn_test_mask_missing.json", "cannot read");
  std::filesystem::remove(good);
  std::filesystem::remove(bad_json);
  std::filesystem::remove(bad_mask);
}

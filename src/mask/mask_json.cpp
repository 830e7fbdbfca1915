#include "longattn/mask_json.hpp"

#include <fmt/format.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "longattn/error.hpp"

namespace longattn {

using nlohmann::json;

namespace {

// MagiAttention's attn_type_map codes, in SliceType order.
constexpr SliceType kTypeCodes[] = {SliceType::full, SliceType::causal, SliceType::inv_causal,
                                    SliceType::band};

static_assert(int(SliceType::full) == 0 && int(SliceType::causal) == 1 &&
              int(SliceType::inv_causal) == 2 && int(SliceType::band) == 3);
int type_code(SliceType t) { return int(t); }

[[noreturn]] void fail(std::string_view field, std::string_view what) {
  throw InputError(fmt::format("mask JSON: '{}' {}", field, what));
}

// The value in a short form for messages: its type, or the value itself when it is small.
std::string shown(const json& v) {
  std::string text = v.dump();
  if (text.size() > 40) return std::string("a long ") + v.type_name();
  return fmt::format("{} {}", v.type_name(), text);
}

const json& member(const json& obj, std::string_view key, std::string_view where = {}) {
  const auto it = obj.find(key);
  if (it == obj.end()) {
    if (where.empty()) fail(key, "is missing");
    fail(where, fmt::format("has no '{}'", key));
  }
  return *it;
}

// v as an Index, or nothing when it is not an integer or does not fit.
std::optional<Index> integer(const json& v) {
  if (!v.is_number_integer()) return std::nullopt;
  if (v.is_number_unsigned() &&
      v.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<Index>::max()))
    return std::nullopt;
  return v.get<Index>();
}

Index as_index(const json& v, std::string_view field) {
  const auto i = integer(v);
  if (!i) {
    if (v.is_number_integer()) fail(field, "is too large");
    fail(field, fmt::format("must be an integer, got {}", shown(v)));
  }
  return *i;
}

const json& as_array(const json& v, std::string_view field) {
  if (!v.is_array()) fail(field, fmt::format("must be an array, got {}", shown(v)));
  return v;
}

Range as_range(const json& v, std::string_view field) {
  if (!v.is_array() || v.size() != 2)
    fail(field, fmt::format("must be a range [begin, end], got {}", shown(v)));
  return {as_index(v[0], fmt::format("{}[0]", field)), as_index(v[1], fmt::format("{}[1]", field))};
}

// A type as MagiAttention's integer code or by name ("full", "causal", "inv_causal", "band").
SliceType as_type(const json& v, std::string_view field) {
  if (v.is_number_integer()) {
    const Index code = as_index(v, field);
    if (code < 0 || code >= Index(std::size(kTypeCodes)))
      fail(field, fmt::format("is an unknown type code {} (0 full, 1 causal, 2 inv_causal, 3 band)",
                              code));
    return kTypeCodes[code];
  }
  if (v.is_string()) {
    const auto t = parse_slice_type(v.get<std::string>());
    if (!t)
      fail(field, fmt::format("is an unknown type \"{}\" (full, causal, inv_causal, band)",
                              v.get<std::string>()));
    return *t;
  }
  fail(field, fmt::format("must be a type code or name, got {}", shown(v)));
}

// seqlen_q and seqlen_k, each defaulting to seqlen.
std::pair<Index, Index> seqlens(const json& j) {
  const auto one = [&](const char* key) {
    if (j.contains(key)) return as_index(j[key], key);
    if (j.contains("seqlen")) return as_index(j["seqlen"], "seqlen");
    fail(key, "is missing (or give 'seqlen' for both)");
  };
  return {one("seqlen_q"), one("seqlen_k")};
}

SliceMask validated(Index seqlen_q, Index seqlen_k, std::vector<Slice> slices) {
  try {
    return SliceMask(seqlen_q, seqlen_k, std::move(slices));
  } catch (const InputError& e) {
    throw InputError(fmt::format("mask JSON: {}", e.what()));
  }
}

SliceMask magi_from_json(const json& j) {
  const auto [sq, sk] = seqlens(j);
  const json& q = as_array(member(j, "q_ranges"), "q_ranges");
  const json& k = as_array(member(j, "k_ranges"), "k_ranges");
  const json& t = as_array(member(j, "attn_type_map"), "attn_type_map");
  if (k.size() != q.size())
    fail("k_ranges", fmt::format("has {} entries but q_ranges has {}", k.size(), q.size()));
  if (t.size() != q.size())
    fail("attn_type_map", fmt::format("has {} entries but q_ranges has {}", t.size(), q.size()));
  std::vector<Slice> slices;
  slices.reserve(q.size());
  for (std::size_t i = 0; i < q.size(); ++i)
    slices.push_back({as_range(q[i], fmt::format("q_ranges[{}]", i)),
                      as_range(k[i], fmt::format("k_ranges[{}]", i)),
                      as_type(t[i], fmt::format("attn_type_map[{}]", i))});
  return validated(sq, sk, std::move(slices));
}

SliceMask slices_from_json(const json& j) {
  const auto [sq, sk] = seqlens(j);
  const json& list = as_array(member(j, "slices"), "slices");
  std::vector<Slice> slices;
  slices.reserve(list.size());
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string where = fmt::format("slices[{}]", i);
    const json& s = list[i];
    if (!s.is_object())
      fail(where, fmt::format("must be an object {{\"q\", \"k\", \"type\"}}, got {}", shown(s)));
    slices.push_back({as_range(member(s, "q", where), where + ".q"),
                      as_range(member(s, "k", where), where + ".k"),
                      as_type(member(s, "type", where), where + ".type")});
  }
  return validated(sq, sk, std::move(slices));
}

BlockSparseMask block_sparse_from_json(const json& j) {
  const json& starts_json = as_array(member(j, "block_starts"), "block_starts");
  std::vector<Index> starts;
  starts.reserve(starts_json.size());
  for (std::size_t i = 0; i < starts_json.size(); ++i)
    starts.push_back(as_index(starts_json[i], fmt::format("block_starts[{}]", i)));
  BlockPartition blocks;
  try {
    blocks = BlockPartition(std::move(starts));
  } catch (const InputError& e) {
    fail("block_starts", e.what());
  }
  const Index seqlen = as_index(member(j, "seqlen"), "seqlen");
  if (seqlen != blocks.seqlen())
    fail("seqlen", fmt::format("is {} but block_starts ends at {}", seqlen, blocks.seqlen()));
  const json& causal = member(j, "causal");
  if (!causal.is_boolean())
    fail("causal", fmt::format("must be true or false, got {}", shown(causal)));

  const json& heads = as_array(member(j, "kept"), "kept");
  if (heads.empty()) fail("kept", "must list at least one head");
  const Index nb = blocks.num_blocks();
  std::vector<BlockLists> kept(heads.size());
  for (std::size_t h = 0; h < heads.size(); ++h) {
    const std::string head_field = fmt::format("kept[{}]", h);
    const json& rows = as_array(heads[h], head_field);
    if (Index(rows.size()) != nb)
      fail(head_field, fmt::format("has {} query blocks, expected {}", rows.size(), nb));
    BlockLists& lists = kept[h];
    lists.offsets.reserve(nb + 1);
    lists.offsets.push_back(0);
    for (std::size_t b = 0; b < rows.size(); ++b) {
      // Field names are formatted only on error: a large mask has millions of kept blocks.
      if (!rows[b].is_array())
        fail(fmt::format("{}[{}]", head_field, b),
             fmt::format("must be an array, got {}", shown(rows[b])));
      for (std::size_t i = 0; i < rows[b].size(); ++i) {
        const auto col = integer(rows[b][i]);
        if (!col || *col < 0 || *col >= nb)
          fail(fmt::format("{}[{}][{}]", head_field, b, i),
               fmt::format("must be a block index in [0, {}), got {}", nb, shown(rows[b][i])));
        lists.indices.push_back(std::int32_t(*col));
      }
      lists.offsets.push_back(Index(lists.indices.size()));
    }
  }
  try {
    return BlockSparseMask(std::move(blocks), std::move(kept), causal.get<bool>());
  } catch (const InputError& e) {
    throw InputError(fmt::format("mask JSON: 'kept': {}", e.what()));
  }
}

}  // namespace

json to_json(const SliceMask& m) {
  json q = json::array(), k = json::array(), t = json::array();
  for (const Slice& s : m.slices()) {
    q.push_back({s.q.begin, s.q.end});
    k.push_back({s.k.begin, s.k.end});
    t.push_back(type_code(s.type));
  }
  return {{"seqlen_q", m.seqlen_q()},
          {"seqlen_k", m.seqlen_k()},
          {"q_ranges", std::move(q)},
          {"k_ranges", std::move(k)},
          {"attn_type_map", std::move(t)}};
}

json to_json(const BlockSparseMask& m) {
  json heads = json::array();
  for (int h = 0; h < m.num_heads(); ++h) {
    const BlockLists& lists = m.kept(h);
    json rows = json::array();
    for (Index b = 0; b < lists.num_rows(); ++b)
      rows.push_back(json(std::vector<std::int32_t>(lists.indices.begin() + lists.offsets[b],
                                                    lists.indices.begin() + lists.offsets[b + 1])));
    heads.push_back(std::move(rows));
  }
  return {{"seqlen", m.seqlen()},
          {"block_starts", m.blocks().starts()},
          {"causal", m.causal()},
          {"kept", std::move(heads)}};
}

json to_json(const Mask& m) {
  return std::visit([](const auto& mask) { return to_json(mask); }, m);
}

Mask mask_from_json(const json& j) {
  if (!j.is_object())
    throw InputError(fmt::format("mask JSON must be an object, got {}", shown(j)));
  if (j.contains("q_ranges") || j.contains("k_ranges") || j.contains("attn_type_map"))
    return magi_from_json(j);
  if (j.contains("slices")) return slices_from_json(j);
  if (j.contains("block_starts") || j.contains("kept")) return block_sparse_from_json(j);
  throw InputError(
      "mask JSON has none of 'q_ranges' (MagiAttention form), 'slices' or 'block_starts' "
      "(block-sparse form)");
}

Mask load_mask_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot read mask file '{}'", path));
  std::ostringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("mask file '{}' is not valid JSON: {}", path, e.what()));
  }
  try {
    return mask_from_json(j);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", path, e.what()));
  }
}

}  // namespace longattn

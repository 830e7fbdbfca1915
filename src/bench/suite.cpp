#include "longattn/bench/suite.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "longattn/bench/result.hpp"
#include "longattn/error.hpp"
#include "longattn/units.hpp"

#ifndef LONGATTN_SOURCE_DIR
#define LONGATTN_SOURCE_DIR "."
#endif

namespace longattn::bench {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw InputError(fmt::format("suite {}: {}", where, what));
}

const json& array_field(const json& g, const char* key, const std::string& where) {
  if (!g.contains(key) || !g[key].is_array() || g[key].empty())
    bad(where, fmt::format("'{}' must be a non-empty array", key));
  return g[key];
}

Index length_of(const json& v, const std::string& where) {
  if (v.is_number_integer()) return v.get<Index>();
  if (v.is_string()) return parse_length(v.get<std::string>(), where);
  bad(where, "a sequence length must be an integer or a string like \"16K\"");
}

MaskAxis mask_axis(const json& m, const std::string& where) {
  MaskAxis a;
  if (m.is_string()) {
    a.pattern = parse_pattern(m.get<std::string>());
    return a;
  }
  if (!m.is_object() || !m.contains("pattern") || !m["pattern"].is_string())
    bad(where, "a mask is a pattern name or an object with \"pattern\"");
  a.pattern = parse_pattern(m["pattern"].get<std::string>());
  MaskParams& p = a.params;
  for (auto& [key, v] : m.items()) {
    try {
      if (key == "pattern") continue;
      else if (key == "window") p.window = v.get<Index>();
      else if (key == "global") p.global = v.get<Index>();
      else if (key == "prefix") p.prefix = v.get<Index>();
      else if (key == "block") p.block = v.get<Index>();
      else if (key == "sparse_block") p.sparse_block = v.get<Index>();
      else if (key == "min_block") p.min_block = v.get<Index>();
      else if (key == "average_block") p.average_block = v.get<Index>();
      else if (key == "keep") p.keep = v.get<double>();
      else if (key == "sparse_causal") p.sparse_causal = v.get<bool>();
      else if (key == "sparse_heads") p.sparse_heads = v.get<int>();
      else if (key == "selection") p.selection = parse_selection(v.get<std::string>());
      else if (key == "histogram") p.histogram = builtin_histogram(v.get<std::string>());
      else bad(where, fmt::format("unknown mask parameter '{}'", key));
    } catch (const json::exception&) {
      bad(where, fmt::format("mask parameter '{}' has the wrong type", key));
    }
  }
  return a;
}

Grid parse_grid(const json& g, const std::string& where, bool gpu) {
  if (!g.is_object()) bad(where, "a grid must be an object");
  Grid out = gpu ? default_gpu_grid() : default_cpu_grid();
  try {
    if (g.contains("backends")) out.backends = g["backends"].get<std::vector<std::string>>();
    out.masks.clear();
    for (const json& m : array_field(g, "masks", where)) {
      if (m == "static") {
        for (const PatternInfo& p : all_patterns())
          if (p.family != PatternFamily::dynamic) out.masks.push_back({p.pattern, {}});
      } else {
        out.masks.push_back(mask_axis(m, where));
      }
    }
    out.seqlens.clear();
    for (const json& s : array_field(g, "seqlens", where)) out.seqlens.push_back(length_of(s, where));
    if (g.contains("heads")) {
      out.heads.clear();
      for (const json& h : g["heads"]) out.heads.push_back(parse_heads(h.get<std::string>()));
    }
    if (g.contains("head_dims")) out.head_dims = g["head_dims"].get<std::vector<int>>();
    if (g.contains("dtypes")) {
      out.dtypes.clear();
      for (const json& d : g["dtypes"]) out.dtypes.push_back(parse_dtype(d.get<std::string>()));
    }
    if (g.contains("directions")) {
      out.directions.clear();
      for (const json& d : g["directions"]) out.directions.push_back(parse_direction(d.get<std::string>()));
    }
    if (g.contains("draws")) out.draws = g["draws"].get<int>();
    if (g.contains("seed")) out.seed = g["seed"].get<std::uint64_t>();
  } catch (const json::exception& e) {
    bad(where, fmt::format("a field has the wrong type ({})", e.what()));
  }
  return out;
}

std::vector<Index> lengths_of(const json& a, const std::string& where) {
  std::vector<Index> out;
  for (const json& v : a) out.push_back(length_of(v, where));
  return out;
}

std::vector<std::string> names_or_numbers(const json& a, const char* key, const std::string& where) {
  if (!a.is_array()) bad(where, fmt::format("cp.{} must be an array", key));
  std::vector<std::string> out;
  for (const json& v : a) {
    if (v.is_string()) out.push_back(v.get<std::string>());
    else if (v.is_number_integer()) out.push_back(std::to_string(v.get<long long>()));
    else bad(where, fmt::format("cp.{}: '{}' is neither a name nor a number", key, v.dump()));
  }
  return out;
}

CpGrid parse_cp_grid(const json& g, const std::string& where) {
  for (const char* key : {"backends", "draws"})
    if (g.contains(key)) bad(where, fmt::format("'{}' does not apply to a CP grid", key));
  const json& cp = g["cp"];
  if (!cp.is_object()) bad(where, "'cp' must be an object");
  CpGrid out;
  try {
    for (auto& [key, v] : cp.items()) {
      if (key == "algorithms") out.algorithms = names_or_numbers(v, "algorithms", where);
      else if (key == "ulysses") out.ulysses = names_or_numbers(v, "ulysses", where);
      else if (key == "inner_rings") out.inner_rings = v.get<std::vector<int>>();
      else if (key == "gather_groups") out.gather_groups = v.get<std::vector<int>>();
      else if (key == "dispatches") out.dispatches = v.get<std::vector<std::string>>();
      else if (key == "balance_chunks") out.balance_chunks = v.get<int>();
      else if (key == "tokens_per_rank") out.tokens_per_rank = lengths_of(v, where);
      else bad(where, fmt::format("unknown cp key '{}'", key));
    }
    for (const json& m : array_field(g, "masks", where)) out.masks.push_back(mask_axis(m, where));
    if (g.contains("seqlens")) out.seqlens = lengths_of(g["seqlens"], where);
    if (out.seqlens.empty() == out.tokens_per_rank.empty())
      bad(where, "a CP grid gives cp.tokens_per_rank (weak scaling) or seqlens, exactly one");
    if (g.contains("heads"))
      for (const json& h : g["heads"]) out.heads.push_back(parse_heads(h.get<std::string>()));
    if (g.contains("head_dims")) out.head_dims = g["head_dims"].get<std::vector<int>>();
    if (g.contains("dtypes"))
      for (const json& d : g["dtypes"]) out.dtypes.push_back(parse_dtype(d.get<std::string>()));
    if (g.contains("directions")) {
      out.directions.clear();
      for (const json& d : g["directions"]) out.directions.push_back(parse_direction(d.get<std::string>()));
    }
    if (g.contains("seed")) out.seed = g["seed"].get<std::uint64_t>();
  } catch (const json::exception& e) {
    bad(where, fmt::format("a field has the wrong type ({})", e.what()));
  }
  if (out.balance_chunks < 1) bad(where, "cp.balance_chunks must be >= 1");
  return out;
}

}  // namespace

Suite parse_suite(const json& j, const std::string& source) {
  if (!j.is_object()) bad(source, "the file must hold a JSON object");
  Suite s;
  s.source = source;
  if (!j.contains("name") || !j["name"].is_string()) bad(source, "'name' must be a string");
  s.name = j["name"].get<std::string>();
  s.version = j.value("version", 1);
  s.description = j.value("description", "");
  for (const char* kind : {"gpu", "cpu"}) {
    if (!j.contains(kind)) continue;
    if (!j[kind].is_array()) bad(source, fmt::format("'{}' must be an array of grids", kind));
    const bool gpu = kind == std::string("gpu");
    int n = 0;
    for (const json& g : j[kind]) {
      const std::string where = fmt::format("{} {}[{}]", source, kind, n++);
      if (g.is_object() && g.contains("cp"))
        (gpu ? s.cp_gpu : s.cp_cpu).push_back(parse_cp_grid(g, where));
      else
        (gpu ? s.gpu : s.cpu).push_back(parse_grid(g, where, gpu));
    }
  }
  if (s.gpu.empty() && s.cpu.empty() && !s.is_cp())
    bad(source, "it defines no grid ('gpu' or 'cpu')");
  if (s.is_cp() && !(s.gpu.empty() && s.cpu.empty()))
    bad(source, "it mixes CP grids (with \"cp\") and kernel grids; keep them in separate suites");
  return s;
}

std::string suites_dir() {
  if (const char* d = std::getenv("LONGATTN_SUITES_DIR")) return d;
  return (fs::path(LONGATTN_SOURCE_DIR) / "suites").string();
}

std::vector<std::string> list_suites() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(suites_dir(), ec))
    if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

Suite load_suite(const std::string& name_or_path) {
  fs::path path = name_or_path;
  if (path.extension() != ".json") path = fs::path(suites_dir()) / (name_or_path + ".json");
  std::ifstream in(path);
  if (!in) {
    std::string known;
    for (const auto& n : list_suites()) known += (known.empty() ? "" : ", ") + n;
    throw InputError(fmt::format("unknown suite '{}' (no file {}; known suites: {})", name_or_path,
                                 path.string(), known.empty() ? "none" : known));
  }
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) bad(path.string(), "not valid JSON");
  return parse_suite(j, path.string());
}

std::vector<Case> suite_cases(const Suite& s, bool gpu) {
  if (s.is_cp())
    throw InputError(fmt::format("suite '{}' is a context-parallel suite: its cases depend on the "
                                 "rank count (run it under mpirun)", s.name));
  const std::vector<Grid>& grids = gpu ? s.gpu : s.cpu;
  if (grids.empty())
    throw InputError(fmt::format("suite '{}' defines no grid for {} machines", s.name,
                                 gpu ? "GPU" : "CPU-only"));
  std::vector<Case> cases;
  for (const Grid& g : grids) {
    auto part = expand(g);
    cases.insert(cases.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return cases;
}

std::string case_key(const json& record) {
  return record.at("backend").dump() + record.at("case").dump();
}

std::string case_key(const Case& c) {
  Record r;
  r.c = c;
  return case_key(to_json(r));
}

}  // namespace longattn::bench

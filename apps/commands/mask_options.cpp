#include "commands/mask_options.hpp"

#include "longattn/units.hpp"

#include <fmt/format.h>

#include <charconv>
#include <filesystem>
#include <limits>
#include <numeric>

#include "longattn/error.hpp"
#include "longattn/mask_json.hpp"
#include "longattn/sampler.hpp"
#include "longattn/views/cu_seqlens.hpp"

namespace longattn::cli {
namespace {

constexpr const char* kParamGroup = "Mask parameters";

// A whole signed integer, nothing else.
std::optional<Index> parse_integer(std::string_view text) {
  Index value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

void add_mask_param_options(CLI::App& app, MaskOptions& o) {
  MaskParams& p = o.params;
  app.add_option("--window", p.window, "sliding windows: keys allowed within w of the query")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--global", p.global, "global_sliding_window: first g rows and columns are global")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--prefix", o.prefix, "prefix_lm_causal: prefix length p (default: seeded in [1, S])")
      ->group(kParamGroup);
  app.add_option("--block", p.block, "block_causal_document: block size b")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--sparse-block", p.sparse_block, "block_sparse_uniform: block size")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--min-block", p.min_block, "block_sparse_variable: smallest block")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--avg-block", p.average_block, "block_sparse_variable: average block")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--keep", p.keep, "block-sparse: fraction of key blocks kept per query block, in (0, 1]")
      ->capture_default_str()->group(kParamGroup);
  app.add_flag("--sparse-causal", p.sparse_causal, "block-sparse: also require j <= i")
      ->group(kParamGroup);
  app.add_option("--sparse-heads", p.sparse_heads, "block-sparse: KV heads with their own pattern")
      ->capture_default_str()->group(kParamGroup);
  app.add_option("--selection", o.selection,
                 "block-sparse: kept blocks by seeded 'random' scores (default) or 'importance' "
                 "(pooled Q . K of the case's inputs; bench only)")
      ->group(kParamGroup);
  app.add_option("--doc-lens", o.doc_lens,
                 "document patterns: explicit lengths, e.g. 1000,250,2846 (instead of sampling)")
      ->group(kParamGroup);
  app.add_option("--histogram", o.histogram,
                 "document sampler histogram: pile, prolong64k, prolong512k or FILE.csv "
                 "(rows begin,end,probability; default: chosen by S)")
      ->group(kParamGroup);
}

void add_mask_options(CLI::App& app, MaskOptions& o) {
  app.add_option("pattern", o.pattern, "mask pattern (see `longattn masks list`)");
  app.add_option("-S,--seqlen", o.seqlen, "sequence length: 4096, 16K, 1M (K = 1024)");
  app.add_option("--seed", o.seed, "seed of every random draw (documents, prefixes, blocks)")
      ->capture_default_str();
  add_mask_param_options(app, o);
  app.add_option("--mask-file", o.mask_file,
                 "load the mask from a JSON slice list instead of a PATTERN (see `masks export`)");
}

Index parse_seqlen(std::string_view text, std::string_view flag) { return parse_length(text, flag); }

std::vector<Index> parse_index_list(std::string_view text, std::string_view flag) {
  std::vector<Index> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t comma = text.find(',', pos);
    const std::string_view item = text.substr(pos, comma == std::string_view::npos ? text.npos : comma - pos);
    const auto value = parse_integer(item);
    if (!value)
      throw InputError(fmt::format("{}: '{}' is not an integer (expected a list like 1000,250,8)", flag, item));
    out.push_back(*value);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

MaskParams to_params(const MaskOptions& o) {
  MaskParams p = o.params;
  if (!o.prefix.empty()) {
    const auto value = parse_integer(o.prefix);
    if (!value) throw InputError(fmt::format("--prefix: '{}' is not an integer", o.prefix));
    p.prefix = *value;
  }
  if (!o.doc_lens.empty()) p.doc_lens = parse_index_list(o.doc_lens, "--doc-lens");
  if (!o.selection.empty()) p.selection = parse_selection(o.selection);
  if (!o.histogram.empty()) {
    const std::string& h = o.histogram;
    if (h == "pile" || h == "prolong64k" || h == "prolong512k") {
      p.histogram = builtin_histogram(h);
    } else if (std::filesystem::is_regular_file(h)) {
      p.histogram = load_histogram_csv(h);
    } else {
      throw InputError(fmt::format(
          "--histogram: '{}' is neither a built-in histogram (pile, prolong64k, prolong512k) nor a "
          "readable CSV file",
          h));
    }
  }
  return p;
}

MaskSpec to_spec(const MaskOptions& o, std::string_view pattern, Index seqlen, std::uint64_t seed) {
  MaskSpec spec;
  spec.pattern = parse_pattern(pattern);
  spec.seqlen = seqlen;
  spec.params = to_params(o);
  spec.seed = seed;
  return spec;
}

MaskSpec to_spec(const MaskOptions& o) {
  if (o.pattern.empty())
    throw InputError("no mask: give a PATTERN (see `longattn masks list`) or --mask-file FILE.json");
  Index seqlen = 0;
  if (!o.seqlen.empty()) {
    seqlen = parse_seqlen(o.seqlen);
  } else if (!o.doc_lens.empty()) {
    const auto lens = parse_index_list(o.doc_lens, "--doc-lens");
    seqlen = std::accumulate(lens.begin(), lens.end(), Index(0));
  } else {
    throw InputError("--seqlen is required (e.g. --seqlen 4096, 16K or 1M)");
  }
  return to_spec(o, o.pattern, seqlen, o.seed);
}

ResolvedMask resolve_mask(const MaskOptions& o) {
  if (o.mask_file.empty()) return {make_mask(to_spec(o)), std::nullopt};
  if (!o.pattern.empty())
    throw InputError(fmt::format("give either a PATTERN ('{}') or --mask-file, not both", o.pattern));
  if (!std::filesystem::exists(o.mask_file))
    throw InputError(fmt::format("--mask-file: '{}' does not exist", o.mask_file));
  GeneratedMask g;
  g.mask = load_mask_file(o.mask_file);
  g.spec.seqlen = seqlen_of(g.mask);
  if (!o.seqlen.empty() && parse_seqlen(o.seqlen) != g.spec.seqlen)
    throw InputError(fmt::format("--seqlen {} disagrees with the mask in '{}' (S = {})", o.seqlen,
                                 o.mask_file, g.spec.seqlen));
  // A loaded document mask (diagonal squares tiling [0, S)) reports its documents too.
  if (const auto* s = std::get_if<SliceMask>(&g.mask)) {
    const auto view = cu_seqlens(*s);
    if (const auto* c = std::get_if<CuSeqlens>(&view)) {
      std::vector<Index> lengths;
      for (std::size_t d = 0; d + 1 < c->offsets.size(); ++d) lengths.push_back(c->offsets[d + 1] - c->offsets[d]);
      g.documents = Documents(std::move(lengths));
    }
  }
  return {std::move(g), o.mask_file};
}

void add_head_options(CLI::App& app, HeadOptions& o) {
  app.add_option("--heads", o.heads,
                 "query:KV heads, e.g. 64:8 (GQA) or 32 (= 32:32); default: 1:1, or H:H for a "
                 "block-sparse mask with H heads");
  app.add_option("--head-dim", o.head_dim, "head dimension D")->capture_default_str();
}

HeadConfig parse_heads(std::string_view text) { return longattn::parse_heads(text); }

HeadConfig to_head_config(const HeadOptions& o, int mask_heads) {
  HeadConfig h = o.heads.empty() ? parse_heads(std::to_string(mask_heads)) : parse_heads(o.heads);
  h.head_dim = o.head_dim;
  try {
    validate(h);
  } catch (const InputError& e) {
    throw InputError(fmt::format("--heads {} --head-dim {}: {}", o.heads, o.head_dim, e.what()));
  }
  return h;
}

std::string with_commas(Index n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace longattn::cli

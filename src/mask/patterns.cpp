#include "longattn/patterns.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "longattn/error.hpp"
#include "longattn/rng.hpp"
#include "top_k.hpp"

namespace longattn {

namespace {

// Independent random streams of one mask: adding draws to one never shifts another.
enum Stream : std::uint64_t {
  kPrefixes = 2,
  kBlockDocuments = 3,
  kPartition = 4,
  kBlockScores = 100,  // + KV head
};

constexpr std::array<PatternInfo, 14> kPatterns{{
    {Pattern::full, "full", PatternFamily::regular, false, "always", ""},
    {Pattern::causal, "causal", PatternFamily::regular, false, "j <= i", ""},
    {Pattern::full_document, "full_document", PatternFamily::regular, true, "doc(i) = doc(j)",
     "documents"},
    {Pattern::causal_document, "causal_document", PatternFamily::regular, true,
     "doc(i) = doc(j) and j <= i", "documents"},
    {Pattern::sliding_window, "sliding_window", PatternFamily::regular, false, "|i - j| <= w",
     "window w (1024)"},
    {Pattern::sliding_window_causal, "sliding_window_causal", PatternFamily::regular, false,
     "0 <= i - j <= w", "window w (1024)"},
    {Pattern::shared_question, "shared_question", PatternFamily::heterogeneous, true,
     "(doc(j) = 0 or doc(i) = doc(j)) and j <= i", "documents; doc 0 is the question"},
    {Pattern::causal_blockwise, "causal_blockwise", PatternFamily::heterogeneous, true,
     "(doc(i) = last or doc(i) = doc(j)) and j <= i", "documents"},
    {Pattern::prefix_lm_causal, "prefix_lm_causal", PatternFamily::heterogeneous, false,
     "j < max(p, i + 1)", "prefix p (seeded uniform in [1, S])"},
    {Pattern::prefix_lm_document, "prefix_lm_document", PatternFamily::heterogeneous, true,
     "doc(i) = doc(j) and (j - s_d < p_d or j <= i)",
     "documents; p_d seeded uniform in [1, L_d]"},
    {Pattern::global_sliding_window, "global_sliding_window", PatternFamily::heterogeneous, false,
     "i < g or j < g or |i - j| <= w", "global g (512), window w (1024)"},
    {Pattern::block_causal_document, "block_causal_document", PatternFamily::heterogeneous, true,
     "doc(i) = doc(j) and floor((j - s_d) / b) <= floor((i - s_d) / b)",
     "block b (1024); documents of 1-8 whole blocks, seeded, the last cut to fit"},
    {Pattern::block_sparse_uniform, "block_sparse_uniform", PatternFamily::dynamic, false,
     "block(j) in kept(h, block(i)) [and j <= i]",
     "sparse block (128), keep (0.5), sparse causal (false), sparse heads (1)"},
    {Pattern::block_sparse_variable, "block_sparse_variable", PatternFamily::dynamic, false,
     "block(j) in kept(h, block(i)) [and j <= i], variable blocks",
     "min block (128), average block (256), keep (0.5), sparse causal (false), sparse heads (1)"},
}};

[[noreturn]] void bad(std::string msg) { throw InputError(std::move(msg)); }

void check_params(const MaskSpec& spec) {
  const MaskParams& p = spec.params;
  const Index s = spec.seqlen;
  if (s <= 0) bad(fmt::format("seqlen must be positive (got {})", s));
  if (p.window < 0) bad(fmt::format("window must be >= 0 (got {})", p.window));
  if (p.global < 0) bad(fmt::format("global must be >= 0 (got {})", p.global));
  if (spec.pattern == Pattern::prefix_lm_causal && p.prefix && (*p.prefix < 1 || *p.prefix > s))
    bad(fmt::format("prefix must be in [1, seqlen = {}] (got {})", s, *p.prefix));
  if (p.block < 1) bad(fmt::format("block must be >= 1 (got {})", p.block));
  if (p.sparse_block < 1) bad(fmt::format("sparse block must be >= 1 (got {})", p.sparse_block));
  if (p.min_block < 1) bad(fmt::format("min block must be >= 1 (got {})", p.min_block));
  if (p.average_block < p.min_block)
    bad(fmt::format("average block ({}) must be >= min block ({})", p.average_block,
                    p.min_block));
  if (!(p.keep > 0.0 && p.keep <= 1.0))
    bad(fmt::format("keep ratio must be in (0, 1] (got {})", p.keep));
  if (p.sparse_heads < 1) bad(fmt::format("sparse heads must be >= 1 (got {})", p.sparse_heads));
  if (p.doc_lens) {
    Index sum = 0;
    for (Index l : *p.doc_lens) {
      if (l <= 0) bad(fmt::format("document lengths must be positive (got {})", l));
      sum += l;
    }
    if (sum != s)
      bad(fmt::format("document lengths sum to {} but seqlen is {}", sum, s));
  }
}

Documents documents_for(const MaskSpec& spec) {
  const MaskParams& p = spec.params;
  if (p.doc_lens) return Documents(*p.doc_lens);
  if (spec.pattern == Pattern::block_causal_document) {
    // Documents of 1 to 8 whole blocks; the last one is cut to fit.
    Rng rng(spec.seed, kBlockDocuments);
    std::vector<Index> lens;
    for (Index filled = 0; filled < spec.seqlen;) {
      const Index len = std::min(p.block * rng.uniform_int(1, 8), spec.seqlen - filled);
      lens.push_back(len);
      filled += len;
    }
    return Documents(std::move(lens));
  }
  const Histogram& h = p.histogram ? *p.histogram : histogram_for(spec.seqlen);
  return sample_documents(h, spec.seqlen, spec.seed);
}

// Prefix-LM inside rows/keys [s, e): the first p keys are visible to every row, the rest causal.
void append_prefix_lm(std::vector<Slice>& out, Range doc, Index p) {
  const Index split = doc.begin + p;
  out.push_back({{doc.begin, split}, {doc.begin, split}, SliceType::full});
  if (split < doc.end) {
    out.push_back({{split, doc.end}, {doc.begin, split}, SliceType::full});
    out.push_back({{split, doc.end}, {split, doc.end}, SliceType::causal});
  }
}

SliceMask static_mask(const MaskSpec& spec, const Documents* docs, std::vector<Index>& prefixes) {
  const MaskParams& p = spec.params;
  const Index s = spec.seqlen;
  const Range all{0, s};
  std::vector<Slice> out;
  auto each_doc = [&](auto&& f) {
    for (Index d = 0; d < docs->count(); ++d) f(d, docs->doc(d));
  };
  switch (spec.pattern) {
    case Pattern::full: out.push_back({all, all, SliceType::full}); break;
    case Pattern::causal: out.push_back({all, all, SliceType::causal}); break;
    case Pattern::full_document:
      each_doc([&](Index, Range r) { out.push_back({r, r, SliceType::full}); });
      break;
    case Pattern::causal_document:
      each_doc([&](Index, Range r) { out.push_back({r, r, SliceType::causal}); });
      break;
    case Pattern::sliding_window: append_diagonal_band(out, all, all, -p.window, p.window); break;
    case Pattern::sliding_window_causal: append_diagonal_band(out, all, all, -p.window, 0); break;
    case Pattern::shared_question: {
      const Range question = docs->doc(0);
      each_doc([&](Index d, Range r) {
        if (d > 0) out.push_back({r, question, SliceType::full});
        out.push_back({r, r, SliceType::causal});
      });
      break;
    }
    case Pattern::causal_blockwise: {
      const Index last = docs->count() - 1;
      each_doc([&](Index d, Range r) {
        if (d == last && r.begin > 0) out.push_back({r, {0, r.begin}, SliceType::full});
        out.push_back({r, r, SliceType::causal});
      });
      break;
    }
    case Pattern::prefix_lm_causal: {
      const Index pre = p.prefix ? *p.prefix : Rng(spec.seed, kPrefixes).uniform_int(1, s);
      prefixes = {pre};
      append_prefix_lm(out, all, pre);
      break;
    }
    case Pattern::prefix_lm_document: {
      Rng rng(spec.seed, kPrefixes);
      each_doc([&](Index, Range r) {
        const Index pre = rng.uniform_int(1, r.size());
        prefixes.push_back(pre);
        append_prefix_lm(out, r, pre);
      });
      break;
    }
    case Pattern::global_sliding_window: {
      const Index g = std::min(p.global, s);  // g >= S: every row is global
      if (g > 0) out.push_back({{0, g}, all, SliceType::full});  // global rows see every key
      if (g < s) {
        if (g > 0) out.push_back({{g, s}, {0, g}, SliceType::full});  // every row sees globals
        append_diagonal_band(out, {g, s}, {g, s}, -p.window, p.window);
      }
      break;
    }
    case Pattern::block_causal_document:
      each_doc([&](Index, Range r) {
        for (Index b = r.begin; b < r.end; b += p.block) {
          const Index e = std::min(r.end, b + p.block);
          out.push_back({{b, e}, {r.begin, e}, SliceType::full});
        }
      });
      break;
    default: bad("internal: not a static pattern");
  }
  return SliceMask(s, std::move(out));
}

BlockPartition partition_for(const MaskSpec& spec) {
  const MaskParams& p = spec.params;
  const Index s = spec.seqlen;
  if (spec.pattern == Pattern::block_sparse_uniform) return BlockPartition::uniform(s, p.sparse_block);
  // Variable blocks: N = S / average blocks of min + (differences of sorted cut points).
  const Index n = std::max<Index>(1, s / p.average_block);
  const Index spare = s - n * p.min_block;
  if (spare < 0) return BlockPartition({0, s});  // S below min block: one block
  Rng rng(spec.seed, kPartition);
  std::vector<Index> cuts(n - 1);
  for (Index& c : cuts) c = rng.uniform_int(0, spare);
  std::sort(cuts.begin(), cuts.end());
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(spare);
  std::vector<Index> starts{0};
  for (Index b = 0; b < n; ++b) starts.push_back(starts.back() + p.min_block + cuts[b + 1] - cuts[b]);
  return BlockPartition(std::move(starts));
}

BlockSparseMask sparse_mask(const MaskSpec& spec) {
  const MaskParams& p = spec.params;
  BlockPartition blocks = partition_for(spec);
  const Index n = blocks.num_blocks();
  std::vector<BlockLists> kept(p.sparse_heads);
  std::vector<double> score(n);
  std::vector<std::int32_t> order;
  for (int h = 0; h < p.sparse_heads; ++h) {
    Rng rng(spec.seed, kBlockScores + std::uint64_t(h));
    BlockLists& l = kept[h];
    l.offsets.push_back(0);
    for (Index qb = 0; qb < n; ++qb) {
      for (double& v : score) v = rng.uniform01();  // scores of every key block, causal or not
      detail::append_top_k(score, detail::candidate_blocks(qb, n, p.sparse_causal), p.keep, order,
                           l.indices);
      l.offsets.push_back(Index(l.indices.size()));
    }
  }
  return BlockSparseMask(std::move(blocks), std::move(kept), p.sparse_causal);
}

}  // namespace

std::span<const PatternInfo> all_patterns() { return kPatterns; }

const PatternInfo& info(Pattern p) { return kPatterns[static_cast<size_t>(p)]; }

std::string_view to_string(Pattern p) { return info(p).name; }

Pattern parse_pattern(std::string_view name) {
  for (const PatternInfo& i : kPatterns)
    if (i.name == name) return i.pattern;
  std::string names;
  for (const PatternInfo& i : kPatterns) names += fmt::format("{}{}", names.empty() ? "" : ", ", i.name);
  throw InputError(fmt::format("unknown mask pattern '{}' (known: {})", name, names));
}

std::string_view to_string(BlockSelection s) {
  return s == BlockSelection::random ? "random" : "importance";
}

BlockSelection parse_selection(std::string_view name) {
  if (name == "random") return BlockSelection::random;
  if (name == "importance") return BlockSelection::importance;
  throw InputError(fmt::format("unknown block selection '{}' (known: random, importance)", name));
}

BlockPartition block_partition(const MaskSpec& spec) {
  check_params(spec);
  if (info(spec.pattern).family != PatternFamily::dynamic)
    bad(fmt::format("{} is not a block-sparse pattern", to_string(spec.pattern)));
  return partition_for(spec);
}

GeneratedMask make_mask(const MaskSpec& spec) {
  check_params(spec);
  GeneratedMask g{spec, SliceMask{}, std::nullopt, {}};
  if (info(spec.pattern).family == PatternFamily::dynamic) {
    if (spec.params.selection == BlockSelection::importance)
      bad(fmt::format("{} with importance selection is scored from the inputs: "
                      "make_importance_block_mask (the bench builds it from the case's Q and K)",
                      to_string(spec.pattern)));
    g.mask = sparse_mask(spec);
    return g;
  }
  if (info(spec.pattern).uses_documents) g.documents = documents_for(spec);
  g.mask = static_mask(spec, g.documents ? &*g.documents : nullptr, g.prefixes);
  return g;
}

Index seqlen_of(const Mask& m) {
  return std::visit(
      [](const auto& x) -> Index {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, SliceMask>) return x.seqlen_q();
        else return x.seqlen();
      },
      m);
}

Index total_area(const Mask& m) {
  return std::visit(
      [](const auto& x) -> Index {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, SliceMask>) return x.area();
        else return x.total_area();
      },
      m);
}

int mask_heads(const Mask& m) {
  if (auto* b = std::get_if<BlockSparseMask>(&m)) return b->num_heads();
  return 1;
}

double density_of(const Mask& m) {
  const double s = double(seqlen_of(m));
  if (auto* sm = std::get_if<SliceMask>(&m)) return sm->density();
  return double(total_area(m)) / (mask_heads(m) * s * s);
}

}  // namespace longattn

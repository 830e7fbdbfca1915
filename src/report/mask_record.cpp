#include "longattn/report/mask_record.hpp"

#include <algorithm>
#include <numeric>

#include "longattn/sampler.hpp"

namespace longattn {
namespace {

nlohmann::json slice_json(const Slice& s) {
  return {{"q", {s.q.begin, s.q.end}}, {"k", {s.k.begin, s.k.end}}, {"type", std::string(to_string(s.type))}};
}

nlohmann::json documents_json(const Documents& docs) {
  const DocumentStats st = document_stats(docs);
  return {{"count", st.count}, {"min", st.min_length}, {"mean", st.mean_length}, {"max", st.max_length}};
}

nlohmann::json prefixes_json(const std::vector<Index>& p, Index max_listed) {
  if (p.empty()) return nullptr;
  const auto [lo, hi] = std::minmax_element(p.begin(), p.end());
  const double mean = double(std::accumulate(p.begin(), p.end(), Index(0))) / double(p.size());
  const auto listed = std::min<std::size_t>(p.size(), std::size_t(std::max<Index>(max_listed, 0)));
  return {{"count", p.size()}, {"min", *lo}, {"mean", mean}, {"max", *hi},
          {"first", std::vector<Index>(p.begin(), p.begin() + std::ptrdiff_t(listed))}};
}

void add_documents_source(nlohmann::json& j, const MaskParams& p, Index seqlen) {
  if (p.doc_lens) {
    j["doc_lens"] = *p.doc_lens;
  } else {
    j["histogram"] = p.histogram ? p.histogram->name : histogram_for(seqlen).name;
  }
}

}  // namespace

std::string_view to_string(PatternFamily f) {
  switch (f) {
    case PatternFamily::regular: return "regular";
    case PatternFamily::heterogeneous: return "heterogeneous";
    case PatternFamily::dynamic: return "dynamic";
  }
  return "unknown";
}

nlohmann::json mask_parameters(const GeneratedMask& g) {
  const MaskParams& p = g.spec.params;
  nlohmann::json j = nlohmann::json::object();
  switch (g.spec.pattern) {
    case Pattern::full:
    case Pattern::causal:
      break;
    case Pattern::sliding_window:
    case Pattern::sliding_window_causal:
      j["window"] = p.window;
      break;
    case Pattern::global_sliding_window:
      j["global"] = p.global;
      j["window"] = p.window;
      break;
    case Pattern::prefix_lm_causal:
      if (!g.prefixes.empty()) j["prefix"] = g.prefixes.front();
      j["prefix_seeded"] = !p.prefix.has_value();
      break;
    case Pattern::block_causal_document:
      j["block"] = p.block;
      if (p.doc_lens) j["doc_lens"] = *p.doc_lens;
      break;
    case Pattern::block_sparse_uniform:
      j["sparse_block"] = p.sparse_block;
      j["keep"] = p.keep;
      j["sparse_causal"] = p.sparse_causal;
      j["sparse_heads"] = p.sparse_heads;
      j["selection"] = to_string(p.selection);
      break;
    case Pattern::block_sparse_variable:
      j["min_block"] = p.min_block;
      j["average_block"] = p.average_block;
      j["keep"] = p.keep;
      j["sparse_causal"] = p.sparse_causal;
      j["sparse_heads"] = p.sparse_heads;
      j["selection"] = to_string(p.selection);
      break;
    case Pattern::full_document:
    case Pattern::causal_document:
    case Pattern::shared_question:
    case Pattern::causal_blockwise:
    case Pattern::prefix_lm_document:
      add_documents_source(j, p, g.spec.seqlen);
      break;
  }
  return j;
}

nlohmann::json mask_record(const GeneratedMask& g, const MaskRecordOptions& opt) {
  nlohmann::json j;
  if (opt.source_file.empty()) {
    const PatternInfo& pi = info(g.spec.pattern);
    j["pattern"] = std::string(pi.name);
    j["family"] = std::string(to_string(pi.family));
    j["parameters"] = mask_parameters(g);
    j["seed"] = g.spec.seed;
  } else {
    j["pattern"] = nullptr;
    j["source"] = opt.source_file;
  }
  j["seqlen"] = seqlen_of(g.mask);
  j["mask_heads"] = mask_heads(g.mask);
  j["area"] = total_area(g.mask);
  j["density"] = density_of(g.mask);

  if (const auto* s = std::get_if<SliceMask>(&g.mask)) {
    const auto& slices = s->slices();
    nlohmann::json first = nlohmann::json::array();
    for (std::size_t i = 0; i < slices.size() && Index(i) < opt.max_slices; ++i)
      first.push_back(slice_json(slices[i]));
    j["slices"] = {{"count", slices.size()}, {"first", std::move(first)}};
    j["blocks"] = nullptr;
  } else {
    const auto& b = std::get<BlockSparseMask>(g.mask);
    Index kept = 0;
    for (int h = 0; h < b.num_heads(); ++h) kept += b.kept_blocks(h);
    j["slices"] = nullptr;
    j["blocks"] = {{"count", b.blocks().num_blocks()},
                   {"kept", kept},
                   {"block_density", b.block_density()},
                   {"causal", b.causal()}};
  }
  j["documents"] = g.documents ? documents_json(*g.documents) : nlohmann::json(nullptr);
  j["prefixes"] = prefixes_json(g.prefixes, opt.max_prefixes);
  return j;
}

}  // namespace longattn

#pragma once
// The 14 mask patterns of DESIGN.md section 2 and the one function that makes any of them from
// (pattern, S, parameters, seed).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "longattn/block_sparse.hpp"
#include "longattn/mask.hpp"
#include "longattn/sampler.hpp"

namespace longattn {

enum class Pattern {
  full,
  causal,
  full_document,
  causal_document,
  sliding_window,
  sliding_window_causal,
  shared_question,
  causal_blockwise,
  prefix_lm_causal,
  prefix_lm_document,
  global_sliding_window,
  block_causal_document,
  block_sparse_uniform,
  block_sparse_variable,
};

enum class PatternFamily { regular, heterogeneous, dynamic };

struct PatternInfo {
  Pattern pattern;
  std::string_view name;
  PatternFamily family;
  bool uses_documents;          // drawn from the sampler (or --doc-lens)
  std::string_view rule;        // the allowed-pair rule, as in DESIGN.md
  std::string_view parameters;  // which MaskParams fields apply, with defaults
};

std::span<const PatternInfo> all_patterns();  // in DESIGN.md order
const PatternInfo& info(Pattern p);
std::string_view to_string(Pattern p);
Pattern parse_pattern(std::string_view name);  // throws InputError listing the valid names

// How a block-sparse mask picks the kept key blocks of a query block (DESIGN.md section 2): the
// top k of seeded random scores, or of pooled Q . K scores (needs the inputs, see importance.hpp).
enum class BlockSelection { random, importance };
std::string_view to_string(BlockSelection s);
BlockSelection parse_selection(std::string_view name);  // throws InputError naming the choices

// Every parameter of every pattern; each pattern reads only its own (see PatternInfo::parameters).
struct MaskParams {
  Index window = 1024;                       // sliding windows, global_sliding_window
  Index global = 512;                        // global_sliding_window
  std::optional<Index> prefix;               // prefix_lm_causal: p; unset = seeded in [1, S]
  Index block = 1024;                        // block_causal_document
  Index sparse_block = 128;                  // block_sparse_uniform
  Index min_block = 128;                     // block_sparse_variable
  Index average_block = 256;                 // block_sparse_variable
  double keep = 0.5;                         // block-sparse keep ratio, in (0, 1]
  bool sparse_causal = false;                // block-sparse: also require j <= i
  int sparse_heads = 1;                      // block-sparse: KV heads with their own pattern
  BlockSelection selection = BlockSelection::random;  // block-sparse: how kept blocks are chosen
  std::optional<std::vector<Index>> doc_lens;  // explicit documents instead of the sampler
  std::optional<Histogram> histogram;          // sampler histogram; unset = histogram_for(S)
};

struct MaskSpec {
  Pattern pattern = Pattern::full;
  Index seqlen = 0;
  MaskParams params;
  std::uint64_t seed = 0;
};

using Mask = std::variant<SliceMask, BlockSparseMask>;

struct GeneratedMask {
  MaskSpec spec;
  Mask mask;
  std::optional<Documents> documents;  // for document patterns
  std::vector<Index> prefixes;         // prefix_lm_causal: {p}; prefix_lm_document: p_d per doc
};

// Throws InputError for S <= 0, a negative window, a parameter out of range, doc_lens that do not
// sum to S, ... naming the parameter, and for importance selection (it needs the inputs:
// make_importance_block_mask in importance.hpp).
GeneratedMask make_mask(const MaskSpec& spec);

// Throws InputError unless spec is a valid block-sparse spec; its block partition (seeded for
// block_sparse_variable).
BlockPartition block_partition(const MaskSpec& spec);

// Helpers over both kinds of mask.
Index seqlen_of(const Mask& m);
Index total_area(const Mask& m);      // static: area; dynamic: summed over its heads
int mask_heads(const Mask& m);        // 1 for static masks
double density_of(const Mask& m);     // area / (heads * S^2)

}  // namespace longattn

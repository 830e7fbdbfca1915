#pragma once
// Masks as JSON, so they can be exchanged with MagiAttention-style tools.
//
// Static masks, either form (both accepted on input, the first written on output):
//   {"seqlen_q": S, "seqlen_k": S, "q_ranges": [[qs, qe], ...], "k_ranges": [[ks, ke], ...],
//    "attn_type_map": [t, ...]}            t: 0 full, 1 causal, 2 inv_causal, 3 band (bi-causal)
//   {"seqlen": S, "slices": [{"q": [qs, qe], "k": [ks, ke], "type": "causal"}, ...]}
// Block-sparse masks:
//   {"seqlen": S, "block_starts": [0, ..., S], "causal": false, "kept": [[[k, ...] per q block]
//    per head]}
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "longattn/patterns.hpp"

namespace longattn {

nlohmann::json to_json(const SliceMask& m);
nlohmann::json to_json(const BlockSparseMask& m);
nlohmann::json to_json(const Mask& m);

// Throws InputError naming the malformed field (missing key, wrong type, bad range, overlap).
Mask mask_from_json(const nlohmann::json& j);
Mask load_mask_file(const std::string& path);

}  // namespace longattn

#pragma once
// The machine-readable description of a mask carried by `longattn masks show --json`, `longattn
// flops --json` and benchmark results: pattern, parameters, S, seed, area, density, documents,
// slices (or blocks for block-sparse masks) and prefixes.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "longattn/patterns.hpp"

namespace longattn {

std::string_view to_string(PatternFamily f);

// The parameters the spec's pattern reads (see PatternInfo::parameters), with the values used:
// a seeded prefix is reported as drawn.
nlohmann::json mask_parameters(const GeneratedMask& g);

struct MaskRecordOptions {
  Index max_slices = 16;    // slices listed in "slices.first"
  Index max_prefixes = 16;  // prefixes listed in "prefixes.first"
  std::string source_file;  // set for a mask loaded from JSON: reported instead of pattern/seed
};

nlohmann::json mask_record(const GeneratedMask& g, const MaskRecordOptions& opt = {});

}  // namespace longattn

#pragma once
// The varlen view of document masks: cumulative sequence lengths, recognised from the slices
// (diagonal squares tiling [0, S), all full or all causal), never taken from the generator.
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "longattn/mask.hpp"

namespace longattn {

struct CuSeqlens {
  std::vector<Index> offsets;  // 0, s_1, ..., S
  bool causal = false;
};

struct NotDocumentMask {
  std::string reason;
};

std::variant<CuSeqlens, NotDocumentMask> cu_seqlens(const SliceMask& m);

// A mask built from cu_seqlens, for round-trip tests and tools.
SliceMask document_mask(const CuSeqlens& c);

}  // namespace longattn

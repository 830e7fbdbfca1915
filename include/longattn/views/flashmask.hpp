#pragma once
// FlashMask column bounds: for every key column j the masked query rows are
// [uts, ute) ∪ [lts, lte) with uts <= ute <= lts <= lte; everything else is allowed.
// Only masks whose columns have at most two masked row intervals are expressible.
#include <string>
#include <variant>
#include <vector>

#include "longattn/mask.hpp"

namespace longattn {

struct FlashMaskBounds {
  Index seqlen_q = 0;
  std::vector<Index> lts, lte, uts, ute;  // one entry per key column
  bool allows(Index i, Index j) const {
    return !((uts[j] <= i && i < ute[j]) || (lts[j] <= i && i < lte[j]));
  }
};

struct NotExpressible {
  std::string reason;  // names the first column that needs more than two masked intervals
};

// Convention: with two masked intervals the first is the upper (ut) one; a single one is upper
// when it ends at or above the diagonal (ute <= j + 1), lower otherwise. Absent intervals are
// empty: ut = [0, 0), lt = [seqlen_q, seqlen_q).
std::variant<FlashMaskBounds, NotExpressible> flashmask_bounds(const SliceMask& m);

}  // namespace longattn

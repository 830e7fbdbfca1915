// Uniform bands: the bounds are read off the first row each one clips (or off the empty rows at
// the top or bottom), then every row's intervals are checked against the band exactly.
//
// A bound is reported unset when it never clips inside the mask, i.e. when it is at least
// seqlen_q - 1 (left) or seqlen_k - 1 (right): full -> both unset, causal -> right 0, a window
// as wide as the mask -> unset. A bound read off a row that it clips is always below that, so no
// normalisation is needed. An empty mask is not reported as a band (every right < -left is one).
#include "longattn/views/uniform_band.hpp"

#include "longattn/views/row_intervals.hpp"

namespace longattn {

std::optional<UniformBand> uniform_band(const SliceMask& m) {
  const Index sq = m.seqlen_q(), sk = m.seqlen_k();
  const RowIntervals rows = row_intervals(m);
  if (rows.max_intervals_per_row() > 1) return std::nullopt;

  UniformBand band;
  Index first_row = -1, last_row = -1;  // rows with allowed keys
  for (Index i = 0; i < sq; ++i) {
    if (rows.row(i).empty()) continue;
    const Range keys = rows.row(i)[0];
    if (first_row < 0) first_row = i;
    last_row = i;
    if (!band.left && keys.begin > 0) band.left = i - keys.begin;
    if (!band.right && keys.end < sk) band.right = keys.end - 1 - i;
  }
  if (first_row < 0) return std::nullopt;
  // Empty rows above the band come from a negative right bound, below it from the left bound.
  if (!band.right && first_row > 0) band.right = -first_row;
  if (!band.left && last_row < sq - 1) band.left = last_row + 1 - sk;

  for (Index i = 0; i < sq; ++i) {
    const Range expected{band.left ? std::max<Index>(0, i - *band.left) : 0,
                         band.right ? std::min(sk, i + *band.right + 1) : sk};
    const auto got = rows.row(i);
    if (expected.empty() ? !got.empty() : got.size() != 1 || got[0] != expected)
      return std::nullopt;
  }
  return band;
}

}  // namespace longattn

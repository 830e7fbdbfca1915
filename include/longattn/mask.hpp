#pragma once
// The canonical static mask: disjoint slices (q_range, k_range, type), as in MagiAttention and
// LongCA-bench. Every kernel input is a view derived from this form (see views/).
#include <optional>
#include <string_view>
#include <vector>

#include "longattn/range.hpp"

namespace longattn {

// Inside a slice, row r = i - q.begin and column c = j - k.begin, Lq = q.size(), Lk = k.size():
//   full       every (r, c)
//   causal     c <= r + (Lk - Lq)        bottom-right aligned
//   inv_causal c >= r                    top-left aligned
//   band       both of the above
enum class SliceType { full, causal, inv_causal, band };

std::string_view to_string(SliceType t);
std::optional<SliceType> parse_slice_type(std::string_view name);

struct Slice {
  Range q;
  Range k;
  SliceType type = SliceType::full;

  // Each slice is its rectangle intersected with a diagonal band j - i in [lower, upper];
  // a missing bound is unbounded.
  std::optional<Index> lower_offset() const;  // inv_causal, band: k.begin - q.begin
  std::optional<Index> upper_offset() const;  // causal, band:     k.end - q.end

  Range keys_of_row(Index i) const;  // allowed keys of query i (empty when i is outside q)
  Index area() const;                // allowed pairs, in O(1)
  bool allows(Index i, Index j) const;
  friend bool operator==(const Slice&, const Slice&) = default;
};

// Appends the slices of { (i, j) : i in q, j in k, lower <= j - i <= upper } (either bound may be
// absent) to out, split so that every emitted slice has no empty rows. The building block of the
// window patterns and of clipping a slice to a sub-rectangle.
void append_diagonal_band(std::vector<Slice>& out, Range q, Range k, std::optional<Index> lower,
                          std::optional<Index> upper);

// A validated static mask over seqlen_q queries and seqlen_k keys. Slices are non-empty, inside
// the bounds, with pairwise disjoint rectangles, kept sorted by (q.begin, k.begin).
class SliceMask {
 public:
  SliceMask() = default;
  // Throws InputError naming the first problem found.
  SliceMask(Index seqlen_q, Index seqlen_k, std::vector<Slice> slices);
  SliceMask(Index seqlen, std::vector<Slice> slices) : SliceMask(seqlen, seqlen, std::move(slices)) {}

  Index seqlen_q() const { return seqlen_q_; }
  Index seqlen_k() const { return seqlen_k_; }
  const std::vector<Slice>& slices() const { return slices_; }

  Index area() const;     // exact, from the slices
  double density() const;  // area / (seqlen_q * seqlen_k)
  bool allows(Index i, Index j) const;  // O(log n + overlapping slices); for tests and tools

  // The part of the mask inside rows q x keys k, re-based so that q.begin and k.begin are 0.
  // Used by context parallelism: the mask a rank sees for its query chunk and a held K/V chunk.
  SliceMask restrict(Range q, Range k) const;

  // The mask of keys attending queries: (j, i) allowed iff (i, j) is. Backward passes that own a
  // key tile walk the transposed mask's tile map.
  SliceMask transposed() const;

 private:
  Index seqlen_q_ = 0;
  Index seqlen_k_ = 0;
  std::vector<Slice> slices_;
};

}  // namespace longattn

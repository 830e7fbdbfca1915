#include "longattn/mask.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <queue>

#include "clamped_sum.hpp"
#include "longattn/error.hpp"

namespace longattn {

std::string_view to_string(SliceType t) {
  switch (t) {
    case SliceType::full: return "full";
    case SliceType::causal: return "causal";
    case SliceType::inv_causal: return "inv_causal";
    case SliceType::band: return "band";
  }
  return "?";
}

std::optional<SliceType> parse_slice_type(std::string_view name) {
  for (SliceType t : {SliceType::full, SliceType::causal, SliceType::inv_causal, SliceType::band})
    if (to_string(t) == name) return t;
  return std::nullopt;
}

std::optional<Index> Slice::lower_offset() const {
  if (type == SliceType::inv_causal || type == SliceType::band) return k.begin - q.begin;
  return std::nullopt;
}

std::optional<Index> Slice::upper_offset() const {
  if (type == SliceType::causal || type == SliceType::band) return k.end - q.end;
  return std::nullopt;
}

Range Slice::keys_of_row(Index i) const {
  if (!q.contains(i)) return {k.begin, k.begin};
  Index lo = k.begin, hi = k.end;
  if (auto l = lower_offset()) lo = std::max(lo, i + *l);
  if (auto u = upper_offset()) hi = std::min(hi, i + *u + 1);
  return {lo, std::max(lo, hi)};
}

bool Slice::allows(Index i, Index j) const { return keys_of_row(i).contains(j); }

Index Slice::area() const {
  const Index lq = q.size(), lk = k.size(), d = lk - lq;
  switch (type) {
    case SliceType::full: return lq * lk;
    // row r keeps clamp(r + d + 1, 0, Lk) keys
    case SliceType::causal: return detail::clamped_sum(d + 1, lq, 0, lk);
    // row r keeps clamp(Lk - r, 0, Lk) keys; summed in reverse row order
    case SliceType::inv_causal: return detail::clamped_sum(d + 1, lq, 0, lk);
    // row r keeps clamp(Lk - r, 0, d + 1) keys
    case SliceType::band: return d < 0 ? 0 : detail::clamped_sum(d + 1, lq, 0, d + 1);
  }
  return 0;
}

void append_diagonal_band(std::vector<Slice>& out, Range q, Range k, std::optional<Index> lower,
                          std::optional<Index> upper) {
  if (q.empty() || k.empty()) return;
  if (lower && upper && *lower > *upper) return;
  // Rows with at least one key: i + upper >= k.begin and i + lower <= k.end - 1.
  Range rows = q;
  if (upper) rows.begin = std::max(rows.begin, k.begin - *upper);
  if (lower) rows.end = std::min(rows.end, k.end - *lower);
  if (rows.empty()) return;
  // The lower bound follows the diagonal from row k.begin - lower on; the upper bound up to row
  // k.end - 1 - upper. Split the rows there so each piece is one slice type.
  std::vector<Index> cuts{rows.begin, rows.end};
  if (lower) cuts.push_back(k.begin - *lower);
  if (upper) cuts.push_back(k.end - *upper);
  std::sort(cuts.begin(), cuts.end());
  for (size_t c = 0; c + 1 < cuts.size(); ++c) {
    const Range seg{std::max(cuts[c], rows.begin), std::min(cuts[c + 1], rows.end)};
    if (seg.empty()) continue;
    const bool low_diag = lower && seg.begin >= k.begin - *lower;
    const bool high_diag = upper && seg.end <= k.end - *upper;
    const Index ks = low_diag ? seg.begin + *lower : k.begin;
    const Index ke = high_diag ? seg.end + *upper : k.end;
    const SliceType type = low_diag ? (high_diag ? SliceType::band : SliceType::inv_causal)
                                    : (high_diag ? SliceType::causal : SliceType::full);
    out.push_back({seg, {ks, ke}, type});
  }
}

namespace {

bool slice_less(const Slice& a, const Slice& b) {
  return a.q.begin != b.q.begin ? a.q.begin < b.q.begin : a.k.begin < b.k.begin;
}

std::string describe(const Slice& s) {
  return fmt::format("q [{}, {}) k [{}, {}) {}", s.q.begin, s.q.end, s.k.begin, s.k.end,
                     to_string(s.type));
}

// Sweep over rows; the active rectangles' key ranges are pairwise disjoint, so a new rectangle
// only needs checking against its neighbours in key order. O(n log n).
void check_disjoint(const std::vector<Slice>& slices) {
  std::map<Index, size_t> active;  // k.begin -> slice index
  using Expiry = std::pair<Index, Index>;  // (q.end, k.begin)
  std::priority_queue<Expiry, std::vector<Expiry>, std::greater<>> expiries;
  for (size_t n = 0; n < slices.size(); ++n) {
    const Slice& s = slices[n];
    while (!expiries.empty() && expiries.top().first <= s.q.begin) {
      active.erase(expiries.top().second);
      expiries.pop();
    }
    auto next = active.lower_bound(s.k.begin);
    if (next != active.end() && slices[next->second].k.overlaps(s.k))
      throw InputError(fmt::format("mask slices overlap: {} and {}",
                                   describe(slices[next->second]), describe(s)));
    if (next != active.begin()) {
      auto prev = std::prev(next);
      if (slices[prev->second].k.overlaps(s.k))
        throw InputError(fmt::format("mask slices overlap: {} and {}",
                                     describe(slices[prev->second]), describe(s)));
    }
    active.emplace(s.k.begin, n);
    expiries.push({s.q.end, s.k.begin});
  }
}

}  // namespace

SliceMask::SliceMask(Index seqlen_q, Index seqlen_k, std::vector<Slice> slices)
    : seqlen_q_(seqlen_q), seqlen_k_(seqlen_k), slices_(std::move(slices)) {
  if (seqlen_q <= 0 || seqlen_k <= 0)
    throw InputError(fmt::format("mask sequence lengths must be positive (got {} x {})",
                                 seqlen_q, seqlen_k));
  for (const Slice& s : slices_) {
    if (s.q.empty() || s.k.empty())
      throw InputError(fmt::format("mask slice {} is empty", describe(s)));
    if (s.q.begin < 0 || s.q.end > seqlen_q || s.k.begin < 0 || s.k.end > seqlen_k)
      throw InputError(fmt::format("mask slice {} lies outside the {} x {} mask", describe(s),
                                   seqlen_q, seqlen_k));
  }
  std::sort(slices_.begin(), slices_.end(), slice_less);
  check_disjoint(slices_);
}

Index SliceMask::area() const {
  Index a = 0;
  for (const Slice& s : slices_) a += s.area();
  return a;
}

double SliceMask::density() const {
  return double(area()) / (double(seqlen_q_) * double(seqlen_k_));
}

bool SliceMask::allows(Index i, Index j) const {
  auto end = std::upper_bound(slices_.begin(), slices_.end(), i,
                              [](Index v, const Slice& s) { return v < s.q.begin; });
  for (auto it = slices_.begin(); it != end; ++it)
    if (it->allows(i, j)) return true;
  return false;
}

SliceMask SliceMask::restrict(Range q, Range k) const {
  q = q.intersect({0, seqlen_q_});
  k = k.intersect({0, seqlen_k_});
  if (q.empty() || k.empty())
    throw InputError(fmt::format("cannot restrict a {} x {} mask to rows [{}, {}) keys [{}, {})",
                                 seqlen_q_, seqlen_k_, q.begin, q.end, k.begin, k.end));
  std::vector<Slice> parts;
  for (const Slice& s : slices_) {
    if (s.q.begin >= q.end) break;
    if (!s.q.overlaps(q) || !s.k.overlaps(k)) continue;
    append_diagonal_band(parts, s.q.intersect(q), s.k.intersect(k), s.lower_offset(),
                         s.upper_offset());
  }
  for (Slice& s : parts) {
    s.q = s.q.shifted(-q.begin);
    s.k = s.k.shifted(-k.begin);
  }
  return SliceMask(q.size(), k.size(), std::move(parts));
}

SliceMask SliceMask::transposed() const {
  std::vector<Slice> parts;
  parts.reserve(slices_.size());
  for (const Slice& s : slices_) {
    // j - i in [lower, upper]  <=>  i - j in [-upper, -lower]
    auto neg = [](std::optional<Index> v) { return v ? std::optional<Index>(-*v) : std::nullopt; };
    append_diagonal_band(parts, s.k, s.q, neg(s.upper_offset()), neg(s.lower_offset()));
  }
  return SliceMask(seqlen_k_, seqlen_q_, std::move(parts));
}

}  // namespace longattn

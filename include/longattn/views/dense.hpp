#pragma once
// The dense bitmap view: one bit per (i, j). For small S only (tests, pictures, peers that need a
// boolean mask); never built on a hot path.
#include <cstdint>
#include <vector>

#include "longattn/block_sparse.hpp"
#include "longattn/mask.hpp"

namespace longattn {

inline constexpr Index kDenseMaxElements = Index(1) << 30;  // 1 Gi bits = 128 MiB

class DenseMask {
 public:
  DenseMask(Index rows, Index cols);  // all false; throws InputError above kDenseMaxElements
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  bool get(Index i, Index j) const { return (bits_[word(i, j)] >> (j & 63)) & 1u; }
  void set(Index i, Index j) { bits_[word(i, j)] |= std::uint64_t(1) << (j & 63); }
  Index popcount() const;
  friend bool operator==(const DenseMask&, const DenseMask&) = default;

 private:
  Index word(Index i, Index j) const { return i * words_per_row_ + (j >> 6); }
  Index rows_, cols_, words_per_row_;
  std::vector<std::uint64_t> bits_;
};

DenseMask to_dense(const SliceMask& m);
DenseMask to_dense(const BlockSparseMask& m, int head);

}  // namespace longattn

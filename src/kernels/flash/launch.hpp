#pragma once
// The launch functions each .cu file instantiates once (dtype x head_dim), declared for the
// dispatch in dispatch.cpp. Plain C++: no CUDA types cross this line.
#include "longattn/kernels/flash.hpp"

namespace longattn::flash {

template <DType Dt, int D>
void launch_forward(const FwdParams& p, Stream stream);

template <DType Dt, int D>
void launch_backward(const BwdParams& p, Stream stream);

// Tile shapes, shared by the kernels and the host-side planning.
template <int D, int Rows = 128>
struct FwdTile {
  // Queries per CTA: 4 warps x 32 rows; 64 (4 x 16) for block-sparse masks of small blocks.
  static constexpr int kRows = Rows;
  static constexpr int kCols = 64;  // keys per step
};
template <int D>
struct BwdTile {
  static constexpr int kRows = 64;   // queries per step
  static constexpr int kCols = 128;  // keys per CTA: their dK, dV stay in registers
};
template <int D>
struct DqTile {
  static constexpr int kRows = 64;  // queries per CTA: 4 warps x 16 rows
  static constexpr int kCols = 64;  // keys per step
};

}  // namespace longattn::flash

#pragma once
// The small typed vocabulary of the portable kernels: swizzled shared-memory tiles of 16-bit
// elements, the warp-level fragment loads that feed mma.sync from them, register accumulators and
// the cooperative global<->shared copies.
#include <cstdint>

#include "ptx.cuh"

namespace longattn::flash {

// A Rows x Cols tile of 16-bit elements in shared memory, row-major, each row padded by one
// 16-byte chunk. Eight consecutive rows at one column then start 4 banks apart: ldmatrix (plain or
// transposed), the cp.async fills and the accumulator stores are conflict-free, and every
// fragment address is a per-lane base plus a compile-time offset (no swizzle arithmetic).
template <int Rows, int Cols>
struct SmemTile {
  static_assert(Cols % 8 == 0, "rows are made of 16-byte chunks");
  static constexpr int kRows = Rows;
  static constexpr int kCols = Cols;
  static constexpr int kChunks = Cols / 8;          // 16-byte chunks per row
  static constexpr int kStride = Cols * 2 + 16;     // bytes per row
  static constexpr int kBytes = Rows * kStride;

  uint32_t base;  // shared-memory address

  __device__ __forceinline__ uint32_t chunk(int row, int c) const {
    return base + uint32_t(row * kStride + (c << 4));
  }
  // Address of element (row, col): for 4-byte stores of two adjacent elements.
  __device__ __forceinline__ uint32_t pair(int row, int col) const {
    return base + uint32_t(row * kStride + (col << 1));
  }
};

// ---- fragment loads (lane patterns of ptx.cuh) -------------------------------------------------

// A fragment (16 x 16) of a tile stored [m][k]: rows m0.., columns (elements) k0...
template <class Tile>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const Tile& t, int m0, int k0, int lane) {
  ptx::ldmatrix_x4(a, t.chunk(m0 + (lane & 15), (k0 >> 3) + (lane >> 4)));
}

// A fragment (16 x 16) of the transpose of a tile stored [k][m].
template <class Tile>
__device__ __forceinline__ void load_a_trans(uint32_t (&a)[4], const Tile& t, int m0, int k0,
                                             int lane) {
  const int i = lane >> 3;
  ptx::ldmatrix_x4_trans(a, t.chunk(k0 + ((i >> 1) << 3) + (lane & 7), (m0 >> 3) + (i & 1)));
}

// B fragments of two n8 tiles (n0.., n0+8..) x k16 from a tile stored [n][k]:
// b[0], b[1] for the first, b[2], b[3] for the second.
template <class Tile>
__device__ __forceinline__ void load_b2(uint32_t (&b)[4], const Tile& t, int n0, int k0, int lane) {
  ptx::ldmatrix_x4(b, t.chunk(n0 + ((lane >> 4) << 3) + (lane & 7), (k0 >> 3) + ((lane >> 3) & 1)));
}

// The same from a tile stored [k][n].
template <class Tile>
__device__ __forceinline__ void load_b2_trans(uint32_t (&b)[4], const Tile& t, int n0, int k0,
                                              int lane) {
  ptx::ldmatrix_x4_trans(
      b, t.chunk(k0 + (((lane >> 3) & 1) << 3) + (lane & 7), (n0 >> 3) + (lane >> 4)));
}

// ---- register accumulators --------------------------------------------------------------------

// An (MT*16) x (NT*8) fp32 accumulator of one warp, in C-fragment layout.
template <int MT, int NT>
struct Acc {
  float v[MT][NT][4];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][j][e] = 0.f;
  }
};

// The A fragment of k-step kk taken from an accumulator's 16-column slice (two n8 tiles), as
// 16-bit values: the register path of P (and dS) into the next GEMM.
template <class T, int MT, int NT>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const Acc<MT, NT>& c, int mi, int kk) {
  a[0] = ptx::pack2<T>(c.v[mi][2 * kk][0], c.v[mi][2 * kk][1]);
  a[1] = ptx::pack2<T>(c.v[mi][2 * kk][2], c.v[mi][2 * kk][3]);
  a[2] = ptx::pack2<T>(c.v[mi][2 * kk + 1][0], c.v[mi][2 * kk + 1][1]);
  a[3] = ptx::pack2<T>(c.v[mi][2 * kk + 1][2], c.v[mi][2 * kk + 1][3]);
}

// ---- warp GEMMs -------------------------------------------------------------------------------

// c += A B^T with A stored [m][k] (rows m0..) and B stored [n][k] (rows n0..), over K columns.
// The k-steps index no registers: unrolling them (Unroll) is a register-pressure knob.
template <class T, int K, int Unroll = K / 16, int MT, int NT, class TA, class TB>
__device__ __forceinline__ void gemm_nt(Acc<MT, NT>& c, const TA& ta, int m0, const TB& tb, int n0,
                                        int lane) {
  static_assert(NT % 2 == 0, "B fragments come in pairs");
#pragma unroll Unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi) load_a(a[mi], ta, m0 + mi * 16, kk * 16, lane);
#pragma unroll
    for (int nj = 0; nj < NT / 2; ++nj) {
      uint32_t b[4];
      load_b2(b, tb, n0 + nj * 16, kk * 16, lane);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        ptx::mma<T>(c.v[mi][2 * nj], a[mi], b[0], b[1]);
        ptx::mma<T>(c.v[mi][2 * nj + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

// Two products c1 += A1^T B1 and c2 += A2^T B2 in one k-loop (twice the independent MMAs per
// step for a latency-bound warp), A stored [k][m] (columns m0..), B stored [k][n] (columns n0..).
template <class T, int K, int MT, int NT, class TA, class TB>
__device__ __forceinline__ void gemm_tn_pair(Acc<MT, NT>& c1, const TA& a1, const TB& b1,
                                             Acc<MT, NT>& c2, const TA& a2, const TB& b2, int m0,
                                             int n0, int lane) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t fa1[MT][4], fa2[MT][4];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi) {
      load_a_trans(fa1[mi], a1, m0 + mi * 16, kk * 16, lane);
      load_a_trans(fa2[mi], a2, m0 + mi * 16, kk * 16, lane);
    }
#pragma unroll
    for (int nj = 0; nj < NT / 2; ++nj) {
      uint32_t fb1[4], fb2[4];
      load_b2_trans(fb1, b1, n0 + nj * 16, kk * 16, lane);
      load_b2_trans(fb2, b2, n0 + nj * 16, kk * 16, lane);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        ptx::mma<T>(c1.v[mi][2 * nj], fa1[mi], fb1[0], fb1[1]);
        ptx::mma<T>(c2.v[mi][2 * nj], fa2[mi], fb2[0], fb2[1]);
        ptx::mma<T>(c1.v[mi][2 * nj + 1], fa1[mi], fb1[2], fb1[3]);
        ptx::mma<T>(c2.v[mi][2 * nj + 1], fa2[mi], fb2[2], fb2[3]);
      }
    }
  }
}

// c += A B^T with A from registers (one fragment per m-tile and k-step) and B stored [n][k].
template <class T, int KS, int MT, int NT, class TB>
__device__ __forceinline__ void gemm_rt(Acc<MT, NT>& c, const uint32_t (&a)[MT][KS][4],
                                        const TB& tb, int n0, int lane) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk)
#pragma unroll
    for (int nj = 0; nj < NT / 2; ++nj) {
      uint32_t b[4];
      load_b2(b, tb, n0 + nj * 16, kk * 16, lane);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        ptx::mma<T>(c.v[mi][2 * nj], a[mi][kk], b[0], b[1]);
        ptx::mma<T>(c.v[mi][2 * nj + 1], a[mi][kk], b[2], b[3]);
      }
    }
}

// c += A B with A from registers (one fragment per m-tile and k-step) and B stored [k][n].
template <class T, int KS, int MT, int NT, class TB>
__device__ __forceinline__ void gemm_rn(Acc<MT, NT>& c, const uint32_t (&a)[MT][KS][4],
                                        const TB& tb, int n0, int k0, int lane) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk)
#pragma unroll
    for (int nj = 0; nj < NT / 2; ++nj) {
      uint32_t b[4];
      load_b2_trans(b, tb, n0 + nj * 16, k0 + kk * 16, lane);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        ptx::mma<T>(c.v[mi][2 * nj], a[mi][kk], b[0], b[1]);
        ptx::mma<T>(c.v[mi][2 * nj + 1], a[mi][kk], b[2], b[3]);
      }
    }
}

// c += A B with A stored [m][k] (rows m0..) and B stored [k][n] (columns n0..), over K.
template <class T, int K, int MT, int NT, class TA, class TB>
__device__ __forceinline__ void gemm_nn(Acc<MT, NT>& c, const TA& ta, int m0, const TB& tb, int n0,
                                        int lane) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi) load_a(a[mi], ta, m0 + mi * 16, kk * 16, lane);
#pragma unroll
    for (int nj = 0; nj < NT / 2; ++nj) {
      uint32_t b[4];
      load_b2_trans(b, tb, n0 + nj * 16, kk * 16, lane);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        ptx::mma<T>(c.v[mi][2 * nj], a[mi], b[0], b[1]);
        ptx::mma<T>(c.v[mi][2 * nj + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

// ---- cooperative copies -----------------------------------------------------------------------

// Global rows [0, valid_rows) of a [rows][stride] array (16-bit elements) into a tile; rows past
// valid_rows are zero-filled so that no garbage (or NaN) reaches the tensor cores.
template <int Threads, class T, class Tile>
__device__ __forceinline__ void load_tile_async(const Tile& t, const T* g, std::int64_t stride,
                                                int valid_rows, int tid) {
  static_assert(Threads % Tile::kChunks == 0, "a thread keeps one column chunk");
  constexpr int kRowsPerPass = Threads / Tile::kChunks;
  static_assert(Tile::kRows % kRowsPerPass == 0, "tile must split evenly over the threads");
  const int row0 = tid / Tile::kChunks, ch = tid % Tile::kChunks;
  const T* src = g + row0 * stride + ch * 8;
  const uint32_t dst = t.chunk(row0, ch);
  const std::int64_t step = stride * kRowsPerPass;
#pragma unroll
  for (int i = 0; i < Tile::kRows / kRowsPerPass; ++i) {
    const bool valid = row0 + i * kRowsPerPass < valid_rows;
    ptx::cp_async_16(dst + i * kRowsPerPass * Tile::kStride, valid ? src : g, valid);
    src += step;
  }
}

// Rows [r0, r0 + Rows) of a tile to global rows (same indices) below valid_rows; the calling
// threads (Threads of them, numbered tid) split the 16-byte chunks.
template <int Rows, int Threads, class T, class Tile>
__device__ __forceinline__ void store_rows(const Tile& t, int r0, T* g, std::int64_t stride,
                                           int valid_rows, int tid) {
  constexpr int kTotal = Rows * Tile::kChunks;
  static_assert(kTotal % Threads == 0, "rows must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < kTotal / Threads; ++i) {
    const int c = tid + i * Threads;
    const int row = r0 + c / Tile::kChunks, ch = c % Tile::kChunks;
    if (row < valid_rows) {
      uint4 v;
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "r"(t.chunk(row, ch)));
      *reinterpret_cast<uint4*>(g + row * stride + ch * 8) = v;
    }
  }
}

__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v));
}

// Writes a warp's accumulator as 16-bit values into a tile, element (m0 + row, n0 + col).
template <class T, int MT, int NT, class Tile>
__device__ __forceinline__ void store_acc(const Tile& t, const Acc<MT, NT>& c, int m0, int n0,
                                          float scale, int lane) {
  const int g = lane >> 2, tq = lane & 3;
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int ni = 0; ni < NT; ++ni) {
      const int row = m0 + mi * 16 + g, col = n0 + ni * 8 + 2 * tq;
      st_shared_u32(t.pair(row, col),
                    ptx::pack2<T>(c.v[mi][ni][0] * scale, c.v[mi][ni][1] * scale));
      st_shared_u32(t.pair(row + 8, col),
                    ptx::pack2<T>(c.v[mi][ni][2] * scale, c.v[mi][ni][3] * scale));
    }
}

}  // namespace longattn::flash

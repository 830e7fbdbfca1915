#pragma once
// Forward pass, FlashAttention-2 style: a CTA owns one query tile (up to 128 rows, 4 warps x 32
// rows; or 64, 4 x 16, for block-sparse masks of small blocks) of one head and walks the key
// chunks (64 keys) its work item lists, with an online softmax. K and V arrive by cp.async into
// padded shared memory (V of chunk n while S = Q K^T and the softmax run, K of chunk n+1,
// double-buffered, during the whole step); S and O live in registers, P goes to the second GEMM
// as 16-bit A fragments without touching shared memory.
// Full chunks carry no mask arithmetic; partial chunks read their exact bitmask, and a warp none
// of whose rows sees a partial chunk skips it. The running maximum only moves when it grows by
// more than kRescaleSlack (log2 units), which saves most O rescales.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "check.cuh"
#include "launch.hpp"
#include "mask_tiles.cuh"
#include "tiles.cuh"

namespace longattn::flash {

template <DType Dt>
struct Elem;
template <>
struct Elem<DType::bf16> {
  using type = __nv_bfloat16;
};
template <>
struct Elem<DType::fp16> {
  using type = __half;
};

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <class T_, int D, bool kHasPartial_, int BlockM = FwdTile<D>::kRows>
struct FwdKernel {
  using T = T_;
  static constexpr int kD = D;
  static constexpr bool kHasPartial = kHasPartial_;
  static constexpr int kBlockM = FwdTile<D, BlockM>::kRows;
  static constexpr int kBlockN = FwdTile<D, BlockM>::kCols;
  static constexpr int kWarps = 4;
  // 64-row tiles: 3 CTAs per SM (their shared memory allows it), to keep as many rows in flight.
  static constexpr int kMinBlocks = BlockM == 128 ? 2 : 3;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kWarpRows = kBlockM / kWarps;
  static constexpr int MT = kWarpRows / 16;  // m16 tiles per warp
  static constexpr int NT = kBlockN / 8;     // n8 tiles of S
  static constexpr int DT = D / 8;           // n8 tiles of O
  static constexpr int KS = D / 16;          // k-steps of Q K^T
  static constexpr int PS = kBlockN / 16;    // k-steps of P V
  static constexpr int kWords = kBlockN / 32;
  // Q fragments stay in registers when they fit beside the two accumulators.
  static constexpr bool kQInRegs = D <= 64;
#ifdef LONGATTN_FLASH_FWD_UNROLL_QK
  static constexpr int kUnrollQK = LONGATTN_FLASH_FWD_UNROLL_QK;
#else
  static constexpr int kUnrollQK = 2;  // k-steps of Q K^T unrolled: register pressure knob
#endif
  static constexpr float kRescaleSlack = 8.f;  // log2 units
  using TileQ = SmemTile<kBlockM, D>;
  using TileKV = SmemTile<kBlockN, D>;
  static constexpr int kSmem = TileQ::kBytes + 3 * TileKV::kBytes;  // Q, K double-buffered, V
};

template <class K>
__global__ void __launch_bounds__(K::kThreads, K::kMinBlocks) flash_fwd_kernel(const FwdParams p) {
  using T = typename K::T;
  constexpr int D = K::kD, MT = K::MT, NT = K::NT, DT = K::DT;
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const Shape& s = p.shape;
  // This CTA runs one query tile (its work item) for heads [h0, h0 + hpc) in turn; during a
  // head's last key chunk it already fetches the next head's Q and first K, so that only the
  // first head waits for its loads.
  const int hpc = p.heads_per_cta;
  const int group = s.heads_q / s.heads_kv;
  // Per-KV-head masks: grid z is the KV head, whose items are y = 0.. (items grouped by head,
  // as many per head); blockIdx.x runs over that head's query heads. Everything here derives
  // from blockIdx, which the compiler re-reads rather than keeping registers live.
  const int h0 = (blockIdx.z * group) + blockIdx.x * hpc;
  const Item item = load_item(p.mask, blockIdx.z * gridDim.y + blockIdx.y);
  const int q0 = item.outer_begin;
  const int valid_q = item.outer_end - item.outer_begin;
  const std::int64_t q_stride = p.q_row_stride;  // resolved by run_forward
  const std::int64_t kv_stride = std::int64_t(s.heads_kv) * D;
  const T* gq0 = static_cast<const T*>(p.q) + q0 * q_stride;
  const T* gk0 = static_cast<const T*>(p.k);
  const T* gv0 = static_cast<const T*>(p.v);

  TileCursor<K::kBlockN> cur;
  cur.init(item);
  if (cur.done()) {  // no row of this tile has a key: O = 0, LSE = -inf
    for (int h = h0; h < h0 + hpc; ++h) {
      T* go = static_cast<T*>(p.o) + q0 * q_stride + h * D;
      float* glse = p.lse + std::int64_t(h) * s.seqlen_q + q0;
      for (int c = tid; c < K::kBlockM * (D / 8); c += K::kThreads) {
        const int row = c / (D / 8), ch = c % (D / 8);
        if (row < valid_q)
          *reinterpret_cast<uint4*>(go + row * q_stride + ch * 8) = make_uint4(0, 0, 0, 0);
      }
      for (int r = tid; r < K::kBlockM && r < valid_q; r += K::kThreads) glse[r] = -INFINITY;
    }
    return;
  }

  const typename K::TileQ sQ{ptx::smem_addr(smem)};
  const typename K::TileKV sK{sQ.base + K::TileQ::kBytes};
  const typename K::TileKV sV{sK.base + 2 * K::TileKV::kBytes};
  load_tile_async<K::kThreads>(sQ, gq0 + h0 * D, q_stride, valid_q, tid);
  load_tile_async<K::kThreads>(sK, gk0 + cur.pos * kv_stride + (h0 / group) * D, kv_stride,
                               cur.length(), tid);
  ptx::cp_async_commit();

  const int wr = warp * K::kWarpRows;  // this warp's first row in the tile
  const float sl2 = s.scale * kLog2e;
  int kbuf = 0;  // which K buffer holds this step's tile
  for (int h = h0; h < h0 + hpc; ++h) {
    const bool next_head = h + 1 < h0 + hpc;
    const T* gk = gk0 + (h / group) * D;
    const T* gv = gv0 + (h / group) * D;
    if (h > h0) cur.init(item);
    Acc<MT, DT> acc_o;
    acc_o.zero();
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        row_max[mi][hh] = -INFINITY;
        row_sum[mi][hh] = 0.f;
      }
    uint32_t qf[K::kQInRegs ? MT : 1][K::kQInRegs ? K::KS : 1][4];
    bool first = true;

    for (;;) {
      const int kpos = cur.pos, klen = cur.length(), bits = cur.bits;
      cur.next(p.mask);
      const bool partial = K::kHasPartial && bits >= 0;
      RowBits<K::kWords> rb[MT][2];
      if (partial) {
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh)
            rb[mi][hh].load(tile_row_bits<K::kBlockM, K::kWords>(p.mask, bits,
                                                                 wr + mi * 16 + g + 8 * hh),
                            lane);
      }

      ptx::cp_async_wait<0>();  // K of this step (and Q on the first)
      __syncthreads();          // ... and every warp is done with V and the other K buffer
      const typename K::TileKV sKc{sK.base + (kbuf ? K::TileKV::kBytes : 0)};
      load_tile_async<K::kThreads>(sV, gv + kpos * kv_stride, kv_stride, klen, tid);
      ptx::cp_async_commit();
      {
        const typename K::TileKV sKn{sK.base + (kbuf ? 0 : K::TileKV::kBytes)};
        if (!cur.done())
          load_tile_async<K::kThreads>(sKn, gk + cur.pos * kv_stride, kv_stride, cur.length(),
                                       tid);
        else if (next_head)  // the next head's first chunk
          load_tile_async<K::kThreads>(
              sKn, gk0 + item.first_begin * kv_stride + ((h + 1) / group) * D, kv_stride,
              min(K::kBlockN, item.first_end - item.first_begin), tid);
      }
      ptx::cp_async_commit();  // possibly empty: keeps "V is the older group" below
      kbuf ^= 1;

      if constexpr (K::kQInRegs) {
        if (first) {
#pragma unroll
          for (int mi = 0; mi < MT; ++mi)
#pragma unroll
            for (int kk = 0; kk < K::KS; ++kk) load_a(qf[mi][kk], sQ, wr + mi * 16, kk * 16, lane);
          first = false;
        }
      }
      // A warp none of whose rows may see this partial chunk skips it (the causal diagonal).
      bool active = true;
      if (partial) {
        uint32_t any = 0;
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh)
#pragma unroll
            for (int i = 0; i < K::kWords; ++i) any |= rb[mi][hh].w[i];
        active = __any_sync(0xffffffffu, any != 0);
      }

      uint32_t pf[MT][K::PS][4];
      if (active) {
        Acc<MT, NT> acc_s;
        acc_s.zero();
        if constexpr (K::kQInRegs) {
          gemm_rt<T, K::KS>(acc_s, qf, sKc, 0, lane);
        } else {
          gemm_nt<T, D, K::kUnrollQK>(acc_s, sQ, wr, sKc, 0, lane);
        }
        if (partial) {
#pragma unroll
          for (int mi = 0; mi < MT; ++mi)
#pragma unroll
            for (int ni = 0; ni < NT; ++ni)
#pragma unroll
              for (int e = 0; e < 4; ++e)
                if (!rb[mi][e >> 1].allows(ni, e & 1)) acc_s.v[mi][ni][e] = -INFINITY;
        }

        // Online softmax in the log2 domain. The running maximum is only moved (and O rescaled)
        // when some row of the warp grew by more than kRescaleSlack: otherwise P stays below
        // 2^kRescaleSlack, harmless in fp32 sums and 16-bit P. A row whose keys are all masked so
        // far keeps max -inf and is shifted by 0 instead, so that exp2 gives 0 rather than NaN.
        float tile_max[MT][2];
        bool grow = false;
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            float mx = -INFINITY;
#pragma unroll
            for (int ni = 0; ni < NT; ++ni)
              mx = fmaxf(mx, fmaxf(acc_s.v[mi][ni][2 * hh], acc_s.v[mi][ni][2 * hh + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            tile_max[mi][hh] = mx * sl2;
            grow |= tile_max[mi][hh] > row_max[mi][hh] + K::kRescaleSlack;
          }
        if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
          for (int mi = 0; mi < MT; ++mi)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
              const float m_new = fmaxf(row_max[mi][hh], tile_max[mi][hh]);
              const float corr =
                  ptx::exp2f_approx(row_max[mi][hh] - (m_new == -INFINITY ? 0.f : m_new));
              row_max[mi][hh] = m_new;
              row_sum[mi][hh] *= corr;
#pragma unroll
              for (int dt = 0; dt < DT; ++dt) {
                acc_o.v[mi][dt][2 * hh] *= corr;
                acc_o.v[mi][dt][2 * hh + 1] *= corr;
              }
            }
        }
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const float m_use = row_max[mi][hh] == -INFINITY ? 0.f : row_max[mi][hh];
            float sum = 0.f;
#pragma unroll
            for (int ni = 0; ni < NT; ++ni)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const float pv = ptx::exp2f_approx(fmaf(acc_s.v[mi][ni][2 * hh + e], sl2, -m_use));
                acc_s.v[mi][ni][2 * hh + e] = pv;
                sum += pv;
              }
            row_sum[mi][hh] += sum;
          }

#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int kk = 0; kk < K::PS; ++kk) acc_to_a<T>(pf[mi][kk], acc_s, mi, kk);
      }  // active
      ptx::cp_async_wait<1>();  // V of this step (the next K may still be in flight)
      __syncthreads();          // ... and every warp is done with Q
      if (cur.done() && next_head) {
        load_tile_async<K::kThreads>(sQ, gq0 + (h + 1) * D, q_stride, valid_q, tid);
        ptx::cp_async_commit();
      }
      if (active) gemm_rn<T, K::PS>(acc_o, pf, sV, 0, 0, lane);
      if (cur.done()) break;
    }

    // Epilogue: normalise, LSE, and O (through this warp's own rows of the Q tile, unless the
    // next head's Q is already arriving there).
    T* go = static_cast<T*>(p.o) + q0 * q_stride + h * D;
    float* glse = p.lse + std::int64_t(h) * s.seqlen_q + q0;
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        float l = row_sum[mi][hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
          acc_o.v[mi][dt][2 * hh] *= inv;
          acc_o.v[mi][dt][2 * hh + 1] *= inv;
        }
        const int row = wr + mi * 16 + g + 8 * hh;
        if (tq == 0 && row < valid_q)
          glse[row] = l > 0.f ? (row_max[mi][hh] + log2f(l)) * kLn2 : -INFINITY;
      }
    if (next_head) {
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int row = wr + mi * 16 + g + 8 * hh;
          if (row < valid_q) {
            T* dst = go + row * q_stride + 2 * tq;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt)
              *reinterpret_cast<uint32_t*>(dst + dt * 8) =
                  ptx::pack2<T>(acc_o.v[mi][dt][2 * hh], acc_o.v[mi][dt][2 * hh + 1]);
          }
        }
    } else {
      __syncwarp();
      store_acc<T>(sQ, acc_o, wr, 0, 1.f, lane);
      __syncwarp();
      store_rows<K::kWarpRows, 32>(sQ, wr, go, q_stride, valid_q, lane);
    }
  }  // heads
}

template <DType Dt, int D>
void launch_forward(const FwdParams& p, Stream stream) {
  using T = typename Elem<Dt>::type;
  auto launch = [&](auto has_partial, auto rows) {
    using K = FwdKernel<T, D, decltype(has_partial)::value, decltype(rows)::value>;
    allow_smem<flash_fwd_kernel<K>>(K::kSmem);
    // Per-KV-head masks: z = KV head, y = its items, x = its query heads (see the kernel).
    const bool per_head = p.mask.item_heads != nullptr;
    const int heads = per_head ? p.shape.heads_q / p.shape.heads_kv : p.shape.heads_q;
    const int kv = per_head ? p.shape.heads_kv : 1;
    const dim3 grid(unsigned(heads / p.heads_per_cta), unsigned(p.mask.num_items / kv),
                    unsigned(kv));
    flash_fwd_kernel<K><<<grid, K::kThreads, K::kSmem, stream>>>(p);
    check_cuda(cudaGetLastError(), "flash forward launch");
  };
  if (p.mask.num_items == 0) return;
  using Rows128 = std::integral_constant<int, 128>;
  using Rows64 = std::integral_constant<int, 64>;
  if (p.mask.tile_rows == 64) {
    if (p.mask.has_partial)
      launch(std::true_type{}, Rows64{});
    else
      launch(std::false_type{}, Rows64{});
  } else if (p.mask.has_partial) {
    launch(std::true_type{}, Rows128{});
  } else {
    launch(std::false_type{}, Rows128{});
  }
}

}  // namespace longattn::flash

#pragma once
// Backward pass, FlashAttention-2 style, in four launches:
//   1. preprocess: lse2 = LSE * log2(e) (+inf for rows without keys, so that P = 0 there) and
//      delta = rowsum(dO * O), per (head, row), into the workspace;
//   2. the main kernel: a CTA owns one key tile (128 keys) of one KV head, keeps K, V in shared
//      memory and dK, dV in registers, and walks the query tiles (64 rows) that attend it, listed
//      by the transposed mask's tile map, once for each query head of its GQA group (so dK, dV
//      are summed over the group without a workspace). Per step: S = Q K^T and dP = dO V^T,
//      P = exp2(S * scale * log2e - lse2), dS = P (dP - delta); P and dS pass through shared
//      memory to dV += P^T dO, dK += dS^T Q and (non-deterministic mode) dQ += dS K, added with
//      fp32 atomics into the workspace;
//   3. non-deterministic: dQ = scale * workspace, converted;
//      deterministic: a separate dQ kernel per query tile walks its key tiles and owns its dQ rows.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "fwd_kernel.cuh"

namespace longattn::flash {

// Workspace carve-up (backward_workspace_bytes in flash.cpp must agree).
struct BwdWork {
  float* lse2;      // [Hq][Sq]
  float* delta;     // [Hq][Sq]
  float* dq_accum;  // [Sq][Hq][D], non-deterministic mode only
  float* dk_accum;  // [Sk][Hkv][D] each, when key tiles are split across CTAs
  float* dv_accum;
};

inline std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

inline BwdWork carve_workspace(const BwdParams& p) {
  const Shape& s = p.shape;
  const std::size_t rows = std::size_t(s.heads_q) * s.seqlen_q;
  const std::size_t kv = std::size_t(s.heads_kv) * s.seqlen_k * s.head_dim;
  char* w = static_cast<char*>(p.workspace);
  BwdWork b{};
  b.lse2 = reinterpret_cast<float*>(w);
  w += align256(rows * 4);
  b.delta = reinterpret_cast<float*>(w);
  w += align256(rows * 4);
  if (!p.deterministic) {
    b.dq_accum = reinterpret_cast<float*>(w);
    w += align256(rows * s.head_dim * 4);
  }
  if (p.mask.split) {
    b.dk_accum = reinterpret_cast<float*>(w);
    w += align256(kv * 4);
    b.dv_accum = reinterpret_cast<float*>(w);
  }
  return b;
}

// ---- 1. preprocess ----------------------------------------------------------------------------

// One warp per (row, head); each lane holds D / 32 elements.
template <class T, int D>
__global__ void __launch_bounds__(256) flash_bwd_preprocess(const BwdParams p, const BwdWork w) {
  constexpr int kPer = D / 32;
  const std::int64_t warp = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int hq = p.shape.heads_q;
  if (warp >= std::int64_t(p.shape.seqlen_q) * hq) return;
  const int row = int(warp / hq), h = int(warp % hq);
  const std::int64_t off = (std::int64_t(row) * hq + h) * D + lane * kPer;
  const T* o = static_cast<const T*>(p.o) + off;
  const T* d_o = static_cast<const T*>(p.d_o) + off;
  float sum = 0.f;
  if constexpr (kPer == 4) {
    const uint2 a = *reinterpret_cast<const uint2*>(o), b = *reinterpret_cast<const uint2*>(d_o);
    const float2 a0 = ptx::unpack2<T>(a.x), a1 = ptx::unpack2<T>(a.y);
    const float2 b0 = ptx::unpack2<T>(b.x), b1 = ptx::unpack2<T>(b.y);
    sum = a0.x * b0.x + a0.y * b0.y + a1.x * b1.x + a1.y * b1.y;
  } else {
    static_assert(kPer == 2, "head dims 64 and 128");
    const float2 a = ptx::unpack2<T>(*reinterpret_cast<const uint32_t*>(o));
    const float2 b = ptx::unpack2<T>(*reinterpret_cast<const uint32_t*>(d_o));
    sum = a.x * b.x + a.y * b.y;
  }
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  if (lane == 0) {
    const std::int64_t i = std::int64_t(h) * p.shape.seqlen_q + row;
    const float lse = p.lse[i];
    w.lse2[i] = lse == -INFINITY ? INFINITY : lse * kLog2e;
    w.delta[i] = sum;
  }
}

// ---- 2. main kernel ---------------------------------------------------------------------------

template <class T_, int D, bool kHasPartial_, bool kAtomicDQ_>
struct BwdKernel {
  using T = T_;
  static constexpr int kD = D;
  static constexpr bool kHasPartial = kHasPartial_;
  static constexpr bool kAtomicDQ = kAtomicDQ_;
  static constexpr int kBlockM = BwdTile<D>::kRows;  // queries per step
  static constexpr int kBlockN = BwdTile<D>::kCols;  // keys of the CTA
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static_assert(kBlockM == 64 && kBlockN == 128, "warp layouts below assume 64 x 128 tiles");
  // S, dP: warps 2 (queries) x 4 (keys) of 32 x 32.
  // dK, dV: warps 4 (keys) x 2 (head dim) of 32 x D/2.
  // dQ: warps 2 (queries) x 4 (head dim) of 32 x D/4.
  static constexpr int kDkvCols = D / 2;
#ifdef LONGATTN_FLASH_BWD_UNROLL
  static constexpr int kUnrollSdP = LONGATTN_FLASH_BWD_UNROLL;
#else
  static constexpr int kUnrollSdP = 1;  // k-steps of S and dP unrolled (register pressure)
#endif
  static constexpr int kDqCols = D / 4;
  using TileKV = SmemTile<kBlockN, D>;
  using TileQ = SmemTile<kBlockM, D>;
  using TileP = SmemTile<kBlockM, kBlockN>;
  static constexpr int kWords = kBlockN / 32;
  static constexpr int kSmem = 2 * TileKV::kBytes + 4 * TileQ::kBytes + 2 * TileP::kBytes;
};

template <class K>
__global__ void __launch_bounds__(K::kThreads, 1)
    flash_bwd_kernel(const BwdParams p, const BwdWork w) {
  using T = typename K::T;
  constexpr int D = K::kD;
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const Shape& s = p.shape;
  // Per-KV-head masks: the item names its KV head (the grid has one column).
  const int hk = p.mask.item_heads ? __ldg(p.mask.item_heads + blockIdx.y) : int(blockIdx.x);
  const Item item = load_item(p.mask, blockIdx.y);
  const int group = s.heads_q / s.heads_kv;
  const int k0 = item.outer_begin;
  const int valid_k = item.outer_end - item.outer_begin;
  const std::int64_t q_stride = std::int64_t(s.heads_q) * D;
  const std::int64_t kv_stride = std::int64_t(s.heads_kv) * D;
  const std::int64_t kv_off = k0 * kv_stride + hk * D;

  TileCursor<K::kBlockM, true> cur;
  cur.init(item);
  if (cur.done()) {  // no query attends these keys: zero gradients (split: the zeroed workspace)
    if (p.mask.split) return;
    for (int c = tid; c < K::kBlockN * (D / 8); c += K::kThreads) {
      const int row = c / (D / 8), ch = c % (D / 8);
      if (row < valid_k) {
        const std::int64_t o = kv_off + row * kv_stride + ch * 8;
        *reinterpret_cast<uint4*>(static_cast<T*>(p.dk) + o) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(static_cast<T*>(p.dv) + o) = make_uint4(0, 0, 0, 0);
      }
    }
    return;
  }

  const typename K::TileKV sK{ptx::smem_addr(smem)};
  const typename K::TileKV sV{sK.base + K::TileKV::kBytes};
  const uint32_t q_base = sV.base + K::TileKV::kBytes;  // Q[2], dO[2]
  const typename K::TileP sP{q_base + 4 * K::TileQ::kBytes};
  const typename K::TileP sdS{sP.base + K::TileP::kBytes};
  auto tile_q = [&](int buf) { return typename K::TileQ{q_base + buf * K::TileQ::kBytes}; };
  auto tile_do = [&](int buf) { return typename K::TileQ{q_base + (2 + buf) * K::TileQ::kBytes}; };
  auto load_q_do = [&](int buf, int head, int q0, int valid) {
    const std::int64_t off = q0 * q_stride + head * D;
    load_tile_async<K::kThreads>(tile_q(buf), static_cast<const T*>(p.q) + off, q_stride, valid,
                                 tid);
    load_tile_async<K::kThreads>(tile_do(buf), static_cast<const T*>(p.d_o) + off, q_stride,
                                 valid, tid);
  };

  load_tile_async<K::kThreads>(sK, static_cast<const T*>(p.k) + kv_off, kv_stride, valid_k, tid);
  load_tile_async<K::kThreads>(sV, static_cast<const T*>(p.v) + kv_off, kv_stride, valid_k, tid);
  load_q_do(0, hk * group + cur.pass, cur.pos, cur.length());
  ptx::cp_async_commit();

  // Warp roles.
  const int sm = warp & 1, sn = warp >> 1;   // S, dP: rows sm*32, keys sn*32
  const int kn = warp & 3, kd = warp >> 2;   // dK, dV: keys kn*32, dims kd*D/2
  const int qm = warp & 1, qd = warp >> 1;   // dQ: rows qm*32, dims qd*D/4
  const float sl2 = s.scale * kLog2e;

  Acc<2, K::kDkvCols / 8> acc_dk, acc_dv;
  acc_dk.zero();
  acc_dv.zero();
  int buf = 0;

  for (;;) {
    const int q0 = cur.pos, qlen = cur.length(), bits = cur.bits, h = hk * group + cur.pass;
    cur.next(p.mask);
    const bool partial = K::kHasPartial && bits >= 0;

    // Row statistics and mask bits of this thread's S rows, fetched before the wait.
    float lse2[2][2], delta[2][2];
    RowBits<1> rb[2][2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int r = sm * 32 + mi * 16 + g + 8 * hh;
        const bool in = r < qlen;
        const std::int64_t i = std::int64_t(h) * s.seqlen_q + q0 + r;
        lse2[mi][hh] = in ? __ldg(w.lse2 + i) : INFINITY;
        delta[mi][hh] = in ? __ldg(w.delta + i) : 0.f;
        if (partial)
          rb[mi][hh].load(tile_row_bits<K::kBlockM, K::kWords>(p.mask, bits, r) + sn, lane);
      }

    ptx::cp_async_wait<0>();  // Q, dO of this step (K, V on the first)
    __syncthreads();          // ... and every warp is done with the previous step's buffers
    if (!cur.done()) load_q_do(buf ^ 1, hk * group + cur.pass, cur.pos, cur.length());
    ptx::cp_async_commit();
    const typename K::TileQ sQ = tile_q(buf), sdO = tile_do(buf);

    // S, then P = exp2(S * scale * log2e - lse2) in the same basic block as the fully unrolled
    // dP = dO V^T, so that the exponentials overlap the second GEMM's MMAs.
    Acc<2, 4> acc_s, acc_dp;
    acc_s.zero();
    acc_dp.zero();
    gemm_nt<T, D, K::kUnrollSdP>(acc_s, sQ, sm * 32, sK, sn * 32, lane);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          acc_s.v[mi][ni][e] = ptx::exp2f_approx(fmaf(acc_s.v[mi][ni][e], sl2, -lse2[mi][e >> 1]));
    gemm_nt<T, D>(acc_dp, sdO, sm * 32, sV, sn * 32, lane);
    if (partial) {
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (!rb[mi][e >> 1].allows(ni, e & 1)) acc_s.v[mi][ni][e] = 0.f;
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          acc_dp.v[mi][ni][e] = acc_s.v[mi][ni][e] * (acc_dp.v[mi][ni][e] - delta[mi][e >> 1]);
    store_acc<T>(sP, acc_s, sm * 32, sn * 32, 1.f, lane);
    store_acc<T>(sdS, acc_dp, sm * 32, sn * 32, 1.f, lane);
    __syncthreads();

    // dV += P^T dO and dK += dS^T Q in one k-loop, then dQ = dS K into the atomic workspace
    // (measured: dQ first, so that its atomics drain under the dK, dV MMAs, was slower).
    gemm_tn_pair<T, K::kBlockM>(acc_dv, sP, sdO, acc_dk, sdS, sQ, kn * 32, kd * K::kDkvCols,
                                lane);
    if constexpr (K::kAtomicDQ) {
      Acc<2, K::kDqCols / 8> acc_dq;
      acc_dq.zero();
      gemm_nn<T, K::kBlockN>(acc_dq, sdS, qm * 32, sK, qd * K::kDqCols, lane);
      float* dq = w.dq_accum + h * D + qd * K::kDqCols + 2 * tq;
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int r = qm * 32 + mi * 16 + g + 8 * hh, row = q0 + r;
          if (r < qlen) {
#pragma unroll
            for (int ni = 0; ni < K::kDqCols / 8; ++ni)
              ptx::atomic_add2(dq + row * q_stride + ni * 8, acc_dq.v[mi][ni][2 * hh],
                               acc_dq.v[mi][ni][2 * hh + 1]);
          }
        }
    }
    buf ^= 1;
    if (cur.done()) break;
  }

  // Epilogue: dK (scaled) and dV through the K, V tiles, or, when other CTAs share this key
  // tile, added into the fp32 workspace.
  if (p.mask.split) {
    const int g2 = 2 * tq;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int row = kn * 32 + mi * 16 + g + 8 * hh;
        if (row < valid_k) {
          const std::int64_t o = kv_off + row * kv_stride + kd * K::kDkvCols + g2;
#pragma unroll
          for (int ni = 0; ni < K::kDkvCols / 8; ++ni) {
            ptx::atomic_add2(w.dk_accum + o + ni * 8, acc_dk.v[mi][ni][2 * hh],
                             acc_dk.v[mi][ni][2 * hh + 1]);
            ptx::atomic_add2(w.dv_accum + o + ni * 8, acc_dv.v[mi][ni][2 * hh],
                             acc_dv.v[mi][ni][2 * hh + 1]);
          }
        }
      }
    return;
  }
  __syncthreads();
  store_acc<T>(sK, acc_dk, kn * 32, kd * K::kDkvCols, s.scale, lane);
  store_acc<T>(sV, acc_dv, kn * 32, kd * K::kDkvCols, 1.f, lane);
  __syncthreads();
  store_rows<K::kBlockN, K::kThreads>(sK, 0, static_cast<T*>(p.dk) + kv_off, kv_stride, valid_k,
                                      tid);
  store_rows<K::kBlockN, K::kThreads>(sV, 0, static_cast<T*>(p.dv) + kv_off, kv_stride, valid_k,
                                      tid);
}

// ---- 3a. dQ (and split dK, dV) from the atomic workspace ---------------------------------

template <class T>
__global__ void __launch_bounds__(256)
    flash_convert(const float* __restrict__ acc, T* __restrict__ dq, std::int64_t n4,
                     float scale) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float4 v = reinterpret_cast<const float4*>(acc)[i];
    uint2 out;
    out.x = ptx::pack2<T>(v.x * scale, v.y * scale);
    out.y = ptx::pack2<T>(v.z * scale, v.w * scale);
    reinterpret_cast<uint2*>(dq)[i] = out;
  }
}

// ---- 3b. deterministic dQ kernel --------------------------------------------------------------

template <class T_, int D, bool kHasPartial_>
struct DqKernel {
  using T = T_;
  static constexpr int kD = D;
  static constexpr bool kHasPartial = kHasPartial_;
  static constexpr int kBlockM = DqTile<D>::kRows;
  static constexpr int kBlockN = DqTile<D>::kCols;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static_assert(kBlockM == kWarps * 16, "one m16 tile per warp");
  static constexpr int NT = kBlockN / 8;
  static constexpr int kWords = kBlockN / 32;
  using TileQ = SmemTile<kBlockM, D>;
  using TileKV = SmemTile<kBlockN, D>;
  static constexpr int kSmem = 2 * TileQ::kBytes + 4 * TileKV::kBytes;  // Q, dO, K[2], V[2]
};

template <class K>
__global__ void __launch_bounds__(K::kThreads)
    flash_dq_kernel(const BwdParams p, const BwdWork w) {
  using T = typename K::T;
  constexpr int D = K::kD, NT = K::NT;
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2;
  const Shape& s = p.shape;
  // Per-KV-head masks: grid z is the KV head (its items grouped, as in the forward kernel),
  // blockIdx.x one of its query heads.
  const int h = blockIdx.z * (s.heads_q / s.heads_kv) + blockIdx.x;
  const Item item = load_item(p.dq_mask, blockIdx.z * gridDim.y + blockIdx.y);
  const int hk = h / (s.heads_q / s.heads_kv);
  const int q0 = item.outer_begin;
  const int valid_q = item.outer_end - item.outer_begin;
  const std::int64_t q_stride = std::int64_t(s.heads_q) * D;
  const std::int64_t kv_stride = std::int64_t(s.heads_kv) * D;
  const std::int64_t q_off = q0 * q_stride + h * D;
  T* gdq = static_cast<T*>(p.dq) + q_off;

  TileCursor<K::kBlockN> cur;
  cur.init(item);
  if (cur.done()) {
    for (int c = tid; c < K::kBlockM * (D / 8); c += K::kThreads) {
      const int row = c / (D / 8), ch = c % (D / 8);
      if (row < valid_q)
        *reinterpret_cast<uint4*>(gdq + row * q_stride + ch * 8) = make_uint4(0, 0, 0, 0);
    }
    return;
  }

  const typename K::TileQ sQ{ptx::smem_addr(smem)};
  const typename K::TileQ sdO{sQ.base + K::TileQ::kBytes};
  const uint32_t kv_base = sdO.base + K::TileQ::kBytes;  // K[2], V[2]
  auto tile_k = [&](int b) { return typename K::TileKV{kv_base + b * K::TileKV::kBytes}; };
  auto tile_v = [&](int b) { return typename K::TileKV{kv_base + (2 + b) * K::TileKV::kBytes}; };
  auto load_kv = [&](int b, int k0, int valid) {
    const std::int64_t off = k0 * kv_stride + hk * D;
    load_tile_async<K::kThreads>(tile_k(b), static_cast<const T*>(p.k) + off, kv_stride, valid,
                                 tid);
    load_tile_async<K::kThreads>(tile_v(b), static_cast<const T*>(p.v) + off, kv_stride, valid,
                                 tid);
  };
  load_tile_async<K::kThreads>(sQ, static_cast<const T*>(p.q) + q_off, q_stride, valid_q, tid);
  load_tile_async<K::kThreads>(sdO, static_cast<const T*>(p.d_o) + q_off, q_stride, valid_q, tid);
  load_kv(0, cur.pos, cur.length());
  ptx::cp_async_commit();

  const int wr = warp * 16;
  const float sl2 = s.scale * kLog2e;
  float lse2[2], delta[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = wr + g + 8 * hh;
    const std::int64_t i = std::int64_t(h) * s.seqlen_q + q0 + r;
    lse2[hh] = r < valid_q ? w.lse2[i] : INFINITY;
    delta[hh] = r < valid_q ? w.delta[i] : 0.f;
  }
  Acc<1, D / 8> acc_dq;
  acc_dq.zero();
  int buf = 0;
  for (;;) {
    const int bits = cur.bits;
    cur.next(p.dq_mask);
    const bool partial = K::kHasPartial && bits >= 0;
    RowBits<K::kWords> rb[2];
    if (partial) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
        rb[hh].load(tile_row_bits<K::kBlockM, K::kWords>(p.dq_mask, bits, wr + g + 8 * hh), lane);
    }
    ptx::cp_async_wait<0>();
    __syncthreads();
    if (!cur.done()) load_kv(buf ^ 1, cur.pos, cur.length());
    ptx::cp_async_commit();
    const typename K::TileKV sK = tile_k(buf), sV = tile_v(buf);

    Acc<1, NT> acc_s, acc_dp;
    acc_s.zero();
    acc_dp.zero();
    gemm_nt<T, D, 1>(acc_s, sQ, wr, sK, 0, lane);
    gemm_nt<T, D, 1>(acc_dp, sdO, wr, sV, 0, lane);
#pragma unroll
    for (int ni = 0; ni < NT; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc_s.v[0][ni][e] = ptx::exp2f_approx(fmaf(acc_s.v[0][ni][e], sl2, -lse2[e >> 1]));
    if (partial) {
#pragma unroll
      for (int ni = 0; ni < NT; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (!rb[e >> 1].allows(ni, e & 1)) acc_s.v[0][ni][e] = 0.f;
    }
#pragma unroll
    for (int ni = 0; ni < NT; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc_dp.v[0][ni][e] = acc_s.v[0][ni][e] * (acc_dp.v[0][ni][e] - delta[e >> 1]);
    uint32_t af[1][NT / 2][4];
#pragma unroll
    for (int kk = 0; kk < NT / 2; ++kk) acc_to_a<T>(af[0][kk], acc_dp, 0, kk);
    gemm_rn<T, NT / 2>(acc_dq, af, sK, 0, 0, lane);
    buf ^= 1;
    if (cur.done()) break;
  }
  __syncwarp();
  store_acc<T>(sQ, acc_dq, wr, 0, s.scale, lane);
  __syncwarp();
  store_rows<16, 32>(sQ, wr, gdq, q_stride, valid_q, lane);
}

// ---- launch -----------------------------------------------------------------------------------

template <DType Dt, int D>
void launch_backward(const BwdParams& p, Stream stream) {
  using T = typename Elem<Dt>::type;
  const Shape& s = p.shape;
  const BwdWork w = carve_workspace(p);
  const std::int64_t q_elems = std::int64_t(s.seqlen_q) * s.heads_q * D;
  const std::int64_t kv_elems = std::int64_t(s.seqlen_k) * s.heads_kv * D;
  if (!p.deterministic)
    check_cuda(cudaMemsetAsync(w.dq_accum, 0, std::size_t(q_elems) * 4, stream),
               "clearing the dQ accumulator");
  if (p.mask.split) {
    check_cuda(cudaMemsetAsync(w.dk_accum, 0, std::size_t(kv_elems) * 4, stream),
               "clearing the dK accumulator");
    check_cuda(cudaMemsetAsync(w.dv_accum, 0, std::size_t(kv_elems) * 4, stream),
               "clearing the dV accumulator");
  }

  const std::int64_t rows = std::int64_t(s.seqlen_q) * s.heads_q;
  flash_bwd_preprocess<T, D><<<unsigned((rows * 32 + 255) / 256), 256, 0, stream>>>(p, w);
  check_cuda(cudaGetLastError(), "flash backward preprocess launch");

  auto main = [&](auto has_partial, auto atomic_dq) {
    using K = BwdKernel<T, D, decltype(has_partial)::value, decltype(atomic_dq)::value>;
    allow_smem<flash_bwd_kernel<K>>(K::kSmem);
    const dim3 grid(p.mask.item_heads ? 1u : unsigned(s.heads_kv), unsigned(p.mask.num_items));
    flash_bwd_kernel<K><<<grid, K::kThreads, K::kSmem, stream>>>(p, w);
    check_cuda(cudaGetLastError(), "flash backward launch");
  };
  auto with_partial = [&](auto atomic_dq) {
    if (p.mask.has_partial)
      main(std::true_type{}, atomic_dq);
    else
      main(std::false_type{}, atomic_dq);
  };
  if (p.mask.num_items > 0) {
    if (p.deterministic)
      with_partial(std::false_type{});
    else
      with_partial(std::true_type{});
  }

  const unsigned convert_blocks = 132 * 16;
  if (p.mask.split) {
    const std::int64_t n4 = kv_elems / 4;
    const unsigned blocks = unsigned(std::min<std::int64_t>((n4 + 255) / 256, convert_blocks));
    flash_convert<T><<<blocks, 256, 0, stream>>>(w.dk_accum, static_cast<T*>(p.dk), n4, s.scale);
    flash_convert<T><<<blocks, 256, 0, stream>>>(w.dv_accum, static_cast<T*>(p.dv), n4, 1.f);
    check_cuda(cudaGetLastError(), "flash dK, dV convert launch");
  }
  if (!p.deterministic) {
    const std::int64_t n4 = q_elems / 4;
    const unsigned blocks = unsigned(std::min<std::int64_t>((n4 + 255) / 256, convert_blocks));
    flash_convert<T><<<blocks, 256, 0, stream>>>(w.dq_accum, static_cast<T*>(p.dq), n4,
                                                    s.scale);
    check_cuda(cudaGetLastError(), "flash dQ convert launch");
  } else if (p.dq_mask.num_items > 0) {
    auto dq = [&](auto has_partial) {
      using K = DqKernel<T, D, decltype(has_partial)::value>;
      allow_smem<flash_dq_kernel<K>>(K::kSmem);
      const bool per_head = p.dq_mask.item_heads != nullptr;
      const int kv = per_head ? s.heads_kv : 1;
      const dim3 grid(unsigned(per_head ? s.heads_q / s.heads_kv : s.heads_q),
                      unsigned(p.dq_mask.num_items / kv), unsigned(kv));
      flash_dq_kernel<K><<<grid, K::kThreads, K::kSmem, stream>>>(p, w);
      check_cuda(cudaGetLastError(), "flash dQ launch");
    };
    if (p.dq_mask.has_partial)
      dq(std::true_type{});
    else
      dq(std::false_type{});
  }
}

}  // namespace longattn::flash

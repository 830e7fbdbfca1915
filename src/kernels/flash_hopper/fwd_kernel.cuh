#pragma once
// Hopper forward kernel (sm_90a), warp-specialised. A CTA runs 128-row query tiles (work items of
// the prepared mask, heaviest first) of one head at a time with 3 warpgroups:
//   warpgroup 0, producer (registers lowered by setmaxnreg): one thread issues TMA loads of Q (once
//     per tile) and of each key chunk's K and V (128 keys) into a kStages-deep shared-memory ring;
//     each buffer has a "full" mbarrier (transaction bytes) and an "empty" mbarrier (consumer warps);
//   warpgroups 1, 2, consumers (registers raised): 64 query rows each; S = Q K^T by wgmma with
//     both operands in shared memory (SS), mask (partial chunks only: per-row bitmask), online
//     softmax in fp32 log2 units, P converted in registers and O += P V by wgmma with P from
//     registers (RS) and V read through a transposed (MN-major) view of its shared tile.
// Epilogue: O normalised, written through a swizzled shared tile to global memory row by row
// (only the tile's own rows), LSE fp32 [Hq][S].
//
// Three scheduling features, each a compile-time flag (FwdFlags) so that they can be measured
// against each other (NOTES.md):
//   overlap     S(j+1) = Q K(j+1)^T and O += P(j) V(j) are issued together, and the softmax of
//               chunk j+1 runs while the tensor cores still work on P(j) V(j);
//   ping-pong   the two consumer warpgroups take turns issuing their GEMMs (named barriers), so
//               that one's softmax runs under the other's GEMMs;
//   persistent  one CTA per SM walks (work item, head) units in a snake order; the producer loads
//               the next unit's Q and first chunks while the consumers finish and store the last.
// Split tiles (kSplit, block-sparse masks of small blocks): each consumer warpgroup walks units of
// its own, 64-row tiles over 64-key chunks, with its own Q tile and K/V ring fed by its own
// producer thread; the CTA is then two independent pipelines (no ping-pong: their chunk counts
// differ), and a tile's rows visit exactly their query block's kept key blocks.
//
// The layouts, descriptors and TMA boxes come from CuTe (CUTLASS headers); the pipeline, masking,
// softmax, scheduling and epilogue are longattn's own.
#include <cuda_runtime.h>

// wgmma shapes with N not a power of two (64 x 160 x 16 for the wide chunks) are opt-in in CuTe.
#ifndef CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#define CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED
#endif
#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/numeric_types.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "flash/mask_tiles.cuh"
#include "launch.hpp"
#include "seq_tensor.cuh"
#include "wgmma.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LONGATTN_HOPPER_DEVICE 1
#else
#define LONGATTN_HOPPER_DEVICE 0
#endif

namespace longattn::flash_hopper {

template <DType Dt>
struct Elem;
template <>
struct Elem<DType::bf16> {
  using type = cutlass::bfloat16_t;
};
template <>
struct Elem<DType::fp16> {
  using type = cutlass::half_t;
};

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("flash_hopper: ") + what + ": " + cudaGetErrorString(e));
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 2^x by the SFU (ex2.approx.ftz): exp2(-inf) = 0, the only non-finite input the softmax feeds.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// wgmma.wait_group 0 with a tag that only makes copies of it distinct asm statements.
template <int kTag>
__device__ __forceinline__ void wgmma_wait_all() {
  asm volatile("wgmma.wait_group.sync.aligned 0; // %0" ::"n"(kTag) : "memory");
}

// Named barriers (bar.sync / bar.arrive); id 0 is __syncthreads'.
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
enum NamedBarrierId : int {
  kBarEpilogue = 1,  // + consumer warpgroup: its 64 rows of the O staging tile
  kBarTurn = 3,      // + consumer warpgroup: its turn to issue GEMMs (ping-pong)
};

template <class T_, int D, bool kHasPartial_, int kFlags>
struct Config {
  using T = T_;
  static constexpr int kD = D;
  static constexpr bool kHasPartial = kHasPartial_;
  static constexpr bool kOverlap = (kFlags & FwdFlags::kOverlap) != 0;
  static constexpr bool kPingPong = (kFlags & FwdFlags::kPingPong) != 0;
  static constexpr bool kPersistent = (kFlags & FwdFlags::kPersistent) != 0;
  static constexpr bool kWide = (kFlags & FwdFlags::kWide) != 0;
  static constexpr bool kSplit = (kFlags & FwdFlags::kSplit) != 0;
  static constexpr int kConsumerWGs = 2;
  // Units a CTA runs side by side: one per consumer warpgroup when split, else one for both.
  static constexpr int kUnits = kSplit ? kConsumerWGs : 1;
  static constexpr int kBlockM = kSplit ? FwdTile::kSplitRows : FwdTile::kRows;  // rows of a unit
  static constexpr int kBlockN =
      kSplit ? FwdTile::kSplitCols : kWide ? FwdTile::kWideCols : FwdTile::kCols;
  static constexpr int kSCols = kBlockN / 4;  // columns of S per thread (2 rows each)
  // D = 64 tiles are half the bytes: a deeper ring costs little shared memory.
  static constexpr int kStages = D == 64 ? 4 : 2;
  static constexpr int kThreads = 128 * (kConsumerWGs + 1);
  static constexpr int kConsumerWarps = 4 * kConsumerWGs;
  static constexpr int kUnitWarps = kConsumerWarps / kUnits;  // consumer warps of one unit
  static constexpr int kWords = kBlockN / 32;      // bitmask words per row of a partial chunk
  static constexpr float kRescaleSlack = 8.f;     // log2 units (see the portable kernel)
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  static_assert(kBlockN % 32 == 0, "RowBits covers whole bitmask words");
  static_assert(!kWide || D == 128, "wide chunks at head dim 128 only");
  static_assert(kBlockM == 64 * kConsumerWGs / kUnits, "64 rows per consumer warpgroup");
  static_assert(!(kSplit && (kPingPong || kWide)), "split tiles: no ping-pong, no wide chunks");

  using BM = cute::Int<kBlockM>;
  using BN = cute::Int<kBlockN>;
  using BD = cute::Int<D>;
  using BS = cute::Int<kStages>;

  // wgmma: S (kBlockM x kBlockN, K = D), the unit's warpgroups along M; O (kBlockM x D, K = keys).
  using AtomLayout = cute::Layout<cute::Shape<cute::Int<kBlockM / 64>, cute::_1, cute::_1>>;
  using MmaQK = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<T, T, float, cute::Shape<cute::_64, BN, BD>>(), AtomLayout{}));
  using MmaPV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<T, T, float, cute::Shape<cute::_64, BD, BN>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::MN>(),
      AtomLayout{}));

  // Shared tiles: Q (rows, D) and K, V (keys, D, stage), K-major with the 128-byte swizzle (the
  // TMA boxes write them so); V^T (D, keys, stage) is a transposed view of V for the B operand.
  using SmemQ = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{},
                                             cute::Shape<BM, BD>{}));
  using SmemKV = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{},
                                              cute::Shape<BN, BD, BS>{}));
  using SmemVt = decltype(cute::composition(
      SmemKV{}, cute::make_ordered_layout(cute::Shape<BD, BN, BS>{},
                                          cute::Step<cute::_2, cute::_1, cute::_3>{})));

  static constexpr int kQBytes = kBlockM * D * int(sizeof(T));
  static constexpr int kKVBytes = kBlockN * D * int(sizeof(T));  // one stage of K (or V)

  // Per unit slot (kUnits): its Q tile, its K/V ring and their barriers.
  struct alignas(1024) Shared {
    cute::array_aligned<T, cute::cosize_v<SmemQ>, 1024> q[kUnits];
    cute::array_aligned<T, cute::cosize_v<SmemKV>, 1024> k[kUnits];
    cute::array_aligned<T, cute::cosize_v<SmemKV>, 1024> v[kUnits];
    // Epilogue staging, 64 rows per consumer warpgroup, 16-byte chunks swizzled.
    cute::array_aligned<T, 64 * kConsumerWGs * D, 1024> o;
    alignas(16) std::uint64_t q_full[kUnits];
    std::uint64_t q_empty[kUnits];  // the unit's consumer warpgroups issued their last S of it
    std::uint64_t k_full[kUnits][kStages], v_full[kUnits][kStages];
    std::uint64_t k_empty[kUnits][kStages], v_empty[kUnits][kStages];
  };
  static constexpr int kSmem = int(sizeof(Shared));
  static_assert(kSmem <= 227 * 1024, "shared memory");

  using GTensor = SeqTensor<D, const T>;
  using TmaQ = decltype(cute::make_tma_copy(cute::SM90_TMA_LOAD{}, GTensor{}, SmemQ{},
                                            cute::Shape<BM, BD>{}, cute::_1{}));
  using TmaKV = decltype(cute::make_tma_copy(cute::SM90_TMA_LOAD{}, GTensor{},
                                             cute::take<0, 2>(SmemKV{}), cute::Shape<BN, BD>{},
                                             cute::_1{}));
};

template <class C>
struct KernelParams {
  typename C::TmaQ tma_q;
  typename C::TmaKV tma_k;
  typename C::TmaKV tma_v;
  FwdParams p;
  int head_major;  // kHeadMajor
};

// A ring position: stage and the parity of its current fill.
template <int kStages>
struct RingPos {
  int stage = 0, phase = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
};

// Work units are (item, head) pairs, items heaviest first. Item-major, the heads of one query tile
// run side by side; head-major (kHeadMajor, where K and V would not stay in L2: kv_spills_l2), by
// KV head, then item, then the query heads of its group, so that the CTAs resident together read
// one KV head's K and V. A persistent CTA takes every gridDim-th unit in a snake order (even
// rounds left to right, odd rounds right to left), which evens out the sums of the decreasing
// item weights; otherwise a CTA runs unit blockIdx.x.
// Per-KV-head masks (block-sparse): each item names its KV head, and its units are the query
// heads of that head's group.
struct Unit {
  int item, head;
};
__device__ __forceinline__ Unit unit_coords(int unit, const flash::MaskView& m, int heads,
                                            int group, bool head_major) {
  if (m.item_heads) {
    const int item = unit / group;
    return {item, __ldg(m.item_heads + item) * group + unit % group};
  }
  if (!head_major) return {unit / heads, unit % heads};
  const int per_kv_head = m.num_items * group, rest = unit % per_kv_head;
  return {rest / group, unit / per_kv_head * group + rest % group};
}
// Units of a launch: (item, query head) pairs, or with per-KV-head masks (item, head of its group).
__host__ __device__ __forceinline__ std::int64_t num_units_of(const FwdParams& p) {
  const int per_item = p.mask.item_heads ? p.shape.heads_q / p.shape.heads_kv : p.shape.heads_q;
  return std::int64_t(p.mask.num_items) * per_item;
}

// A CTA has kUnits unit slots (split tiles: one per consumer warpgroup); slot s of CTA b walks as
// the launch's (b kUnits + s)-th of gridDim.x kUnits.
template <bool kPersistent, int kUnits>
__device__ __forceinline__ int unit_of_round(int round, int num_units, int slot) {
  const int g = int(gridDim.x) * kUnits, b = int(blockIdx.x) * kUnits + slot;
  if constexpr (kPersistent) {
    return round * g + ((round & 1) ? g - 1 - b : b);
  } else {
    return round == 0 ? b : num_units;
  }
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1)
    flash_hopper_fwd_kernel(const __grid_constant__ KernelParams<C> kp) {
#if LONGATTN_HOPPER_DEVICE
  using namespace cute;
  using T = typename C::T;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  using Ring = RingPos<C::kStages>;
  constexpr int D = C::kD;
  constexpr int kStages = C::kStages;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename C::Shared*>(smem_raw);

  const FwdParams& p = kp.p;
  const int heads = p.shape.heads_q;
  const int group = heads / p.shape.heads_kv;
  const int num_units = int(num_units_of(p));

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int u = 0; u < C::kUnits; ++u) {
      TxBarrier::init(&ss.q_full[u], 1);
      Barrier::init(&ss.q_empty[u], C::kUnitWarps);
      for (int s = 0; s < kStages; ++s) {
        TxBarrier::init(&ss.k_full[u][s], 1);
        TxBarrier::init(&ss.v_full[u][s], 1);
        Barrier::init(&ss.k_empty[u][s], C::kUnitWarps);
        Barrier::init(&ss.v_empty[u][s], C::kUnitWarps);
      }
    }
    cutlass::arch::fence_barrier_init();
  }
  if (warp == 0 && lane == 0) {
    prefetch_tma_descriptor(kp.tma_q.get_tma_descriptor());
    prefetch_tma_descriptor(kp.tma_k.get_tma_descriptor());
    prefetch_tma_descriptor(kp.tma_v.get_tma_descriptor());
  }
  __syncthreads();

  if (warp < 4) {
    // ---- producer warpgroup -----------------------------------------------------------------
    cutlass::arch::warpgroup_reg_dealloc<C::kProducerRegs>();
    if (warp >= C::kUnits || lane != 0) return;
    const int slot = warp;  // the unit slot this thread feeds
    Tensor mQ = kp.tma_q.get_tma_tensor(make_shape(p.shape.seqlen_q, Int<D>{}, p.shape.heads_q));
    Tensor mK = kp.tma_k.get_tma_tensor(make_shape(p.shape.seqlen_k, Int<D>{}, p.shape.heads_kv));
    Tensor mV = kp.tma_v.get_tma_tensor(make_shape(p.shape.seqlen_k, Int<D>{}, p.shape.heads_kv));
    Tensor sQ = make_tensor(make_smem_ptr(ss.q[slot].data()), typename C::SmemQ{});
    Tensor sK = make_tensor(make_smem_ptr(ss.k[slot].data()), typename C::SmemKV{});
    Tensor sV = make_tensor(make_smem_ptr(ss.v[slot].data()), typename C::SmemKV{});
    auto tile_q = Shape<Int<C::kBlockM>, Int<D>>{};
    auto tile_kv = Shape<Int<C::kBlockN>, Int<D>>{};
    auto cta_q = kp.tma_q.get_slice(_0{});
    auto cta_k = kp.tma_k.get_slice(_0{});
    auto cta_v = kp.tma_v.get_slice(_0{});
    Tensor tQsQ = cta_q.partition_D(sQ);
    Tensor tKsK = cta_k.partition_D(sK);  // (TMA, 1, 1, stage)
    Tensor tVsV = cta_v.partition_D(sV);
    Ring ring;
    int q_phase = 0;
    for (int round = 0;; ++round) {
      const int unit = unit_of_round<C::kPersistent, C::kUnits>(round, num_units, slot);
      if (unit >= num_units) break;
      const Unit u = unit_coords(unit, p.mask, heads, group, kp.head_major);
      const int h = u.head, hk = h / group;
      const flash::Item item = flash::load_item(p.mask, u.item);
      flash::TileCursor<C::kBlockN> cur;
      cur.init(item);
      if (cur.done()) continue;  // no key: the consumers write the empty rows alone

      // Q: rows [q0, q0 + kBlockM) of head h (rows past seqlen_q arrive as zeros), once the
      // consumers issued the previous tile's last S.
      Tensor gQ = local_tile(domain_offset(make_coord(item.outer_begin, _0{}), mQ(_, _, h)), tile_q,
                             make_coord(_0{}, _0{}));
      Barrier::wait(&ss.q_empty[slot], q_phase ^ 1);
      TxBarrier::arrive_and_expect_tx(&ss.q_full[slot], C::kQBytes);
      copy(kp.tma_q.with(ss.q_full[slot]), cta_q.partition_S(gQ), tQsQ);
      q_phase ^= 1;
      for (; !cur.done(); cur.next(p.mask)) {
        // Keys [pos, pos + kBlockN): a short chunk's extra keys are loaded too (masked by its bits;
        // past seqlen_k they are zeros).
        Tensor gK = local_tile(domain_offset(make_coord(cur.pos, _0{}), mK(_, _, hk)), tile_kv,
                               make_coord(_0{}, _0{}));
        Tensor gV = local_tile(domain_offset(make_coord(cur.pos, _0{}), mV(_, _, hk)), tile_kv,
                               make_coord(_0{}, _0{}));
        Barrier::wait(&ss.k_empty[slot][ring.stage], ring.phase ^ 1);
        TxBarrier::arrive_and_expect_tx(&ss.k_full[slot][ring.stage], C::kKVBytes);
        copy(kp.tma_k.with(ss.k_full[slot][ring.stage]), cta_k.partition_S(gK),
             tKsK(_, _, _, ring.stage));
        Barrier::wait(&ss.v_empty[slot][ring.stage], ring.phase ^ 1);
        TxBarrier::arrive_and_expect_tx(&ss.v_full[slot][ring.stage], C::kKVBytes);
        copy(kp.tma_v.with(ss.v_full[slot][ring.stage]), cta_v.partition_S(gV),
             tVsV(_, _, _, ring.stage));
        ring.advance();
      }
    }
    return;
  }

  // ---- consumer warpgroups --------------------------------------------------------------------
  cutlass::arch::warpgroup_reg_alloc<C::kConsumerRegs>();
  const int ctid = threadIdx.x - 128;         // 0 .. 255
  const int cwg = ctid / 128;                 // consumer warpgroup
  const int slot = C::kSplit ? cwg : 0;       // its unit slot
  const int utid = C::kSplit ? ctid % 128 : ctid;  // thread of the unit's MMAs
  // The warpgroup's first row in its unit's tile: 64 cwg, or 0 with split tiles (a unit each).
  const int row_base = C::kSplit ? 0 : 64 * cwg;
  const int g = lane / 4, tq = lane % 4;
  // This thread's two rows of S and O in the tile (hh = 0, 1): the wgmma accumulator layout.
  const int row0 = row_base + 16 * ((ctid % 128) / 32) + g;

  typename C::MmaQK mma_qk;
  typename C::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(utid);
  auto thr_pv = mma_pv.get_thread_slice(utid);
  Tensor sQ = make_tensor(make_smem_ptr(ss.q[slot].data()), typename C::SmemQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k[slot].data()), typename C::SmemKV{});
  Tensor sVt = make_tensor(make_smem_ptr(ss.v[slot].data()), typename C::SmemVt{});
  Tensor tSrQ = thr_qk.partition_fragment_A(sQ);   // descriptors (MMA, 1, D / 16)
  Tensor tSrK = thr_qk.partition_fragment_B(sK);   // (MMA, 1, D / 16, stage)
  Tensor tOrV = thr_pv.partition_fragment_B(sVt);  // (MMA, 1, keys / 16, stage)
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<C::kBlockM>, Int<C::kBlockN>>{});
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<Int<C::kBlockM>, Int<D>>{});
  Tensor tOrP = make_tensor<T>(partition_shape_A(mma_pv, Shape<Int<C::kBlockM>, Int<C::kBlockN>>{}));
  static_assert(decltype(size(tSrS))::value == 2 * C::kSCols &&
                    decltype(size(tOrP))::value == 2 * C::kSCols,
                "one thread: 2 rows x kBlockN / 4 columns of S, of P");
  static_assert(decltype(size(tOrO))::value == D / 2, "one thread: 2 rows x D / 4 columns of O");

  const float sl2 = p.shape.scale * kLog2e;
  float row_max[2], row_sum[2];
  float neg_max[2];  // -row_max, 0 while row_max = -inf (the exponentials' shift)

  // ---- the consumer's steps ------------------------------------------------------------------
  // Ping-pong: a warpgroup issues its GEMMs only in its turn and hands the turn over right after
  // issuing (the other's GEMMs then queue behind its own while it runs its softmax).
  auto turn_begin = [&] {
    if constexpr (C::kPingPong) named_sync(kBarTurn + cwg, 256);
  };
  auto turn_end = [&] {
    if constexpr (C::kPingPong) named_arrive(kBarTurn + (cwg ^ 1), 256);
  };
  auto release = [&](std::uint64_t* bar) {
    __syncwarp();
    if (lane == 0) Barrier::arrive(bar);
  };
  // S = Q K^T (asynchronous: committed as one wgmma group).
  auto issue_s = [&](int stage) {
    warpgroup_fence_operand(tSrS);
    warpgroup_arrive();
    gemm_overwrite(mma_qk, tSrQ, tSrK(_, _, _, stage), tSrS);
    warpgroup_commit_batch();
  };
  // O += P V (asynchronous: one wgmma group; P's registers must stay untouched until it is done).
  auto issue_pv = [&](int stage) {
    warpgroup_fence_operand(tOrP);
    warpgroup_fence_operand(tOrO);
    warpgroup_arrive();
    mma_pv.accumulate_ = GMMA::ScaleOut::One;
#pragma unroll
    for (int kb = 0; kb < size<2>(tOrP); ++kb)
      gemm(mma_pv, tOrP(_, _, kb), tOrV(_, _, kb, stage), tOrO);
    warpgroup_commit_batch();
  };
  auto load_bits = [&](int bits, flash::RowBits<C::kWords> (&rb)[2]) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh)
      rb[hh].load(flash::tile_row_bits<C::kBlockM, C::kWords>(p.mask, bits, row0 + 8 * hh), lane);
  };
  // Mask (partial chunks), online softmax in log2 units, S := P in fp32. The running maximum
  // moves only when some row of the warp grew by more than kRescaleSlack; a row with no key so
  // far keeps max -inf and is shifted by 0. Returns whether O must be scaled by corr
  // (warp-uniform).
  auto softmax = [&](bool partial, const flash::RowBits<C::kWords> (&rb)[2], float (&corr)[2]) {
    // Element i of the accumulator is row hh = (i / 2) % 2, column 8 (i / 4) + 2 tq + i % 2.
    if (partial) {
#pragma unroll
      for (int i = 0; i < 2 * C::kSCols; ++i)
        if (!rb[(i >> 1) & 1].allows(i >> 2, i & 1)) tSrS(i) = -INFINITY;
    }
    float tile_max[2];
    bool grow = false;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float mx = -INFINITY;
#pragma unroll
      for (int ni = 0; ni < C::kBlockN / 8; ++ni)
        mx = fmaxf(mx, fmaxf(tSrS(4 * ni + 2 * hh), tSrS(4 * ni + 2 * hh + 1)));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      tile_max[hh] = mx * sl2;
      grow |= tile_max[hh] > row_max[hh] + C::kRescaleSlack;
    }
    const bool rescale = __any_sync(0xffffffffu, grow);
    if (rescale) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const float m_new = fmaxf(row_max[hh], tile_max[hh]);
        corr[hh] = exp2_approx(row_max[hh] - (m_new == -INFINITY ? 0.f : m_new));
        row_max[hh] = m_new;
        neg_max[hh] = m_new == -INFINITY ? 0.f : -m_new;
        row_sum[hh] *= corr[hh];
      }
    }
    // In place, summed straight into row_sum: no new register is needed here. (With a
    // temporary, ptxas tends to take one of P's registers, still read by the P V in flight, and
    // then has to put the wait for that P V above the exponentials.)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh)
#pragma unroll
      for (int ni = 0; ni < C::kBlockN / 8; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 4 * ni + 2 * hh + e;
          tSrS(i) = exp2_approx(fmaf(tSrS(i), sl2, neg_max[hh]));
          row_sum[hh] += tSrS(i);
        }
    return rescale;
  };
  // P in the A-operand register layout: the accumulator's element order within each k16 block
  // (2 columns x 2 rows x 2 column halves) is the A fragment's, so a flat copy converts it.
  auto convert_p = [&] {
#pragma unroll
    for (int i = 0; i < 2 * C::kSCols; ++i) tOrP(i) = static_cast<T>(tSrS(i));
  };
  auto rescale_o = [&](const float (&corr)[2]) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh)
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        tOrO(4 * dt + 2 * hh) *= corr[hh];
        tOrO(4 * dt + 2 * hh + 1) *= corr[hh];
      }
  };

  // Rows of this warpgroup's half of a tile without any key: O = 0, LSE = -inf.
  auto write_empty_rows = [&](int q0, int valid_q, int h) {
    const std::int64_t q_stride = p.q_row_stride;  // resolved by run_forward
    T* go = static_cast<T*>(p.o) + q0 * q_stride + h * D;
    for (int c = ctid % 128; c < 64 * (D / 8); c += 128) {
      const int row = row_base + c / (D / 8), ch = c % (D / 8);
      if (row < valid_q)
        *reinterpret_cast<uint4*>(go + row * q_stride + ch * 8) = make_uint4(0, 0, 0, 0);
    }
    float* glse = p.lse + std::int64_t(h) * p.shape.seqlen_q + q0;
    const int row = row_base + ctid % 128;
    if (ctid % 128 < 64 && row < valid_q) glse[row] = -INFINITY;
  };

  // O / l and LSE of this warpgroup's 64 rows, through its half of the staging tile.
  auto epilogue = [&](int q0, int valid_q, int h) {
    const std::int64_t q_stride = p.q_row_stride;  // resolved by run_forward
    float* glse = p.lse + std::int64_t(h) * p.shape.seqlen_q + q0;
    T* so = ss.o.data() + 64 * cwg * D;  // this warpgroup's 64 staging rows
    // The previous tile's rows must be out of the staging tile before they are overwritten.
    if constexpr (C::kPersistent) named_sync(kBarEpilogue + cwg, 128);
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float l = row_sum[hh];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int row = row0 + 8 * hh, lr = row - row_base;  // in the tile, in the staging rows
      if (tq == 0 && row < valid_q)
        glse[row] = l > 0.f ? (row_max[hh] + log2f(l)) * kLn2 : -INFINITY;
      // Columns 8 dt + 2 tq + {0, 1}; 16-byte chunk dt of the row stored at chunk dt ^ (row % 8).
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const T lo = static_cast<T>(tOrO(4 * dt + 2 * hh) * inv);
        const T hi = static_cast<T>(tOrO(4 * dt + 2 * hh + 1) * inv);
        std::uint32_t packed = std::uint32_t(reinterpret_cast<const std::uint16_t&>(lo)) |
                               (std::uint32_t(reinterpret_cast<const std::uint16_t&>(hi)) << 16);
        *reinterpret_cast<std::uint32_t*>(so + lr * D + ((dt ^ (lr & 7)) * 8) + 2 * tq) = packed;
      }
    }
    named_sync(kBarEpilogue + cwg, 128);  // this warpgroup's 64 rows are staged
    T* go = static_cast<T*>(p.o) + q0 * q_stride + h * D;
    constexpr int kChunks = D / 8;  // 16-byte chunks per row
    for (int c = ctid % 128; c < 64 * kChunks; c += 128) {
      const int lr = c / kChunks, row = row_base + lr, ch = c % kChunks;
      if (row < valid_q)
        *reinterpret_cast<uint4*>(go + row * q_stride + ch * 8) =
            *reinterpret_cast<const uint4*>(so + lr * D + ((ch ^ (lr & 7)) * 8));
    }
  };

  // ---- the consumer's loop over units ----------------------------------------------------------
  if constexpr (C::kPingPong)
    if (cwg == 1) named_arrive(kBarTurn + 0, 256);  // warpgroup 0 has the first turn
  Ring ring;
  int q_phase = 0;
  for (int round = 0;; ++round) {
    const int unit = unit_of_round<C::kPersistent, C::kUnits>(round, num_units, slot);
    if (unit >= num_units) break;
    const Unit u = unit_coords(unit, p.mask, heads, group, kp.head_major);
    const int h = u.head;
    const flash::Item item = flash::load_item(p.mask, u.item);
    const int q0 = item.outer_begin;
    const int valid_q = item.outer_end - item.outer_begin;
    flash::TileCursor<C::kBlockN> cur;
    cur.init(item);
    if (cur.done()) {
      write_empty_rows(q0, valid_q, h);
      continue;
    }

    clear(tOrO);
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      row_max[hh] = -INFINITY;
      row_sum[hh] = 0.f;
      neg_max[hh] = 0.f;
    }
    Barrier::wait(&ss.q_full[slot], q_phase);
    q_phase ^= 1;
    flash::RowBits<C::kWords> rb[2];
    float corr[2];

    if constexpr (C::kOverlap) {
      // Chunk 0: S alone.
      int bits = cur.bits;
      cur.next(p.mask);
      bool partial = C::kHasPartial && bits >= 0;
      if (partial) load_bits(bits, rb);
      Ring kv = ring;  // the chunk whose S is computed
      Barrier::wait(&ss.k_full[slot][kv.stage], kv.phase);
      turn_begin();
      issue_s(kv.stage);
      turn_end();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tSrS);
      release(&ss.k_empty[slot][kv.stage]);
      if (cur.done()) release(&ss.q_empty[slot]);
      softmax(partial, rb, corr);  // O is still 0: no rescale needed
      convert_p();
      Ring pv = kv;  // the chunk whose P V is computed
      kv.advance();
      // Chunk j >= 1: S(j) and P(j-1) V(j-1) in one turn; the softmax of j runs while the
      // tensor cores finish P(j-1) V(j-1).
      while (!cur.done()) {
        bits = cur.bits;
        cur.next(p.mask);
        partial = C::kHasPartial && bits >= 0;
        if (partial) load_bits(bits, rb);
        Barrier::wait(&ss.k_full[slot][kv.stage], kv.phase);
        Barrier::wait(&ss.v_full[slot][pv.stage], pv.phase);
        turn_begin();
        issue_s(kv.stage);
        issue_pv(pv.stage);
        turn_end();
        warpgroup_wait<1>();  // S(j) done, P(j-1) V(j-1) may still run
        warpgroup_fence_operand(tSrS);
        release(&ss.k_empty[slot][kv.stage]);
        if (cur.done()) release(&ss.q_empty[slot]);
        const bool rescale = softmax(partial, rb, corr);
        // The wait for P(j-1) V(j-1) in a basic block of its own (behind a branch that every
        // thread takes alike, scale > 0, between two distinct copies that are not merged back):
        // otherwise ptxas hoists it above the softmax's exponentials, which then no longer
        // overlap the P V in flight. (A per-warp condition such as `rescale` would not do: the
        // whole warpgroup must execute the same wait_group instruction.)
        if (p.shape.scale > 0.f)
          wgmma_wait_all<0>();
        else
          wgmma_wait_all<1>();
        warpgroup_fence_operand(tOrO);
        warpgroup_fence_operand(tOrP);
        release(&ss.v_empty[slot][pv.stage]);
        if (rescale) rescale_o(corr);
        convert_p();
        pv = kv;
        kv.advance();
      }
      // The last P V.
      Barrier::wait(&ss.v_full[slot][pv.stage], pv.phase);
      turn_begin();
      issue_pv(pv.stage);
      turn_end();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      release(&ss.v_empty[slot][pv.stage]);
      ring = kv;
    } else {
      while (!cur.done()) {
        const int bits = cur.bits;
        cur.next(p.mask);
        const bool partial = C::kHasPartial && bits >= 0;
        if (partial) load_bits(bits, rb);
        Barrier::wait(&ss.k_full[slot][ring.stage], ring.phase);
        turn_begin();
        issue_s(ring.stage);
        turn_end();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        release(&ss.k_empty[slot][ring.stage]);
        if (cur.done()) release(&ss.q_empty[slot]);
        if (softmax(partial, rb, corr)) rescale_o(corr);
        convert_p();
        Barrier::wait(&ss.v_full[slot][ring.stage], ring.phase);
        turn_begin();
        issue_pv(ring.stage);
        turn_end();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
        release(&ss.v_empty[slot][ring.stage]);
        ring.advance();
      }
    }
    epilogue(q0, valid_q, h);
  }
  // Warpgroup 1 arrived once more on warpgroup 0's turn barrier than warpgroup 0 waited on it
  // (its first hand-over): take that last turn, so that no barrier is left half-arrived at exit.
  if constexpr (C::kPingPong)
    if (cwg == 0) named_sync(kBarTurn + 0, 256);
#endif  // LONGATTN_HOPPER_DEVICE
}

// Item-major, the resident CTAs read the keys of every KV head at once: about heads_kv x the mean
// key span x D x 4 bytes of K and V. Head-major order pays where that exceeds L2 (long rows: full
// and causal masks, MHA above all) and costs where it fits (documents; NOTES.md).
inline bool kv_spills_l2(const FwdParams& p, std::size_t elem_bytes, int l2_bytes) {
  const std::int64_t kv_bytes = std::int64_t(p.shape.heads_kv) * p.mask.mean_span *
                                p.shape.head_dim * 2 * std::int64_t(elem_bytes);
  return kv_bytes > l2_bytes;
}

template <class C>
void launch_config(const FwdParams& p, Stream stream) {
  using T = typename C::T;
  constexpr int D = C::kD;
  using namespace cute;
  // The TMA descriptors (host-side encodes, microseconds) are rebuilt only when the tensors or
  // their shapes change; the device's SM count and L2 size are read with them.
  struct Key {
    const void *q = nullptr, *k = nullptr, *v = nullptr;
    int seqlen_q = 0, seqlen_k = 0, heads_q = 0, heads_kv = 0, device = -1;
    std::int64_t q_row_stride = 0;
    bool operator==(const Key&) const = default;
  };
  static thread_local Key cached_key;
  static thread_local KernelParams<C> kp{};
  static thread_local int num_sms = 0, l2_bytes = 0;
  Key key{p.q,        p.k, p.v, p.shape.seqlen_q, p.shape.seqlen_k, p.shape.heads_q,
          p.shape.heads_kv, 0, p.q_row_stride};
  check_cuda(cudaGetDevice(&key.device), "cudaGetDevice");
  if (!(key == cached_key)) {
    auto gmem = [&](const void* ptr, int seqlen, int heads) {
      return seq_tensor<D>(static_cast<const T*>(ptr), seqlen, heads);
    };
    kp.tma_q = make_tma_copy(SM90_TMA_LOAD{},
                             seq_tensor<D>(static_cast<const T*>(p.q), p.shape.seqlen_q,
                                           p.shape.heads_q, p.q_row_stride),
                             typename C::SmemQ{}, Shape<Int<C::kBlockM>, Int<D>>{}, _1{});
    kp.tma_k = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.k, p.shape.seqlen_k, p.shape.heads_kv),
                             take<0, 2>(typename C::SmemKV{}), Shape<Int<C::kBlockN>, Int<D>>{},
                             _1{});
    kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.v, p.shape.seqlen_k, p.shape.heads_kv),
                             take<0, 2>(typename C::SmemKV{}), Shape<Int<C::kBlockN>, Int<D>>{},
                             _1{});
    check_cuda(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, key.device),
               "SM count");
    check_cuda(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, key.device), "L2 size");
    cached_key = key;
  }
  kp.p = p;
  kp.head_major = (forward_flags() & kHeadMajor) != 0 && kv_spills_l2(p, sizeof(T), l2_bytes);
  auto* kernel = &flash_hopper_fwd_kernel<C>;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem);
  check_cuda(attr, "cudaFuncSetAttribute(max dynamic shared memory)");
  const std::int64_t units = num_units_of(p);
  if (units > std::int64_t(INT32_MAX))
    throw std::runtime_error("flash_hopper: too many (query tile, head) units for one launch");
  const std::int64_t ctas = (units + C::kUnits - 1) / C::kUnits;
  const int grid = C::kPersistent ? int(std::min<std::int64_t>(ctas, num_sms)) : int(ctas);
  kernel<<<grid, C::kThreads, C::kSmem, stream>>>(kp);
  check_cuda(cudaGetLastError(), "forward launch");
}

template <class T, int D, int kFlags>
void launch_flags(const FwdParams& p, Stream stream) {
  if (p.mask.has_partial)
    launch_config<Config<T, D, true, kFlags>>(p, stream);
  else
    launch_config<Config<T, D, false, kFlags>>(p, stream);
}

template <DType Dt, int D>
void launch_forward(const FwdParams& p, Stream stream) {
  using T = typename Elem<Dt>::type;
  if (p.mask.num_items == 0) return;
  // Split tiles follow the plan (64-row tiles), with the one schedule built for them.
  if (p.mask.tile_rows == FwdTile::kSplitRows)
    return launch_flags<T, D, kOverlap | kPersistent | kSplit>(p, stream);
  // The flags values built (measured against each other, NOTES.md); p.mask must have been
  // prepared with forward_tile(D), which follows the same flags.
  switch (forward_flags() & kScheduleFlags) {
    case kOverlap | kPingPong | kPersistent:
      return launch_flags<T, D, kOverlap | kPingPong | kPersistent>(p, stream);
    case 0:
      return launch_flags<T, D, 0>(p, stream);
    case kOverlap | kPingPong:
      return launch_flags<T, D, kOverlap | kPingPong>(p, stream);
    case kOverlap | kPersistent:
      return launch_flags<T, D, kOverlap | kPersistent>(p, stream);
    case kOverlap | kPingPong | kPersistent | kWide:
      if constexpr (D == 128)
        return launch_flags<T, D, kOverlap | kPingPong | kPersistent | kWide>(p, stream);
      [[fallthrough]];
    default:
      throw std::runtime_error(
          "flash_hopper: LONGATTN_HOPPER_FWD_FLAGS must be 0, 3, 5, 7 or 15 (15: head dim 128), "
          "plus 16 or not");
  }
}

}  // namespace longattn::flash_hopper

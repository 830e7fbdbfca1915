#pragma once
// Hopper backward kernel (sm_90a), warp-specialised, key-major. One CTA = one key tile (128 keys,
// a work item of the key-major prepared mask, heaviest first) of one KV head; it walks the query
// chunks (64 rows) of its runs for each query head of the GQA group (the item's passes): in
// order, once per head, or (kBwdDescending, where the mask prefers it) last to first with the
// heads innermost, so that the key tiles of a document read the same rows at the same time.
// Head-major grid (kBwdHeadMajor): the CTAs resident together take the key tiles of one KV head.
//   warpgroup 0, producer (registers lowered): one thread issues TMA loads of K, V once and, per
//     query chunk, of Q and dO (and a partial chunk's bitmask) into a kStages-deep ring ("full":
//     transaction bytes, "empty": the consumer threads); a second warp copies the chunk's lse2 and delta rows into the same stage
//     (+inf / 0 past the chunk's rows, so those rows contribute nothing);
//   warpgroups 1, 2, consumers (registers raised): 64 keys each. Transposed scores, so that P^T
//     and dS^T come out of the accumulators already in the A-operand layout of dV, dK:
//       S^T = K Q^T, dP^T = V dO^T            (wgmma SS, M = keys, N = queries, K = D)
//       P^T = exp2(S^T scale log2e - lse2)    (mask bits on partial chunks, rows past the tile)
//       dV += P^T dO                          (wgmma RS, B = dO through an MN-major view)
//       dS^T = P^T (dP^T - delta)             -> shared dS tile (stmatrix, double buffered)
//       dK += dS^T Q                          (wgmma RS; kBwdPipelined: SS from the dS tile)
//       dQ = dS K                             (wgmma SS, each warpgroup half of D, or its own
//                                             64 keys), added to the workspace with fp32
//                                             atomics
//     kBwdPipelined issues dQ before dK and the next chunk's S^T, dP^T before waiting for dK
//     (BwdConfig, launch.hpp; NOTES.md has the measurements; a dQ writer warp with bulk
//     reductions, measured 30% slower, is in the history at a84d79f).
// The portable kernels do the rest (flash/bwd_kernel.cuh): the preprocessing (lse2, delta), and
// the conversion of the dQ accumulator (and of split tiles' dK, dV accumulators).
#include "flash/bwd_kernel.cuh"
#include "fwd_kernel.cuh"

namespace longattn::flash_hopper {

using flash::BwdParams;
using flash::BwdWork;

template <class T_, int D, bool kHasPartial_, int kFlags>
struct BwdConfig {
  using T = T_;
  static constexpr int kD = D;
  static constexpr bool kHasPartial = kHasPartial_;
  // BwdFlags (launch.hpp). kBwdPipelined: dQ before dK, dK from the shared dS tile, the next
  // chunk's S^T, dP^T issued before waiting for dK; without it, the first schedule: dK (RS)
  // issued before the dS barrier, dQ last, the chunk's GEMMs all done before the next chunk's.
  // dQ = dS K split across the consumer warpgroups: by D at head dim 128 (each half of D over
  // all 128 keys: a barrier between the warpgroups for the dS halves), by keys at head dim 64
  // (each its own 64 keys over all of D, both adding to the workspace), where a wgmma N of 32
  // cannot read the 128-byte swizzled K^T.
  static constexpr bool kDqSplitKeys = D == 64;
  static constexpr bool kPipelined = (kFlags & kBwdPipelined) != 0;
  // kBwdDqBulk: each warpgroup stages its dQ (64 x kDqCols fp32) in shared memory and one thread
  // adds it to the workspace with a TMA tensor reduction (cp.reduce.async.bulk.tensor .add.f32),
  // instead of 16 red.global.add.v2.f32 per thread. Rows past the chunk hold exact zeros (P = 0
  // there), so the whole 64-row box may be added; rows past seqlen_q are clipped by the TMA.
  static constexpr bool kDqBulk = (kFlags & kBwdDqBulk) != 0;
  // Descending (kBwdDescending where the mask prefers it, MaskTiles::descending, or
  // kBwdDescendingAlways): each key tile walks its query chunks from the last to the first, every
  // head of the group on a chunk before the next (flash::DescendingCursor); else the chunks in
  // order, once per head.
  static constexpr bool kDescending = (kFlags & kBwdDescending) != 0;  // the kernel's walk
  using Cursor = std::conditional_t<kDescending, flash::DescendingCursor<BwdTile::kRows>,
                                    flash::TileCursor<BwdTile::kRows, true>>;
  static constexpr int kBlockM = BwdTile::kRows;  // queries per step
  static constexpr int kBlockN = BwdTile::kCols;  // keys of the CTA
  static constexpr int kStages = 2;
  static constexpr int kConsumerWGs = kBlockN / 64;
  static constexpr int kThreads = 128 * (kConsumerWGs + 1);
  static constexpr int kConsumerThreads = 128 * kConsumerWGs;
  static constexpr int kWords = kBlockN / 32;  // bitmask words per query row of a partial chunk
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  // Named barriers (0 is __syncthreads): the dS that dQ reads stored, both warpgroups' halves
  // (kBarDS), or with the key split a warpgroup's own (kBarDS + warpgroup).
  static constexpr int kBarDS = 1;
  static constexpr int kBarDq = 3;  // kBwdDqBulk: a warpgroup's staging tile free / written (3, 4)
  static constexpr int kDSSyncThreads = kDqSplitKeys ? 128 : 128 * kConsumerWGs;
  static_assert(kBlockM == 64 && kBlockN == 128 && (D == 64 || D == 128), "the layouts below");
  static constexpr int kDqCols = kDqSplitKeys ? D : D / 2;  // dQ columns of one warpgroup
  static constexpr int kDqKeys = kDqSplitKeys ? 64 : kBlockN;  // keys of one warpgroup's dQ

  using BM = cute::Int<kBlockM>;
  using BN = cute::Int<kBlockN>;
  using BD = cute::Int<D>;
  using BS = cute::Int<kStages>;
  using WG2 = cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>;   // warpgroups along M
  using WG2N = cute::Layout<cute::Shape<cute::_1, cute::_2, cute::_1>>;  // ... along N
  using WG1 = cute::Layout<cute::Shape<cute::_1, cute::_1, cute::_1>>;   // each on its own

  // S^T, dP^T: (keys, queries), one warpgroup per 64 keys.
  using MmaSdP = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<T, T, float, cute::Shape<cute::_64, BM, BD>>(), WG2{}));
  // dV, dK: (keys, D) += (keys, queries) x (queries, D); A from registers, B MN-major.
  using MmaKV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<T, T, float, cute::Shape<cute::_64, BD, BM>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::MN>(),
      WG2{}));
  // dK: as dV, but A = dS^T from the shared dS tile (MN-major): the registers of dS are free
  // once it is stored, which leaves room for the next chunk's S^T, dP^T while dK runs.
  using MmaDK = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<T, T, float, cute::Shape<cute::_64, BD, BM>,
                                 cute::GMMA::Major::MN, cute::GMMA::Major::MN>(),
      WG2{}));
  // dQ: (queries, D) = (queries, keys) x (keys, D); one warpgroup per half of D, or (key split)
  // each warpgroup on its own: (queries, D) = (queries, its keys) x (its keys, D).
  using DqShape = cute::Shape<BM, cute::Int<kDqCols>, cute::Int<kDqKeys>>;
  using DqWarpgroups = std::conditional_t<kDqSplitKeys, WG1, WG2N>;
  using MmaDQ = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<T, T, float, DqShape, cute::GMMA::Major::K,
                                 cute::GMMA::Major::MN>(),
      DqWarpgroups{}));

  // Shared tiles, K-major with the 128-byte swizzle (as the TMA boxes write them); the "t" views
  // are the transposed (MN-major) operands of the same bytes.
  using SmemKV = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{},
                                              cute::Shape<BN, BD>{}));
  using SmemKt = decltype(cute::composition(
      SmemKV{}, cute::make_ordered_layout(cute::Shape<BD, BN>{}, cute::Step<cute::_2, cute::_1>{})));
  using SmemQ = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{},
                                             cute::Shape<BM, BD, BS>{}));
  using SmemQt = decltype(cute::composition(
      SmemQ{}, cute::make_ordered_layout(cute::Shape<BD, BM, BS>{},
                                         cute::Step<cute::_2, cute::_1, cute::_3>{})));
  using SmemDS = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<T>{},
                                              cute::Shape<BM, BN, cute::_2>{}));
  using SmemDSt = decltype(cute::composition(
      SmemDS{}, cute::make_ordered_layout(cute::Shape<BN, BM, cute::_2>{},
                                          cute::Step<cute::_2, cute::_1, cute::_3>{})));

  static constexpr int kQBytes = kBlockM * D * int(sizeof(T));   // one stage of Q (or dO)
  static constexpr int kKVBytes = kBlockN * D * int(sizeof(T));  // K (or V)
  static constexpr int kBitsBytes = kBlockM * kWords * 4;          // a partial chunk's bitmask
  static constexpr int kDSBytes = kBlockM * kBlockN * int(sizeof(T));  // one dS buffer

  // kBwdDqBulk: a warpgroup's dQ staging tile, fp32 K-major with the 128-byte swizzle (8 rows x
  // 32 floats per atom, as the TMA box reads it; the consumers' 8-byte stores spread over all
  // banks).
  using SmemDq = decltype(cute::tile_to_shape(cute::GMMA::Layout_K_SW128_Atom<float>{},
                                              cute::Shape<BM, cute::Int<kDqCols>>{}));
  static constexpr int kDqStaged = kDqBulk ? int(cute::cosize_v<SmemDq>) : 1;

  struct alignas(1024) Shared {
    cute::array_aligned<T, cute::cosize_v<SmemKV>, 1024> k;
    cute::array_aligned<T, cute::cosize_v<SmemKV>, 1024> v;
    cute::array_aligned<T, cute::cosize_v<SmemQ>, 1024> q;
    cute::array_aligned<T, cute::cosize_v<SmemQ>, 1024> d_o;
    cute::array_aligned<T, cute::cosize_v<SmemDS>, 1024> ds;
    cute::array_aligned<float, kDqStaged, 1024> dq[kConsumerWGs];  // kBwdDqBulk only
    // A partial chunk's bitmask ([kBlockM query rows][kWords]), copied in with its Q and dO.
    alignas(16) std::uint32_t bits[kHasPartial ? kStages : 1][kBlockM * kWords];
    alignas(16) float lse2[kStages][kBlockM];
    alignas(16) float delta[kStages][kBlockM];
    alignas(8) std::uint64_t kv_full;
    std::uint64_t qdo_full[kStages], stat_full[kStages], qdo_empty[kStages];
  };
  static constexpr int kSmem = int(sizeof(Shared));
  static_assert(kSmem <= 227 * 1024, "shared memory");

  using GTensor = SeqTensor<D, const T>;
  using TmaQ = decltype(cute::make_tma_copy(cute::SM90_TMA_LOAD{}, GTensor{},
                                            cute::take<0, 2>(SmemQ{}), cute::Shape<BM, BD>{},
                                            cute::_1{}));
  using TmaKV = decltype(cute::make_tma_copy(cute::SM90_TMA_LOAD{}, GTensor{}, SmemKV{},
                                             cute::Shape<BN, BD>{}, cute::_1{}));
  using TmaDq = decltype(cute::make_tma_copy(cute::SM90_TMA_REDUCE_ADD{}, SeqTensor<D, float>{},
                                             SmemDq{}, cute::Shape<BM, cute::Int<kDqCols>>{},
                                             cute::_1{}));
};

// Four 8 x 8 matrices of 16-bit elements, transposed on the way (lane l gives row l % 8 of matrix
// l / 8; register i holds the pair of matrix i that the mma accumulator layout gives the lane).
__device__ __forceinline__ void stmatrix_x4_trans(std::uint32_t addr, std::uint32_t r0,
                                                  std::uint32_t r1, std::uint32_t r2,
                                                  std::uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr),
               "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

template <class C>
struct BwdKernelParams {
  typename C::TmaQ tma_q;
  typename C::TmaQ tma_do;
  typename C::TmaKV tma_k;
  typename C::TmaKV tma_v;
  typename C::TmaDq tma_dq;  // kBwdDqBulk only
  BwdParams p;
  BwdWork w;
  // kBwdHeadMajor, or a per-KV-head mask: grid (item, KV head) (per-KV-head: (item, 1), each item
  // names its KV head); else (KV head, item).
  int head_major;
};

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1)
    flash_hopper_bwd_kernel(const __grid_constant__ BwdKernelParams<C> kp) {
#if LONGATTN_HOPPER_DEVICE
  using namespace cute;
  using T = typename C::T;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int D = C::kD;
  constexpr int kStages = C::kStages;
  constexpr int kBlockM = C::kBlockM;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename C::Shared*>(smem_raw);

  const BwdParams& p = kp.p;
  const BwdWork& w = kp.w;
  // CTAs start in blockIdx.x order: head-major, those resident together share one KV head's
  // query rows (its Q, dO and dQ in L2); otherwise each takes another head of the same item.
  const int item_index = kp.head_major ? blockIdx.x : blockIdx.y;
  const int hk = p.mask.item_heads ? __ldg(p.mask.item_heads + item_index)
                                   : kp.head_major ? blockIdx.y : blockIdx.x;
  const int group = p.shape.heads_q / p.shape.heads_kv;
  const flash::Item item = flash::load_item(p.mask, item_index);
  const int k0 = item.outer_begin;
  const int valid_k = item.outer_end - item.outer_begin;
  const std::int64_t kv_stride = std::int64_t(p.shape.heads_kv) * D;
  const std::int64_t kv_off = k0 * kv_stride + hk * D;

  typename C::Cursor cur;
  if constexpr (C::kDescending)
    cur.init(item, p.mask, k0 / C::kBlockN);
  else
    cur.init(item);
  if (cur.done()) {  // no query attends these keys: zero gradients (split: the zeroed workspace)
    if (p.mask.split) return;
    for (int c = threadIdx.x; c < C::kBlockN * (D / 8); c += C::kThreads) {
      const int row = c / (D / 8), ch = c % (D / 8);
      if (row < valid_k) {
        const std::int64_t o = kv_off + row * kv_stride + ch * 8;
        *reinterpret_cast<uint4*>(static_cast<T*>(p.dk) + o) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(static_cast<T*>(p.dv) + o) = make_uint4(0, 0, 0, 0);
      }
    }
    return;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    TxBarrier::init(&ss.kv_full, 1);
    for (int s = 0; s < kStages; ++s) {
      TxBarrier::init(&ss.qdo_full[s], 1);
      Barrier::init(&ss.stat_full[s], 32);
      // Every consumer thread arrives once it is done with the stage (its own reads of Q, dO,
      // lse2, delta then precede the producers' next writes, as compute-sanitizer can see).
      Barrier::init(&ss.qdo_empty[s], C::kConsumerThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  if (warp == 0 && lane == 0) {
    prefetch_tma_descriptor(kp.tma_q.get_tma_descriptor());
    prefetch_tma_descriptor(kp.tma_do.get_tma_descriptor());
    prefetch_tma_descriptor(kp.tma_k.get_tma_descriptor());
    prefetch_tma_descriptor(kp.tma_v.get_tma_descriptor());
  }
  __syncthreads();

  if (warp < 4) {
    // ---- producer warpgroup -----------------------------------------------------------------
    cutlass::arch::warpgroup_reg_dealloc<C::kProducerRegs>();
    if (warp == 0 && lane == 0) {
      Tensor mQ = kp.tma_q.get_tma_tensor(make_shape(p.shape.seqlen_q, Int<D>{}, p.shape.heads_q));
      Tensor mdO =
          kp.tma_do.get_tma_tensor(make_shape(p.shape.seqlen_q, Int<D>{}, p.shape.heads_q));
      Tensor mK = kp.tma_k.get_tma_tensor(make_shape(p.shape.seqlen_k, Int<D>{}, p.shape.heads_kv));
      Tensor mV = kp.tma_v.get_tma_tensor(make_shape(p.shape.seqlen_k, Int<D>{}, p.shape.heads_kv));
      Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename C::SmemKV{});
      Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename C::SmemKV{});
      Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename C::SmemQ{});
      Tensor sdO = make_tensor(make_smem_ptr(ss.d_o.data()), typename C::SmemQ{});
      auto tile_q = Shape<Int<kBlockM>, Int<D>>{};
      auto tile_kv = Shape<Int<C::kBlockN>, Int<D>>{};

      // K, V: keys [k0, k0 + 128) (keys past the tile are loaded too; the consumers zero their
      // P and dS rows).
      {
        Tensor gK = local_tile(domain_offset(make_coord(k0, _0{}), mK(_, _, hk)), tile_kv,
                               make_coord(_0{}, _0{}));
        Tensor gV = local_tile(domain_offset(make_coord(k0, _0{}), mV(_, _, hk)), tile_kv,
                               make_coord(_0{}, _0{}));
        auto ck = kp.tma_k.get_slice(_0{});
        auto cv = kp.tma_v.get_slice(_0{});
        TxBarrier::arrive_and_expect_tx(&ss.kv_full, 2 * C::kKVBytes);
        copy(kp.tma_k.with(ss.kv_full), ck.partition_S(gK), ck.partition_D(sK));
        copy(kp.tma_v.with(ss.kv_full), cv.partition_S(gV), cv.partition_D(sV));
      }
      auto cq = kp.tma_q.get_slice(_0{});
      auto cdo = kp.tma_do.get_slice(_0{});
      Tensor tQsQ = cq.partition_D(sQ);  // (TMA, 1, 1, stage)
      Tensor tdOsdO = cdo.partition_D(sdO);
      int stage = 0, phase = 0;
      for (; !cur.done(); cur.next(p.mask)) {
        const int h = hk * group + cur.pass;
        Tensor gQ = local_tile(domain_offset(make_coord(cur.pos, _0{}), mQ(_, _, h)), tile_q,
                               make_coord(_0{}, _0{}));
        Tensor gdO = local_tile(domain_offset(make_coord(cur.pos, _0{}), mdO(_, _, h)), tile_q,
                                make_coord(_0{}, _0{}));
        const bool partial = C::kHasPartial && cur.bits >= 0;
        Barrier::wait(&ss.qdo_empty[stage], phase ^ 1);
        TxBarrier::arrive_and_expect_tx(&ss.qdo_full[stage],
                                        2 * C::kQBytes + (partial ? C::kBitsBytes : 0));
        copy(kp.tma_q.with(ss.qdo_full[stage]), cq.partition_S(gQ), tQsQ(_, _, _, stage));
        copy(kp.tma_do.with(ss.qdo_full[stage]), cdo.partition_S(gdO), tdOsdO(_, _, _, stage));
        // The bitmask too, so that the consumers read it from shared memory: from global
        // memory, its loads were their longest stall on partial chunks (ncu, s7/).
        if (partial)
          SM90_BULK_COPY_G2S::copy(flash::tile_row_bits<kBlockM, C::kWords>(p.mask, cur.bits, 0),
                                   &ss.qdo_full[stage], ss.bits[stage], C::kBitsBytes);
        if (++stage == kStages) {
          stage = 0;
          phase ^= 1;
        }
      }
    } else if (warp == 1) {
      // Row statistics of each chunk into its stage: lse2 (+inf past the chunk: P = 0 there)
      // and delta.
      int stage = 0, phase = 0;
      for (; !cur.done(); cur.next(p.mask)) {
        const int h = hk * group + cur.pass, q0 = cur.pos, qlen = cur.length();
        const std::int64_t base = std::int64_t(h) * p.shape.seqlen_q + q0;
        Barrier::wait(&ss.qdo_empty[stage], phase ^ 1);
        // Not unrolled: unrolled, ptxas spilled this 24-register warp's shared-memory base (an
        // L2 round trip per chunk).
#pragma unroll 1
        for (int r = lane; r < kBlockM; r += 32) {
          const bool in = r < qlen;
          ss.lse2[stage][r] = in ? __ldg(w.lse2 + base + r) : INFINITY;
          ss.delta[stage][r] = in ? __ldg(w.delta + base + r) : 0.f;
        }
        Barrier::arrive(&ss.stat_full[stage]);
        if (++stage == kStages) {
          stage = 0;
          phase ^= 1;
        }
      }
    }
    return;
  }

  // ---- consumer warpgroups --------------------------------------------------------------------
  cutlass::arch::warpgroup_reg_alloc<C::kConsumerRegs>();
  const int ctid = threadIdx.x - 128;  // 0 .. 255
  const int cwg = ctid / 128;          // keys [64 cwg, 64 cwg + 64) of S^T, dK, dV
  const int wi = (ctid % 128) / 32;
  const int g = lane / 4, tq = lane % 4;
  // This thread's two key rows (hh = 0, 1: + 8) of S^T, dP^T, dK, dV; its query columns of S^T
  // are 8 ni + 2 tq + e (ni < 8, e < 2), its dQ rows 16 wi + g + 8 hh, columns 8 j + 2 tq (+ D / 2
  // for warpgroup 1 when dQ is split by D).
  const int krow0 = 64 * cwg + 16 * wi + g;

  typename C::MmaSdP mma_sdp;
  typename C::MmaKV mma_kv;
  typename C::MmaDK mma_dk;
  typename C::MmaDQ mma_dq;
  auto thr_sdp = mma_sdp.get_thread_slice(ctid);
  auto thr_kv = mma_kv.get_thread_slice(ctid);
  auto thr_dk = mma_dk.get_thread_slice(ctid);
  auto thr_dq = mma_dq.get_thread_slice(C::kDqSplitKeys ? ctid % 128 : ctid);
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename C::SmemKV{});
  Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename C::SmemKV{});
  Tensor sKt = make_tensor(make_smem_ptr(ss.k.data()), typename C::SmemKt{});
  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename C::SmemQ{});
  Tensor sdO = make_tensor(make_smem_ptr(ss.d_o.data()), typename C::SmemQ{});
  Tensor sQt = make_tensor(make_smem_ptr(ss.q.data()), typename C::SmemQt{});
  Tensor sdOt = make_tensor(make_smem_ptr(ss.d_o.data()), typename C::SmemQt{});
  Tensor sdS = make_tensor(make_smem_ptr(ss.ds.data()), typename C::SmemDS{});
  Tensor sdSt = make_tensor(make_smem_ptr(ss.ds.data()), typename C::SmemDSt{});

  Tensor tSrK = thr_sdp.partition_fragment_A(sK);     // (MMA, 1, D / 16)
  Tensor tSrV = thr_sdp.partition_fragment_A(sV);
  Tensor tSrQ = thr_sdp.partition_fragment_B(sQ);     // (MMA, 1, D / 16, stage)
  Tensor tSrdO = thr_sdp.partition_fragment_B(sdO);
  Tensor tKVrdOt = thr_kv.partition_fragment_B(sdOt);  // (MMA, 1, queries / 16, stage)
  Tensor tKVrQt = thr_kv.partition_fragment_B(sQt);
  Tensor tDKrdSt = thr_dk.partition_fragment_A(sdSt);  // (MMA, 1, queries / 16, buffer)
  Tensor tDKrQt = thr_dk.partition_fragment_B(sQt);    // (MMA, 1, queries / 16, stage)
  // dQ's operands: all keys, or (key split) this warpgroup's 64.
  const int dq_key_tile = C::kDqSplitKeys ? cwg : 0;
  Tensor tQrdS = thr_dq.partition_fragment_A(local_tile(
      sdS, Shape<Int<kBlockM>, Int<C::kDqKeys>, _2>{}, make_coord(_0{}, dq_key_tile, _0{})));
  // (MMA, 1, keys / 16, buffer)
  Tensor tQrKt = thr_dq.partition_fragment_B(
      local_tile(sKt, Shape<Int<D>, Int<C::kDqKeys>>{}, make_coord(_0{}, dq_key_tile)));
  // (MMA, 1, keys / 16)

  Tensor accS = partition_fragment_C(mma_sdp, Shape<Int<C::kBlockN>, Int<kBlockM>>{});
  Tensor accdP = partition_fragment_C(mma_sdp, Shape<Int<C::kBlockN>, Int<kBlockM>>{});
  Tensor accdV = partition_fragment_C(mma_kv, Shape<Int<C::kBlockN>, Int<D>>{});
  Tensor accdK = partition_fragment_C(mma_kv, Shape<Int<C::kBlockN>, Int<D>>{});
  Tensor accdQ = partition_fragment_C(mma_dq, Shape<Int<kBlockM>, Int<D>>{});
  Tensor rP = make_tensor<T>(partition_shape_A(mma_kv, Shape<Int<C::kBlockN>, Int<kBlockM>>{}));
  Tensor rdS = make_tensor<T>(partition_shape_A(mma_kv, Shape<Int<C::kBlockN>, Int<kBlockM>>{}));
  static_assert(decltype(size(accS))::value == 32 && decltype(size(rP))::value == 32,
                "one thread: 2 key rows x 16 query columns of S^T");
  static_assert(decltype(size(accdV))::value == D / 2, "one thread: 2 key rows x D / 4 of dV");
  static_assert(decltype(size(accdQ))::value == C::kDqCols / 2,
                "one thread: 2 query rows x kDqCols / 8 of dQ");
  clear(accdV);
  clear(accdK);

  const float sl2 = p.shape.scale * kLog2e;
  const bool short_k = valid_k < C::kBlockN;
  const std::int64_t q_stride = std::int64_t(p.shape.heads_q) * D;
  TxBarrier::wait(&ss.kv_full, 0);

  // This lane's row address for stmatrix: matrix l / 8 of an x4 is (query block 2 m + l / 16,
  // key row block hh = (l / 8) % 2); row l % 8 of it is query 8 (2 m + l / 16) + l % 8, whose
  // 8 keys 64 cwg + 16 wi + 8 hh are 16 bytes of a 128-byte row of the K-major SW128 dS tile
  // (16-byte chunks XOR-ed with the row % 8; the 64-key halves 8 KB apart).
  const std::uint32_t ds_addr =
      cute::cast_smem_ptr_to_uint(ss.ds.data()) + cwg * (C::kDSBytes / 2) +
      ((lane / 16) * 8 + lane % 8) * 128 + ((32 * wi + 16 * ((lane / 8) % 2)) ^ ((lane % 8) << 4));

  // S^T = K Q^T, dP^T = V dO^T of the chunk in stage st (two commit groups).
  auto issue_sdp = [&](int st) {
    warpgroup_fence_operand(accS);
    warpgroup_fence_operand(accdP);
    warpgroup_arrive();
    gemm_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, st), accS);
    warpgroup_commit_batch();
    gemm_overwrite(mma_sdp, tSrV, tSrdO(_, _, _, st), accdP);
    warpgroup_commit_batch();
  };

  // Pipelined, chunk j's S^T, dP^T are issued before waiting for chunk j - 1's dK (which then
  // releases its Q, dO stage), so the tensor cores have this warpgroup's next GEMMs queued.
  int stage = 0, phase = 0, buf = 0;
  int prev_stage = -1;  // the previous chunk's stage (pipelined: still read by its dK in flight)
  for (; !cur.done();) {
    const int q0 = cur.pos, qlen = cur.length(), bits = cur.bits, h = hk * group + cur.pass;
    cur.next(p.mask);
    const bool partial = C::kHasPartial && bits >= 0;

    TxBarrier::wait(&ss.qdo_full[stage], phase);
    issue_sdp(stage);
    if constexpr (C::kPipelined) {
      warpgroup_wait<2>();  // the previous chunk's dK done (nothing else in flight before it)
      warpgroup_fence_operand(accdK);
      if (prev_stage >= 0) Barrier::arrive(&ss.qdo_empty[prev_stage]);
    }

    // Mask bits of this thread's pairs: query row qc = 8 ni + 2 tq + e of the chunk's bitmask,
    // word (keys / 32) of both key rows; packed as bit 2 (2 ni + e) + hh.
    std::uint32_t allowed = 0xffffffffu;
    if (partial) {
      const std::uint32_t* rows = ss.bits[C::kHasPartial ? stage : 0] + krow0 / 32;
      const int shift = krow0 % 32;
      allowed = 0;
#pragma unroll
      for (int c = 0; c < 16; ++c) {
        const int qc = 8 * (c / 2) + 2 * tq + c % 2;
        const std::uint32_t word = rows[qc * C::kWords] >> shift;
        allowed |= ((word & 1u) | ((word >> 7) & 2u)) << (2 * c);
      }
    }
    if (short_k) {  // key rows past the tile: nothing
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
        if (krow0 + 8 * hh >= valid_k) allowed &= ~(0x55555555u << hh);
    }

    Barrier::wait(&ss.stat_full[stage], phase);
    warpgroup_wait<1>();  // S^T done (dP^T may still run)
    warpgroup_fence_operand(accS);

    // P^T. Accumulator element i: key row hh = (i / 2) % 2, query column 8 (i / 4) + 2 tq + i % 2.
#pragma unroll
    for (int ni = 0; ni < 8; ++ni) {
      const float2 l = *reinterpret_cast<const float2*>(&ss.lse2[stage][8 * ni + 2 * tq]);
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int i = 4 * ni + 2 * hh;
        accS(i) = exp2_approx(fmaf(accS(i), sl2, -l.x));
        accS(i + 1) = exp2_approx(fmaf(accS(i + 1), sl2, -l.y));
      }
    }
    if (partial || short_k) {
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int c = 2 * (i / 4) + i % 2, hh = (i / 2) % 2;
        if (!((allowed >> (2 * c + hh)) & 1u)) accS(i) = 0.f;
      }
    }
    // The accumulator's order within each k16 block is the A fragment's: a flat copy converts.
#pragma unroll
    for (int i = 0; i < 32; ++i) rP(i) = static_cast<T>(accS(i));

    // dV += P^T dO
    warpgroup_fence_operand(rP);
    warpgroup_fence_operand(accdV);
    warpgroup_arrive();
#pragma unroll
    for (int kb = 0; kb < size<2>(rP); ++kb)
      gemm(mma_kv, rP(_, _, kb), tKVrdOt(_, _, kb, stage), accdV);
    warpgroup_commit_batch();
    warpgroup_fence_operand(accdV);

    // dS^T = P^T (dP^T - delta)
    warpgroup_wait<1>();  // dP^T done (dV may still run)
    warpgroup_fence_operand(accdP);
#pragma unroll
    for (int ni = 0; ni < 8; ++ni) {
      const float2 dl = *reinterpret_cast<const float2*>(&ss.delta[stage][8 * ni + 2 * tq]);
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int i = 4 * ni + 2 * hh;
        accdP(i) = accS(i) * (accdP(i) - dl.x);
        accdP(i + 1) = accS(i + 1) * (accdP(i + 1) - dl.y);
      }
    }
#pragma unroll
    for (int i = 0; i < 32; ++i) rdS(i) = static_cast<T>(accdP(i));

    if constexpr (!C::kPipelined) {  // dK += dS^T Q from registers
      warpgroup_fence_operand(rdS);
      warpgroup_fence_operand(accdK);
      warpgroup_arrive();
#pragma unroll
      for (int kb = 0; kb < size<2>(rdS); ++kb)
        gemm(mma_kv, rdS(_, _, kb), tKVrQt(_, _, kb, stage), accdK);
      warpgroup_commit_batch();
      warpgroup_fence_operand(accdK);
    }

    // dS into shared memory (buffer buf; the other buffer may still be read by the other
    // warpgroup's previous dQ), visible to wgmma's async proxy, then the halves dQ reads present.
    // stmatrix .trans writes each 8 x 8 block (8 keys x 8 queries of dS^T) as 8 query rows of
    // 16 bytes: 4 instructions instead of 32 two-byte stores.
    {
      const auto packed = recast<std::uint32_t>(rdS);  // pair 2 ni + hh: key row hh, queries 8 ni
#pragma unroll
      for (int m = 0; m < 4; ++m)
        stmatrix_x4_trans(ds_addr + buf * C::kDSBytes + m * 2048, packed(4 * m), packed(4 * m + 1),
                          packed(4 * m + 2), packed(4 * m + 3));
    }
    cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(C::kDSSyncThreads,
                                      C::kBarDS + (C::kDqSplitKeys ? cwg : 0));

    // dQ = dS K (then, pipelined, dK += dS^T Q: dQ first, so that its staging overlaps dK).
    warpgroup_fence_operand(accdQ);
    warpgroup_arrive();
    gemm_overwrite(mma_dq, tQrdS(_, _, _, buf), tQrKt, accdQ);
    warpgroup_commit_batch();
    if constexpr (C::kPipelined) {
      warpgroup_fence_operand(accdK);
#pragma unroll
      for (int kb = 0; kb < size<2>(tDKrdSt); ++kb)
        gemm(mma_dk, tDKrdSt(_, _, kb, buf), tDKrQt(_, _, kb, stage), accdK);
      warpgroup_commit_batch();
      warpgroup_fence_operand(accdK);
      warpgroup_wait<1>();  // dV, dQ done (dK may still run)
    } else {
      warpgroup_wait<1>();  // dV, dK done: Q, dO of this stage are free
      Barrier::arrive(&ss.qdo_empty[stage]);
      warpgroup_wait<0>();
    }
    warpgroup_fence_operand(accdQ);

    const int dq_col0 = C::kDqSplitKeys ? 0 : C::kDqCols * cwg;
    if constexpr (C::kDqBulk) {
      // Staged, then one TMA reduction of the warpgroup's 64 x kDqCols tile (issued by its first
      // thread, which also waits for the previous one to have read the tile).
      const bool issuer = ctid % 128 == 0;
      if (issuer) tma_store_wait<0>();
      cutlass::arch::NamedBarrier::sync(128, C::kBarDq + cwg);
      Tensor sDq = make_tensor(make_smem_ptr(ss.dq[cwg].data()), typename C::SmemDq{});
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
#pragma unroll
        for (int j = 0; j < C::kDqCols / 8; ++j)
          *reinterpret_cast<float2*>(&sDq(16 * wi + g + 8 * hh, 8 * j + 2 * tq)) =
              make_float2(accdQ(4 * j + 2 * hh), accdQ(4 * j + 2 * hh + 1));
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(128, C::kBarDq + cwg);
      if (issuer) {
        Tensor mDq =
            kp.tma_dq.get_tma_tensor(make_shape(p.shape.seqlen_q, Int<D>{}, p.shape.heads_q));
        Tensor gDq = local_tile(domain_offset(make_coord(q0, dq_col0), mDq(_, _, h)),
                                Shape<Int<kBlockM>, Int<C::kDqCols>>{}, make_coord(_0{}, _0{}));
        auto cta = kp.tma_dq.get_slice(_0{});
        copy(kp.tma_dq, cta.partition_S(sDq), cta.partition_D(gDq));
        tma_store_arrive();
      }
    } else {
      // dQ added to the fp32 accumulator, the chunk's rows only.
      float* dq = w.dq_accum + h * D + dq_col0 + 2 * tq;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int r = 16 * wi + g + 8 * hh;
        if (r < qlen) {
          float* row = dq + (q0 + r) * q_stride;
#pragma unroll
          for (int j = 0; j < C::kDqCols / 8; ++j)
            flash::ptx::atomic_add2(row + 8 * j, accdQ(4 * j + 2 * hh), accdQ(4 * j + 2 * hh + 1));
        }
      }
    }

    prev_stage = stage;
    buf ^= 1;
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
  if constexpr (C::kPipelined) {
    warpgroup_wait<0>();  // the last dK (its stage needs no release: nothing more is loaded)
    warpgroup_fence_operand(accdK);
  }
  if constexpr (C::kDqBulk)
    if (ctid % 128 == 0) tma_store_wait<0>();  // the staging tile is read before the CTA ends

  // ---- epilogue: dK (scaled) and dV, rows of the tile only ------------------------------------
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int row = krow0 + 8 * hh;
    if (row >= valid_k) continue;
    const std::int64_t o = kv_off + row * kv_stride + 2 * tq;
    if (p.mask.split) {  // other CTAs share this key tile: add into the fp32 workspace
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        flash::ptx::atomic_add2(w.dk_accum + o + 8 * j, accdK(4 * j + 2 * hh),
                                accdK(4 * j + 2 * hh + 1));
        flash::ptx::atomic_add2(w.dv_accum + o + 8 * j, accdV(4 * j + 2 * hh),
                                accdV(4 * j + 2 * hh + 1));
      }
    } else {
      T* dk = static_cast<T*>(p.dk) + o;
      T* dv = static_cast<T*>(p.dv) + o;
      const float scale = p.shape.scale;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        const T k_lo = static_cast<T>(accdK(4 * j + 2 * hh) * scale);
        const T k_hi = static_cast<T>(accdK(4 * j + 2 * hh + 1) * scale);
        const T v_lo = static_cast<T>(accdV(4 * j + 2 * hh));
        const T v_hi = static_cast<T>(accdV(4 * j + 2 * hh + 1));
        *reinterpret_cast<std::uint32_t*>(dk + 8 * j) =
            std::uint32_t(reinterpret_cast<const std::uint16_t&>(k_lo)) |
            (std::uint32_t(reinterpret_cast<const std::uint16_t&>(k_hi)) << 16);
        *reinterpret_cast<std::uint32_t*>(dv + 8 * j) =
            std::uint32_t(reinterpret_cast<const std::uint16_t&>(v_lo)) |
            (std::uint32_t(reinterpret_cast<const std::uint16_t&>(v_hi)) << 16);
      }
    }
  }
#endif  // LONGATTN_HOPPER_DEVICE
}

// The main kernel's launch (TMA descriptors built here, on the host, at every call).
template <DType Dt, int D>
void launch_backward_main(const BwdParams& p, const BwdWork& w, Stream stream) {
  using T = typename Elem<Dt>::type;
  const flash::Shape& s = p.shape;
  auto launch = [&](auto has_partial, auto flags) {
    using C = BwdConfig<T, D, decltype(has_partial)::value, decltype(flags)::value>;
    using namespace cute;
    BwdKernelParams<C> kp{};
    auto gmem = [&](const void* ptr, int seqlen, int heads) {
      return seq_tensor<D>(static_cast<const T*>(ptr), seqlen, heads);
    };
    auto q_box = Shape<Int<C::kBlockM>, Int<D>>{};
    auto kv_box = Shape<Int<C::kBlockN>, Int<D>>{};
    kp.tma_q = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.q, s.seqlen_q, s.heads_q),
                             take<0, 2>(typename C::SmemQ{}), q_box, _1{});
    kp.tma_do = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.d_o, s.seqlen_q, s.heads_q),
                              take<0, 2>(typename C::SmemQ{}), q_box, _1{});
    kp.tma_k = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.k, s.seqlen_k, s.heads_kv),
                             typename C::SmemKV{}, kv_box, _1{});
    kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.v, s.seqlen_k, s.heads_kv),
                             typename C::SmemKV{}, kv_box, _1{});
    if constexpr (C::kDqBulk)
      kp.tma_dq = make_tma_copy(SM90_TMA_REDUCE_ADD{},
                                seq_tensor<D>(w.dq_accum, s.seqlen_q, s.heads_q),
                                typename C::SmemDq{}, Shape<Int<C::kBlockM>, Int<C::kDqCols>>{},
                                _1{});
    kp.p = p;
    kp.w = w;
    const bool per_head = p.mask.item_heads != nullptr;
    kp.head_major = per_head || (backward_flags() & kBwdHeadMajor) != 0;
    auto* kernel = &flash_hopper_bwd_kernel<C>;
    static const cudaError_t attr =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem);
    check_cuda(attr, "cudaFuncSetAttribute(max dynamic shared memory)");
    const unsigned heads = per_head ? 1u : unsigned(s.heads_kv);
    const unsigned items = unsigned(p.mask.num_items);
    const dim3 grid = kp.head_major ? dim3(items, heads) : dim3(heads, items);
    kernel<<<grid, C::kThreads, C::kSmem, stream>>>(kp);
    check_cuda(cudaGetLastError(), "backward launch");
  };

  auto with_partial = [&](auto flags) {
    if (p.mask.has_partial)
      launch(std::true_type{}, flags);
    else
      launch(std::false_type{}, flags);
  };
  // The descending walk is built for the default schedule (pipelined, dQ by TMA reduction) only.
  constexpr int kDefaultSchedule = kBwdPipelined | kBwdDqBulk;
  const int bwd_flags = backward_flags(), schedule = bwd_flags & kDefaultSchedule;
  const bool descending = (bwd_flags & kBwdDescending) &&
                          ((bwd_flags & kBwdDescendingAlways) || p.mask.descending);
  switch (schedule | (descending && schedule == kDefaultSchedule ? kBwdDescending : 0)) {
    case 0: with_partial(std::integral_constant<int, 0>{}); break;
    case 1: with_partial(std::integral_constant<int, 1>{}); break;
    case 8: with_partial(std::integral_constant<int, 8>{}); break;
    case 9: with_partial(std::integral_constant<int, 9>{}); break;
    default: with_partial(std::integral_constant<int, 25>{}); break;
  }
}

template <DType Dt, int D>
void launch_backward(const BwdParams& p, Stream stream) {
  using PT = typename flash::Elem<Dt>::type;  // the portable kernels' element type
  const flash::Shape& s = p.shape;
  const BwdWork w = flash::carve_workspace(p);
  const std::int64_t q_elems = std::int64_t(s.seqlen_q) * s.heads_q * D;
  const std::int64_t kv_elems = std::int64_t(s.seqlen_k) * s.heads_kv * D;
  check_cuda(cudaMemsetAsync(w.dq_accum, 0, std::size_t(q_elems) * 4, stream),
             "clearing the dQ accumulator");
  if (p.mask.split) {
    check_cuda(cudaMemsetAsync(w.dk_accum, 0, std::size_t(kv_elems) * 4, stream),
               "clearing the dK accumulator");
    check_cuda(cudaMemsetAsync(w.dv_accum, 0, std::size_t(kv_elems) * 4, stream),
               "clearing the dV accumulator");
  }
  const std::int64_t rows = std::int64_t(s.seqlen_q) * s.heads_q;
  flash::flash_bwd_preprocess<PT, D><<<unsigned((rows * 32 + 255) / 256), 256, 0, stream>>>(p, w);
  check_cuda(cudaGetLastError(), "backward preprocess launch");

  if (p.mask.num_items > 0) launch_backward_main<Dt, D>(p, w, stream);

  const unsigned convert_blocks = 132 * 16;
  if (p.mask.split) {
    const std::int64_t n4 = kv_elems / 4;
    const unsigned blocks = unsigned(std::min<std::int64_t>((n4 + 255) / 256, convert_blocks));
    flash::flash_convert<PT><<<blocks, 256, 0, stream>>>(w.dk_accum, static_cast<PT*>(p.dk), n4,
                                                         s.scale);
    flash::flash_convert<PT><<<blocks, 256, 0, stream>>>(w.dv_accum, static_cast<PT*>(p.dv), n4,
                                                         1.f);
    check_cuda(cudaGetLastError(), "dK, dV convert launch");
  }
  const std::int64_t n4 = q_elems / 4;
  const unsigned blocks = unsigned(std::min<std::int64_t>((n4 + 255) / 256, convert_blocks));
  flash::flash_convert<PT><<<blocks, 256, 0, stream>>>(w.dq_accum, static_cast<PT*>(p.dq), n4,
                                                       s.scale);
  check_cuda(cudaGetLastError(), "dQ convert launch");
}

}  // namespace longattn::flash_hopper

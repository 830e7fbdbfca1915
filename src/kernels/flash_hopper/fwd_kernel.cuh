#pragma once
// Hopper forward kernel (sm_90a), warp-specialised. One CTA = one 128-row query tile (a work item
// of the prepared mask, heaviest first) of one head, 3 warpgroups:
//   warpgroup 0, producer (registers lowered by setmaxnreg): one thread issues TMA loads of Q once
//     and of each key chunk's K and V (128 keys) into a kStages-deep shared-memory ring; each
//     buffer has a "full" mbarrier (transaction bytes) and an "empty" mbarrier (consumer warps);
//   warpgroups 1, 2, consumers (registers raised): 64 query rows each; S = Q K^T by wgmma with
//     both operands in shared memory (SS), mask (partial chunks only: per-row bitmask), online
//     softmax in fp32 log2 units, P converted in registers and O += P V by wgmma with P from
//     registers (RS) and V read through a transposed (MN-major) view of its shared tile.
// Epilogue: O normalised, written through a swizzled shared tile to global memory row by row
// (only the tile's own rows), LSE fp32 [Hq][S].
//
// The layouts, descriptors and TMA boxes come from CuTe (CUTLASS headers); the pipeline, masking,
// softmax and epilogue are longattn's own.
#include <cuda_runtime.h>

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/numeric_types.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "flash/mask_tiles.cuh"
#include "launch.hpp"

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

template <class T_, int D, bool kHasPartial_>
struct Config {
  using T = T_;
  static constexpr int kD = D;
  static constexpr bool kHasPartial = kHasPartial_;
  static constexpr int kBlockM = FwdTile::kRows;
  static constexpr int kBlockN = FwdTile::kCols;
  static constexpr int kStages = 2;
  static constexpr int kConsumerWGs = kBlockM / 64;
  static constexpr int kThreads = 128 * (kConsumerWGs + 1);
  static constexpr int kConsumerWarps = 4 * kConsumerWGs;
  static constexpr int kWords = kBlockN / 32;      // bitmask words per row of a partial chunk
  static constexpr float kRescaleSlack = 8.f;     // log2 units (see the portable kernel)
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  static_assert(kBlockN == 128 && kWords == 4, "RowBits<4> covers the 16 n8 blocks of S");

  using BM = cute::Int<kBlockM>;
  using BN = cute::Int<kBlockN>;
  using BD = cute::Int<D>;
  using BS = cute::Int<kStages>;

  // wgmma: S (128 x 128, K = D), two warpgroups along M; O (128 x D, K = 128 keys).
  using AtomLayout = cute::Layout<cute::Shape<cute::Int<kConsumerWGs>, cute::_1, cute::_1>>;
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

  struct alignas(1024) Shared {
    cute::array_aligned<T, cute::cosize_v<SmemQ>, 1024> q;
    cute::array_aligned<T, cute::cosize_v<SmemKV>, 1024> k;
    cute::array_aligned<T, cute::cosize_v<SmemKV>, 1024> v;
    cute::array_aligned<T, kBlockM * D, 1024> o;  // epilogue staging, 16-byte chunks swizzled
    alignas(16) std::uint64_t q_full;
    std::uint64_t k_full[kStages], v_full[kStages];
    std::uint64_t k_empty[kStages], v_empty[kStages];
  };
  static constexpr int kSmem = int(sizeof(Shared));
  static_assert(kSmem <= 227 * 1024, "shared memory");

  // Global tensors as TMA sees them: (seq, D, head) with the sequence stride heads x D.
  using GShape = cute::Shape<int, BD, int>;
  using GStride = cute::Stride<std::int64_t, cute::_1, std::int64_t>;
  using GTensor = decltype(cute::make_tensor(cute::make_gmem_ptr(static_cast<const T*>(nullptr)),
                                             GShape{}, GStride{}));
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
};

// Rows of a tile without any key: O = 0, LSE = -inf (all threads of the CTA).
template <class C>
__device__ __forceinline__ void write_empty_tile(const FwdParams& p, int h, int q0, int valid_q) {
  using T = typename C::T;
  constexpr int D = C::kD;
  const std::int64_t q_stride = std::int64_t(p.shape.heads_q) * D;
  T* go = static_cast<T*>(p.o) + q0 * q_stride + h * D;
  for (int c = threadIdx.x; c < C::kBlockM * (D / 8); c += C::kThreads) {
    const int row = c / (D / 8), ch = c % (D / 8);
    if (row < valid_q)
      *reinterpret_cast<uint4*>(go + row * q_stride + ch * 8) = make_uint4(0, 0, 0, 0);
  }
  float* glse = p.lse + std::int64_t(h) * p.shape.seqlen_q + q0;
  for (int r = threadIdx.x; r < valid_q; r += C::kThreads) glse[r] = -INFINITY;
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1)
    flash_hopper_fwd_kernel(const __grid_constant__ KernelParams<C> kp) {
#if LONGATTN_HOPPER_DEVICE
  using namespace cute;
  using T = typename C::T;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int D = C::kD;
  constexpr int kStages = C::kStages;

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename C::Shared*>(smem_raw);

  const FwdParams& p = kp.p;
  const int h = blockIdx.x;
  const int hk = h / (p.shape.heads_q / p.shape.heads_kv);
  const flash::Item item = flash::load_item(p.mask, blockIdx.y);
  const int q0 = item.outer_begin;
  const int valid_q = item.outer_end - item.outer_begin;

  flash::TileCursor<C::kBlockN> cur;
  cur.init(item);
  if (cur.done()) {
    write_empty_tile<C>(p, h, q0, valid_q);
    return;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    TxBarrier::init(&ss.q_full, 1);
    for (int s = 0; s < kStages; ++s) {
      TxBarrier::init(&ss.k_full[s], 1);
      TxBarrier::init(&ss.v_full[s], 1);
      Barrier::init(&ss.k_empty[s], C::kConsumerWarps);
      Barrier::init(&ss.v_empty[s], C::kConsumerWarps);
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
    if (warp != 0 || lane != 0) return;
    Tensor mQ = kp.tma_q.get_tma_tensor(make_shape(p.shape.seqlen_q, Int<D>{}, p.shape.heads_q));
    Tensor mK = kp.tma_k.get_tma_tensor(make_shape(p.shape.seqlen_k, Int<D>{}, p.shape.heads_kv));
    Tensor mV = kp.tma_v.get_tma_tensor(make_shape(p.shape.seqlen_k, Int<D>{}, p.shape.heads_kv));
    Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename C::SmemQ{});
    Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename C::SmemKV{});
    Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename C::SmemKV{});
    auto tile_q = Shape<Int<C::kBlockM>, Int<D>>{};
    auto tile_kv = Shape<Int<C::kBlockN>, Int<D>>{};

    // Q: rows [q0, q0 + 128) of head h (rows past seqlen_q arrive as zeros).
    {
      Tensor gQ = local_tile(domain_offset(make_coord(q0, _0{}), mQ(_, _, h)), tile_q,
                             make_coord(_0{}, _0{}));
      auto cta = kp.tma_q.get_slice(_0{});
      TxBarrier::arrive_and_expect_tx(&ss.q_full, C::kQBytes);
      copy(kp.tma_q.with(ss.q_full), cta.partition_S(gQ), cta.partition_D(sQ));
    }
    auto cta_k = kp.tma_k.get_slice(_0{});
    auto cta_v = kp.tma_v.get_slice(_0{});
    Tensor tKsK = cta_k.partition_D(sK);  // (TMA, 1, 1, stage)
    Tensor tVsV = cta_v.partition_D(sV);
    int stage = 0, phase = 0;
    for (; !cur.done(); cur.next(p.mask)) {
      // Keys [pos, pos + 128): a short chunk's extra keys are loaded too (masked by its bits;
      // past seqlen_k they are zeros).
      Tensor gK = local_tile(domain_offset(make_coord(cur.pos, _0{}), mK(_, _, hk)), tile_kv,
                             make_coord(_0{}, _0{}));
      Tensor gV = local_tile(domain_offset(make_coord(cur.pos, _0{}), mV(_, _, hk)), tile_kv,
                             make_coord(_0{}, _0{}));
      Barrier::wait(&ss.k_empty[stage], phase ^ 1);
      TxBarrier::arrive_and_expect_tx(&ss.k_full[stage], C::kKVBytes);
      copy(kp.tma_k.with(ss.k_full[stage]), cta_k.partition_S(gK), tKsK(_, _, _, stage));
      Barrier::wait(&ss.v_empty[stage], phase ^ 1);
      TxBarrier::arrive_and_expect_tx(&ss.v_full[stage], C::kKVBytes);
      copy(kp.tma_v.with(ss.v_full[stage]), cta_v.partition_S(gV), tVsV(_, _, _, stage));
      if (++stage == kStages) {
        stage = 0;
        phase ^= 1;
      }
    }
    return;
  }

  // ---- consumer warpgroups --------------------------------------------------------------------
  cutlass::arch::warpgroup_reg_alloc<C::kConsumerRegs>();
  const int ctid = threadIdx.x - 128;         // 0 .. 255
  const int cwg = ctid / 128;                 // consumer warpgroup: rows [64 cwg, 64 cwg + 64)
  const int g = lane / 4;
  // This thread's two rows of S and O in the tile (hh = 0, 1): the wgmma accumulator layout.
  const int row0 = 64 * cwg + 16 * ((ctid % 128) / 32) + g;

  typename C::MmaQK mma_qk;
  typename C::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(ctid);
  auto thr_pv = mma_pv.get_thread_slice(ctid);
  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename C::SmemQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename C::SmemKV{});
  Tensor sVt = make_tensor(make_smem_ptr(ss.v.data()), typename C::SmemVt{});
  Tensor tSrQ = thr_qk.partition_fragment_A(sQ);   // descriptors (MMA, 1, D / 16)
  Tensor tSrK = thr_qk.partition_fragment_B(sK);   // (MMA, 1, D / 16, stage)
  Tensor tOrV = thr_pv.partition_fragment_B(sVt);  // (MMA, 1, keys / 16, stage)
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<C::kBlockM>, Int<C::kBlockN>>{});
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<Int<C::kBlockM>, Int<D>>{});
  Tensor tOrP = make_tensor<T>(partition_shape_A(mma_pv, Shape<Int<C::kBlockM>, Int<C::kBlockN>>{}));
  static_assert(decltype(size(tSrS))::value == 64 && decltype(size(tOrP))::value == 64,
                "one thread: 2 rows x 32 columns of S, of P");
  static_assert(decltype(size(tOrO))::value == D / 2, "one thread: 2 rows x D / 4 columns of O");
  clear(tOrO);

  const float sl2 = p.shape.scale * kLog2e;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};

  Barrier::wait(&ss.q_full, 0);
  int stage = 0, phase = 0;
  for (; !cur.done();) {
    const int bits = cur.bits;
    cur.next(p.mask);
    const bool partial = C::kHasPartial && bits >= 0;
    flash::RowBits<C::kWords> rb[2];
    if (partial) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
        rb[hh].load(flash::tile_row_bits<C::kBlockM, C::kWords>(p.mask, bits, row0 + 8 * hh),
                    lane);
    }

    // S = Q K^T
    Barrier::wait(&ss.k_full[stage], phase);
    warpgroup_fence_operand(tSrS);
    warpgroup_arrive();
    mma_qk.accumulate_ = GMMA::ScaleOut::Zero;
#pragma unroll
    for (int kb = 0; kb < size<2>(tSrQ); ++kb) {
      gemm(mma_qk, tSrQ(_, _, kb), tSrK(_, _, kb, stage), tSrS);
      mma_qk.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
    warpgroup_wait<0>();
    warpgroup_fence_operand(tSrS);
    __syncwarp();
    if (lane == 0) Barrier::arrive(&ss.k_empty[stage]);

    // Mask: element i of the accumulator is row hh = (i / 2) % 2, column 8 (i / 4) + 2 tq + i % 2.
    if (partial) {
#pragma unroll
      for (int i = 0; i < 64; ++i)
        if (!rb[(i >> 1) & 1].allows(i >> 2, i & 1)) tSrS(i) = -INFINITY;
    }

    // Online softmax (log2 units). The running maximum moves only when some row of the warp grew
    // by more than kRescaleSlack; a row with no key so far keeps max -inf and is shifted by 0.
    float tile_max[2];
    bool grow = false;
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float mx = -INFINITY;
#pragma unroll
      for (int ni = 0; ni < 16; ++ni)
        mx = fmaxf(mx, fmaxf(tSrS(4 * ni + 2 * hh), tSrS(4 * ni + 2 * hh + 1)));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      tile_max[hh] = mx * sl2;
      grow |= tile_max[hh] > row_max[hh] + C::kRescaleSlack;
    }
    if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const float m_new = fmaxf(row_max[hh], tile_max[hh]);
        const float corr = exp2_approx(row_max[hh] - (m_new == -INFINITY ? 0.f : m_new));
        row_max[hh] = m_new;
        row_sum[hh] *= corr;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          tOrO(4 * dt + 2 * hh) *= corr;
          tOrO(4 * dt + 2 * hh + 1) *= corr;
        }
      }
    }
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const float m_use = row_max[hh] == -INFINITY ? 0.f : row_max[hh];
      float sum = 0.f;
#pragma unroll
      for (int ni = 0; ni < 16; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 4 * ni + 2 * hh + e;
          const float pv = exp2_approx(fmaf(tSrS(i), sl2, -m_use));
          tSrS(i) = pv;
          sum += pv;
        }
      row_sum[hh] += sum;
    }
    // P in the A-operand register layout: the accumulator's element order within each k16 block
    // (2 columns x 2 rows x 2 column halves) is the A fragment's, so a flat copy converts it.
#pragma unroll
    for (int i = 0; i < 64; ++i) tOrP(i) = static_cast<T>(tSrS(i));

    // O += P V
    Barrier::wait(&ss.v_full[stage], phase);
    warpgroup_fence_operand(tOrP);
    warpgroup_fence_operand(tOrO);
    warpgroup_arrive();
    mma_pv.accumulate_ = GMMA::ScaleOut::One;
#pragma unroll
    for (int kb = 0; kb < size<2>(tOrP); ++kb)
      gemm(mma_pv, tOrP(_, _, kb), tOrV(_, _, kb, stage), tOrO);
    warpgroup_commit_batch();
    warpgroup_wait<0>();
    warpgroup_fence_operand(tOrO);
    __syncwarp();
    if (lane == 0) Barrier::arrive(&ss.v_empty[stage]);
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1;
    }
  }

  // ---- epilogue ----------------------------------------------------------------------------------
  const std::int64_t q_stride = std::int64_t(p.shape.heads_q) * D;
  float* glse = p.lse + std::int64_t(h) * p.shape.seqlen_q + q0;
  T* so = ss.o.data();
  const int tq = lane % 4;
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float l = row_sum[hh];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const int row = row0 + 8 * hh;
    if (tq == 0 && row < valid_q)
      glse[row] = l > 0.f ? (row_max[hh] + log2f(l)) * kLn2 : -INFINITY;
    // Columns 8 dt + 2 tq + {0, 1}; 16-byte chunk dt of the row stored at chunk dt ^ (row % 8).
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      const T lo = static_cast<T>(tOrO(4 * dt + 2 * hh) * inv);
      const T hi = static_cast<T>(tOrO(4 * dt + 2 * hh + 1) * inv);
      std::uint32_t packed = std::uint32_t(reinterpret_cast<const std::uint16_t&>(lo)) |
                             (std::uint32_t(reinterpret_cast<const std::uint16_t&>(hi)) << 16);
      *reinterpret_cast<std::uint32_t*>(so + row * D + ((dt ^ (row & 7)) * 8) + 2 * tq) = packed;
    }
  }
  cutlass::arch::NamedBarrier::sync(128, 1 + cwg);  // this warpgroup's 64 rows are staged
  T* go = static_cast<T*>(p.o) + q0 * q_stride + h * D;
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int c = ctid % 128; c < 64 * kChunks; c += 128) {
    const int row = 64 * cwg + c / kChunks, ch = c % kChunks;
    if (row < valid_q)
      *reinterpret_cast<uint4*>(go + row * q_stride + ch * 8) =
          *reinterpret_cast<const uint4*>(so + row * D + ((ch ^ (row & 7)) * 8));
  }
#endif  // LONGATTN_HOPPER_DEVICE
}

template <DType Dt, int D>
void launch_forward(const FwdParams& p, Stream stream) {
  using T = typename Elem<Dt>::type;
  if (p.mask.num_items == 0) return;
  auto launch = [&](auto has_partial) {
    using C = Config<T, D, decltype(has_partial)::value>;
    using namespace cute;
    KernelParams<C> kp{};
    auto gmem = [&](const void* ptr, int seqlen, int heads) {
      return make_tensor(make_gmem_ptr(static_cast<const T*>(ptr)),
                         make_shape(seqlen, Int<D>{}, heads),
                         make_stride(std::int64_t(heads) * D, _1{}, std::int64_t(D)));
    };
    kp.tma_q = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.q, p.shape.seqlen_q, p.shape.heads_q),
                             typename C::SmemQ{}, Shape<Int<C::kBlockM>, Int<D>>{}, _1{});
    kp.tma_k = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.k, p.shape.seqlen_k, p.shape.heads_kv),
                             take<0, 2>(typename C::SmemKV{}), Shape<Int<C::kBlockN>, Int<D>>{},
                             _1{});
    kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, gmem(p.v, p.shape.seqlen_k, p.shape.heads_kv),
                             take<0, 2>(typename C::SmemKV{}), Shape<Int<C::kBlockN>, Int<D>>{},
                             _1{});
    kp.p = p;
    auto* kernel = &flash_hopper_fwd_kernel<C>;
    static const cudaError_t attr =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem);
    check_cuda(attr, "cudaFuncSetAttribute(max dynamic shared memory)");
    const dim3 grid(unsigned(p.shape.heads_q), unsigned(p.mask.num_items));
    kernel<<<grid, C::kThreads, C::kSmem, stream>>>(kp);
    check_cuda(cudaGetLastError(), "forward launch");
  };
  if (p.mask.has_partial)
    launch(std::true_type{});
  else
    launch(std::false_type{});
}

}  // namespace longattn::flash_hopper

#pragma once
// What the flash kernels' GPU tests share: device buffers, which GPU is present, 16-bit inputs the
// CPU reference sees exactly, the tolerance comparison and the small test masks. Header-only, so
// the device scripts can compile a test file alone.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/kernels/flash.hpp"
#include "longattn/patterns.hpp"

namespace longattn::gpu_test {

inline void cuda_ok(cudaError_t e, const char* what) {
  ASSERT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e);
}

// Device memory owned by the test (at least 16 bytes, so that empty tensors have an address).
struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(std::size_t bytes) {
    EXPECT_EQ(cudaMalloc(&p, std::max<std::size_t>(bytes, 16)), cudaSuccess);
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

inline bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// An sm_90 device (the Hopper kernels are compiled for sm_90a only).
inline bool hopper_present() {
  int major = 0, minor = 0;
  if (!gpu_present()) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major == 9 && minor == 0;
}

// bf16 / fp16 bits of x, and back: rounding inputs through them makes the reference see exactly
// the kernel's inputs.
inline std::uint16_t to_16(float x, flash::DType t) {
  std::uint16_t bits;
  if (t == flash::DType::bf16) {
    const __nv_bfloat16 v = __float2bfloat16(x);
    std::memcpy(&bits, &v, 2);
  } else {
    const __half v = __float2half(x);
    std::memcpy(&bits, &v, 2);
  }
  return bits;
}
inline float from_16(std::uint16_t bits, flash::DType t) {
  if (t == flash::DType::bf16) {
    __nv_bfloat16_raw r;
    r.x = bits;
    return __bfloat162float(__nv_bfloat16(r));
  }
  __half_raw r;
  r.x = bits;
  return __half2float(__half(r));
}
inline std::vector<std::uint16_t> to_16(const std::vector<float>& x, flash::DType t) {
  std::vector<std::uint16_t> out(x.size());
  std::transform(x.begin(), x.end(), out.begin(), [t](float v) { return to_16(v, t); });
  return out;
}
inline std::vector<float> from_16(const std::vector<std::uint16_t>& x, flash::DType t) {
  std::vector<float> out(x.size());
  std::transform(x.begin(), x.end(), out.begin(), [t](std::uint16_t v) { return from_16(v, t); });
  return out;
}

inline std::vector<float> random_normal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

// ||x - ref|| <= rtol ||ref|| + atol sqrt(n), no NaN or inf. Returns the relative error for
// messages.
inline double compare(const std::vector<float>& x, const std::vector<float>& ref, double rtol,
                      double atol, const std::string& what) {
  double diff = 0, norm = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) ++bad;
    const double d = double(x[i]) - double(ref[i]);
    diff += d * d;
    norm += double(ref[i]) * ref[i];
  }
  diff = std::sqrt(diff);
  norm = std::sqrt(norm);
  EXPECT_EQ(bad, 0u) << what << ": NaN or inf in the kernel's output";
  EXPECT_LE(diff, rtol * norm + atol * std::sqrt(double(x.size())))
      << what << ": ||x - ref|| = " << diff << ", ||ref|| = " << norm;
  return norm > 0 ? diff / norm : diff;
}

// Seeded document lengths that fill s: 1 .. s/3 tokens each.
inline std::vector<Index> test_documents(Index s, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<Index> lens;
  for (Index filled = 0; filled < s;) {
    std::uniform_int_distribution<Index> pick(1, std::max<Index>(1, s / 3));
    const Index len = std::min<Index>(s - filled, pick(gen));
    lens.push_back(len);
    filled += len;
  }
  return lens;
}

// Every static pattern at length s, with parameters that exercise the tile edges at small s.
inline SliceMask test_mask(Pattern p, Index s, std::uint64_t seed) {
  MaskSpec spec;
  spec.pattern = p;
  spec.seqlen = s;
  spec.seed = seed;
  spec.params.window = std::max<Index>(1, s / 7);  // a band narrower than a tile at small S
  spec.params.global = std::min<Index>(s, 37);
  spec.params.block = 48;  // block_causal_document: blocks that straddle tiles
  if (info(p).uses_documents && p != Pattern::block_causal_document)
    spec.params.doc_lens = test_documents(s, seed + 17);
  return std::get<SliceMask>(make_mask(spec).mask);
}

// A forward over a head slice of wider Q and O (FwdParams::q_row_stride: query heads 4..7 of 8,
// their KV head packed) writes exactly what the same forward over packed copies of those heads
// writes, bit for bit, and nothing outside the slice. make_plan(mask, shape) -> flash::Plan;
// run(FwdParams) launches the kernel under test.
template <class MakePlan, class Run>
void expect_head_slice_equals_packed(MakePlan make_plan, Run run, int head_dim) {
  const Index S = 700;
  const int H = 8, first = 4, hq = 4, D = head_dim;
  const flash::DType t = flash::DType::bf16;
  const std::vector<float> q_all = random_normal(std::size_t(S) * H * D, 41);
  const std::vector<float> k = random_normal(std::size_t(S) * D, 42);
  const std::vector<float> v = random_normal(std::size_t(S) * D, 43);
  std::vector<float> q_slice(std::size_t(S) * hq * D);
  for (Index i = 0; i < S; ++i)
    for (int h = 0; h < hq; ++h)
      for (int c = 0; c < D; ++c)
        q_slice[(i * hq + h) * D + c] = q_all[(i * H + first + h) * D + c];
  const SliceMask mask = test_mask(Pattern::causal_document, S, 44);
  const flash::Shape shape{int(S), int(S), hq, 1, D, 1.f / std::sqrt(float(D))};
  const flash::Plan plan = make_plan(mask, shape);
  const std::size_t n_all = std::size_t(S) * H * D, n_slice = std::size_t(S) * hq * D;
  const std::size_t n_lse = std::size_t(S) * hq;
  DevBuf dq_all(n_all * 2), dq_slice(n_slice * 2), dk(k.size() * 2), dv(v.size() * 2);
  DevBuf o_all(n_all * 2), o_slice(n_slice * 2), lse_packed(n_lse * 4), lse_strided(n_lse * 4);
  auto up = [&](DevBuf& b, const std::vector<float>& x) {
    const auto h = to_16(x, t);
    cuda_ok(cudaMemcpy(b.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice), "upload");
  };
  up(dq_all, q_all);
  up(dq_slice, q_slice);
  up(dk, k);
  up(dv, v);
  cuda_ok(cudaMemset(o_all.p, 0x7f, n_all * 2), "poison");
  flash::FwdParams p;
  p.shape = shape;
  p.dtype = t;
  p.k = dk.p;
  p.v = dv.p;
  p.mask = plan.fwd.view();
  p.q = dq_slice.p;
  p.o = o_slice.p;
  p.lse = lse_packed.as<float>();
  run(p);
  p.q = dq_all.as<std::uint16_t>() + first * D;
  p.o = o_all.as<std::uint16_t>() + first * D;
  p.lse = lse_strided.as<float>();
  p.q_row_stride = std::int64_t(H) * D;
  run(p);
  cuda_ok(cudaDeviceSynchronize(), "forwards");
  std::vector<std::uint16_t> packed(n_slice), strided(n_all);
  std::vector<float> lse1(n_lse), lse2(n_lse);
  cuda_ok(cudaMemcpy(packed.data(), o_slice.p, n_slice * 2, cudaMemcpyDeviceToHost), "O");
  cuda_ok(cudaMemcpy(strided.data(), o_all.p, n_all * 2, cudaMemcpyDeviceToHost), "O");
  cuda_ok(cudaMemcpy(lse1.data(), lse_packed.p, n_lse * 4, cudaMemcpyDeviceToHost), "LSE");
  cuda_ok(cudaMemcpy(lse2.data(), lse_strided.p, n_lse * 4, cudaMemcpyDeviceToHost), "LSE");
  int wrong = 0, touched = 0;
  for (Index i = 0; i < S; ++i)
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < D; ++c) {
        const std::uint16_t got = strided[(i * H + h) * D + c];
        if (h < first) touched += got != 0x7f7f;
        else wrong += got != packed[(i * hq + h - first) * D + c];
      }
  EXPECT_EQ(wrong, 0) << "O of the slice differs from the packed forward's";
  EXPECT_EQ(touched, 0) << "the forward wrote outside its head slice";
  EXPECT_EQ(lse1, lse2);
  // A stride shorter than a row, or not on 16 bytes, is refused.
  p.q_row_stride = std::int64_t(hq) * D - 8;
  EXPECT_THROW(run(p), InputError);
  p.q_row_stride = std::int64_t(H) * D + 4;
  EXPECT_THROW(run(p), InputError);
}

}  // namespace longattn::gpu_test

// flash_timing: a small CUDA-event timer for the flash kernels while they are developed (the
// benchmark's `longattn bench` is the tool for reported numbers). For each mask: median time of
// the forward and of the backward (from saved O, LSE) with the L2 flushed before every repetition,
// and mask-aware TF/s (DESIGN.md section 5).
//
//   flash_timing [S] [Hq] [Hkv] [D] [bf16|fp16] [reps] [pattern ...]
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "longattn/kernels/flash.hpp"
#include "longattn/patterns.hpp"

using namespace longattn;

namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Deterministic pseudo-random 16-bit values in about [-2, 2] (bf16 or fp16 bit patterns).
__global__ void fill(std::uint16_t* x, std::size_t n, std::uint32_t seed, bool bf16) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = std::uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float u = (h & 0xffffff) / float(0x1000000) * 4.f - 2.f;
    if (bf16) {
      const __nv_bfloat16 v = __float2bfloat16(u);
      x[i] = *reinterpret_cast<const std::uint16_t*>(&v);
    } else {
      const __half v = __float2half(u);
      x[i] = *reinterpret_cast<const std::uint16_t*>(&v);
    }
  }
}

template <class F>
double median_ms(F&& body, int reps, void* flush, std::size_t flush_bytes) {
  cudaEvent_t a, b;
  ok(cudaEventCreate(&a), "event");
  ok(cudaEventCreate(&b), "event");
  for (int i = 0; i < 3; ++i) body();
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    ok(cudaMemsetAsync(flush, i & 0xff, flush_bytes), "flush");
    ok(cudaEventRecord(a), "record");
    body();
    ok(cudaEventRecord(b), "record");
    ok(cudaEventSynchronize(b), "sync");
    float ms = 0;
    ok(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(ms);
  }
  ok(cudaGetLastError(), "launch");
  std::sort(t.begin(), t.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int s = argc > 1 ? std::atoi(argv[1]) : 16384;
  const int hq = argc > 2 ? std::atoi(argv[2]) : 64;
  const int hkv = argc > 3 ? std::atoi(argv[3]) : 8;
  const int d = argc > 4 ? std::atoi(argv[4]) : 128;
  const bool bf16 = argc > 5 ? std::string(argv[5]) != "fp16" : true;
  const int reps = argc > 6 ? std::atoi(argv[6]) : 10;
  std::vector<Pattern> patterns;
  for (int i = 7; i < argc; ++i) patterns.push_back(parse_pattern(argv[i]));
  if (patterns.empty())
    for (const PatternInfo& pi : all_patterns())
      if (pi.family != PatternFamily::dynamic) patterns.push_back(pi.pattern);

  const std::size_t nq = std::size_t(s) * hq * d, nkv = std::size_t(s) * hkv * d;
  const flash::Shape shape{s, s, hq, hkv, d, 1.f / std::sqrt(float(d))};
  void *q, *k, *v, *o, *lse, *d_o, *dq, *dk, *dv, *ws, *flush;
  const std::size_t flush_bytes = std::size_t(256) << 20;
  ok(cudaMalloc(&q, nq * 2), "malloc");
  ok(cudaMalloc(&k, nkv * 2), "malloc");
  ok(cudaMalloc(&v, nkv * 2), "malloc");
  ok(cudaMalloc(&o, nq * 2), "malloc");
  ok(cudaMalloc(&lse, std::size_t(s) * hq * 4), "malloc");
  ok(cudaMalloc(&d_o, nq * 2), "malloc");
  ok(cudaMalloc(&dq, nq * 2), "malloc");
  ok(cudaMalloc(&dk, nkv * 2), "malloc");
  ok(cudaMalloc(&dv, nkv * 2), "malloc");
  ok(cudaMalloc(&ws, flash::backward_workspace_bytes(shape, false, true)), "malloc");
  ok(cudaMalloc(&flush, flush_bytes), "malloc");
  fill<<<1024, 256>>>(static_cast<std::uint16_t*>(q), nq, 1, bf16);
  fill<<<1024, 256>>>(static_cast<std::uint16_t*>(k), nkv, 2, bf16);
  fill<<<1024, 256>>>(static_cast<std::uint16_t*>(v), nkv, 3, bf16);
  fill<<<1024, 256>>>(static_cast<std::uint16_t*>(d_o), nq, 4, bf16);
  ok(cudaDeviceSynchronize(), "fill");

  std::printf("# flash_timing S=%d H=%d:%d D=%d %s, median of %d, L2 flushed\n", s, hq, hkv, d,
              bf16 ? "bf16" : "fp16", reps);
  std::printf("%-24s %8s %8s %7s %6s %6s %8s %7s %6s %6s %5s\n", "mask", "density", "fwd_ms",
              "fwd_TF", "issue", "part", "bwd_ms", "bwd_TF", "issue", "part", "split");
  for (Pattern p : patterns) {
    MaskSpec spec;
    spec.pattern = p;
    spec.seqlen = s;
    spec.seed = 0;
    const GeneratedMask gm = make_mask(spec);
    const SliceMask& m = std::get<SliceMask>(gm.mask);
    const flash::Plan plan = flash::make_plan(m, shape, true, false);
    flash::FwdParams fp;
    fp.shape = shape;
    fp.dtype = bf16 ? flash::DType::bf16 : flash::DType::fp16;
    fp.q = q;
    fp.k = k;
    fp.v = v;
    fp.o = o;
    fp.lse = static_cast<float*>(lse);
    fp.mask = plan.fwd.view();
    if (const char* e = std::getenv("FLASH_HPC")) fp.heads_per_cta = std::atoi(e);
    flash::BwdParams bp;
    bp.shape = shape;
    bp.dtype = fp.dtype;
    bp.q = q;
    bp.k = k;
    bp.v = v;
    bp.o = o;
    bp.lse = static_cast<const float*>(lse);
    bp.d_o = d_o;
    bp.dq = dq;
    bp.dk = dk;
    bp.dv = dv;
    bp.workspace = ws;
    bp.mask = plan.bwd.view();
    const double flops = 4.0 * double(m.area()) * hq * d;
    const double tf = median_ms([&] { flash::run_forward(fp, nullptr); }, reps, flush, flush_bytes);
    const bool fwd_only = std::getenv("FLASH_FWD_ONLY") != nullptr;
    const double tb = fwd_only ? 0.0
                               : median_ms([&] { flash::run_backward(bp, nullptr); }, reps, flush,
                                           flush_bytes);
    const flash::MaskTiles mt = flash::prepare_mask(m, flash::forward_tile(d), false);
    const flash::MaskTiles bt = flash::prepare_mask(m, flash::backward_tile(d), true);
    std::printf("%-24s %8.4f %8.3f %7.1f %6.3f %6.3f %8.3f %7.1f %6.3f %6.3f %5d\n",
                std::string(to_string(p)).c_str(), m.density(), tf, flops / tf * 1e-9,
                double(mt.issued_area) / double(m.area()),
                double(mt.partial_tiles()) / double(mt.listed_tiles()), tb,
                2.5 * flops / tb * 1e-9, double(bt.issued_area) / double(m.area()),
                double(bt.partial_tiles()) / double(bt.listed_tiles()), plan.bwd.view().split);
    std::fflush(stdout);
  }
  return 0;
}

// CPU cost of mask construction at S = 1,048,576 (ProLong-512K documents): make_mask, the 128x128
// tile map, and both together (the target: under 50 ms per static pattern). Memory is
// reported two ways: the bytes of the structures kept (slices, tile runs) and the peak heap in use
// while building them, counted by the global operator new below, to show it stays O(slices +
// tiles) and never O(S^2).
//
// Usage: mask_speed [--benchmark_filter=REGEX] [--benchmark_repetitions=N] [--benchmark_format=json]
//        mask_speed [--seqlen 64K] [--seed K] ...   (another S or seed; before the other flags)
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "longattn/patterns.hpp"
#include "longattn/views/block_lists.hpp"
#include "longattn/views/tile_map.hpp"

// ---- heap accounting: live bytes and their peak, as malloc reports the blocks' usable sizes ----
namespace {
std::atomic<std::size_t> g_live{0};
std::atomic<std::size_t> g_peak{0};

void count_allocation(void* p) {
  const std::size_t live = g_live.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) +
                           malloc_usable_size(p);
  std::size_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}
void count_free(void* p) { g_live.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed); }
}  // namespace

void* operator new(std::size_t n) {
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  count_allocation(p);
  return p;
}
// The replacement operator new above takes its memory from malloc, so free is the right release;
// GCC cannot see that and warns.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  if (!p) return;
  count_free(p);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
#pragma GCC diagnostic pop

namespace longattn {
namespace {

Index g_seqlen = Index(1) << 20;
std::uint64_t g_seed = 1;
constexpr TileShape kTile{128, 128};

MaskSpec spec_for(Pattern p) {
  MaskSpec s;
  s.pattern = p;
  s.seqlen = g_seqlen;  // the histogram follows S: ProLong-512K above 64K
  s.seed = g_seed;
  return s;
}

// Peak heap above the level at the start of the measured work.
class PeakHeap {
 public:
  PeakHeap() : base_(g_live.load()) { g_peak.store(base_); }
  double bytes() const { return double(g_peak.load() - base_); }

 private:
  std::size_t base_;
};

void set_mask_counters(benchmark::State& state, const GeneratedMask& g) {
  const auto& m = std::get<SliceMask>(g.mask);
  state.counters["slices"] = double(m.slices().size());
  state.counters["slice_bytes"] = double(m.slices().capacity() * sizeof(Slice));
  state.counters["documents"] = g.documents ? double(g.documents->count()) : 0.0;
  state.counters["density"] = m.density();
}

void set_tile_counters(benchmark::State& state, const TileMap& t) {
  state.counters["tile_runs"] = double(t.runs.size());
  state.counters["full_tiles"] = double(t.total_full());
  state.counters["partial_tiles"] = double(t.total_partial());
  state.counters["tile_bytes"] =
      double(t.runs.capacity() * sizeof(TileRun) + t.offsets.capacity() * sizeof(Index));
}

void bm_make_mask(benchmark::State& state, Pattern p) {
  const MaskSpec spec = spec_for(p);
  double peak = 0;
  for (auto _ : state) {
    PeakHeap heap;
    GeneratedMask g = make_mask(spec);
    benchmark::DoNotOptimize(g);
    peak = std::max(peak, heap.bytes());
  }
  set_mask_counters(state, make_mask(spec));
  state.counters["peak_heap_bytes"] = peak;
}

void bm_tile_map(benchmark::State& state, Pattern p) {
  const GeneratedMask g = make_mask(spec_for(p));
  const auto& m = std::get<SliceMask>(g.mask);
  double peak = 0;
  for (auto _ : state) {
    PeakHeap heap;
    TileMap t = tile_map(m, kTile);
    benchmark::DoNotOptimize(t);
    peak = std::max(peak, heap.bytes());
  }
  set_tile_counters(state, tile_map(m, kTile));
  state.counters["peak_heap_bytes"] = peak;
}

// The measure: a static mask and its 128x128 tile map from nothing.
void bm_mask_and_tiles(benchmark::State& state, Pattern p) {
  const MaskSpec spec = spec_for(p);
  double peak = 0;
  for (auto _ : state) {
    PeakHeap heap;
    GeneratedMask g = make_mask(spec);
    TileMap t = tile_map(std::get<SliceMask>(g.mask), kTile);
    benchmark::DoNotOptimize(t);
    peak = std::max(peak, heap.bytes());
  }
  const GeneratedMask g = make_mask(spec);
  set_mask_counters(state, g);
  set_tile_counters(state, tile_map(std::get<SliceMask>(g.mask), kTile));
  state.counters["peak_heap_bytes"] = peak;
}

// Dynamic masks (for information): the kept-block lists are the mask, O(kept blocks) by nature.
void bm_block_sparse(benchmark::State& state, Pattern p) {
  const MaskSpec spec = spec_for(p);
  double peak = 0;
  for (auto _ : state) {
    PeakHeap heap;
    GeneratedMask g = make_mask(spec);
    benchmark::DoNotOptimize(g);
    peak = std::max(peak, heap.bytes());
  }
  const GeneratedMask g = make_mask(spec);
  const auto& b = std::get<BlockSparseMask>(g.mask);
  Index kept = 0;
  for (int h = 0; h < b.num_heads(); ++h) kept += b.kept_blocks(h);
  state.counters["blocks"] = double(b.blocks().num_blocks());
  state.counters["kept_blocks"] = double(kept);
  state.counters["density"] = b.density();
  state.counters["peak_heap_bytes"] = peak;
}

void register_all() {
  for (const PatternInfo& pi : all_patterns()) {
    const std::string name(pi.name);
    if (pi.family == PatternFamily::dynamic) {
      benchmark::RegisterBenchmark(("make_mask/" + name).c_str(), bm_block_sparse, pi.pattern)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      continue;
    }
    benchmark::RegisterBenchmark(("mask_and_tiles/" + name).c_str(), bm_mask_and_tiles, pi.pattern)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("make_mask/" + name).c_str(), bm_make_mask, pi.pattern)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("tile_map/" + name).c_str(), bm_tile_map, pi.pattern)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
}

// "1M", "64K" or a number.
Index parse_length(std::string s) {
  Index scale = 1;
  if (!s.empty() && (s.back() == 'K' || s.back() == 'k')) scale = 1024, s.pop_back();
  else if (!s.empty() && (s.back() == 'M' || s.back() == 'm')) scale = 1024 * 1024, s.pop_back();
  return std::stoll(s) * scale;
}

}  // namespace
}  // namespace longattn

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  while (args.size() >= 3 && (std::string(args[1]) == "--seqlen" || std::string(args[1]) == "--seed")) {
    if (std::string(args[1]) == "--seqlen") longattn::g_seqlen = longattn::parse_length(args[2]);
    else longattn::g_seed = std::stoull(args[2]);
    args.erase(args.begin() + 1, args.begin() + 3);
  }
  int n = int(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::AddCustomContext("seqlen", std::to_string(longattn::g_seqlen));
  benchmark::AddCustomContext("tile", "128x128");
  benchmark::AddCustomContext("seed", std::to_string(longattn::g_seed));
  longattn::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

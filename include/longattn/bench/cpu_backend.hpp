#pragma once
// The `cpu` backend: the CPU reference itself (fp32, every mask), timed with host clocks, so that
// `longattn bench` runs on machines without a GPU. Its options let tests build deliberately wrong
// doubles of it.
#include <functional>
#include <memory>
#include <string>

#include "longattn/bench/backend.hpp"
#include "longattn/views/row_intervals.hpp"
#include "longattn/views/tile_map.hpp"

namespace longattn::bench {

// Changes the mask a backend actually runs (test doubles only): gets each KV head's intervals.
using MaskAlteration = std::function<void(RowIntervals&)>;

// A deliberately wrong mask: removes the keys of key tile k_tile from the rows of query tile
// q_tile (tiles of `shape`), as a kernel that skipped one tile would.
MaskAlteration drop_key_tile(TileShape shape, Index q_tile, Index k_tile);

struct CpuBackendOptions {
  std::string name = "cpu";
  MaskAlteration alter_mask;  // empty: the true mask
  int threads = 0;            // 0 = all hardware threads
};

std::unique_ptr<Backend> make_cpu_backend(CpuBackendOptions options);

}  // namespace longattn::bench

#include "longattn/bench/grid.hpp"

#include "longattn/bench/backend.hpp"

#include <fmt/format.h>

#include "longattn/error.hpp"

namespace longattn::bench {
namespace {

template <class T>
void require_nonempty(const std::vector<T>& axis, const char* name) {
  if (axis.empty()) throw InputError(fmt::format("the {} axis of the benchmark grid is empty", name));
}

void validate(const Grid& g) {
  require_nonempty(g.backends, "backend");
  require_nonempty(g.masks, "mask");
  require_nonempty(g.seqlens, "seqlen");
  require_nonempty(g.heads, "heads");
  require_nonempty(g.head_dims, "head-dim");
  require_nonempty(g.dtypes, "dtype");
  require_nonempty(g.directions, "direction");
  if (g.draws < 1) throw InputError(fmt::format("--draws must be at least 1, got {}", g.draws));
  for (Index s : g.seqlens)
    if (s <= 0) throw InputError(fmt::format("sequence length must be positive, got {}", s));
  for (int d : g.head_dims)
    if (d <= 0) throw InputError(fmt::format("head dim must be positive, got {}", d));
  for (HeadConfig h : g.heads) {
    h.head_dim = g.head_dims.front();
    validate(h);  // Hq a positive multiple of Hkv
  }
}

}  // namespace

std::size_t grid_size(const Grid& g) {
  return g.backends.size() * g.masks.size() * g.seqlens.size() * g.heads.size() *
         g.head_dims.size() * g.dtypes.size() * g.directions.size() * std::size_t(g.draws);
}

std::vector<Case> expand(const Grid& g) {
  validate(g);
  std::vector<Case> cases;
  cases.reserve(grid_size(g));
  for (Index seqlen : g.seqlens)
    for (const MaskAxis& m : g.masks)
      for (int draw = 0; draw < g.draws; ++draw)
        for (HeadConfig heads : g.heads)
          for (int dim : g.head_dims)
            for (DType dtype : g.dtypes)
              for (Direction dir : g.directions)
                for (const std::string& backend : g.backends) {
                  Case c;
                  c.backend = backend;
                  c.mask.pattern = m.pattern;
                  c.mask.seqlen = seqlen;
                  c.mask.params = m.params;
                  c.mask.seed = g.seed + std::uint64_t(draw);
                  c.draw = draw;
                  c.heads = heads;
                  c.heads.head_dim = dim;
                  c.dtype = dtype;
                  c.direction = dir;
                  c.data_seed = c.mask.seed;
                  cases.push_back(std::move(c));
                }
  return cases;
}

namespace {
std::vector<MaskAxis> static_patterns() {
  std::vector<MaskAxis> out;
  for (const PatternInfo& p : all_patterns())
    if (p.family != PatternFamily::dynamic) out.push_back({p.pattern, MaskParams{}});
  return out;
}
}  // namespace

Grid default_gpu_grid() {
  Grid g;
  for (const BackendInfo& b : registered_backends())
    if (b.device == Device::gpu) g.backends.emplace_back(b.name);
  g.masks = static_patterns();
  for (Index k : {1, 2, 4, 8, 16, 24, 32, 40, 48}) g.seqlens.push_back(k * 1024);
  g.heads = {HeadConfig{64, 8, 128}, HeadConfig{64, 64, 128}};
  g.head_dims = {128};
  g.dtypes = {DType::bf16};
  g.directions = {Direction::fwdbwd};
  return g;
}

Grid default_cpu_grid() {
  // The CPU reference runs at a few GFLOP/s per core: two small sizes, two masks, fwd+bwd.
  Grid g;
  g.backends = {"cpu"};
  g.masks = {{Pattern::full, MaskParams{}}, {Pattern::causal_document, MaskParams{}}};
  g.seqlens = {256, 512};
  g.heads = {HeadConfig{4, 2, 64}};
  g.head_dims = {64};
  g.dtypes = {DType::fp32};
  g.directions = {Direction::fwdbwd};
  return g;
}

}  // namespace longattn::bench

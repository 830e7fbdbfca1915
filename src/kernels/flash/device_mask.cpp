// The device copy of a MaskTiles: runs, bitmasks, 32-byte item records and (per-KV-head masks)
// the items' KV heads in one allocation.
#include <cuda_runtime_api.h>

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "longattn/kernels/flash.hpp"

namespace longattn::flash {

namespace {

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

template <class T>
void put(std::vector<unsigned char>& staging, size_t at, const std::vector<T>& v) {
  if (!v.empty()) std::memcpy(staging.data() + at, v.data(), v.size() * sizeof(T));
}

}  // namespace

void CudaFree::operator()(void* p) const noexcept { cudaFree(p); }

DeviceAllocation allocate_device(std::size_t bytes, std::string_view what) {
  void* p = nullptr;
  if (const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 1 : bytes); e != cudaSuccess) {
    (void)cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
      throw DeviceOutOfMemory(fmt::format("flash: {} bytes for {}", bytes, what));
    throw std::runtime_error(
        fmt::format("flash: cudaMalloc for {}: {}", what, cudaGetErrorString(e)));
  }
  return DeviceAllocation(p);
}

DeviceMask::DeviceMask(const MaskTiles& host) : shape_(host.shape), issued_area_(host.issued_area) {
  std::vector<ItemRecord> items(host.items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const WorkItem& it = host.items[i];
    ItemRecord& r = items[i];
    r.outer_begin = host.outer[size_t(it.outer)].begin;
    r.outer_end = host.outer[size_t(it.outer)].end;
    r.run_begin = it.run_begin;
    r.run_end = it.run_end;
    r.passes = (std::int32_t(it.pass_begin) & 0xffff) | (std::int32_t(it.pass_end) << 16);
    if (it.run_begin < it.run_end) {
      const TileRun32& first = host.runs[size_t(it.run_begin)];
      r.first_begin = first.begin;
      r.first_end = first.end;
      r.first_bits = first.bits;
    }
  }
  const size_t o_runs = 0;
  const size_t o_bits = o_runs + align_up(host.runs.size() * sizeof(TileRun32));
  std::vector<std::int32_t> item_heads;
  if (host.per_head())
    for (const WorkItem& it : host.items) item_heads.push_back(it.kv_head);
  const size_t o_items = o_bits + align_up(host.bits.size() * sizeof(std::uint32_t));
  const size_t o_heads = o_items + align_up(items.size() * sizeof(ItemRecord));
  const size_t total = o_heads + align_up(item_heads.size() * sizeof(std::int32_t)) + 256;
  std::vector<unsigned char> staging(total, 0);
  put(staging, o_runs, host.runs);
  put(staging, o_bits, host.bits);
  put(staging, o_items, items);
  put(staging, o_heads, item_heads);
  block_ = allocate_device(total, "the mask tiles");
  if (const cudaError_t e = cudaMemcpy(block_.get(), staging.data(), total, cudaMemcpyHostToDevice);
      e != cudaSuccess)
    throw std::runtime_error(std::string("flash: copying the mask tiles: ") +
                             cudaGetErrorString(e));
  auto* base = static_cast<unsigned char*>(block_.get());
  view_.runs = reinterpret_cast<const TileRun32*>(base + o_runs);
  view_.bits = reinterpret_cast<const std::uint32_t*>(base + o_bits);
  view_.items = reinterpret_cast<const ItemRecord*>(base + o_items);
  if (host.per_head()) view_.item_heads = reinterpret_cast<const std::int32_t*>(base + o_heads);
  view_.num_items = std::int32_t(host.items.size());
  view_.has_partial = host.bits.empty() ? 0 : 1;
  view_.split = host.split ? 1 : 0;
  view_.mean_span = std::int32_t(host.mean_span());
  view_.descending = host.descending ? 1 : 0;
  view_.tile_rows = std::int32_t(host.shape.rows);
  view_.tile_cols = std::int32_t(host.shape.cols);
}

}  // namespace longattn::flash

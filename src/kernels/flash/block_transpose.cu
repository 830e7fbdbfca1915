// transpose_block_lists (block_transpose.hpp): count each k->q row's entries, exclusive-scan the
// counts into offsets (cub), scatter every q->k entry into its k->q row, then sort each row (cub
// segmented sort): the scatter's atomics fix which slot an entry lands in, the sort makes every
// row ascending, so the result does not depend on the atomics' order.
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "block_transpose.hpp"
#include "longattn/error.hpp"

namespace longattn::flash {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerCta = kThreads / 32;

// Scratch layout: the scatter cursors (one per k->q row, plus the scan's last slot), the
// scattered, unsorted indices, then cub's temporary storage.
struct Scratch {
  unsigned long long* cursor;
  std::int32_t* unsorted;
  void* cub_temp;
  std::size_t cub_bytes;
};

std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("flash: k->q lists: ") + what + ": " +
                             cudaGetErrorString(e));
}

// cub's temporary bytes: the larger of the scan's and the segmented sort's.
std::size_t cub_bytes(const BlockListShape& s) {
  const int rows = s.heads * s.blocks;
  std::size_t scan = 0, sort = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, scan, static_cast<unsigned long long*>(nullptr),
                                      static_cast<std::int64_t*>(nullptr), rows + 1),
        "cub scan size");
  check(cub::DeviceSegmentedSort::SortKeys(nullptr, sort, static_cast<const std::int32_t*>(nullptr),
                                           static_cast<std::int32_t*>(nullptr), s.entries, rows,
                                           static_cast<const std::int64_t*>(nullptr),
                                           static_cast<const std::int64_t*>(nullptr)),
        "cub sort size");
  return std::max(scan, sort);
}

Scratch carve(const BlockListShape& s, void* base) {
  const std::size_t rows = std::size_t(s.heads) * std::size_t(s.blocks);
  auto* p = static_cast<unsigned char*>(base);
  Scratch out;
  out.cursor = reinterpret_cast<unsigned long long*>(p);
  p += align_up((rows + 1) * sizeof(unsigned long long));
  out.unsorted = reinterpret_cast<std::int32_t*>(p);
  p += align_up(std::size_t(s.entries) * sizeof(std::int32_t));
  out.cub_temp = p;
  out.cub_bytes = cub_bytes(s);
  return out;
}

// One warp per q->k row: its lanes stride over the row's entries (coalesced reads).
struct RowWarp {
  std::int64_t row;
  int lane;
  __device__ static RowWarp mine() {
    return {(std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32, int(threadIdx.x % 32)};
  }
};

// counts[h * blocks + k] = how many query blocks of head h keep key block k.
__global__ void count_kept(StackedBlockLists q_to_k, std::int32_t blocks, std::int64_t rows,
                           unsigned long long* counts) {
  const RowWarp w = RowWarp::mine();
  if (w.row >= rows) return;
  const std::int64_t head_row0 = w.row / blocks * blocks;
  for (std::int64_t e = q_to_k.offsets[w.row] + w.lane; e < q_to_k.offsets[w.row + 1]; e += 32)
    atomicAdd(counts + head_row0 + q_to_k.indices[e], 1ull);
}

// Each entry (h, q -> k) into row h * blocks + k of the transpose, at the row's next free slot.
__global__ void scatter_kept(StackedBlockLists q_to_k, std::int32_t blocks, std::int64_t rows,
                             unsigned long long* cursor, std::int32_t* unsorted) {
  const RowWarp w = RowWarp::mine();
  if (w.row >= rows) return;
  const std::int64_t head_row0 = w.row / blocks * blocks;
  const auto query_block = std::int32_t(w.row - head_row0);
  for (std::int64_t e = q_to_k.offsets[w.row] + w.lane; e < q_to_k.offsets[w.row + 1]; e += 32) {
    const unsigned long long slot = atomicAdd(cursor + head_row0 + q_to_k.indices[e], 1ull);
    unsorted[slot] = query_block;
  }
}

void validate(const BlockListShape& s) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max() / 2;
  if (s.heads < 1 || s.blocks < 0 || s.entries < 0 || std::int64_t(s.heads) * s.blocks >= kMax ||
      s.entries >= kMax || s.entries > std::int64_t(s.heads) * s.blocks * s.blocks)
    throw InputError("flash: k->q lists of " + std::to_string(s.heads) + " heads x " +
                     std::to_string(s.blocks) + " blocks, " + std::to_string(s.entries) +
                     " entries");
}

}  // namespace

std::size_t transpose_scratch_bytes(const BlockListShape& shape) {
  validate(shape);
  const std::size_t rows = std::size_t(shape.heads) * std::size_t(shape.blocks);
  return align_up((rows + 1) * sizeof(unsigned long long)) +
         align_up(std::size_t(shape.entries) * sizeof(std::int32_t)) + align_up(cub_bytes(shape));
}

void transpose_block_lists(const BlockListShape& shape, StackedBlockLists q_to_k,
                           StackedBlockListsOut k_to_q, void* scratch, std::size_t scratch_bytes,
                           Stream stream) {
  if (scratch_bytes < transpose_scratch_bytes(shape))
    throw InputError("flash: k->q lists need " + std::to_string(transpose_scratch_bytes(shape)) +
                     " scratch bytes, got " + std::to_string(scratch_bytes));
  const std::int64_t rows = std::int64_t(shape.heads) * shape.blocks;
  const Scratch s = carve(shape, scratch);
  const auto grid = unsigned((rows + kWarpsPerCta - 1) / kWarpsPerCta);

  // Counts, then offsets = exclusive scan of the counts (the extra last count, 0, gives the total).
  check(cudaMemsetAsync(s.cursor, 0, std::size_t(rows + 1) * sizeof(unsigned long long), stream),
        "clearing counts");
  if (rows > 0) count_kept<<<grid, kThreads, 0, stream>>>(q_to_k, shape.blocks, rows, s.cursor);
  check(cudaGetLastError(), "count kernel");
  std::size_t bytes = s.cub_bytes;
  check(cub::DeviceScan::ExclusiveSum(s.cub_temp, bytes, s.cursor, k_to_q.offsets, int(rows + 1),
                                      stream),
        "scan");
  // The cursors start at the row offsets.
  check(cudaMemcpyAsync(s.cursor, k_to_q.offsets, std::size_t(rows + 1) * sizeof(std::int64_t),
                        cudaMemcpyDeviceToDevice, stream),
        "cursors");
  if (rows > 0)
    scatter_kept<<<grid, kThreads, 0, stream>>>(q_to_k, shape.blocks, rows, s.cursor, s.unsorted);
  check(cudaGetLastError(), "scatter kernel");
  bytes = s.cub_bytes;
  check(cub::DeviceSegmentedSort::SortKeys(s.cub_temp, bytes, s.unsorted, k_to_q.indices,
                                           shape.entries, rows, k_to_q.offsets,
                                           k_to_q.offsets + 1, stream),
        "row sort");
}

}  // namespace longattn::flash

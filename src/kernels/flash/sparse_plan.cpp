// make_plan for block-sparse masks (flash.hpp): forward tiles from each KV head's q->k lists,
// backward tiles from its k->q lists, transposed on the device (transpose_block_lists) rather
// than by a host loop over the kept blocks.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "block_transpose.hpp"
#include "sm_count.hpp"
#include "longattn/error.hpp"
#include "longattn/kernels/flash.hpp"

namespace longattn::flash {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(fmt::format("flash: k->q lists: {}: {}", what, cudaGetErrorString(e)));
}

// Every head's k->q lists: the q->k lists stacked head after head (block_transpose.hpp), sent
// to the device, transposed there and brought back for the tile producer.
std::vector<BlockLists> device_k_to_q(const BlockSparseMask& m) {
  BlockListShape shape;
  shape.heads = m.num_heads();
  shape.blocks = std::int32_t(m.blocks().num_blocks());
  for (int h = 0; h < m.num_heads(); ++h) shape.entries += m.kept_blocks(h);
  const std::size_t rows = std::size_t(shape.heads) * std::size_t(shape.blocks);
  std::vector<std::int64_t> offsets(rows + 1, 0);
  std::vector<std::int32_t> indices(std::size_t(shape.entries));
  std::size_t at = 0;
  for (int h = 0; h < m.num_heads(); ++h) {
    const BlockLists& l = m.kept(h);
    const auto base = std::int64_t(at);  // entries of the heads before
    for (Index r = 0; r < l.num_rows(); ++r)
      offsets[std::size_t(h) * shape.blocks + r + 1] = base + l.offsets[r + 1];
    std::memcpy(indices.data() + at, l.indices.data(), l.indices.size() * sizeof(std::int32_t));
    at += l.indices.size();
  }

  const std::size_t scratch_bytes = transpose_scratch_bytes(shape);
  const char* what = "the k->q lists";
  const DeviceAllocation d_qo = allocate_device(offsets.size() * 8, what),
                         d_qi = allocate_device(indices.size() * 4, what),
                         d_ko = allocate_device(offsets.size() * 8, what),
                         d_ki = allocate_device(indices.size() * 4, what),
                         scratch = allocate_device(scratch_bytes, what);
  check(cudaMemcpy(d_qo.get(), offsets.data(), offsets.size() * 8, cudaMemcpyHostToDevice),
        "upload");
  check(cudaMemcpy(d_qi.get(), indices.data(), indices.size() * 4, cudaMemcpyHostToDevice),
        "upload");
  auto offsets_of = [](const DeviceAllocation& a) { return static_cast<std::int64_t*>(a.get()); };
  auto indices_of = [](const DeviceAllocation& a) { return static_cast<std::int32_t*>(a.get()); };
  transpose_block_lists(shape, {offsets_of(d_qo), indices_of(d_qi)},
                        {offsets_of(d_ko), indices_of(d_ki)}, scratch.get(), scratch_bytes,
                        nullptr);
  check(cudaMemcpy(offsets.data(), d_ko.get(), offsets.size() * 8, cudaMemcpyDeviceToHost),
        "download");
  check(cudaMemcpy(indices.data(), d_ki.get(), indices.size() * 4, cudaMemcpyDeviceToHost),
        "download");

  std::vector<BlockLists> out(std::size_t(m.num_heads()));
  for (int h = 0; h < m.num_heads(); ++h) {
    const std::int64_t* o = offsets.data() + std::size_t(h) * shape.blocks;
    BlockLists& l = out[std::size_t(h)];
    l.offsets.assign(o, o + shape.blocks + 1);
    for (std::int64_t& x : l.offsets) x -= o[0];
    l.indices.assign(indices.begin() + o[0], indices.begin() + o[shape.blocks]);
  }
  return out;
}

}  // namespace

int sparse_forward_rows(const BlockSparseMask& m) {
  if (const char* e = std::getenv("LONGATTN_FLASH_SPARSE_FWD_ROWS"))
    return std::string_view(e) == "64" ? 64 : 128;
  return m.seqlen() <= 96 * m.blocks().num_blocks() ? 64 : 128;
}

Plan make_plan(const BlockSparseMask& m, const Shape& shape, bool backward, bool deterministic,
               std::optional<TileShape> fwd_tile) {
  if (!supported_head_dim(shape.head_dim))
    throw InputError(fmt::format("flash: head_dim {} is not one of 64, 128", shape.head_dim));
  if (m.seqlen() != shape.seqlen_q || m.seqlen() != shape.seqlen_k)
    throw InputError(fmt::format("flash: a block-sparse mask of length {} for sequence lengths "
                                 "{} x {}", m.seqlen(), shape.seqlen_q, shape.seqlen_k));
  if (shape.heads_kv <= 0 || shape.heads_q % shape.heads_kv != 0)
    throw InputError(fmt::format("flash: heads_q {} must be a positive multiple of heads_kv {}",
                                 shape.heads_q, shape.heads_kv));
  if (m.num_heads() != 1 && m.num_heads() != shape.heads_kv)
    throw InputError(fmt::format("flash: a block-sparse mask of {} heads for {} KV heads",
                                 m.num_heads(), shape.heads_kv));
  // One pattern for every KV head: the static masks' grid (every head runs every item).
  const bool shared = m.num_heads() == 1;
  auto to_device = [&](MaskTiles t) {
    if (shared) t.head_outer.clear();
    return DeviceMask(t);
  };
  const int group = shape.heads_q / shape.heads_kv;
  Plan plan;
  PrepareOptions fwd;
  fwd.heads = shared ? shape.heads_q : group;
  plan.fwd = to_device(
      prepare_block_sparse_mask(
          m, fwd_tile.value_or(forward_tile(shape.head_dim, sparse_forward_rows(m))), false, fwd));
  if (backward) {
    PrepareOptions opt;
    opt.passes = group;
    opt.heads = shared ? shape.heads_kv : 1;
    opt.num_sms = current_device_sm_count();
    opt.allow_split = !deterministic;
    const std::vector<BlockLists> k_to_q = device_k_to_q(m);
    plan.bwd = to_device(
        prepare_block_sparse_mask(m, backward_tile(shape.head_dim), true, k_to_q, opt));
    if (deterministic) {
      fwd.heads = shared ? shape.heads_q : group;
      plan.dq = to_device(prepare_block_sparse_mask(m, dq_tile(shape.head_dim), false, fwd));
    }
    plan.workspace_bytes =
        backward_workspace_bytes(shape, deterministic, plan.bwd.view().split != 0);
  }
  return plan;
}

}  // namespace longattn::flash

// The flash_hopper dispatch point: validation, then run-time dtype (and head_dim) become the
// template arguments of the launch functions instantiated one per .cu file.
#include <fmt/format.h>

#include <cstdlib>

#include "launch.hpp"
#include "longattn/error.hpp"

namespace longattn::flash_hopper {

bool supported_head_dim(int head_dim) { return head_dim == 64 || head_dim == 128; }

int forward_flags() {
  static const int flags = [] {
    const char* s = std::getenv("LONGATTN_HOPPER_FWD_FLAGS");
    return s && *s ? std::atoi(s) : int(kDefaultFlags);
  }();
  return flags;
}

int backward_flags() {
  static const int flags = [] {
    const char* s = std::getenv("LONGATTN_HOPPER_BWD_FLAGS");
    return s && *s ? std::atoi(s) : int(kDefaultBwdFlags);
  }();
  return flags;
}

TileShape forward_tile(int head_dim) {
  if (!supported_head_dim(head_dim))
    throw InputError(fmt::format("flash_hopper: head_dim {} is not 64 or 128", head_dim));
  const bool wide = head_dim == 128 && (forward_flags() & kWide);
  return {FwdTile::kRows, wide ? FwdTile::kWideCols : FwdTile::kCols};
}

TileShape split_forward_tile() { return {FwdTile::kSplitRows, FwdTile::kSplitCols}; }

void run_forward(const FwdParams& p, Stream stream) {
  const flash::Shape& s = p.shape;
  flash::validate_shape(s, "flash_hopper forward", supported_head_dim, "64 or 128");
  if (!p.q || !p.k || !p.v || !p.o || !p.lse || !p.mask.items)
    throw InputError("flash_hopper forward: a tensor or the mask is missing");
  if (p.mask.num_items > 65535)
    throw InputError(fmt::format("flash_hopper forward: {} query tiles exceed one launch's grid",
                                 p.mask.num_items));
  if (s.heads_q > 65535)
    throw InputError(fmt::format("flash_hopper forward: {} heads exceed one launch's grid", s.heads_q));
  flash::check_mask_tiles(p.mask, forward_tile(s.head_dim), split_forward_tile(),
                          "flash_hopper forward");
  FwdParams q = p;
  q.q_row_stride = flash::q_row_stride(p, "flash_hopper forward");
  const bool bf16 = q.dtype == DType::bf16;
  if (s.head_dim == 64)
    bf16 ? launch_forward<DType::bf16, 64>(q, stream) : launch_forward<DType::fp16, 64>(q, stream);
  else
    bf16 ? launch_forward<DType::bf16, 128>(q, stream) : launch_forward<DType::fp16, 128>(q, stream);
}

TileShape backward_tile(int head_dim) {
  if (!supported_head_dim(head_dim))
    throw InputError(fmt::format("flash_hopper: head_dim {} is not 64 or 128", head_dim));
  return {BwdTile::kRows, BwdTile::kCols};
}

// The portable plan with this kernel's forward tiles; the backward's are the portable ones.
flash::Plan make_plan(const SliceMask& m, const flash::Shape& shape, bool backward) {
  return flash::make_plan(m, shape, backward, false, forward_tile(shape.head_dim));
}

// Small blocks run split tiles (64 rows, 64-key chunks: kSplit), which visit exactly a query
// block's kept key blocks; 128-row tiles would visit the union of two blocks' lists.
flash::Plan make_plan(const BlockSparseMask& m, const flash::Shape& shape, bool backward) {
  const bool small_blocks = flash::sparse_forward_rows(m) == FwdTile::kSplitRows;
  return flash::make_plan(m, shape, backward, false,
                          small_blocks ? split_forward_tile() : forward_tile(shape.head_dim));
}

void run_backward(const BwdParams& p, Stream stream) {
  flash::validate_shape(p.shape, "flash_hopper backward", supported_head_dim, "64 or 128");
  if (p.deterministic)
    throw InputError(
        "flash_hopper backward: no deterministic mode (dQ is summed with atomics); use "
        "flash_deterministic");
  if (!p.q || !p.k || !p.v || !p.o || !p.lse || !p.d_o || !p.dq || !p.dk || !p.dv ||
      !p.workspace || !p.mask.items)
    throw InputError("flash_hopper backward: a tensor, the workspace or the mask is missing");
  if (p.mask.num_items > 65535)
    throw InputError(fmt::format("flash_hopper backward: {} key tiles exceed one launch's grid",
                                 p.mask.num_items));
  const bool bf16 = p.dtype == DType::bf16;
  if (p.shape.head_dim == 64)
    bf16 ? launch_backward<DType::bf16, 64>(p, stream) : launch_backward<DType::fp16, 64>(p, stream);
  else
    bf16 ? launch_backward<DType::bf16, 128>(p, stream) : launch_backward<DType::fp16, 128>(p, stream);
}

}  // namespace longattn::flash_hopper

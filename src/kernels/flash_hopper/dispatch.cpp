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

TileShape forward_tile(int head_dim) {
  if (!supported_head_dim(head_dim))
    throw InputError(fmt::format("flash_hopper: head_dim {} is not 64 or 128", head_dim));
  const bool wide = head_dim == 128 && (forward_flags() & kWide);
  return {FwdTile::kRows, wide ? FwdTile::kWideCols : FwdTile::kCols};
}

flash::DeviceMask prepare_forward(const SliceMask& m, int head_dim) {
  return flash::DeviceMask(flash::prepare_mask(m, forward_tile(head_dim), false));
}

void run_forward(const FwdParams& p, Stream stream) {
  const flash::Shape& s = p.shape;
  if (s.seqlen_q <= 0 || s.seqlen_k <= 0)
    throw InputError(fmt::format("flash_hopper forward: sequence lengths {} and {} must be positive",
                                 s.seqlen_q, s.seqlen_k));
  if (s.heads_kv <= 0 || s.heads_q <= 0 || s.heads_q % s.heads_kv != 0)
    throw InputError(fmt::format(
        "flash_hopper forward: heads_q {} must be a positive multiple of heads_kv {}", s.heads_q,
        s.heads_kv));
  if (!supported_head_dim(s.head_dim))
    throw InputError(fmt::format("flash_hopper forward: head_dim {} is not 64 or 128", s.head_dim));
  if (!(s.scale > 0))
    throw InputError(fmt::format("flash_hopper forward: softmax scale {} must be positive", s.scale));
  if (!p.q || !p.k || !p.v || !p.o || !p.lse || !p.mask.items)
    throw InputError("flash_hopper forward: a tensor or the mask is missing");
  if (p.mask.num_items > 65535)
    throw InputError(fmt::format("flash_hopper forward: {} query tiles exceed one launch's grid",
                                 p.mask.num_items));
  if (s.heads_q > 65535)
    throw InputError(fmt::format("flash_hopper forward: {} heads exceed one launch's grid", s.heads_q));
  const bool bf16 = p.dtype == DType::bf16;
  if (s.head_dim == 64)
    bf16 ? launch_forward<DType::bf16, 64>(p, stream) : launch_forward<DType::fp16, 64>(p, stream);
  else
    bf16 ? launch_forward<DType::bf16, 128>(p, stream) : launch_forward<DType::fp16, 128>(p, stream);
}

}  // namespace longattn::flash_hopper

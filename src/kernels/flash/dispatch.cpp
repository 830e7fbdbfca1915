// The single dispatch point: run-time (dtype, head_dim) become the template arguments of the
// launch functions instantiated one per .cu file; the launch functions turn the remaining flags
// (partial tiles present, deterministic backward) into compile-time constants of the kernels.
#include <fmt/format.h>

#include "launch.hpp"
#include "sm_count.hpp"
#include "longattn/error.hpp"

namespace longattn::flash {

namespace {

void validate(const Shape& s, const char* what) {
  validate_shape(s, fmt::format("flash {}", what), supported_head_dim, "one of 64, 128");
}

template <class F>
void dispatch(DType dt, int head_dim, F&& f) {
  if (dt == DType::bf16) {
    if (head_dim == 64) return f.template operator()<DType::bf16, 64>();
    return f.template operator()<DType::bf16, 128>();
  }
  if (head_dim == 64) return f.template operator()<DType::fp16, 64>();
  return f.template operator()<DType::fp16, 128>();
}

}  // namespace

bool supported_head_dim(int head_dim) { return head_dim == 64 || head_dim == 128; }

void validate_shape(const Shape& s, std::string_view who, bool (*head_dim_ok)(int),
                    std::string_view head_dims) {
  if (s.seqlen_q <= 0 || s.seqlen_k <= 0)
    throw InputError(fmt::format("{}: sequence lengths {} and {} must be positive", who,
                                 s.seqlen_q, s.seqlen_k));
  if (s.heads_kv <= 0 || s.heads_q <= 0 || s.heads_q % s.heads_kv != 0)
    throw InputError(fmt::format("{}: heads_q {} must be a positive multiple of heads_kv {}", who,
                                 s.heads_q, s.heads_kv));
  if (!head_dim_ok(s.head_dim))
    throw InputError(fmt::format("{}: head_dim {} is not {}", who, s.head_dim, head_dims));
  if (!(s.scale > 0))
    throw InputError(fmt::format("{}: softmax scale {} must be positive", who, s.scale));
}

std::int64_t q_row_stride(const FwdParams& p, std::string_view who) {
  const std::int64_t row = std::int64_t(p.shape.heads_q) * p.shape.head_dim;
  if (p.q_row_stride == 0) return row;
  if (p.q_row_stride < row || p.q_row_stride % 8 != 0)
    throw InputError(fmt::format("{}: Q/O row stride {} must be at least heads_q x head_dim = {} "
                                 "and a multiple of 8",
                                 who, p.q_row_stride, row));
  return p.q_row_stride;
}

void check_mask_tiles(const MaskView& m, TileShape a, TileShape b, std::string_view who) {
  auto is = [&](TileShape t) { return m.tile_rows == t.rows && m.tile_cols == t.cols; };
  if (!is(a) && !is(b))
    throw InputError(fmt::format("{}: a mask prepared for {} x {} tiles; this kernel runs {} x {} "
                                 "or {} x {} (its make_plan)",
                                 who, m.tile_rows, m.tile_cols, a.rows, a.cols, b.rows, b.cols));
}

TileShape forward_tile(int head_dim) {
  if (head_dim == 64) return {FwdTile<64>::kRows, FwdTile<64>::kCols};
  return {FwdTile<128>::kRows, FwdTile<128>::kCols};
}
TileShape forward_tile(int head_dim, int rows) {
  if (rows != 64) return forward_tile(head_dim);
  return {FwdTile<128, 64>::kRows, FwdTile<128, 64>::kCols};
}
TileShape backward_tile(int head_dim) {
  if (head_dim == 64) return {BwdTile<64>::kRows, BwdTile<64>::kCols};
  return {BwdTile<128>::kRows, BwdTile<128>::kCols};
}
TileShape dq_tile(int head_dim) {
  if (head_dim == 64) return {DqTile<64>::kRows, DqTile<64>::kCols};
  return {DqTile<128>::kRows, DqTile<128>::kCols};
}

std::size_t backward_workspace_bytes(const Shape& s, bool deterministic, bool split_kv) {
  auto align = [](std::size_t n) { return (n + 255) / 256 * 256; };
  const std::size_t rows = std::size_t(s.heads_q) * std::size_t(s.seqlen_q);
  const std::size_t kv = std::size_t(s.heads_kv) * std::size_t(s.seqlen_k) * s.head_dim;
  std::size_t n = 2 * align(rows * 4);
  if (!deterministic) n += align(rows * std::size_t(s.head_dim) * 4);
  if (split_kv) n += 2 * align(kv * 4);
  return n;
}

void run_forward(const FwdParams& p, Stream stream) {
  validate(p.shape, "forward");
  if (!p.q || !p.k || !p.v || !p.o || !p.lse || !p.mask.items)
    throw InputError("flash forward: a tensor or the mask is missing");
  // Per-KV-head masks: the items come grouped by KV head, as many per head (the grid's z).
  if (p.mask.item_heads && p.mask.num_items % p.shape.heads_kv != 0)
    throw InputError(fmt::format("flash forward: {} items for {} KV heads", p.mask.num_items,
                                 p.shape.heads_kv));
  if (p.mask.num_items / (p.mask.item_heads ? p.shape.heads_kv : 1) > 65535)
    throw InputError(fmt::format("flash forward: {} query tiles exceed one launch's grid",
                                 p.mask.num_items));
  check_mask_tiles(p.mask, forward_tile(p.shape.head_dim), forward_tile(p.shape.head_dim, 64),
                   "flash forward");
  FwdParams q = p;
  q.q_row_stride = q_row_stride(p, "flash forward");
  // Several heads per CTA (each prefetching the next one's first loads) measured no faster on
  // H100, even for short document tiles, and coarser work hurt masks with uneven rows.
  if (q.heads_per_cta == 0) q.heads_per_cta = 1;
  // Per-KV-head masks: a CTA's heads are query heads of its item's KV head.
  const int heads = p.mask.item_heads ? p.shape.heads_q / p.shape.heads_kv : p.shape.heads_q;
  if (q.heads_per_cta < 1 || heads % q.heads_per_cta != 0)
    throw InputError(fmt::format("flash forward: {} heads per CTA do not divide {} heads",
                                 q.heads_per_cta, heads));
  dispatch(q.dtype, q.shape.head_dim,
           [&]<DType Dt, int D>() { launch_forward<Dt, D>(q, stream); });
}

void run_backward(const BwdParams& p, Stream stream) {
  validate(p.shape, "backward");
  if (!p.q || !p.k || !p.v || !p.o || !p.lse || !p.d_o || !p.dq || !p.dk || !p.dv ||
      !p.workspace || !p.mask.items || (p.deterministic && !p.dq_mask.items))
    throw InputError("flash backward: a tensor, the workspace or a mask is missing");
  if (p.deterministic && p.mask.split)
    throw InputError("flash backward: a deterministic backward needs an unsplit key-tile plan");
  if (p.mask.num_items > 65535 || p.dq_mask.num_items > 65535)
    throw InputError("flash backward: too many tiles for one launch's grid");
  if (p.deterministic && p.dq_mask.item_heads && p.dq_mask.num_items % p.shape.heads_kv != 0)
    throw InputError(fmt::format("flash backward: {} dQ items for {} KV heads",
                                 p.dq_mask.num_items, p.shape.heads_kv));
  dispatch(p.dtype, p.shape.head_dim,
           [&]<DType Dt, int D>() { launch_backward<Dt, D>(p, stream); });
}

DeviceMask prepare_backward_mask(const SliceMask& m, const Shape& shape, TileShape tile,
                                 bool allow_split) {
  PrepareOptions opt;
  opt.passes = shape.heads_q / shape.heads_kv;
  opt.heads = shape.heads_kv;
  opt.num_sms = current_device_sm_count();
  opt.allow_split = allow_split;
  return DeviceMask(prepare_mask(m, tile, true, opt));
}

Plan make_plan(const SliceMask& m, const Shape& shape, bool backward, bool deterministic,
               std::optional<TileShape> fwd_tile) {
  if (!supported_head_dim(shape.head_dim))
    throw InputError(fmt::format("flash: head_dim {} is not one of 64, 128", shape.head_dim));
  if (m.seqlen_q() != shape.seqlen_q || m.seqlen_k() != shape.seqlen_k)
    throw InputError(fmt::format("flash: a {} x {} mask for sequence lengths {} x {}",
                                 m.seqlen_q(), m.seqlen_k(), shape.seqlen_q, shape.seqlen_k));
  if (shape.heads_kv <= 0 || shape.heads_q <= 0 || shape.heads_q % shape.heads_kv != 0)
    throw InputError(fmt::format("flash: heads_q {} must be a positive multiple of heads_kv {}",
                                 shape.heads_q, shape.heads_kv));
  Plan plan;
  plan.fwd = DeviceMask(prepare_mask(m, fwd_tile.value_or(forward_tile(shape.head_dim)), false));
  if (backward) {
    plan.bwd = prepare_backward_mask(m, shape, backward_tile(shape.head_dim), !deterministic);
    if (deterministic) plan.dq = DeviceMask(prepare_mask(m, dq_tile(shape.head_dim), false));
    plan.workspace_bytes =
        backward_workspace_bytes(shape, deterministic, plan.bwd.view().split != 0);
  }
  return plan;
}

}  // namespace longattn::flash

#pragma once
// longattn's own mask-aware flash attention (portable tensor-core path: mma.sync, sm_80 and newer).
//
// The kernels are driven by a prepared mask (MaskTiles): for each outer tile (a query tile in the
// forward pass, a key tile in the backward pass) the runs of inner chunks it must visit, full runs
// with no mask arithmetic and partial runs each chunk of which carries an exact bitmask of its
// allowed pairs. Everything is derived from the canonical SliceMask (its slices' boundaries and
// the per-row / per-column key intervals); empty chunks are never listed, tiles line up with
// documents, and work items are ordered heaviest first.
//
// Layouts as reference.hpp: Q, O, dO, dQ [S][Hq][D]; K, V, dK, dV [S][Hkv][D]; LSE [Hq][S] fp32
// natural log. Rows without keys give O = 0, LSE = -inf and zero gradients.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "longattn/block_sparse.hpp"
#include "longattn/mask.hpp"
#include "longattn/views/tile_map.hpp"

struct CUstream_st;

namespace longattn::flash {

using Stream = CUstream_st*;

enum class DType : std::int32_t { bf16, fp16 };

// Device memory ran out while preparing (the benchmark reports the case as `oom`).
struct DeviceOutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Device memory freed with its owner (cudaFree; defined in device_mask.cpp, so that this header
// needs no CUDA).
struct CudaFree {
  void operator()(void* p) const noexcept;
};
using DeviceAllocation = std::unique_ptr<void, CudaFree>;
// At least 1 byte; DeviceOutOfMemory (naming `what`) when the device has no room,
// std::runtime_error on other CUDA errors.
DeviceAllocation allocate_device(std::size_t bytes, std::string_view what);

// ---- prepared masks ---------------------------------------------------------------------------
//
// The outer axis (queries in the forward pass, keys in the backward pass) is cut into outer tiles
// of at most shape.rows (forward) or shape.cols (backward) positions that start at the slices'
// boundaries (documents, prefixes, window edges), merging segments shorter than half a tile. For
// each outer tile, the union of its lines' allowed intervals on the inner axis is cut into chunks
// of the inner tile size starting at each interval's first position, so that tiles line up with
// documents instead of straddling them. A chunk is full when every pair of the tile's positions
// is allowed (and, in the query-major form, it has a whole tile of keys), else partial with an
// exact bitmask. Empty chunks do not exist; outer tiles without any key still get a work item.

// Positions [begin, end) of one outer tile.
struct TileSpan {
  std::int32_t begin = 0;
  std::int32_t end = 0;
};

// Inner positions [begin, end) cut into chunks of the inner tile size from begin. bits < 0: every
// chunk is full; else chunk i uses bitmask bits + i.
struct TileRun32 {
  std::int32_t begin = 0;
  std::int32_t end = 0;
  std::int32_t bits = -1;
  std::int32_t reserved = 0;
};

// One CTA's work: outer tile `outer`, runs [run_begin, run_end) walked once for each pass in
// [pass_begin, pass_end) (the query heads of a GQA group in the backward pass). kv_head: the KV
// head whose pattern the tile belongs to (per-KV-head masks; 0 otherwise).
struct WorkItem {
  std::int32_t outer = 0;
  std::int32_t run_begin = 0;
  std::int32_t run_end = 0;
  std::int16_t pass_begin = 0;
  std::int16_t pass_end = 1;
  std::int16_t kv_head = 0;
};

struct PrepareOptions {
  int passes = 1;          // walks of each outer tile's runs per CTA (backward: heads_q/heads_kv)
  int heads = 1;           // CTAs per work item (the grid's other axis)
  int num_sms = 0;         // for splitting; 0 = no splitting
  bool allow_split = false;  // long outer tiles may be shared by several work items
};

// Host form. A bitmask is shape.rows query rows of shape.cols / 32 words, bit (c % 32) of word
// c / 32 of row r set iff query q0 + r may attend key k0 + c, where q0, k0 are the tile's first
// query and key.
struct MaskTiles {
  TileShape shape;         // rows = queries, cols = keys of one tile
  bool key_major = false;  // outer tiles are key tiles (the backward pass)
  Index seqlen_q = 0;
  Index seqlen_k = 0;
  std::vector<TileSpan> outer;
  std::vector<std::int32_t> offsets;  // outer tile t's runs: [offsets[t], offsets[t + 1])
  std::vector<TileRun32> runs;
  std::vector<std::uint32_t> bits;    // partial chunks' bitmasks, in run order
  std::vector<WorkItem> items;        // heaviest first
  bool split = false;                 // some outer tile is shared by several items
  Index issued_area = 0;              // pairs computed: rows x keys of every chunk (all heads)
  // Key-major: neighbouring key tiles' query spans share their ends more than their starts (as
  // on causal masks), so a backward that walks each tile's chunks last to first, the passes
  // innermost, keeps the tiles on the same query rows at the same time (set by prepare_mask;
  // never for block-sparse masks, whose kept blocks are scattered).
  bool descending = false;
  // Per-KV-head masks (block-sparse): one set of outer tiles per KV head, concatenated; head h's
  // are [head_outer[h], head_outer[h + 1]) and cover the whole outer axis, and every item carries
  // its kv_head (items of all heads sorted together, heaviest first). Empty: one mask, every head.
  std::vector<std::int32_t> head_outer;

  bool per_head() const { return !head_outer.empty(); }
  int num_kv_heads() const { return per_head() ? int(head_outer.size()) - 1 : 1; }
  int num_outer() const { return int(outer.size()); }
  Index words_per_tile() const { return shape.rows * (shape.cols / 32); }
  Index partial_tiles() const { return Index(bits.size()) / words_per_tile(); }
  Index listed_tiles() const;  // chunks
  // Issued inner positions per outer row (forward: keys per query row, at chunk granularity);
  // 0 for per-KV-head masks.
  Index mean_span() const;
};

// Throws InputError for a tile shape whose key side is not a positive multiple of 32, or a mask
// too large for 32-bit positions.
MaskTiles prepare_mask(const SliceMask& m, TileShape shape, bool key_major,
                       const PrepareOptions& opt = {});

// The same for a block-sparse mask, one set of tiles per KV head (MaskTiles::head_outer): outer
// tiles cut at the block partition's boundaries, chunks cut from the start of each run of kept
// blocks, full where every pair is kept (whole kept blocks off the causal diagonal), partial
// with an exact bitmask where a chunk crosses a dropped block or the diagonal, or (forward) is
// short. opt.heads counts the CTAs per item on the grid's other axis: the query heads of a
// group forward, 1 backward (the items already carry their KV head). Query-major items are
// grouped by KV head (each head's heaviest first, one per outer tile). Partial chunks sharing a
// bitmask shape share its bits (each is a run of one chunk then). Host only, no CUDA.
MaskTiles prepare_block_sparse_mask(const BlockSparseMask& m, TileShape shape, bool key_major,
                                    const PrepareOptions& opt = {});
// The same with every head's k->q lists given (key-major tiles; built on the device by
// make_plan); the overload above transposes on the host. Ignored for query-major tiles.
MaskTiles prepare_block_sparse_mask(const BlockSparseMask& m, TileShape shape, bool key_major,
                                    std::span<const BlockLists> k_to_q,
                                    const PrepareOptions& opt = {});

// Device form of a WorkItem: everything its CTA needs to start, in one 32-byte record (no chain
// of dependent loads before the first tile is requested).
struct ItemRecord {
  std::int32_t outer_begin = 0;  // the outer tile's positions
  std::int32_t outer_end = 0;
  std::int32_t run_begin = 0;
  std::int32_t run_end = 0;
  std::int32_t passes = 0;  // pass_begin | pass_end << 16
  std::int32_t first_begin = 0;  // runs[run_begin], when run_begin < run_end
  std::int32_t first_end = 0;
  std::int32_t first_bits = -1;
};

// Device view of a MaskTiles (plain pointers, passed to kernels by value).
struct MaskView {
  const TileRun32* runs = nullptr;
  const std::uint32_t* bits = nullptr;
  const ItemRecord* items = nullptr;
  // Per-KV-head masks: item i's KV head (read beside its record, indexed alike); null when one
  // mask serves every head. Backward main kernel: grid (1, items), the CTA's KV head read here.
  // Query-major kernels (forward, deterministic dQ): items come grouped by KV head, as many per
  // head, and the grid is (the head's query heads, items / heads_kv, heads_kv).
  const std::int32_t* item_heads = nullptr;
  std::int32_t num_items = 0;
  std::int32_t has_partial = 0;
  std::int32_t split = 0;
  std::int32_t mean_span = 0;  // MaskTiles::mean_span(), for the launches' scheduling choices
  std::int32_t descending = 0;  // MaskTiles::descending
  // The tile shape it was prepared with (MaskTiles::shape): the launches pick the kernel's tile by
  // it and reject a mask prepared for another kernel.
  std::int32_t tile_rows = 0, tile_cols = 0;
};

// A MaskTiles copied to the device in one allocation (movable; a moved-from one is not used).
class DeviceMask {
 public:
  DeviceMask() = default;
  explicit DeviceMask(const MaskTiles& host);

  const MaskView& view() const { return view_; }
  TileShape shape() const { return shape_; }
  Index issued_area() const { return issued_area_; }

 private:
  DeviceAllocation block_;
  MaskView view_;
  TileShape shape_;
  Index issued_area_ = 0;
};

// ---- kernel parameters and launches --------------------------------------------------------

struct Shape {
  std::int32_t seqlen_q = 0;
  std::int32_t seqlen_k = 0;
  std::int32_t heads_q = 1;
  std::int32_t heads_kv = 1;
  std::int32_t head_dim = 128;
  float scale = 0;  // softmax scale
};

struct FwdParams {
  Shape shape;
  DType dtype = DType::bf16;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;
  MaskView mask;  // query-major, forward_tile(head_dim)
  // Heads one CTA runs in turn on its query tile, prefetching the next head's Q and first K
  // during the last key chunk (a divisor of heads_q); 0 = the default, 1.
  std::int32_t heads_per_cta = 0;
  // Elements between consecutive rows of Q and O: 0 for packed rows (heads_q x head_dim); more
  // when Q and O are a slice of the heads of wider tensors (context parallelism's gather groups).
  std::int64_t q_row_stride = 0;
};

struct BwdParams {
  Shape shape;
  DType dtype = DType::bf16;
  bool deterministic = false;  // dQ from its own pass over query tiles instead of atomics
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* o = nullptr;
  const float* lse = nullptr;
  const void* d_o = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  // Workspace of backward_workspace_bytes(shape, deterministic, mask.split) bytes, 256-aligned.
  void* workspace = nullptr;
  MaskView mask;     // key-major, backward_tile(head_dim)
  MaskView dq_mask;  // query-major, dq_tile(head_dim); used when deterministic
};

// The tile shapes the kernels are compiled for.
TileShape forward_tile(int head_dim);
TileShape forward_tile(int head_dim, int rows);  // rows: 128 (the above) or 64
TileShape backward_tile(int head_dim);
TileShape dq_tile(int head_dim);

bool supported_head_dim(int head_dim);
std::size_t backward_workspace_bytes(const Shape& s, bool deterministic, bool split_kv);

// Throws InputError naming `who` (e.g. "flash forward") unless the lengths are positive, heads_q
// is a positive multiple of heads_kv, head_dim_ok(head_dim) holds (else "head_dim N is not
// <head_dims>") and the softmax scale is positive. Shared by the flash-family dispatch points.
void validate_shape(const Shape& s, std::string_view who, bool (*head_dim_ok)(int),
                    std::string_view head_dims);

// p.q_row_stride resolved: heads_q x head_dim for 0. Throws InputError naming `who` when it is
// shorter than a row or not a multiple of 8 elements (rows start on 16 bytes: vector and TMA
// loads).
std::int64_t q_row_stride(const FwdParams& p, std::string_view who);

// Throws InputError naming `who` unless m was prepared with tile shape a or b (the kernel's two):
// a mask prepared for another kernel's tiles would run silently wrong.
void check_mask_tiles(const MaskView& m, TileShape a, TileShape b, std::string_view who);

// The backward's key-major prepared mask of a static mask in `tile` (a kernel's backward tile):
// one CTA walks a key tile for every query head of its group; with allow_split, key tiles heavier
// than a fair share of the current device's SMs are split (dK, dV then go through the workspace).
DeviceMask prepare_backward_mask(const SliceMask& m, const Shape& shape, TileShape tile,
                                 bool allow_split);

// The single dispatch point: (dtype, head_dim, has partial tiles, deterministic) become
// compile-time constants here. Throw InputError on unsupported shapes; kernel launch failures
// throw std::runtime_error.
void run_forward(const FwdParams& p, Stream stream);
void run_backward(const BwdParams& p, Stream stream);

// ---- convenience: everything one (mask, head_dim) needs ----------------------------------------

struct Plan {
  DeviceMask fwd;
  DeviceMask bwd;
  DeviceMask dq;
  std::size_t workspace_bytes = 0;  // backward workspace
};
// Heads decide the backward's work split (over the current device's SMs). Deterministic plans
// never split (dK, dV are then written without atomics).
// fwd_tile: the forward's tiles when another kernel runs them (flash_hopper: 128 x 128); by
// default the portable forward's.
Plan make_plan(const SliceMask& m, const Shape& shape, bool backward, bool deterministic,
               std::optional<TileShape> fwd_tile = {});
// Block-sparse: m has one pattern (shared by every KV head: the static grid) or heads_kv of them
// (per-KV-head tiles). The backward's k->q lists are transposed on the device. fwd_tile as above
// (by default the portable forward's, rows by the blocks' size).
Plan make_plan(const BlockSparseMask& m, const Shape& shape, bool backward, bool deterministic,
               std::optional<TileShape> fwd_tile = {});
// Query rows of the forward's tiles for a block-sparse mask: 64 when its blocks are at most 96
// long on average (a 128-row tile over two blocks of 64 visits the union of their kept lists:
// 1.5 x the kept area at keep 0.5), else 128. LONGATTN_FLASH_SPARSE_FWD_ROWS = 64 or 128
// overrides (measurements).
int sparse_forward_rows(const BlockSparseMask& m);

}  // namespace longattn::flash

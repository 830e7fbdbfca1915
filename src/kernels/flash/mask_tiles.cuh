#pragma once
// Device side of a prepared mask (MaskTiles, include/longattn/kernels/flash.hpp): a CTA's work
// item, walking its runs of chunks, and reading a partial chunk's bitmask in the accumulator
// layout.
#include <cstdint>

#include "longattn/kernels/flash.hpp"

namespace longattn::flash {

static_assert(sizeof(TileRun32) == 16 && sizeof(ItemRecord) == 32,
              "the kernels read these as int4");

// This CTA's work item, from its 32-byte record (two independent 16-byte loads).
struct Item {
  int outer_begin, outer_end;
  int run_begin, run_end;
  int pass_begin, pass_end;
  int first_begin, first_end, first_bits;
};
__device__ __forceinline__ Item load_item(const MaskView& m, int index) {
  const int4* rec = reinterpret_cast<const int4*>(m.items + index);
  const int4 a = __ldg(rec), b = __ldg(rec + 1);
  return {a.x, a.y, a.z, a.w, b.x & 0xffff, b.x >> 16, b.y, b.z, b.w};
}

// A work item's chunks as a flat sequence: position of the chunk's first inner line, its length
// (at most Chunk), bits (< 0 on full chunks). With kRepeat the item's runs are walked once per
// pass in [pass_begin, pass_end) and `pass` counts the walks.
template <int Chunk, bool kRepeat = false>
struct TileCursor {
  int run, run_end, run_begin;
  int pos, pos_end, bits;
  int pass, pass_end;

  __device__ __forceinline__ void init(const Item& item) {
    run = run_begin = item.run_begin;
    run_end = item.run_end;
    pass = item.pass_begin;
    pass_end = run < run_end ? item.pass_end : item.pass_begin;
    pos = item.first_begin;
    pos_end = item.first_end;
    bits = item.first_bits;
  }
  __device__ __forceinline__ bool done() const {
    if constexpr (kRepeat)
      return pass >= pass_end;
    else
      return run >= run_end;
  }
  __device__ __forceinline__ int length() const { return min(Chunk, pos_end - pos); }
  __device__ __forceinline__ void next(const MaskView& m) {
    pos += Chunk;
    if (bits >= 0) ++bits;
    if (pos < pos_end) return;
    if (++run == run_end) {
      if constexpr (kRepeat) {
        run = run_begin;
        ++pass;
      }
    }
    if (!done()) load(m);
  }

 private:
  __device__ __forceinline__ void load(const MaskView& m) {
    const int4 r = __ldg(reinterpret_cast<const int4*>(m.runs + run));
    pos = r.x;
    pos_end = r.y;
    bits = r.z;
  }
};

// A work item's chunks from its last to its first, each once per pass in [pass_begin, pass_end)
// (the passes innermost, from pass_begin + rotation % passes round); the interface of
// TileCursor<Chunk, true>. Key tiles walked so where their query spans share their ends
// (MaskTiles::descending: causal masks, documents) read the same query rows at the same time,
// which L2 then serves once; rotations differing between neighbours spread their dQ additions
// over the heads.
template <int Chunk>
struct DescendingCursor {
  int run, run_begin;
  int pos, run_start, run_stop, bits;  // the chunk's first line and bits; its run's bounds
  int pass, pass_begin, pass_end, pass_first;

  __device__ __forceinline__ void init(const Item& item, const MaskView& m, int rotation) {
    run_begin = item.run_begin;
    run = item.run_end - 1;
    pass_begin = item.pass_begin;
    pass_end = item.pass_end;
    if (pass_begin >= pass_end) run = run_begin - 1;
    pass = pass_first = pass_begin + rotation % max(pass_end - pass_begin, 1);
    if (!done()) load(m);
  }
  __device__ __forceinline__ bool done() const { return run < run_begin; }
  __device__ __forceinline__ int length() const { return min(Chunk, run_stop - pos); }
  __device__ __forceinline__ void next(const MaskView& m) {
    if (++pass == pass_end) pass = pass_begin;
    if (pass != pass_first) return;
    if (pos > run_start) {
      pos -= Chunk;
      if (bits >= 0) --bits;
      return;
    }
    if (--run >= run_begin) load(m);
  }

 private:
  __device__ __forceinline__ void load(const MaskView& m) {  // the run's last chunk
    const int4 r = __ldg(reinterpret_cast<const int4*>(m.runs + run));
    const int last = (r.y - r.x - 1) / Chunk;
    run_start = r.x;
    run_stop = r.y;
    pos = r.x + last * Chunk;
    bits = r.z >= 0 ? r.z + last : -1;
  }
};

// Bits of one row of a partial tile that a thread needs, pre-shifted by 2 * (lane % 4) so that
// the bit of accumulator column 8 * ni + 2 * (lane % 4) + e is bit 8 * (ni % 4) + e of word ni / 4
// (word index relative to the first column the thread's accumulator covers, which must be a
// multiple of 32).
template <int Words>
struct RowBits {
  uint32_t w[Words];

  __device__ __forceinline__ void load(const uint32_t* row, int lane) {
    const int shift = 2 * (lane & 3);
#pragma unroll
    for (int i = 0; i < Words; ++i) w[i] = __ldg(row + i) >> shift;
  }
  __device__ __forceinline__ bool allows(int ni, int e) const {
    return (w[ni >> 2] >> (((ni & 3) << 3) + e)) & 1u;
  }
};

// Pointer to row r of partial tile `bits` (a tile has Rows rows of WordsPerRow words).
template <int Rows, int WordsPerRow>
__device__ __forceinline__ const uint32_t* tile_row_bits(const MaskView& m, int bits, int row) {
  return m.bits + (std::int64_t(bits) * Rows + row) * WordsPerRow;
}

}  // namespace longattn::flash

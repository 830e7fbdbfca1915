"""Every peer's own mask format, built from the canonical mask (never from a pattern name), and
rasterised back to a dense boolean mask so that conformance.py can compare it bit for bit with the
canonical one. numpy only: the torch peers turn these plans into tensors.

Formats:
  Band        is_causal / window arguments: allowed iff -left <= j - i <= right (None: unbounded),
              recognised exactly from the per-row intervals.
  Varlen      cu_seqlens: diagonal squares tiling [0, S), all full or all causal.
  Dense       a boolean mask per mask head (small S only).
  FlexPlan    a FlexAttention BlockMask: a mask_mod over per-row intervals (static masks) or over
              the block table (block-sparse masks), and the tile structure (full and partial tiles)
              counted exactly from the intervals.
  Bsr         FlashInfer's BlockSparseAttentionWrapper: uniform R x C blocks, one pattern for all
              heads, an element mask on the kept blocks for causal masks.
  VariableBsr FlashInfer's VariableBlockSparseAttentionWrapper: per KV head, variable blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .masks import (DEFAULT_DENSE_LIMIT, BlockSparseMask, InputError, RowIntervals, StaticMask,
                    _check_dense)


class Unsupported(Exception):
    """The peer cannot express this mask (or shape) exactly; the message says why."""


# --------------------------------------------------------------------------------------------
# Band: full, causal, sliding windows.


@dataclass(frozen=True)
class Band:
    seqlen: int
    left: Optional[int]  # keys allowed up to `left` before the query; None: unbounded
    right: Optional[int]  # keys allowed up to `right` after the query; 0: causal

    @property
    def is_full(self) -> bool:
        return self.left is None and self.right is None

    @property
    def is_causal(self) -> bool:
        return self.left is None and self.right == 0

    def describe(self) -> str:
        if self.is_full:
            return "full (no mask)"
        if self.is_causal:
            return "is_causal"
        return f"window (left {self.left}, right {self.right})"

    def bounds(self, rows: np.ndarray):
        lo = np.zeros_like(rows) if self.left is None else np.maximum(0, rows - self.left)
        hi = (np.full_like(rows, self.seqlen) if self.right is None
              else np.minimum(self.seqlen, rows + self.right + 1))
        return lo, hi

    def dense(self) -> np.ndarray:
        _check_dense(self.seqlen, self.seqlen, 1)
        i = np.arange(self.seqlen)[:, None]
        j = np.arange(self.seqlen)[None, :]
        d = j - i
        ok = np.ones((self.seqlen, self.seqlen), dtype=bool)
        if self.left is not None:
            ok &= d >= -self.left
        if self.right is not None:
            ok &= d <= self.right
        return ok


def uniform_band(mask: StaticMask) -> Optional[Band]:
    """The band this mask is, checked against every row; None when it is not one."""
    if mask.seqlen_q != mask.seqlen_k:
        return None
    s = mask.seqlen_q
    iv = mask.intervals()
    if np.any(iv.counts() != 1):
        return None
    lo, hi = iv.lo, iv.hi
    right = None if hi[0] == s else int(hi[0] - 1)
    left = None if lo[-1] == 0 else int(s - 1 - lo[-1])
    band = Band(s, left, right)
    elo, ehi = band.bounds(np.arange(s, dtype=np.int64))
    if np.array_equal(lo, elo) and np.array_equal(hi, ehi):
        return band
    return None


# --------------------------------------------------------------------------------------------
# Varlen: cu_seqlens.


@dataclass(frozen=True)
class Varlen:
    offsets: np.ndarray  # int64: 0, s_1, ..., S
    causal: bool

    @property
    def seqlen(self) -> int:
        return int(self.offsets[-1])

    def describe(self) -> str:
        return f"cu_seqlens ({len(self.offsets) - 1} documents, {'causal' if self.causal else 'full'})"

    def max_seqlen(self) -> int:
        return int(np.diff(self.offsets).max())

    def dense(self) -> np.ndarray:
        s = self.seqlen
        _check_dense(s, s, 1)
        doc = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        ok = doc[:, None] == doc[None, :]
        if self.causal:
            ok &= np.tri(s, s, dtype=bool)
        return ok


def cu_seqlens(mask: StaticMask) -> Optional[Varlen]:
    """Documents recognised from the rows: every row one interval starting at its document's
    start, ending at the document's end (full) or at the row (causal). None otherwise."""
    if mask.seqlen_q != mask.seqlen_k:
        return None
    s = mask.seqlen_q
    iv = mask.intervals()
    if np.any(iv.counts() != 1):
        return None
    lo, hi = iv.lo, iv.hi
    rows = np.arange(s, dtype=np.int64)
    starts = np.flatnonzero(np.diff(lo) != 0) + 1
    if lo[0] != 0 or np.any(lo[starts] != starts):
        return None
    offsets = np.concatenate(([0], starts, [s])).astype(np.int64)
    doc_end = np.repeat(offsets[1:], np.diff(offsets))
    for causal in (False, True):
        if np.array_equal(hi, rows + 1 if causal else doc_end):
            return Varlen(offsets, causal)
    return None


# --------------------------------------------------------------------------------------------
# Dense boolean masks.


@dataclass
class Dense:
    masks: np.ndarray  # bool [mask heads, S, S]

    def describe(self) -> str:
        h, s, _ = self.masks.shape
        return f"dense boolean mask ({h} x {s} x {s})"

    def dense(self, head: int = 0) -> np.ndarray:
        return self.masks[head if self.masks.shape[0] > 1 else 0]


def dense_format(mask, limit: int) -> Dense:
    """From the per-row intervals of every mask head."""
    heads = mask.heads
    s = mask.seqlen
    if heads * s * s > limit:
        raise Unsupported(f"a dense mask of {heads} x {s} x {s} elements is over the limit of "
                          f"{limit} (--dense-limit)")
    return Dense(np.stack([mask.intervals(h).dense() for h in range(heads)]))


# --------------------------------------------------------------------------------------------
# Tiles: which (query tile, key tile) pairs are full, partial or empty.


@dataclass
class TileStructure:
    block_q: int
    block_k: int
    seqlen_q: int
    seqlen_k: int
    full: np.ndarray  # bool [heads, n_q_tiles, n_k_tiles]
    partial: np.ndarray  # bool [heads, n_q_tiles, n_k_tiles]

    def tile_sizes(self):
        rq = np.minimum(self.block_q, self.seqlen_q - np.arange(0, self.seqlen_q, self.block_q))
        rk = np.minimum(self.block_k, self.seqlen_k - np.arange(0, self.seqlen_k, self.block_k))
        return rq, rk

    def issued_area(self) -> int:
        """Pairs the kernel visits (every pair of every full or partial tile), summed over heads."""
        rq, rk = self.tile_sizes()
        cells = np.outer(rq, rk)
        return int(((self.full | self.partial) * cells[None]).sum())

    def kv_blocks(self):
        """FlexAttention's from_kv_blocks arrays, int32: (kv_num_blocks [1, H, nq],
        kv_indices [1, H, nq, nk], full_kv_num_blocks, full_kv_indices), indices ascending."""
        def pack(sel):
            num = sel.sum(-1).astype(np.int32)
            idx = np.argsort(~sel, axis=-1, kind="stable").astype(np.int32)
            return num[None], idx[None]

        kv_num, kv_idx = pack(self.partial)
        full_num, full_idx = pack(self.full)
        return kv_num, kv_idx, full_num, full_idx


def tile_structure(intervals: List[RowIntervals], block_q: int, block_k: int) -> TileStructure:
    """Counts every tile's allowed pairs exactly from the per-row intervals of each head."""
    sq, sk = intervals[0].seqlen_q, intervals[0].seqlen_k
    nq, nk = -(-sq // block_q), -(-sk // block_k)
    rq = np.minimum(block_q, sq - np.arange(0, sq, block_q))
    rk = np.minimum(block_k, sk - np.arange(0, sk, block_k))
    cells = np.outer(rq, rk)
    full = np.zeros((len(intervals), nq, nk), dtype=bool)
    partial = np.zeros_like(full)
    for h, iv in enumerate(intervals):
        diff = np.zeros((nq, sk + 1), dtype=np.int32)
        qt = iv.rows() // block_q
        np.add.at(diff, (qt, iv.lo), 1)
        np.add.at(diff, (qt, iv.hi), -1)
        per_column = np.cumsum(diff, axis=1, dtype=np.int64)[:, :sk]
        counts = np.add.reduceat(per_column, np.arange(0, sk, block_k), axis=1)
        full[h] = counts == cells
        partial[h] = (counts > 0) & (counts < cells)
    return TileStructure(block_q, block_k, sq, sk, full, partial)


# --------------------------------------------------------------------------------------------
# FlexAttention.


def interval_mask_mod(lo, hi, k: int) -> Callable:
    """allowed iff kv_idx is in one of the query row's k intervals; lo, hi: [S, k] arrays (numpy
    or torch: the same function is rasterised here and compiled by FlexAttention)."""
    def mask_mod(b, h, q_idx, kv_idx):
        ok = (kv_idx >= lo[q_idx, 0]) & (kv_idx < hi[q_idx, 0])
        for t in range(1, k):
            ok = ok | ((kv_idx >= lo[q_idx, t]) & (kv_idx < hi[q_idx, t]))
        return ok
    return mask_mod


def table_mask_mod(block_of, kept, group: int, causal: bool) -> Callable:
    """allowed iff kept[kv head of h, block(q), block(kv)] (and kv_idx <= q_idx when causal);
    kept: [mask heads, nb, nb]; with one mask head every query head uses it."""
    shared = kept.shape[0] == 1

    def mask_mod(b, h, q_idx, kv_idx):
        head = 0 if shared else h // group
        ok = kept[head, block_of[q_idx], block_of[kv_idx]]
        if causal:
            ok = ok & (kv_idx <= q_idx)
        return ok
    return mask_mod


@dataclass
class FlexPlan:
    kind: str  # "intervals" or "block_table"
    structure: TileStructure  # heads: 1 (shared) or the mask's heads
    group: int  # query heads per mask head
    # intervals: lo, hi [S, k]; block_table: block_of [S], kept [mask heads, nb, nb], causal
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)
    k: int = 0
    causal: bool = False

    def describe(self) -> str:
        s = self.structure
        what = (f"mask_mod over {self.k} interval(s) per row" if self.kind == "intervals"
                else "mask_mod over the kept-block table" + (" and j <= i" if self.causal else ""))
        return (f"BlockMask {s.block_q}x{s.block_k}: {int(s.full.sum())} full + "
                f"{int(s.partial.sum())} partial tiles, {what}")

    def mask_mod(self, arrays=None) -> Callable:
        a = self.arrays if arrays is None else arrays
        if self.kind == "intervals":
            return interval_mask_mod(a["lo"], a["hi"], self.k)
        return table_mask_mod(a["block_of"], a["kept"], self.group, self.causal)


def flex_plan(mask, heads_q: int, block: int = 128) -> FlexPlan:
    if isinstance(mask, StaticMask):
        iv = mask.intervals()
        # At least two intervals per row (the second often empty): every static pattern then has
        # the same mask_mod code, and FlexAttention compiles once per shape, not once per mask.
        k = max(2, iv.max_per_row())
        lo, hi = iv.padded(k)
        st = tile_structure([iv], block, block)
        return FlexPlan("intervals", st, heads_q, {"lo": lo, "hi": hi}, k=k)
    # Block-sparse: tiles as large as the blocks when the partition is uniform in multiples of
    # the default tile (the kernels' own tiles must divide the BlockMask's: on sm90 the backward's
    # are 128 wide), so that the BlockMask's blocks are the mask's blocks; other partitions use
    # the default tile and the mask_mod resolves the blocks inside it.
    bs = mask.uniform_block()
    tile = bs if bs is not None and bs % block == 0 else block
    st = tile_structure([mask.intervals(h) for h in range(mask.heads)], tile, tile)
    return FlexPlan("block_table", st, heads_q // mask.heads,
                    {"block_of": mask.block_of(), "kept": mask.table()}, causal=mask.causal)


# --------------------------------------------------------------------------------------------
# FlashInfer block-sparse.


@dataclass
class Bsr:
    seqlen: int
    block: int  # R = C
    indptr: np.ndarray  # int32 [nb + 1]
    indices: np.ndarray  # int32 [nnz]
    element_mask: Optional[np.ndarray]  # bool [nnz, R, C] (causal masks), else None

    def describe(self) -> str:
        return (f"BSR {self.block}x{self.block}, {len(self.indices)} blocks"
                + (", element mask (j <= i) on kept blocks" if self.element_mask is not None else ""))

    def dense(self, head: int = 0) -> np.ndarray:
        del head  # one pattern for every head
        s, b = self.seqlen, self.block
        out = np.zeros((s, s), dtype=bool)
        for r in range(len(self.indptr) - 1):
            for n in range(self.indptr[r], self.indptr[r + 1]):
                c = self.indices[n]
                cell = (np.ones((b, b), dtype=bool) if self.element_mask is None
                        else self.element_mask[n])
                out[r * b:(r + 1) * b, c * b:(c + 1) * b] = cell[:min(b, s - r * b), :min(b, s - c * b)]
        return out


@dataclass
class VariableBsr:
    block_mask_map: np.ndarray  # bool [Hkv, nb, nb]
    block_row_sz: np.ndarray  # int32 [Hkv, nb]
    block_col_sz: np.ndarray  # int32 [Hkv, nb]

    def describe(self) -> str:
        h, nb, _ = self.block_mask_map.shape
        return f"variable block map ({h} KV heads x {nb} x {nb} blocks)"

    def dense(self, head: int = 0) -> np.ndarray:
        rows = np.repeat(np.arange(self.block_row_sz.shape[1]), self.block_row_sz[head])
        cols = np.repeat(np.arange(self.block_col_sz.shape[1]), self.block_col_sz[head])
        return self.block_mask_map[head][np.ix_(rows, cols)]


def bsr(mask: BlockSparseMask) -> Bsr:
    bs = mask.uniform_block()
    s = mask.seqlen
    if bs is None or s % bs != 0:
        raise Unsupported("BlockSparseAttentionWrapper needs uniform blocks dividing S")
    if mask.heads != 1:
        raise Unsupported("BlockSparseAttentionWrapper takes one pattern for all heads")
    rows = mask.kept[0]
    indptr = np.zeros(len(rows) + 1, dtype=np.int32)
    indptr[1:] = np.cumsum([len(c) for c in rows])
    indices = (np.concatenate(rows) if len(rows) else np.zeros(0)).astype(np.int32)
    em = None
    if mask.causal:
        rblk = np.repeat(np.arange(len(rows)), np.diff(indptr))
        i = rblk[:, None, None] * bs + np.arange(bs)[None, :, None]
        j = indices[:, None, None].astype(np.int64) * bs + np.arange(bs)[None, None, :]
        em = j <= i
    return Bsr(s, bs, indptr, indices, em)


def variable_bsr(mask: BlockSparseMask, heads_kv: int) -> VariableBsr:
    if mask.causal:
        raise Unsupported("VariableBlockSparseAttentionWrapper's causal flag aligns each block "
                          "row on its own gathered keys, not j <= i, and it takes no element mask")
    if mask.heads not in (1, heads_kv):
        raise Unsupported(f"the mask has {mask.heads} heads, the case {heads_kv} KV heads")
    table = mask.table()
    if mask.heads == 1:
        table = np.repeat(table, heads_kv, axis=0)
    sizes = np.tile(mask.sizes().astype(np.int32), (heads_kv, 1))
    return VariableBsr(table, sizes, sizes.copy())


# --------------------------------------------------------------------------------------------
# The plan of each peer.

SDPA_FLAGS = ("torch.sdpa.flash", "torch.sdpa.cudnn")
SDPA_DENSE = ("torch.sdpa.efficient", "torch.sdpa.math")
FLASH_ATTN = ("flash_attn", "flash_attn_interface", "flash_attn.cute")
PEERS = SDPA_FLAGS + SDPA_DENSE + ("torch.flex",) + FLASH_ATTN + ("flashinfer",)


def format_family(peer: str) -> str:
    """Peers that take the same format for every mask (so one plan serves them all)."""
    for family in (SDPA_FLAGS, SDPA_DENSE, FLASH_ATTN):
        if peer in family:
            return family[0]
    return peer


@dataclass
class MaskPlan:
    """What a peer is given for a mask: one of the formats above, and how it reads in a record."""
    peer: str
    format: object
    description: str

    def dense(self, head: int = 0) -> np.ndarray:
        """The peer's mask rasterised back, for mask head `head` (conformance)."""
        f = self.format
        if isinstance(f, FlexPlan):
            return rasterise_flex(f, head)
        if isinstance(f, (Dense, Bsr, VariableBsr)):
            return f.dense(head)
        return f.dense()


def rasterise_flex(plan: FlexPlan, head: int = 0, mask_mod=None, structure=None) -> np.ndarray:
    """What FlexAttention computes: full tiles all allowed, partial tiles by mask_mod, the rest
    skipped. `head` is a mask head (query head head * group is evaluated)."""
    st = plan.structure if structure is None else structure
    mm = plan.mask_mod() if mask_mod is None else mask_mod
    sq, sk = st.seqlen_q, st.seqlen_k
    _check_dense(sq, sk, 1)
    out = np.zeros((sq, sk), dtype=bool)
    sh = head if st.full.shape[0] > 1 else 0
    qh = head * plan.group
    for qt, kt in zip(*np.nonzero(st.full[sh] | st.partial[sh])):
        q0, k0 = qt * st.block_q, kt * st.block_k
        q = np.arange(q0, min(sq, q0 + st.block_q))[:, None]
        k = np.arange(k0, min(sk, k0 + st.block_k))[None, :]
        if st.full[sh, qt, kt]:
            out[q, k] = True
        else:
            out[q, k] = np.broadcast_to(mm(0, qh, q, k), (q.shape[0], k.shape[1]))
    return out


def plan_mask(peer: str, mask, heads_q: int, heads_kv: int,
              dense_limit: int = DEFAULT_DENSE_LIMIT) -> MaskPlan:
    """The peer's exact format for this mask, or Unsupported naming why none is exact."""
    static = isinstance(mask, StaticMask)
    if mask.heads not in (1, heads_kv):
        raise Unsupported(f"the mask has {mask.heads} heads; a case with {heads_kv} KV heads needs "
                          f"1 or {heads_kv}")
    if peer in SDPA_FLAGS or peer in SDPA_DENSE:
        band = uniform_band(mask) if static else None
        if band is not None and (band.is_full or band.is_causal):
            return MaskPlan(peer, band, band.describe())
        if peer in SDPA_FLAGS:
            raise Unsupported(f"{peer} takes no mask, only is_causal: exact for full and causal "
                              "masks only, and this mask is neither")
        d = dense_format(mask, dense_limit)
        return MaskPlan(peer, d, d.describe())
    if peer == "torch.flex":
        f = flex_plan(mask, heads_q)
        return MaskPlan(peer, f, f.describe())
    if peer in FLASH_ATTN:
        if not static:
            raise Unsupported(f"{peer}'s dense API has no block-sparse mask")
        band = uniform_band(mask)
        if band is not None:
            return MaskPlan(peer, band, band.describe())
        v = cu_seqlens(mask)
        if v is not None:
            return MaskPlan(peer, v, v.describe())
        raise Unsupported(f"{peer} expresses full, causal, sliding-window (window_size) and "
                          "document (cu_seqlens) masks exactly; this mask is none of them")
    if peer == "flashinfer":
        if static:
            raise Unsupported("the bridge runs flashinfer on block-sparse masks only")
        try:
            b = bsr(mask)
            return MaskPlan(peer, b, b.describe())
        except Unsupported as why_bsr:
            try:
                v = variable_bsr(mask, heads_kv)
            except Unsupported as why_var:
                raise Unsupported(f"flashinfer: {why_bsr}; {why_var}") from None
            return MaskPlan(peer, v, v.describe())
    raise InputError(f"unknown peer '{peer}' (known: {', '.join(PEERS)})")

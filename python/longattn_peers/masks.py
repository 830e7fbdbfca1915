"""longattn's canonical masks in numpy (DESIGN.md section 4), read from the JSON that
include/longattn/mask_json.hpp writes, and the two views every peer format is derived from:
per-row key intervals and, at small S, the dense boolean mask.

Static masks are disjoint slices (q_range, k_range, type). Inside a slice, with row r = i - q.begin,
column c = j - k.begin, Lq = q.size, Lk = k.size:
    full        every (r, c)
    causal      c <= r + (Lk - Lq)      (bottom-right aligned)
    inv_causal  c >= r                  (top-left aligned)
    band        both
Block-sparse masks are a block partition of [0, S) and, per KV head, the kept key blocks of every
query block; `causal` additionally requires j <= i.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

SLICE_TYPES = ("full", "causal", "inv_causal", "band")
FULL, CAUSAL, INV_CAUSAL, BAND = range(4)

# The dense view is for small S only (tests, conformance, peers that take a boolean mask).
DEFAULT_DENSE_LIMIT = 1 << 31


class InputError(ValueError):
    """A malformed request or mask; the message names the field."""


# --------------------------------------------------------------------------------------------
# Per-row key intervals (CSR): sorted, disjoint, non-adjacent ranges [lo, hi) per query row.


@dataclass(frozen=True)
class RowIntervals:
    seqlen_k: int
    offsets: np.ndarray  # int64 [Sq + 1]
    lo: np.ndarray  # int64 [n]
    hi: np.ndarray  # int64 [n]

    @property
    def seqlen_q(self) -> int:
        return len(self.offsets) - 1

    def counts(self) -> np.ndarray:
        """Intervals per row."""
        return np.diff(self.offsets)

    def max_per_row(self) -> int:
        return int(self.counts().max(initial=0))

    def rows(self) -> np.ndarray:
        """The row of every interval."""
        return np.repeat(np.arange(self.seqlen_q, dtype=np.int64), self.counts())

    def area(self) -> int:
        return int((self.hi - self.lo).sum())

    def padded(self, k: Optional[int] = None):
        """(LO, HI) of shape [Sq, k]: each row's intervals, then empty ones [0, 0)."""
        k = max(1, self.max_per_row()) if k is None else k
        lo = np.zeros((self.seqlen_q, k), dtype=np.int64)
        hi = np.zeros((self.seqlen_q, k), dtype=np.int64)
        slot = np.arange(len(self.lo), dtype=np.int64) - np.repeat(self.offsets[:-1], self.counts())
        rows = self.rows()
        lo[rows, slot] = self.lo
        hi[rows, slot] = self.hi
        return lo, hi

    def dense(self) -> np.ndarray:
        """Rasterised [Sq, Sk] boolean mask (small S only)."""
        _check_dense(self.seqlen_q, self.seqlen_k, 1)
        out = np.zeros((self.seqlen_q, self.seqlen_k + 1), dtype=np.int8)
        rows = self.rows()
        np.add.at(out, (rows, self.lo), 1)
        np.add.at(out, (rows, self.hi), -1)
        # Disjoint intervals: the running sum is 0 or 1, so int8 holds it.
        return np.cumsum(out, axis=1, dtype=np.int8)[:, :-1].view(bool)


def _merge(seqlen_q: int, seqlen_k: int, rows, lo, hi) -> RowIntervals:
    """Sorts (row, lo, hi) entries, drops empty ones, merges adjacent ones; overlaps are errors."""
    keep = hi > lo
    rows, lo, hi = rows[keep], lo[keep], hi[keep]
    order = np.lexsort((lo, rows))
    rows, lo, hi = rows[order], lo[order], hi[order]
    if len(rows) > 1:
        same = rows[1:] == rows[:-1]
        overlap = same & (lo[1:] < hi[:-1])
        if overlap.any():
            r = int(rows[1:][overlap][0])
            raise InputError(f"mask: slices overlap in row {r}")
        start = np.ones(len(rows), dtype=bool)
        start[1:] = ~(same & (lo[1:] == hi[:-1]))
    else:
        start = np.ones(len(rows), dtype=bool)
    first = np.flatnonzero(start)
    last = np.append(first[1:], len(rows)) - 1
    rows, lo, hi = rows[first], lo[first], hi[last]
    offsets = np.zeros(seqlen_q + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=seqlen_q), out=offsets[1:])
    return RowIntervals(seqlen_k, offsets, lo.astype(np.int64), hi.astype(np.int64))


def _check_dense(rows: int, cols: int, heads: int, limit: int = DEFAULT_DENSE_LIMIT) -> None:
    if rows * cols * heads > limit:
        raise InputError(
            f"a dense mask of {heads} x {rows} x {cols} elements is over the limit of {limit}")


# --------------------------------------------------------------------------------------------
# Static masks.


@dataclass
class StaticMask:
    seqlen_q: int
    seqlen_k: int
    q: np.ndarray  # int64 [n, 2]
    k: np.ndarray  # int64 [n, 2]
    types: np.ndarray  # int8 [n], codes of SLICE_TYPES
    _intervals: Optional[RowIntervals] = field(default=None, repr=False)

    heads = 1
    kind = "static"

    @property
    def seqlen(self) -> int:
        return self.seqlen_q

    def intervals(self, head: int = 0) -> RowIntervals:
        del head  # one pattern for every head
        if self._intervals is None:
            self._intervals = self._make_intervals()
        return self._intervals

    def area(self, head: int = 0) -> int:
        return self.intervals(head).area()

    def total_area(self) -> int:
        return self.area()

    def _make_intervals(self) -> RowIntervals:
        qs, qe = self.q[:, 0], self.q[:, 1]
        ks, ke = self.k[:, 0], self.k[:, 1]
        lengths = qe - qs
        total = int(lengths.sum())
        which = np.repeat(np.arange(len(qs)), lengths)
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = qs[which] + (np.arange(total, dtype=np.int64) - first)
        t = self.types[which]
        lo = ks[which].copy()
        hi = ke[which].copy()
        lower = (t == INV_CAUSAL) | (t == BAND)
        upper = (t == CAUSAL) | (t == BAND)
        lo[lower] = np.maximum(lo[lower], rows[lower] + (ks - qs)[which][lower])
        hi[upper] = np.minimum(hi[upper], rows[upper] + (ke - qe)[which][upper] + 1)
        return _merge(self.seqlen_q, self.seqlen_k, rows, lo, hi)

    def dense(self, head: int = 0, limit: int = DEFAULT_DENSE_LIMIT) -> np.ndarray:
        """Rasterised straight from the slices (independently of intervals())."""
        del head
        _check_dense(self.seqlen_q, self.seqlen_k, 1, limit)
        out = np.zeros((self.seqlen_q, self.seqlen_k), dtype=bool)
        for (q0, q1), (k0, k1), t in zip(self.q, self.k, self.types):
            lq, lk = int(q1 - q0), int(k1 - k0)
            cell = np.ones((lq, lk), dtype=bool)
            if t in (CAUSAL, BAND):
                cell &= np.tri(lq, lk, k=lk - lq, dtype=bool)
            if t in (INV_CAUSAL, BAND):
                cell &= ~np.tri(lq, lk, k=-1, dtype=bool)
            region = out[q0:q1, k0:k1]
            if (region & cell).any():
                raise InputError(f"mask: slice q=[{q0}, {q1}) k=[{k0}, {k1}) overlaps another")
            region |= cell
        return out


# --------------------------------------------------------------------------------------------
# Block-sparse masks.


@dataclass
class BlockSparseMask:
    starts: np.ndarray  # int64 [nb + 1], 0 ... S
    causal: bool
    kept: List[List[np.ndarray]]  # [head][query block] -> ascending int64 key blocks

    kind = "block_sparse"

    @property
    def seqlen(self) -> int:
        return int(self.starts[-1])

    seqlen_q = seqlen
    seqlen_k = seqlen

    @property
    def heads(self) -> int:
        return len(self.kept)

    @property
    def num_blocks(self) -> int:
        return len(self.starts) - 1

    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def uniform_block(self) -> Optional[int]:
        """The block size when every block but the last has it (the last may be shorter)."""
        s = self.sizes()
        if len(s) == 1 or (np.all(s[:-1] == s[0]) and s[-1] <= s[0]):
            return int(s[0])
        return None

    def block_of(self) -> np.ndarray:
        """int64 [S]: the block of every position."""
        return np.repeat(np.arange(self.num_blocks, dtype=np.int64), self.sizes())

    def table(self) -> np.ndarray:
        """bool [heads, nb, nb]: kept[h, query block, key block]."""
        nb = self.num_blocks
        t = np.zeros((self.heads, nb, nb), dtype=bool)
        for h, rows in enumerate(self.kept):
            for b, cols in enumerate(rows):
                t[h, b, cols] = True
        return t

    def kept_blocks(self, head: int) -> int:
        return int(sum(len(c) for c in self.kept[head]))

    def intervals(self, head: int = 0) -> RowIntervals:
        starts = self.starts
        rows_all, lo_all, hi_all = [], [], []
        for b, cols in enumerate(self.kept[head]):
            if len(cols) == 0:
                continue
            cols = np.asarray(cols, dtype=np.int64)
            # Runs of consecutive key blocks become one interval.
            brk = np.flatnonzero(np.diff(cols) != 1)
            first = np.concatenate(([0], brk + 1))
            last = np.concatenate((brk, [len(cols) - 1]))
            lo = starts[cols[first]]
            hi = starts[cols[last] + 1]
            rows = np.arange(starts[b], starts[b + 1], dtype=np.int64)
            r = np.repeat(rows, len(lo))
            l = np.tile(lo, len(rows))
            h = np.tile(hi, len(rows))
            if self.causal:
                h = np.minimum(h, r + 1)
            rows_all.append(r)
            lo_all.append(l)
            hi_all.append(h)
        if not rows_all:
            empty = np.zeros(0, dtype=np.int64)
            return _merge(self.seqlen, self.seqlen, empty, empty, empty)
        return _merge(self.seqlen, self.seqlen, np.concatenate(rows_all), np.concatenate(lo_all),
                      np.concatenate(hi_all))

    def area(self, head: int = 0) -> int:
        return self.intervals(head).area()

    def total_area(self) -> int:
        return sum(self.area(h) for h in range(self.heads))

    def dense(self, head: int = 0, limit: int = DEFAULT_DENSE_LIMIT) -> np.ndarray:
        """Rasterised straight from the block table (independently of intervals())."""
        _check_dense(self.seqlen, self.seqlen, 1, limit)
        blk = self.block_of()
        out = self.table()[head][np.ix_(blk, blk)]
        if self.causal:
            out &= np.tri(self.seqlen, self.seqlen, dtype=bool)
        return out


Mask = "StaticMask | BlockSparseMask"


# --------------------------------------------------------------------------------------------
# JSON (include/longattn/mask_json.hpp).


def _int(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"mask JSON: '{where}' must be an integer, got {v!r}")
    return v


def _ranges(v, where: str) -> np.ndarray:
    if not isinstance(v, list):
        raise InputError(f"mask JSON: '{where}' must be an array")
    out = np.zeros((len(v), 2), dtype=np.int64)
    for i, r in enumerate(v):
        if not isinstance(r, list) or len(r) != 2:
            raise InputError(f"mask JSON: '{where}[{i}]' must be a range [begin, end]")
        out[i] = (_int(r[0], f"{where}[{i}][0]"), _int(r[1], f"{where}[{i}][1]"))
    return out


def _type_code(v, where: str) -> int:
    if isinstance(v, str) and v in SLICE_TYPES:
        return SLICE_TYPES.index(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 4:
        return v
    raise InputError(f"mask JSON: '{where}' is not a slice type (0-3 or {', '.join(SLICE_TYPES)})")


def _static(j: dict) -> StaticMask:
    def seqlen(key):
        if key in j:
            return _int(j[key], key)
        if "seqlen" in j:
            return _int(j["seqlen"], "seqlen")
        raise InputError(f"mask JSON: '{key}' is missing (or give 'seqlen' for both)")

    sq, sk = seqlen("seqlen_q"), seqlen("seqlen_k")
    if "slices" in j:
        sl = j["slices"]
        if not isinstance(sl, list):
            raise InputError("mask JSON: 'slices' must be an array")
        for i, s in enumerate(sl):
            if not isinstance(s, dict) or not {"q", "k", "type"} <= s.keys():
                raise InputError(f"mask JSON: 'slices[{i}]' must be an object with q, k and type")
        q = _ranges([s["q"] for s in sl], "slices[].q")
        k = _ranges([s["k"] for s in sl], "slices[].k")
        t = [_type_code(s["type"], f"slices[{i}].type") for i, s in enumerate(sl)]
    else:
        for key in ("q_ranges", "k_ranges", "attn_type_map"):
            if key not in j:
                raise InputError(f"mask JSON: '{key}' is missing")
        q = _ranges(j["q_ranges"], "q_ranges")
        k = _ranges(j["k_ranges"], "k_ranges")
        tm = j["attn_type_map"]
        if not isinstance(tm, list) or len(tm) != len(q) or len(k) != len(q):
            raise InputError("mask JSON: q_ranges, k_ranges and attn_type_map differ in length")
        t = [_type_code(v, f"attn_type_map[{i}]") for i, v in enumerate(tm)]
    if sq <= 0 or sk <= 0:
        raise InputError(f"mask JSON: seqlens must be positive, got {sq} x {sk}")
    for name, r, n in (("q", q, sq), ("k", k, sk)):
        bad = (r[:, 0] < 0) | (r[:, 1] > n) | (r[:, 1] <= r[:, 0])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"mask JSON: slice {i} has {name} range {r[i].tolist()} outside "
                             f"[0, {n}) or empty")
    return StaticMask(sq, sk, q, k, np.asarray(t, dtype=np.int8))


def _block_sparse(j: dict) -> BlockSparseMask:
    for key in ("seqlen", "block_starts", "causal", "kept"):
        if key not in j:
            raise InputError(f"mask JSON: '{key}' is missing")
    starts = np.asarray([_int(v, "block_starts[]") for v in j["block_starts"]], dtype=np.int64)
    s = _int(j["seqlen"], "seqlen")
    if len(starts) < 2 or starts[0] != 0 or starts[-1] != s or np.any(np.diff(starts) <= 0):
        raise InputError("mask JSON: 'block_starts' must rise strictly from 0 to seqlen")
    if not isinstance(j["causal"], bool):
        raise InputError("mask JSON: 'causal' must be true or false")
    nb = len(starts) - 1
    heads = j["kept"]
    if not isinstance(heads, list) or not heads:
        raise InputError("mask JSON: 'kept' must list at least one head")
    kept = []
    for h, rows in enumerate(heads):
        if not isinstance(rows, list) or len(rows) != nb:
            raise InputError(f"mask JSON: 'kept[{h}]' must list {nb} query blocks")
        per = []
        for b, cols in enumerate(rows):
            c = np.asarray([_int(v, f"kept[{h}][{b}][]") for v in cols], dtype=np.int64)
            if len(c) and (c.min() < 0 or c.max() >= nb or np.any(np.diff(c) <= 0)):
                raise InputError(f"mask JSON: 'kept[{h}][{b}]' must be ascending blocks in "
                                 f"[0, {nb})")
            per.append(c)
        kept.append(per)
    return BlockSparseMask(starts, j["causal"], kept)


def mask_from_json(j) -> "StaticMask | BlockSparseMask":
    if not isinstance(j, dict):
        raise InputError("mask JSON must be an object")
    if "q_ranges" in j or "slices" in j:
        return _static(j)
    if "block_starts" in j or "kept" in j:
        return _block_sparse(j)
    raise InputError("mask JSON has none of 'q_ranges', 'slices' or 'block_starts'")


def static_from_slices(seqlen: int, slices: Sequence[tuple]) -> StaticMask:
    """For tests and tools: [((qs, qe), (ks, ke), type name), ...]."""
    return _static({"seqlen": seqlen, "slices": [
        {"q": [int(v) for v in q], "k": [int(v) for v in k], "type": t} for q, k, t in slices]})

"""Every peer's mask format against the canonical masks the C++ CLI generates: each format built
by formats.plan_mask is either refused (unsupported, with a reason) or rasterises back to exactly
the canonical mask, and the detectors (band, cu_seqlens) agree with brute force on the dense mask."""
import numpy as np
import pytest

from conftest import MASK_IDS, MASKS
from longattn_peers import formats
from longattn_peers.formats import (PEERS, Band, Bsr, Dense, FlexPlan, Unsupported, Varlen,
                                    VariableBsr, bsr, cu_seqlens, flex_plan, plan_mask,
                                    rasterise_flex, tile_structure, uniform_band, variable_bsr)
from longattn_peers.masks import InputError, mask_from_json, static_from_slices


def brute_band(d):
    """(left, right) when the dense mask is one diagonal band, by brute force; else None."""
    s = d.shape[0]
    i, j = np.nonzero(d)
    if len(i) == 0:
        return None
    diff = j - i
    lo, hi = int(diff.min()), int(diff.max())
    ii, jj = np.indices(d.shape)
    if not np.array_equal(d, (jj - ii >= lo) & (jj - ii <= hi)):
        return None
    return (None if -lo >= s - 1 else -lo), (None if hi >= s - 1 else hi)


def brute_docs(d):
    """(offsets, causal) when the dense mask is diagonal document squares, by brute force."""
    s = d.shape[0]
    starts = [0] + [i for i in range(1, s) if not d[i, i - 1] and not d[i - 1, i]]
    off = np.array(starts + [s])
    doc = np.repeat(np.arange(len(starts)), np.diff(off))
    same = doc[:, None] == doc[None, :]
    for causal in (False, True):
        want = same & np.tri(s, s, dtype=bool) if causal else same
        if np.array_equal(d, want):
            return off, causal
    return None


@pytest.mark.parametrize("pattern,seqlen,flags", MASKS, ids=MASK_IDS)
@pytest.mark.parametrize("group", [1, 2])
def test_every_peer_format_is_exact_or_refused(export, pattern, seqlen, flags, group):
    m = mask_from_json(export(pattern, seqlen, *flags))
    heads_kv = m.heads if m.heads > 1 else 2
    truth = [m.dense(h) for h in range(m.heads)]
    for peer in PEERS:
        try:
            plan = plan_mask(peer, m, heads_kv * group, heads_kv)
        except Unsupported as e:
            assert str(e), peer
            continue
        for h in range(m.heads):
            assert np.array_equal(plan.dense(h), truth[h]), (peer, h, plan.description)


@pytest.mark.parametrize("pattern,seqlen,flags", MASKS, ids=MASK_IDS)
def test_detectors_agree_with_brute_force(export, pattern, seqlen, flags):
    m = mask_from_json(export(pattern, seqlen, *flags))
    if m.kind != "static":
        return
    d = m.dense()
    band = uniform_band(m)
    expect = brute_band(d)
    assert (band is None) == (expect is None)
    if band is not None:
        assert (band.left, band.right) == expect
    docs = cu_seqlens(m)
    expect_docs = brute_docs(d)
    assert (docs is None) == (expect_docs is None)
    if docs is not None:
        assert np.array_equal(docs.offsets, expect_docs[0]) and docs.causal == expect_docs[1]
    # The peers that take only flags take exactly the full and causal masks.
    full, causal = d.all(), np.array_equal(d, np.tri(seqlen, seqlen, dtype=bool))
    for peer in formats.SDPA_FLAGS:
        try:
            plan_mask(peer, m, 2, 2)
            assert full or causal
        except Unsupported:
            assert not (full or causal)
    # FlashAttention takes bands and document masks, nothing else.
    for peer in formats.FLASH_ATTN:
        try:
            plan = plan_mask(peer, m, 2, 2)
            assert isinstance(plan.format, (Band, Varlen))
        except Unsupported:
            assert expect is None and expect_docs is None


def test_what_each_family_expresses(export):
    """Pattern by pattern, with explicit documents and small windows (so nothing degenerates)."""
    docs = ("--doc-lens", "150,1,333,200,316")
    expressible = {
        "full": (), "causal": (), "full_document": docs, "causal_document": docs,
        "sliding_window": ("--window", "37"), "sliding_window_causal": ("--window", "37")}
    others = {"shared_question": docs, "causal_blockwise": docs, "prefix_lm_document": docs,
              "global_sliding_window": ("--window", "37", "--global", "11"),
              "block_causal_document": ("--block", "50"), "prefix_lm_causal": ("--prefix", "300")}
    for pattern, flags in list(expressible.items()) + list(others.items()):
        m = mask_from_json(export(pattern, 1000, *flags))
        for peer in formats.FLASH_ATTN:
            ok = True
            try:
                plan_mask(peer, m, 4, 2)
            except Unsupported:
                ok = False
            assert ok == (pattern in expressible), (peer, pattern)
        # Dense and FlexAttention formats exist for every mask.
        assert isinstance(plan_mask("torch.sdpa.math", m, 4, 2).format, (Band, Dense))
        assert isinstance(plan_mask("torch.flex", m, 4, 2).format, FlexPlan)
        with pytest.raises(Unsupported, match="block-sparse masks only"):
            plan_mask("flashinfer", m, 4, 2)


def band_mask(s, left, right):
    rows = []
    for i in range(s):
        lo = 0 if left is None else max(0, i - left)
        hi = s if right is None else min(s, i + right + 1)
        rows.append(((i, i + 1), (lo, hi), "full"))
    return static_from_slices(s, rows)


@pytest.mark.parametrize("left,right", [(None, None), (None, 0), (5, 5), (7, 0), (0, None),
                                        (3, 11), (0, 0), (None, 4)])
def test_uniform_band_from_row_slices(left, right):
    m = band_mask(41, left, right)
    b = uniform_band(m)
    assert b is not None and (b.left, b.right) == (left, right)
    assert np.array_equal(b.dense(), m.dense())
    # One row off: no longer a band.
    rows = [((i, i + 1), (0, 41), "full") for i in range(41)]
    rows[20] = ((20, 21), (0, 40), "full")
    assert uniform_band(static_from_slices(41, rows)) is None


@pytest.mark.parametrize("causal", [False, True])
def test_cu_seqlens_detection(causal):
    lens = [5, 1, 17, 3, 14]
    off = np.concatenate(([0], np.cumsum(lens)))
    t = "causal" if causal else "full"
    m = static_from_slices(40, [((a, b), (a, b), t) for a, b in zip(off[:-1], off[1:])])
    v = cu_seqlens(m)
    assert v is not None and v.causal == causal and np.array_equal(v.offsets, off)
    assert np.array_equal(v.dense(), m.dense())
    # A document that sees one key of the previous one is not a document mask.
    sl = [((a, b), (a, b), t) for a, b in zip(off[:-1], off[1:])]
    sl[2] = ((6, 23), (5, 23), t if not causal else "full")
    assert cu_seqlens(static_from_slices(40, sl)) is None


@pytest.mark.parametrize("pattern,seqlen,flags", MASKS, ids=MASK_IDS)
@pytest.mark.parametrize("tile", [(128, 128), (64, 100)])
def test_tile_structure_counts_every_tile_exactly(export, pattern, seqlen, flags, tile):
    m = mask_from_json(export(pattern, seqlen, *flags))
    bq, bk = tile
    st = tile_structure([m.intervals(h) for h in range(m.heads)], bq, bk)
    total = 0
    for h in range(m.heads):
        d = m.dense(h)
        for qt in range(st.full.shape[1]):
            for kt in range(st.full.shape[2]):
                cell = d[qt * bq:(qt + 1) * bq, kt * bk:(kt + 1) * bk]
                assert st.full[h, qt, kt] == cell.all()
                assert st.partial[h, qt, kt] == (cell.any() and not cell.all())
                total += cell.size if cell.any() else 0
    assert st.issued_area() == total
    kv_num, kv_idx, full_num, full_idx = st.kv_blocks()
    for h in range(m.heads):
        for qt in range(st.full.shape[1]):
            got = kv_idx[0, h, qt, :kv_num[0, h, qt]]
            assert np.array_equal(got, np.flatnonzero(st.partial[h, qt]))
            assert np.array_equal(full_idx[0, h, qt, :full_num[0, h, qt]],
                                  np.flatnonzero(st.full[h, qt]))


@pytest.mark.parametrize("pattern,seqlen,flags", MASKS, ids=MASK_IDS)
def test_flex_mask_mod_alone_is_the_mask(export, pattern, seqlen, flags):
    """The mask_mod evaluated on every pair (not only on partial tiles) is the mask itself."""
    m = mask_from_json(export(pattern, seqlen, *flags))
    plan = flex_plan(m, heads_q=2 * m.heads)
    mm = plan.mask_mod()
    q = np.arange(seqlen)[:, None]
    k = np.arange(seqlen)[None, :]
    for h in range(m.heads):
        got = np.broadcast_to(mm(0, h * plan.group, q, k), (seqlen, seqlen))
        assert np.array_equal(got, m.dense(h))
        assert np.array_equal(rasterise_flex(plan, h), m.dense(h))


def test_flex_tiles_follow_uniform_sparse_blocks(export):
    m = mask_from_json(export("block_sparse_uniform", 1000, "--sparse-block", "256"))
    p = flex_plan(m, 4)
    assert (p.structure.block_q, p.structure.block_k) == (256, 256)
    # Non-causal kept blocks are whole tiles: every visited tile is full.
    assert not p.structure.partial[:, :-1, :-1].any()
    # Blocks of 64 are finer than the kernels' tiles: 128-wide tiles, blocks by the mask_mod.
    m64 = mask_from_json(export("block_sparse_uniform", 1000, "--sparse-block", "64"))
    assert flex_plan(m64, 4).structure.block_q == 128
    # Every static mask has the same mask_mod code (two intervals per row at least).
    assert flex_plan(mask_from_json(export("causal", 777)), 2).k == 2
    v = mask_from_json(export("block_sparse_variable", 1000, "--min-block", "16", "--avg-block", "40"))
    assert flex_plan(v, 4).structure.block_q == 128


def test_flashinfer_formats(export):
    causal = mask_from_json(export("block_sparse_uniform", 960, "--sparse-block", "64", "--sparse-causal"))
    b = bsr(causal)
    assert b.element_mask is not None and b.element_mask.shape == (len(b.indices), 64, 64)
    assert np.array_equal(b.dense(), causal.dense())
    assert np.array_equal(np.diff(b.indptr), [len(c) for c in causal.kept[0]])
    non_dividing = mask_from_json(export("block_sparse_uniform", 1000, "--sparse-block", "64"))
    with pytest.raises(Unsupported, match="dividing S"):
        bsr(non_dividing)
    v = variable_bsr(non_dividing, heads_kv=2)
    assert v.block_mask_map.shape == (2, 16, 16)
    for h in range(2):  # one shared pattern repeated for each KV head
        assert np.array_equal(v.dense(h), non_dividing.dense(0))
    per_head = mask_from_json(export("block_sparse_variable", 1000, "--min-block", "16",
                                     "--avg-block", "40", "--sparse-heads", "3"))
    v3 = variable_bsr(per_head, heads_kv=3)
    for h in range(3):
        assert np.array_equal(v3.dense(h), per_head.dense(h))
    with pytest.raises(Unsupported, match="3 heads"):
        variable_bsr(per_head, heads_kv=2)
    with pytest.raises(Unsupported, match="causal"):
        variable_bsr(mask_from_json(export("block_sparse_variable", 777, "--min-block", "16",
                                           "--avg-block", "48", "--sparse-causal")), 1)
    assert isinstance(plan_mask("flashinfer", causal, 8, 1).format, Bsr)
    assert isinstance(plan_mask("flashinfer", per_head, 6, 3).format, VariableBsr)


def test_plan_mask_refusals(export):
    m = mask_from_json(export("global_sliding_window", 1000, "--window", "37", "--global", "11"))
    with pytest.raises(Unsupported, match="over the limit"):
        plan_mask("torch.sdpa.efficient", m, 2, 2, dense_limit=1000 * 999)
    assert isinstance(plan_mask("torch.sdpa.efficient", m, 2, 2, dense_limit=1000 * 1000).format, Dense)
    per_head = mask_from_json(export("block_sparse_uniform", 1000, "--sparse-block", "64",
                                     "--sparse-heads", "2"))
    with pytest.raises(Unsupported, match="KV heads"):
        plan_mask("torch.flex", per_head, 8, 4)
    with pytest.raises(InputError, match="unknown peer"):
        plan_mask("torch.sdpa.nonsense", m, 2, 2)

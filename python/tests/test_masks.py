"""The canonical masks in numpy against the C++ side: the areas `longattn masks show` computes,
and the two rasterisations (from slices/blocks, and from per-row intervals) against each other."""
import numpy as np
import pytest

from conftest import MASK_IDS, MASKS
from longattn_peers.masks import (BlockSparseMask, InputError, StaticMask, mask_from_json,
                                  static_from_slices)


@pytest.mark.parametrize("pattern,seqlen,flags", MASKS, ids=MASK_IDS)
def test_area_and_views_match_the_cli(export, show, pattern, seqlen, flags):
    m = mask_from_json(export(pattern, seqlen, *flags))
    stats = show(pattern, seqlen, *flags)
    assert m.seqlen == seqlen
    assert m.total_area() == stats["area"]
    assert m.heads == stats["mask_heads"]
    for h in range(m.heads):
        dense = m.dense(h)
        assert int(dense.sum()) == m.area(h)
        # Rasterised from the slices (or block table) and from the row intervals: bit for bit.
        assert np.array_equal(dense, m.intervals(h).dense())


@pytest.mark.parametrize("pattern,seqlen,flags", MASKS, ids=MASK_IDS)
def test_intervals_are_sorted_disjoint_and_non_adjacent(export, pattern, seqlen, flags):
    m = mask_from_json(export(pattern, seqlen, *flags))
    for h in range(m.heads):
        iv = m.intervals(h)
        assert iv.offsets[0] == 0 and iv.offsets[-1] == len(iv.lo)
        assert np.all(iv.hi > iv.lo)
        assert np.all((iv.lo >= 0) & (iv.hi <= seqlen))
        rows = iv.rows()
        same = rows[1:] == rows[:-1]
        assert np.all(iv.lo[1:][same] > iv.hi[:-1][same])  # a gap between intervals of a row


def test_both_static_json_forms_are_the_same_mask():
    magi = {"seqlen_q": 10, "seqlen_k": 10, "q_ranges": [[0, 4], [4, 10]],
            "k_ranges": [[0, 4], [0, 10]], "attn_type_map": [1, 3]}
    named = {"seqlen": 10, "slices": [{"q": [0, 4], "k": [0, 4], "type": "causal"},
                                       {"q": [4, 10], "k": [0, 10], "type": "band"}]}
    a, b = mask_from_json(magi), mask_from_json(named)
    assert np.array_equal(a.dense(), b.dense())


def test_slice_types_follow_the_alignment_rules():
    # 3 query rows x 5 keys: causal is bottom-right aligned, inv_causal top-left aligned.
    def one(t):
        return static_from_slices(5, [((0, 3), (0, 5), t)]).dense()[:3]
    assert one("full").all()
    assert np.array_equal(one("causal"), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
                                                   [1, 1, 1, 1, 1]], dtype=bool))
    assert np.array_equal(one("inv_causal"), np.array([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1],
                                                       [0, 0, 1, 1, 1]], dtype=bool))
    assert np.array_equal(one("band"), one("causal") & one("inv_causal"))


def test_adjacent_slices_merge_into_one_interval():
    m = static_from_slices(8, [((0, 8), (0, 3), "full"), ((0, 8), (3, 8), "full")])
    iv = m.intervals()
    assert iv.max_per_row() == 1 and iv.area() == 64


@pytest.mark.parametrize("bad,words", [
    ({"seqlen": 4, "slices": [{"q": [0, 4], "k": [0, 4]}]}, "slices[0]"),
    ({"seqlen": 4, "slices": [{"q": [0, 5], "k": [0, 4], "type": "full"}]}, "outside"),
    ({"seqlen": 4, "slices": [{"q": [0, 4], "k": [0, 4], "type": "diagonal"}]}, "slice type"),
    ({"q_ranges": [[0, 4]], "k_ranges": [[0, 4]], "attn_type_map": [0]}, "seqlen_q"),
    ({"seqlen": 8, "block_starts": [0, 4, 8], "causal": False, "kept": [[[1, 0], [0]]]}, "ascending"),
    ({"seqlen": 8, "block_starts": [0, 4, 9], "causal": False, "kept": [[[0], [1]]]}, "block_starts"),
    ({"seqlen": 8, "block_starts": [0, 4, 8], "causal": 1, "kept": [[[0], [1]]]}, "causal"),
    ([1, 2], "object"),
])
def test_malformed_masks_name_the_problem(bad, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        m = mask_from_json(bad)
        m.dense()


def test_overlapping_slices_are_rejected():
    m = static_from_slices(6, [((0, 6), (0, 4), "full"), ((2, 4), (3, 6), "full")])
    with pytest.raises(InputError, match="overlap"):
        m.intervals()
    with pytest.raises(InputError, match="overlap"):
        m.dense()


def test_block_sparse_partition_and_table(export):
    m = mask_from_json(export("block_sparse_uniform", 1000, "--sparse-block", "64"))
    assert isinstance(m, BlockSparseMask)
    assert m.uniform_block() == 64 and m.sizes()[-1] == 1000 - 15 * 64
    t = m.table()
    assert t.shape == (1, 16, 16)
    assert t.sum() == m.kept_blocks(0)
    v = mask_from_json(export("block_sparse_variable", 1000, "--min-block", "16", "--avg-block", "40"))
    assert v.uniform_block() is None and v.sizes().min() >= 16


def test_dense_view_refuses_huge_masks():
    m = StaticMask(1 << 17, 1 << 17, np.array([[0, 1 << 17]]), np.array([[0, 1 << 17]]),
                   np.array([1], dtype=np.int8))
    assert m.area() == (1 << 17) * ((1 << 17) + 1) // 2
    with pytest.raises(InputError, match="over the limit"):
        m.dense()

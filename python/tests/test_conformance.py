"""The conformance check itself: it must see a format that differs from the canonical mask."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from longattn_peers import conformance, formats
from longattn_peers.formats import Band
from longattn_peers.masks import mask_from_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_row_is_exact_or_unsupported(export):
    m = mask_from_json(export("prefix_lm_document", 1000, "--doc-lens", "150,1,333,200,316"))
    rows = conformance.check_mask(m, 4, 2, label="pld")
    assert [r["peer"] for r in rows] == list(formats.PEERS)
    assert {r["status"] for r in rows} == {"exact", "unsupported"}
    assert all(r["differing_pairs"] == 0 for r in rows if r["status"] == "exact")
    assert all(r["reason"] for r in rows if r["status"] == "unsupported")


def test_a_window_off_by_one_is_a_mismatch(export, monkeypatch):
    """The LongCA-bench failure mode: a kernel's window argument one key short of the mask."""
    m = mask_from_json(export("sliding_window_causal", 777, "--window", "100"))
    good = formats.uniform_band(m)
    monkeypatch.setattr(formats, "uniform_band", lambda mask: Band(good.seqlen, good.left - 1, good.right))
    rows = {r["peer"]: r for r in conformance.check_mask(m, 2, 2, label="swc")}
    assert rows["flash_attn"]["status"] == "mismatch"
    assert rows["flash_attn"]["differing_pairs"] == 777 - 100  # one key per row that has it
    assert rows["torch.flex"]["status"] == "exact"  # its format comes from the intervals
    assert "MISMATCH:677" in conformance.format_table(list(rows.values()))


def test_a_wrong_tile_structure_is_a_mismatch(export, monkeypatch):
    m = mask_from_json(export("causal_document", 1000, "--doc-lens", "150,1,333,200,316"))
    real = formats.tile_structure

    def drop_a_tile(intervals, bq, bk):
        st = real(intervals, bq, bk)
        qt, kt = np.argwhere(st.partial[0])[-1]
        st.partial[0, qt, kt] = False  # a kernel that skips one tile
        return st
    monkeypatch.setattr(formats, "tile_structure", drop_a_tile)
    row = conformance.check_mask(m, 2, 2, peers=["torch.flex"], label="cd")[0]
    assert row["status"] == "mismatch" and row["differing_pairs"] > 0


def test_cli_exit_status_and_json(export, tmp_path):
    p = tmp_path / "gsw.json"
    p.write_text(json.dumps(export("global_sliding_window", 300, "--window", "17", "--global", "5")))
    r = subprocess.run([sys.executable, "-m", "longattn_peers", "conformance", str(p), "--json",
                        "--no-torch", "--heads-q", "4", "--heads-kv", "2"],
                       capture_output=True, text=True, cwd=os.path.join(ROOT))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == len(formats.PEERS) and rows[0]["mask"] == "gsw"
    assert {row["peer"] for row in rows if row["status"] == "exact"} == {
        "torch.sdpa.efficient", "torch.sdpa.math", "torch.flex"}

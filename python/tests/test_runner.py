"""The Python runner end to end (python3 -m longattn_peers run): without torch every case is
unsupported with the reason; with torch the real peers run on the CPU and their outputs match an
exact numpy attention."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import torch_or_skip
from longattn_peers import npy
from longattn_peers.protocol import read_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_request(tmp_path, export, peers, direction="fwdbwd", dtype="bf16"):
    S, Hq, Hkv, D = 120, 4, 2, 16
    rng = np.random.default_rng(1)
    inputs = {"seqlen": S, "heads_q": Hq, "heads_kv": Hkv, "head_dim": D, "dtype": dtype}
    for name, h in (("q", Hq), ("k", Hkv), ("v", Hkv), ("d_o", Hq)):
        p = str(tmp_path / f"{name}.npy")
        npy.save(p, npy.from_float(rng.standard_normal((S, h, D)).astype(np.float32), dtype))
        inputs[name] = p
    masks = {"gsw": export("global_sliding_window", S, "--window", "9", "--global", "3"),
             "bsu": export("block_sparse_uniform", S, "--sparse-block", "16", "--sparse-heads",
                           "2", "--sparse-causal")}
    cases = [{"id": f"{m}-{p}", "peer": p, "mask": m, "inputs": "x", "direction": direction}
             for m in masks for p in peers]
    req = {"protocol": 1, "output_dir": str(tmp_path / "out"), "device": "cpu",
           "timing": {"warmup": 1, "min_reps": 1, "max_reps": 2, "time_budget_s": 0},
           "masks": masks, "inputs": {"x": inputs}, "cases": cases}
    path = tmp_path / "req.json"
    path.write_text(json.dumps(req))
    return str(path), req


def run(path, python=sys.executable):
    return subprocess.run([python, "-m", "longattn_peers", "run", path], capture_output=True,
                          text=True, cwd=ROOT, timeout=900)


def test_without_torch_every_case_is_unsupported(tmp_path, export):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is importable here")
    except ImportError:
        pass
    path, req = make_request(tmp_path, export, ["torch.sdpa.math", "flashinfer"])
    r = run(path)
    assert r.returncode == 0, r.stderr
    events = read_results(req["output_dir"])
    assert [e["event"] for e in events] == ["start", "record"] * 4 + ["done"]
    for e in events[1::2]:
        assert e["record"]["status"] == "unsupported"
        assert "torch is not importable" in e["record"]["reason"]


def test_a_malformed_request_is_a_fatal_event(tmp_path, export):
    path, req = make_request(tmp_path, export, ["torch.flex"])
    req["cases"][0]["direction"] = "upwards"
    open(path, "w").write(json.dumps(req))
    r = run(path)
    assert r.returncode == 2 and "direction" in r.stderr
    events = read_results(req["output_dir"])
    assert events[-1]["event"] == "fatal" and "direction" in events[-1]["message"]


def exact(q, k, v, allowed, scale):
    S, Hq, D = q.shape
    g = Hq // k.shape[1]
    o = np.zeros_like(q)
    lse = np.zeros((Hq, S))
    for h in range(Hq):
        m = allowed[(h // g) if len(allowed) > 1 else 0]
        s = np.where(m, q[:, h] @ k[:, h // g].T * scale, -np.inf)
        mx = s.max(1, keepdims=True)
        p = np.exp(s - mx)
        o[:, h] = p @ v[:, h // g] / p.sum(1, keepdims=True)
        lse[h] = (mx + np.log(p.sum(1, keepdims=True)))[:, 0]
    return o, lse


def test_real_peers_match_exact_attention(tmp_path, export):
    torch_or_skip()
    from longattn_peers.masks import mask_from_json
    path, req = make_request(tmp_path, export, ["torch.sdpa.math", "torch.flex", "torch.sdpa.cudnn"],
                             direction="fwd")
    r = run(path)
    assert r.returncode == 0, r.stderr
    x = req["inputs"]["x"]
    q, k, v = (npy.to_float(np.load(x[n]), "bf16").astype(np.float64) for n in ("q", "k", "v"))
    for e in read_results(req["output_dir"]):
        if e["event"] != "record":
            continue
        rec = e["record"]
        if e["id"].endswith("cudnn"):
            assert rec["status"] == "unsupported"
            continue
        assert rec["status"] == "ok", rec["reason"]
        mask = mask_from_json(req["masks"][e["id"].split("-")[0]])
        o, lse = exact(q, k, v, [mask.dense(h) for h in range(mask.heads)], 1 / math.sqrt(16))
        got_o = npy.to_float(np.load(e["outputs"]["o"]), "bf16")
        got_lse = np.load(e["outputs"]["lse"])
        assert np.linalg.norm(got_o - o) / np.linalg.norm(o) < 2e-2
        assert np.abs(got_lse - lse).max() < 1e-2
        assert rec["forward"]["reps"] >= 1 and rec["memory"]["method"].startswith("not measured")

"""The request/record protocol (PROTOCOL.md) and the tensor files, without torch."""
import copy
import json
import math
import os

import numpy as np
import pytest

from longattn_peers import PROTOCOL_VERSION, npy
from longattn_peers.masks import InputError
from longattn_peers.measure import planned_reps, quantile, summarize
from longattn_peers.protocol import (ResultWriter, Timing, flops, mask_stats, new_record,
                                     parse_request, read_results, sanitize)

CAUSAL = {"seqlen_q": 16, "seqlen_k": 16, "q_ranges": [[0, 16]], "k_ranges": [[0, 16]],
          "attn_type_map": [1]}
SPARSE = {"seqlen": 16, "block_starts": [0, 8, 16], "causal": False,
          "kept": [[[0], [0, 1]], [[1], [1]]]}


def request(tmp_path, **over):
    r = {
        "protocol": PROTOCOL_VERSION,
        "output_dir": str(tmp_path / "out"),
        "timing": {"warmup": 1, "min_reps": 3, "max_reps": 5, "time_budget_s": 0.1,
                   "l2_flush": False},
        "masks": {"m": CAUSAL, "s": SPARSE},
        "inputs": {"x": {"seqlen": 16, "heads_q": 4, "heads_kv": 2, "head_dim": 8,
                         "dtype": "bf16", "q": "q.npy", "k": "k.npy", "v": "v.npy",
                         "d_o": "d_o.npy"}},
        "cases": [{"id": "a", "peer": "torch.flex", "mask": "m", "inputs": "x",
                   "direction": "fwdbwd", "case": {"pattern": "causal", "seed": 7}},
                  {"id": "b", "peer": "flashinfer", "mask": "s", "inputs": "x",
                   "direction": "fwd"}],
    }
    r.update(over)
    return r


def test_request_round_trip(tmp_path):
    raw = request(tmp_path)
    req = parse_request(json.loads(json.dumps(raw)))
    assert req.device == "cuda" and req.write_outputs and req.dense_limit == 1 << 31
    assert req.timing == Timing(1, 3, 5, 0.1, False)
    assert [c.id for c in req.cases] == ["a", "b"]
    a, b = req.cases
    assert a.forward and a.backward and b.forward and not b.backward
    assert req.masks["s"].heads == 2 and req.masks["m"].total_area() == 16 * 17 // 2
    assert req.inputs["x"].shape("k") == (16, 2, 8) and req.inputs["x"].shape("q") == (16, 4, 8)
    rec = new_record(req, a, {"gpu": False})
    assert rec["backend"] == "torch.flex" and rec["status"] == "ok" and rec["check"] is None
    assert rec["case"]["seed"] == 7 and rec["case"]["heads_kv"] == 2  # echoed, then completed
    assert rec["flops"]["forward"] == 4 * 8 * 4 * 136
    assert rec["flops"]["backward"] == 2.5 * rec["flops"]["forward"]
    # The C++ Record's JSON fields, every one of them.
    assert set(rec) == {"backend", "backend_version", "status", "reason", "case", "mask", "flops",
                        "issued_area", "forward", "backward", "memory", "check", "timing",
                        "environment"}


def test_per_head_flops_and_stats(tmp_path):
    req = parse_request(request(tmp_path))
    s = req.masks["s"]
    # Head 0 keeps 8x8 + 8x16 pairs, head 1 8x8 + 8x8: each serves 2 of the 4 query heads.
    assert [s.area(0), s.area(1)] == [192, 128]
    assert flops(s, 4, 8)["forward"] == 4 * 8 * 2 * (192 + 128)
    st = mask_stats(s)
    assert st["area"] == 320 and st["heads"] == 2 and st["slices"] == 5
    assert st["density"] == 320 / (2 * 256)


@pytest.mark.parametrize("path,value,words", [
    (("protocol",), 99, "protocol 99"),
    (("cases", 0, "peer"), "torch.nope", "unknown"),
    (("cases", 0, "direction"), "sideways", "direction"),
    (("cases", 0, "mask"), "zz", "'zz' is not in 'masks'"),
    (("cases", 1, "id"), "a", "used twice"),
    (("inputs", "x", "dtype"), "fp8", "dtype"),
    (("inputs", "x", "heads_kv"), 3, "multiple"),
    (("inputs", "x", "seqlen"), 15, "differs"),
    (("timing", "max_reps"), 1, "below min_reps"),
    (("timing", "warmup"), 0, "warmup"),
    (("device",), "tpu", "device"),
    (("masks", "m", "attn_type_map"), [9], "masks\\['m'\\]"),
])
def test_malformed_requests_name_the_field(tmp_path, path, value, words):
    raw = copy.deepcopy(request(tmp_path))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(InputError, match=words):
        parse_request(raw)


def test_backward_needs_d_o(tmp_path):
    raw = request(tmp_path)
    del raw["inputs"]["x"]["d_o"]
    with pytest.raises(InputError, match="no d_o"):
        parse_request(raw)


def test_result_lines_are_strict_json(tmp_path):
    w = ResultWriter(str(tmp_path / "o"))
    w.write({"event": "record", "x": float("nan"), "y": [1.5, float("inf")], "z": np.float32(2.5),
             "n": np.int64(3)})
    w.write({"event": "done"})
    w.close()
    text = open(tmp_path / "o" / "results.jsonl").read()
    assert "NaN" not in text and "Infinity" not in text
    rows = read_results(str(tmp_path / "o"))
    assert rows[0] == {"event": "record", "x": None, "y": [1.5, None], "z": 2.5, "n": 3}
    assert rows[1]["event"] == "done"
    assert sanitize({"a": (float("-inf"),)}) == {"a": [None]}


def test_bf16_round_trip_and_rounding(tmp_path):
    x = np.array([1.0, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -9, 3.4e38, float("inf"), float("nan"),
                  1e-40], dtype=np.float32)
    bits = npy.float_to_bf16(x)
    back = npy.bf16_to_float(bits)
    assert back[0] == 1.0 and back[1] == -2.5
    assert back[2] == 1.0  # a tie rounds to even
    assert back[3] == 1 + 2 ** -7  # above the tie rounds up
    assert math.isinf(back[4]) and math.isinf(back[5]) and math.isnan(back[6])
    p = str(tmp_path / "t.npy")
    npy.save(p, bits.reshape(2, 4))
    got = npy.load(p, "bf16", (2, 4))
    assert got.dtype == np.dtype("<u2") and np.array_equal(got.reshape(-1), bits)
    with pytest.raises(InputError, match="expected <f2"):
        npy.load(p, "fp16", (2, 4))
    with pytest.raises(InputError, match="shape"):
        npy.load(p, "bf16", (4, 2))
    with pytest.raises(InputError, match="cannot read"):
        npy.load(str(tmp_path / "missing.npy"), "bf16", (1,))


def test_repetition_policy_matches_the_cpp_harness():
    t = Timing(warmup=2, min_reps=20, max_reps=1000, time_budget_s=0.5)
    assert planned_reps(0.0, t) == 1000        # too short to see
    assert planned_reps(0.1, t) == 1000        # 5000 fit, capped
    assert planned_reps(2.0, t) == 250
    assert planned_reps(100.0, t) == 20        # 5 fit, at least min_reps
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5  # numpy's linear interpolation
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.2) == pytest.approx(1.8)
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["median_ms"], s["min_ms"], s["max_ms"], s["reps"]) == (3.0, 1.0, 5.0, 5)
    assert s["p80_ms"] == pytest.approx(4.2) and s["mean_ms"] == 3.0


def test_summary_tables_and_cudnn_ratio(tmp_path):
    from longattn_peers import summary

    def rec(backend, pattern, status="ok", fwd=100.0, bwd=80.0):
        return {"backend": backend, "status": status, "reason": "" if status == "ok" else "why",
                "case": {"pattern": pattern, "seqlen": 8192, "heads_q": 64, "heads_kv": 8,
                         "head_dim": 128, "dtype": "bf16", "direction": "fwdbwd"},
                "forward": {"tflops": fwd} if status == "ok" else None,
                "backward": {"tflops": bwd} if status == "ok" else None}
    records = [rec("cudnn", "causal", fwd=500.0, bwd=400.0),
               rec("torch.sdpa.cudnn", "causal", fwd=490.0, bwd=410.0),
               rec("torch.sdpa.cudnn", "shared_question", status="unsupported"),
               rec("torch.flex", "shared_question", status="error")]
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in records))
    rs = summary.load([str(p)])
    t = summary.tables(rs)
    assert "S=8K heads 64:8" in t and "unsup" in t and "ERROR" in t and " 490" in t
    ratio = summary.cudnn_agreement(rs)
    assert "0.980" in ratio and "1.025" in ratio
    assert "2 of 2 phases within 5%" in ratio and "NO" not in ratio
    assert "1 cases error" in summary.failures(rs)


def _record(backend, pattern, fwd, bwd, heads=(64, 64), status="ok"):
    return {"backend": backend, "status": status, "reason": "" if status == "ok" else "why",
            "case": {"pattern": pattern, "seqlen": 32768, "heads_q": heads[0],
                     "heads_kv": heads[1], "head_dim": 128, "dtype": "bf16",
                     "direction": "fwdbwd"},
            "forward": {"tflops": fwd} if status == "ok" else None,
            "backward": {"tflops": bwd} if status == "ok" else None}


def _conformance_row(mask, peer, status, seqlen=1000, numeric=None):
    return {"mask": mask, "seqlen": seqlen, "peer": peer, "status": status,
            "differing_pairs": 7 if status == "mismatch" else (0 if status == "exact" else None),
            "format": None if status == "unsupported" else "dense",
            "reason": "no format" if status == "unsupported" else "", "numeric": numeric}


def test_summary_cudnn_agreement_says_which_cases_are_within_5_percent():
    from longattn_peers import summary
    records = [_record("cudnn", "full", 600.0, 500.0),
               _record("torch.sdpa.cudnn", "full", 585.0, 440.0),
               _record("cudnn", "causal", 580.0, 480.0),
               _record("torch.sdpa.cudnn", "causal", 0, 0, status="unsupported"),
               # a GQA case the peer ran but the C++ backend did not: not compared
               _record("torch.sdpa.cudnn", "full", 300.0, 200.0, heads=(64, 8))]
    text = summary.cudnn_agreement(records)
    full = next(line for line in text.splitlines() if line.split()[:1] == ["full"])
    # forward 585 / 600 = 0.975 is within 5%, backward 440 / 500 = 0.880 is not
    assert full.split()[3:] == ["585.0", "600.0", "0.975", "yes", "440.0", "500.0", "0.880", "NO"]
    assert "1 of 2 phases within 5%" in text
    assert "causal" not in text.split("\n", 2)[2] and "64:8" not in text
    assert "no case ran ok" in summary.cudnn_agreement(records[2:])


def test_summary_conformance_table_per_peer_and_mask():
    from longattn_peers import summary
    rows = [_conformance_row("causal", "torch.flex", "exact", numeric="ok O 1.0e-03 dQ 2.0e-03"),
            _conformance_row("causal", "flash_attn", "exact", numeric="wrong O 3.0e-01 dQ 1.0e-01"),
            _conformance_row("causal", "flashinfer", "mismatch"),
            _conformance_row("shared_question", "torch.flex", "exact"),
            _conformance_row("shared_question", "flash_attn", "unsupported"),
            _conformance_row("shared_question", "flashinfer", "exact",
                             numeric="unsupported: flashinfer is not importable"),
            _conformance_row("block_sparse_uniform_causal", "flashinfer", "exact", seqlen=1024)]
    table = summary.conformance_table(rows)
    lines = [line.split() for line in table.splitlines() if not line.startswith("#")]
    header = table.splitlines()[1].split()
    assert header == ["#", "mask", "S", "torch.flex", "flash_attn", "flashinfer"]
    assert lines == [["causal", "1000", "exact", "exact/wrong", "differs"],
                     ["shared_question", "1000", "exact", "unsup", "exact"],
                     ["block_sparse_uniform_causal", "1K", "exact"]]


def test_summary_command_prints_both_checks(tmp_path, capsys):
    from longattn_peers.__main__ import main
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in [
        _record("cudnn", "causal", 600.0, 500.0),
        _record("torch.sdpa.cudnn", "causal", 610.0, 505.0)]))
    conformance = tmp_path / "conformance.jsonl"
    conformance.write_text("\n".join(json.dumps(r) for r in [
        _conformance_row("causal", "torch.sdpa.cudnn", "exact"),
        _conformance_row("shared_question", "torch.sdpa.cudnn", "unsupported")]))
    assert main(["summary", str(records), "--conformance", str(conformance)]) == 0
    out = capsys.readouterr().out
    assert "conformance per peer x mask" in out and "unsup" in out
    assert "2 of 2 phases within 5%" in out and "1.017" in out

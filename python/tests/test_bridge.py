"""The C++ side of the bridge (src/peers) through `longattn bench` (peers are backends of its
sweep) and `longattn peers list | conformance`: the request it writes, the records it reads back,
the harness's correctness check on the returned tensors, and the isolation of a peer that
crashes, hangs, faults or runs out of memory. A test double of the Python side
(fake_peers/) makes these tests run without torch; the tests at the end use the real peers and
run where torch is importable."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import torch_or_skip

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_peers")
REAL = os.path.dirname(HERE)

SMALL = ["--mask", "causal_document", "--doc-lens", "40,1,55", "--seqlen", "96", "--heads", "4:2",
         "--head-dim", "16", "--dtype", "fp32", "--direction", "fwdbwd", "--reps", "3",
         "--min-reps", "1", "--time-budget", "0", "--warmup", "1"]


def bench(cli, backends, extra=(), mode="exact", path=FAKE, python=None, expect_rc=None, args=SMALL):
    env = dict(os.environ, LONGATTN_FAKE_PEER=mode)
    cmd = [cli, "bench", "--backend", backends, "--peer-device", "cpu", "--peers-path",
           path, "--python", python or sys.executable, "--json", *args, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if expect_rc is not None:
        assert r.returncode == expect_rc, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


THREE = "torch.sdpa.math,torch.flex,torch.sdpa.efficient"


def test_exact_outputs_pass_the_harness_check(peers_cli):
    recs = bench(peers_cli, THREE, expect_rc=0)
    assert [r["backend"] for r in recs] == THREE.split(",")
    for r in recs:
        assert r["status"] == "ok", r["reason"]
        assert r["check"]["passed"] and r["check"]["full"]
        assert r["check"]["o"]["error"] < 1e-6 and r["check"]["dq"]["error"] < 1e-6
        assert r["forward"]["median_ms"] == 1.0 and r["backward"]["reps"] == 3
        # TF/s from the harness's own FLOPs: 4 * area * Hq * D over the median.
        assert r["forward"]["tflops"] == pytest.approx(r["flops"]["forward"] / 1e-3 / 1e12)
        assert r["memory"]["peak_gib"] == 0.5 and r["issued_area"] == 12345
        assert r["mask"]["area"] == 40 * 41 // 2 + 1 + 55 * 56 // 2
        assert r["peer"]["mask_format"] == "fake dense" and r["backend_version"] == "fake 1"


def test_bf16_and_per_head_block_sparse_masks_travel(peers_cli):
    args = ["--mask", "block_sparse_uniform", "--sparse-block", "32", "--sparse-heads", "2",
            "--sparse-causal", "--seqlen", "100", "--heads", "4:2", "--head-dim", "16", "--dtype",
            "bf16", "--direction", "fwdbwd", "--reps", "2", "--min-reps", "1", "--time-budget", "0"]
    recs = bench(peers_cli, "torch.flex", args=args, expect_rc=0)
    assert recs[0]["status"] == "ok", recs[0]["reason"]
    assert recs[0]["mask"]["heads"] == 2


def test_wrong_outputs_are_caught(peers_cli):
    recs = bench(peers_cli, THREE, mode="wrong", expect_rc=1)
    for r in recs:
        assert r["status"] == "wrong" and r["reason"].startswith("O error"), r["reason"]


def test_a_crash_ends_only_its_own_case(peers_cli):
    recs = bench(peers_cli, THREE, mode="crash:c1", expect_rc=1)
    assert [r["status"] for r in recs] == ["ok", "error", "ok"]
    assert "died" in recs[1]["reason"] and "signal 9" in recs[1]["reason"]


def test_a_hang_is_killed_after_the_timeout(peers_cli):
    recs = bench(peers_cli, THREE, ["--case-timeout", "10"], mode="hang:c1", expect_rc=1)
    assert [r["status"] for r in recs] == ["ok", "error", "ok"]
    assert "timed out" in recs[1]["reason"]


def test_a_device_fault_restarts_the_peer_process(peers_cli):
    recs = bench(peers_cli, THREE, mode="fault:c0", expect_rc=1)
    assert [r["status"] for r in recs] == ["error", "ok", "ok"]
    assert "device fault" in recs[0]["reason"]


def test_oom_is_reported_and_the_sweep_goes_on(peers_cli):
    recs = bench(peers_cli, THREE, mode="oom:c2", expect_rc=0)
    assert [r["status"] for r in recs] == ["ok", "ok", "oom"]


def test_a_python_that_cannot_start(peers_cli, tmp_path):
    recs = bench(peers_cli, THREE, python=str(tmp_path / "no-such-python"), expect_rc=1)
    assert all(r["status"] == "error" and "start" in r["reason"] for r in recs)
    empty = tmp_path / "empty"
    empty.mkdir()
    recs = bench(peers_cli, THREE, path=str(empty), expect_rc=1)
    assert all(r["status"] == "error" and "before running a case" in r["reason"] for r in recs)
    assert "longattn_peers" in recs[0]["reason"]  # the log's "No module named ..." is quoted


def test_peers_and_own_backends_in_one_run(peers_cli):
    recs = bench(peers_cli, "torch.sdpa.math,cpu,torch.flex", expect_rc=0)
    assert [r["backend"] for r in recs] == ["torch.sdpa.math", "cpu", "torch.flex"]
    assert all(r["status"] == "ok" for r in recs)
    assert "peer" not in recs[1] and recs[0]["peer"]["mask_format"] == "fake dense"


def test_unknown_backend_is_an_input_error(peers_cli):
    r = subprocess.run([peers_cli, "bench", "--backend", "cpu,torch.sdpa.nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "torch.sdpa.nope" in r.stderr
    assert "torch.flex" in r.stderr and "cpu" in r.stderr  # the peers and the built-in backends


def test_the_table_header_counts_the_peer_cases(peers_cli):
    env = dict(os.environ, LONGATTN_FAKE_PEER="exact")
    r = subprocess.run([peers_cli, "bench", "--backend", "cpu,torch.flex", "--peer-device", "cpu",
                        "--peers-path", FAKE, "--python", sys.executable, *SMALL],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "# 2 cases;" in r.stdout and "# 1 of them on Python peers" in r.stdout


def test_peers_bench_points_to_bench(peers_cli):
    """`peers bench` was a copy of `longattn bench`; an old command line says where it went."""
    r = subprocess.run([peers_cli, "peers", "bench", "--backend", "torch.flex", "--seqlen", "1K"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "longattn bench --backend" in r.stderr
    r = subprocess.run([peers_cli, "peers", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "conformance" in r.stdout
    assert not re.search(r"^\s+bench\b", r.stdout, re.M)  # hidden from the help


def test_conformance_table(peers_cli):
    """Every peer format of every pattern, from the CLI's masks, rasterised by the Python side
    (numpy; with torch also the BlockMask torch builds): exact or refused, never a mismatch."""
    r = subprocess.run([peers_cli, "peers", "conformance", "--seqlen", "999", "--heads", "4:2",
                        "--json", "--python", sys.executable], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 16 * 9  # 14 patterns + 2 causal block-sparse, 9 peers
    assert {row["status"] for row in rows} <= {"exact", "unsupported"}
    exact = {(row["mask"], row["peer"]) for row in rows if row["status"] == "exact"}
    for mask in {row["mask"] for row in rows}:
        assert (mask, "torch.flex") in exact and (mask, "torch.sdpa.math") in exact
    for mask in ("full", "causal", "full_document", "causal_document", "sliding_window",
                 "sliding_window_causal"):
        assert (mask, "flash_attn.cute") in exact
    for mask in ("shared_question", "prefix_lm_document", "global_sliding_window"):
        assert (mask, "flash_attn") not in exact
    assert ("block_sparse_uniform", "flashinfer") in exact


def test_peers_list(peers_cli):
    r = subprocess.run([peers_cli, "peers", "list", "--json", "--python", sys.executable,
                        "--peer-device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [p["name"] for p in rows][:2] == ["torch.sdpa.flash", "torch.sdpa.cudnn"]
    assert len(rows) == 9 and all(p["available"] or p["reason"] for p in rows)


# --- the real peers, on the CPU (torch needed) -----------------------------------------------

def test_real_peers_on_cpu(peers_cli):
    torch_or_skip()
    args = ["--mask", "causal,global_sliding_window,block_sparse_uniform", "--window", "17",
            "--global", "5", "--sparse-block", "32", "--sparse-heads", "2", "--seqlen", "200",
            "--heads", "4:2", "--head-dim", "32", "--dtype", "fp32,bf16", "--direction",
            "fwd,fwdbwd", "--reps", "2", "--min-reps", "1", "--time-budget", "0"]
    recs = bench(peers_cli, "torch.sdpa.math,torch.sdpa.flash,torch.flex,flash_attn", path=REAL,
                 args=args)
    by = {(r["case"]["pattern"], r["case"]["dtype"], r["case"]["direction"], r["backend"]): r
          for r in recs}
    assert len(by) == 3 * 2 * 2 * 4
    for (pattern, dtype, direction, peer), r in by.items():
        if peer == "torch.sdpa.math" or (peer == "torch.flex" and direction == "fwd") or (
                peer == "torch.sdpa.flash" and pattern == "causal" and dtype == "bf16"):
            assert r["status"] == "ok", (pattern, dtype, direction, peer, r["reason"])
            assert r["check"]["passed"]
        else:
            assert r["status"] == "unsupported", (pattern, peer, r["reason"])
            assert r["reason"]

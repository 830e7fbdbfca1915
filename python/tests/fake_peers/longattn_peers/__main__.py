"""A test double of `python3 -m longattn_peers serve`, numpy only, for the C++ bridge's tests.
It speaks the protocol and computes attention exactly, then misbehaves as LONGATTN_FAKE_PEER says:
  exact           correct outputs (the harness's check must pass)
  wrong           O of one query block computed without one key block (the check must fail)
  crash:ID        killed by SIGKILL while running case ID
  hang:ID         never finishes case ID
  fault:ID        reports a device fault on case ID and exits 3, as the real runner does
  oom:ID          reports case ID as oom
"""
import json
import math
import os
import signal
import sys
import time

import numpy as np

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "longattn_peers")


def _load(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"real_{name}", os.path.join(REAL, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


masks = _load("masks")


def to_float(a, dtype):
    if dtype == "bf16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def from_float(x, dtype):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "bf16":
        u = x.view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return x.astype({"fp32": "<f4", "fp16": "<f2"}[dtype])


def attention(q, k, v, do, allowed, scale):
    """Exact forward and backward in float64; allowed[h] is the dense mask of KV head h."""
    S, Hq, D = q.shape
    Hkv = k.shape[1]
    g = Hq // Hkv
    o = np.zeros_like(q)
    lse = np.zeros((Hq, S))
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for h in range(Hq):
        kh = h // g
        m = allowed[kh if len(allowed) > 1 else 0]
        s = np.where(m, q[:, h] @ k[:, kh].T * scale, -np.inf)
        mx = s.max(1, keepdims=True)
        mx[~np.isfinite(mx)] = 0
        e = np.exp(s - mx)
        l = e.sum(1, keepdims=True)
        p = np.divide(e, l, out=np.zeros_like(e), where=l > 0)
        o[:, h] = p @ v[:, kh]
        with np.errstate(divide="ignore"):
            lse[h] = (mx + np.log(l))[:, 0]
        if do is not None:
            dp = do[:, h] @ v[:, kh].T
            ds = p * (dp - (do[:, h] * o[:, h]).sum(1, keepdims=True))
            dq[:, h] = ds @ k[:, kh] * scale
            dk[:, kh] += ds.T @ q[:, h] * scale
            dv[:, kh] += p.T @ do[:, h]
    return o, lse, dq, dk, dv


def write(f, obj):
    f.write(json.dumps(obj) + "\n")
    f.flush()


def run(path, mode):
    with open(path) as fh:
        req = json.load(fh)
    out = req["output_dir"]
    os.makedirs(out, exist_ok=True)
    what, _, target = mode.partition(":")
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        for c in req["cases"]:
            write(f, {"event": "start", "id": c["id"], "peer": c["peer"]})
            if c["id"] == target and what == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if c["id"] == target and what == "hang":
                while True:
                    time.sleep(1)
            x = req["inputs"][c["inputs"]]
            dt = x["dtype"]
            mask = masks.mask_from_json(req["masks"][c["mask"]])
            allowed = [mask.dense(h) for h in range(mask.heads)]
            load = lambda n: to_float(np.load(x[n]), dt).astype(np.float64)  # noqa: E731
            backward = c["direction"] != "fwd"
            q, k, v = load("q"), load("k"), load("v")
            do = load("d_o") if backward else None
            o, lse, dq, dk, dv = attention(q, k, v, do, allowed, 1 / math.sqrt(x["head_dim"]))
            if what == "wrong":
                broken = [a.copy() for a in allowed]
                for a in broken:
                    a[:16, :16] = False
                    a[:16, 16] = True  # keep every row non-empty
                o = attention(q, k, v, None, broken, 1 / math.sqrt(x["head_dim"]))[0]
            timing = {"median_ms": 1.0, "p20_ms": 0.9, "p80_ms": 1.1, "min_ms": 0.8,
                      "max_ms": 1.2, "mean_ms": 1.0, "reps": 3, "tflops": None}
            status, reason = "ok", ""
            if c["id"] == target and what == "oom":
                status, reason = "oom", "OutOfMemoryError: fake"
            if c["id"] == target and what == "fault":
                status, reason = "error", "device fault (the peer process restarts): fake"
            outputs = {}
            if status == "ok":
                for name, a in (("o", o), ("dq", dq), ("dk", dk), ("dv", dv)):
                    if name != "o" and not backward:
                        continue
                    p = os.path.join(out, f"{c['id']}.{name}.npy")
                    np.save(p, from_float(a, dt))
                    outputs[name] = p
                p = os.path.join(out, f"{c['id']}.lse.npy")
                np.save(p, lse.astype("<f4"))
                outputs["lse"] = p
            rec = {"backend": c["peer"], "backend_version": "fake 1", "status": status,
                   "reason": reason, "case": c.get("case", {}), "issued_area": 12345,
                   "forward": timing if status == "ok" and c["direction"] != "bwd" else None,
                   "backward": timing if status == "ok" and backward else None,
                   "memory": {"peak_gib": 0.5, "forward_peak_gib": 0.25, "backward_peak_gib": 0.5,
                              "method": "fake"},
                   "check": None, "environment": {"fake": True}}
            write(f, {"event": "record", "id": c["id"], "record": rec, "outputs": outputs,
                      "peer": {"mask_format": "fake dense", "mode": mode}})
            if c["id"] == target and what == "fault":
                sys.exit(3)
        write(f, {"event": "done", "cases": len(req["cases"])})


def main():
    assert sys.argv[1:] == ["serve"], sys.argv
    mode = os.environ.get("LONGATTN_FAKE_PEER", "exact")
    for line in sys.stdin:
        if line.strip():
            run(line.strip(), mode)


if __name__ == "__main__":
    main()

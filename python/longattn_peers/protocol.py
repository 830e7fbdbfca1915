"""The request a caller sends and the records the bridge writes back (PROTOCOL.md). numpy only."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import PROTOCOL_VERSION
from .formats import PEERS
from .masks import InputError, mask_from_json

DIRECTIONS = ("fwd", "bwd", "fwdbwd")
STATUSES = ("ok", "unsupported", "oom", "error", "wrong")


@dataclass
class Timing:
    warmup: int = 2
    min_reps: int = 20
    max_reps: int = 1000
    time_budget_s: float = 0.5
    l2_flush: bool = True

    def validate(self) -> None:
        if self.warmup < 1:
            raise InputError(f"timing.warmup must be at least 1, got {self.warmup}")
        if self.min_reps < 1:
            raise InputError(f"timing.min_reps must be at least 1, got {self.min_reps}")
        if self.max_reps < self.min_reps:
            raise InputError(f"timing.max_reps ({self.max_reps}) is below min_reps ({self.min_reps})")
        if not (self.time_budget_s >= 0 and math.isfinite(self.time_budget_s)):
            raise InputError(f"timing.time_budget_s must be >= 0, got {self.time_budget_s}")

    def to_json(self) -> dict:
        return {"warmup": self.warmup, "min_reps": self.min_reps, "max_reps": self.max_reps,
                "time_budget_s": self.time_budget_s, "l2_flush": self.l2_flush}


@dataclass
class Inputs:
    id: str
    seqlen: int
    heads_q: int
    heads_kv: int
    head_dim: int
    dtype: str
    paths: Dict[str, str]  # q, k, v and (when a case runs backward) d_o

    def shape(self, name: str):
        heads = self.heads_kv if name in ("k", "v", "dk", "dv") else self.heads_q
        return (self.seqlen, heads, self.head_dim)


@dataclass
class CaseRequest:
    id: str
    peer: str
    mask: str
    inputs: str
    direction: str
    scale: float = 0.0  # softmax scale; 0: 1/sqrt(head_dim)
    case: dict = field(default_factory=dict)  # echoed into the record (the C++ Case)

    @property
    def forward(self) -> bool:
        return self.direction != "bwd"

    @property
    def backward(self) -> bool:
        return self.direction != "fwd"


@dataclass
class Request:
    output_dir: str
    device: str
    timing: Timing
    dense_limit: int
    write_outputs: bool
    masks: Dict[str, object]
    inputs: Dict[str, Inputs]
    cases: List[CaseRequest]


def _get(obj: dict, key: str, where: str, types, default=None, required=True):
    if key not in obj:
        if required:
            raise InputError(f"request: '{where}{key}' is missing")
        return default
    v = obj[key]
    if types is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise InputError(f"request: '{where}{key}' must be an integer, got {v!r}")
    if types is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise InputError(f"request: '{where}{key}' must be a number, got {v!r}")
    if types not in (int, float) and not isinstance(v, types):
        raise InputError(f"request: '{where}{key}' has the wrong type ({type(v).__name__})")
    return float(v) if types is float else v


def parse_request(j) -> Request:
    if not isinstance(j, dict):
        raise InputError("request must be a JSON object")
    version = _get(j, "protocol", "", int)
    if version != PROTOCOL_VERSION:
        raise InputError(f"request speaks protocol {version}; this bridge speaks {PROTOCOL_VERSION}")
    t = _get(j, "timing", "", dict, {}, required=False)
    timing = Timing(
        warmup=_get(t, "warmup", "timing.", int, 2, False),
        min_reps=_get(t, "min_reps", "timing.", int, 20, False),
        max_reps=_get(t, "max_reps", "timing.", int, 1000, False),
        time_budget_s=_get(t, "time_budget_s", "timing.", float, 0.5, False),
        l2_flush=_get(t, "l2_flush", "timing.", bool, True, False))
    timing.validate()
    device = _get(j, "device", "", str, "cuda", False)
    if device not in ("cuda", "cpu"):
        raise InputError(f"request: 'device' must be cuda or cpu, got '{device}'")
    masks = {}
    for mid, mj in _get(j, "masks", "", dict).items():
        try:
            masks[mid] = mask_from_json(mj)
        except InputError as e:
            raise InputError(f"request: masks['{mid}']: {e}") from None
    inputs = {}
    for iid, ij in _get(j, "inputs", "", dict).items():
        w = f"inputs['{iid}']."
        if not isinstance(ij, dict):
            raise InputError(f"request: inputs['{iid}'] must be an object")
        x = Inputs(iid, _get(ij, "seqlen", w, int), _get(ij, "heads_q", w, int),
                   _get(ij, "heads_kv", w, int), _get(ij, "head_dim", w, int),
                   _get(ij, "dtype", w, str), {})
        if x.dtype not in ("fp32", "fp16", "bf16"):
            raise InputError(f"request: {w}dtype must be fp32, fp16 or bf16, got '{x.dtype}'")
        if min(x.seqlen, x.heads_q, x.heads_kv, x.head_dim) <= 0 or x.heads_q % x.heads_kv:
            raise InputError(f"request: {w[:-1]}: seqlen, heads and head_dim must be positive and "
                             "heads_q a multiple of heads_kv")
        for name in ("q", "k", "v", "d_o"):
            p = _get(ij, name, w, str, None, required=name != "d_o")
            if p is not None:
                x.paths[name] = p
        inputs[iid] = x
    cases = []
    seen = set()
    for n, cj in enumerate(_get(j, "cases", "", list)):
        w = f"cases[{n}]."
        if not isinstance(cj, dict):
            raise InputError(f"request: cases[{n}] must be an object")
        c = CaseRequest(_get(cj, "id", w, str), _get(cj, "peer", w, str), _get(cj, "mask", w, str),
                        _get(cj, "inputs", w, str), _get(cj, "direction", w, str),
                        _get(cj, "scale", w, float, 0.0, False),
                        _get(cj, "case", w, dict, {}, False))
        if c.id in seen:
            raise InputError(f"request: {w}id '{c.id}' is used twice")
        seen.add(c.id)
        if c.peer not in PEERS:
            raise InputError(f"request: {w}peer '{c.peer}' is unknown (known: {', '.join(PEERS)})")
        if c.direction not in DIRECTIONS:
            raise InputError(f"request: {w}direction must be one of {', '.join(DIRECTIONS)}")
        if c.mask not in masks:
            raise InputError(f"request: {w}mask '{c.mask}' is not in 'masks'")
        if c.inputs not in inputs:
            raise InputError(f"request: {w}inputs '{c.inputs}' is not in 'inputs'")
        x = inputs[c.inputs]
        if masks[c.mask].seqlen != x.seqlen:
            raise InputError(f"request: {w[:-1]}: mask seqlen {masks[c.mask].seqlen} differs from "
                             f"the inputs' {x.seqlen}")
        if c.backward and "d_o" not in x.paths:
            raise InputError(f"request: {w[:-1]} runs backward but inputs '{c.inputs}' has no d_o")
        cases.append(c)
    return Request(_get(j, "output_dir", "", str), device, timing,
                   _get(j, "dense_limit", "", int, 1 << 31, False),
                   _get(j, "write_outputs", "", bool, True, False), masks, inputs, cases)


def load_request(path: str) -> Request:
    try:
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
    except OSError as e:
        raise InputError(f"cannot read request '{path}': {e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"request '{path}' is not valid JSON: {e}") from None
    return parse_request(j)


# --------------------------------------------------------------------------------------------
# Records: the fields and names of the C++ Record's JSON (src/bench/result.cpp).


def flops(mask, heads_q: int, head_dim: int) -> dict:
    """DESIGN.md section 5: forward = 4 * area * Hq * D, per mask head for per-head masks."""
    fwd = 4.0 * head_dim * mask.total_area() * (heads_q // mask.heads)
    return {"forward": fwd, "backward": 2.5 * fwd, "total": 3.5 * fwd}


def mask_stats(mask) -> dict:
    area = mask.total_area()
    s = mask.seqlen
    slices = (len(mask.types) if mask.kind == "static"
              else sum(mask.kept_blocks(h) for h in range(mask.heads)))
    return {"area": area, "density": area / (mask.heads * s * s), "heads": mask.heads,
            "slices": slices, "prefixes": [], "documents": None}


def phase_json(summary: dict, phase_flops: float) -> dict:
    out = dict(summary)
    out["tflops"] = phase_flops / (summary["median_ms"] * 1e-3) / 1e12 if summary["median_ms"] > 0 else None
    return out


def new_record(req: Request, c: CaseRequest, env: dict) -> dict:
    mask = req.masks[c.mask]
    x = req.inputs[c.inputs]
    case = dict(c.case)
    case.setdefault("seqlen", x.seqlen)
    case.setdefault("heads_q", x.heads_q)
    case.setdefault("heads_kv", x.heads_kv)
    case.setdefault("head_dim", x.head_dim)
    case.setdefault("dtype", x.dtype)
    case.setdefault("direction", c.direction)
    case.setdefault("batch", 1)
    return {
        "backend": c.peer,
        "backend_version": "",
        "status": "ok",
        "reason": "",
        "case": case,
        "mask": mask_stats(mask),
        "flops": flops(mask, x.heads_q, x.head_dim),
        "issued_area": None,
        "forward": None,
        "backward": None,
        "memory": {"peak_gib": None, "forward_peak_gib": None, "backward_peak_gib": None,
                   "method": "not measured"},
        "check": None,
        "timing": dict(req.timing.to_json(),
                       clock="CUDA events around the peer's call only (torch.cuda.Event)"
                       if req.device == "cuda" else "host clock (device cpu: development only)"),
        "environment": env,
    }


class ResultWriter:
    """Appends one JSON line per event to OUTPUT_DIR/results.jsonl, flushed at once, so a caller
    watching the file sees which case was running when a peer crashed or hung."""

    def __init__(self, output_dir: str):
        os.makedirs(output_dir, exist_ok=True)
        self.path = os.path.join(output_dir, "results.jsonl")
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(sanitize(obj), allow_nan=False, default=_jsonable) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _jsonable(v):
    # numpy scalars and non-finite numbers (JSON has no NaN/inf: they are written as null)
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def sanitize(obj):
    """Non-finite floats -> None, recursively (JSON has neither NaN nor infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return obj


def read_results(output_dir: str) -> List[dict]:
    path = os.path.join(output_dir, "results.jsonl")
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out

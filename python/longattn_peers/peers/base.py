"""What every peer provides, and the pieces they share.

A peer is a class with a name, the dtypes it runs, whether it has a backward pass, an availability
probe (import errors, GPU architecture) and prepare(), which turns a case (inputs on the device and
the MaskPlan of formats.py) into a Plan: setup outside timing. A Plan's forward() and backward()
are the timed calls; they only enqueue device work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from ..formats import MaskPlan, Unsupported

LN2 = math.log(2.0)


@dataclass
class Availability:
    ok: bool
    version: str = ""
    reason: str = ""


@dataclass
class Case:
    """One case on the device: leaf tensors in longattn's layouts (Q, dO: [S, Hq, D]; K, V:
    [S, Hkv, D]), requires_grad when the case runs backward."""
    torch: object
    device: object
    q: object
    k: object
    v: object
    d_o: Optional[object]
    mask: object  # the canonical mask (masks.py)
    plan: MaskPlan
    dtype: str
    scale: float
    backward: bool

    @property
    def seqlen(self) -> int:
        return self.q.shape[0]

    @property
    def heads_q(self) -> int:
        return self.q.shape[1]

    @property
    def heads_kv(self) -> int:
        return self.k.shape[1]

    @property
    def head_dim(self) -> int:
        return self.q.shape[2]


class Plan:
    """A prepared case. forward()/backward() are timed; outputs are read after them, untimed."""

    details: Dict[str, object]
    issued_area: Optional[int] = None

    def forward(self) -> None:
        raise NotImplementedError

    def backward(self) -> None:
        raise Unsupported("this peer has no backward pass")

    def backward_setup(self) -> Optional[Callable[[], None]]:
        """Untimed, before the backward is timed: what must run before each timed backward
        (None: nothing)."""
        return None

    def outputs(self) -> Tuple[object, object]:
        """(O [S, Hq, D] in the case dtype, LSE [Hq, S] fp32 natural log) of the last forward."""
        raise NotImplementedError

    def grads(self) -> Tuple[object, object, object]:
        """(dQ, dK, dV) of the last backward, in longattn's layouts."""
        raise NotImplementedError


class AutogradPlan(Plan):
    """A peer called through autograd: the forward builds a graph (the training forward); the
    backward is torch.autograd.grad of the last forward's graph with retain_graph, so it starts
    from that forward's saved O and LSE (out.backward(dO, retain_graph=True) without the
    accumulation into .grad)."""

    def __init__(self, case: Case, call: Callable[[], object], to_standard: Callable,
                 grad_out: Optional[object], lse: Callable[[object], object],
                 details: Optional[dict] = None):
        self.case = case
        self.call = call  # () -> output in the peer's layout (tensor or tuple whose [0] is O)
        self.to_standard = to_standard  # output tensor in the peer's layout -> [S, Hq, D]
        self.grad_out = grad_out  # dO viewed in the peer's layout
        self.lse_of = lse  # the call's result -> LSE [Hq, S] fp32 natural log
        self.details = dict(details or {})
        self.result = None
        self._grads = None

    def forward(self) -> None:
        torch = self.case.torch
        with torch.enable_grad():
            self.result = self.call()

    def _out(self):
        return self.result[0] if isinstance(self.result, tuple) else self.result

    def backward(self) -> None:
        c = self.case
        self._grads = c.torch.autograd.grad(self._out(), (c.q, c.k, c.v), self.grad_out,
                                            retain_graph=True)

    def backward_setup(self):
        """Two backward passes over the saved graph; a peer whose graph cannot be walked twice
        gets a fresh (untimed) forward before every timed backward instead."""
        try:
            self.backward()
            self.backward()
            return None
        except RuntimeError as e:
            if "second time" not in str(e) and "retain_graph" not in str(e):
                raise
            self.details["backward_protocol"] = (
                "the graph cannot be walked twice: an untimed forward runs before each timed "
                "backward, outside the timed region and before the L2 flush")
            self.forward()
            return self.forward

    def outputs(self):
        return self.to_standard(self._out().detach()), self.lse_of(self.result)

    def grads(self):
        return self._grads


def saved_lse(torch, out, names=("logsumexp", "log_sumexp", "lse", "softmax_lse")):
    """The LSE an autograd node saved for its backward (SDPA's fused kernels save theirs): the
    first `_saved_<name>` tensor found walking back from `out`."""
    seen = set()
    todo = [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for name in names:
            t = getattr(node, "_saved_" + name, None)
            if isinstance(t, torch.Tensor) and t.numel() > 0:
                return t
        todo.extend(n for n, _ in node.next_functions)
    return None


def lse_from_scores(case: Case, allowed: Callable[[object, object], object], chunk_bytes=1 << 30):
    """LSE [Hq, S] in fp32 natural log, computed by the bridge from Q, K and the peer's own mask
    format (`allowed(rows, cols)` -> bool [rows, cols], or None for every pair), in row chunks.
    For peers that keep no LSE (torch.sdpa.math): the record says so."""
    torch = case.torch
    S, Hq, Hkv, D = case.seqlen, case.heads_q, case.heads_kv, case.head_dim
    g = Hq // Hkv
    scale = case.scale
    k = case.k.detach().float().transpose(0, 1)  # [Hkv, S, D]
    out = torch.empty((Hq, S), dtype=torch.float32, device=case.device)
    rows = max(1, min(S, chunk_bytes // max(1, 4 * Hq * S)))
    cols = torch.arange(S, device=case.device)
    for r0 in range(0, S, rows):
        r1 = min(S, r0 + rows)
        q = case.q.detach()[r0:r1].float().transpose(0, 1)  # [Hq, r, D]
        s = torch.matmul(q.reshape(Hkv, g * (r1 - r0), D), k.transpose(1, 2))
        s = s.view(Hq, r1 - r0, S) * scale
        ok = allowed(torch.arange(r0, r1, device=case.device), cols)
        if ok is not None:
            if ok.dim() == 3 and ok.shape[0] not in (1, Hq):  # per mask head -> per query head
                ok = ok.repeat_interleave(Hq // ok.shape[0], dim=0)
            s = s.masked_fill(~ok, float("-inf"))
        out[:, r0:r1] = torch.logsumexp(s, dim=-1)
    return out


@dataclass
class PeerInfo:
    name: str
    summary: str
    dtypes: Tuple[str, ...]
    backward: bool
    make: Callable[[], "object"] = field(repr=False, default=None)

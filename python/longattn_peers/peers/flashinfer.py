"""FlashInfer block-sparse attention, forward only (FlashInfer has no backward).

formats.Bsr -> BlockSparseAttentionWrapper: uniform blocks dividing S, one pattern for all heads,
  j <= i of causal masks as an element mask on the kept blocks (its own causal flag aligns each
  block row on its gathered keys, which is not j <= i).
formats.VariableBsr -> VariableBlockSparseAttentionWrapper: per KV head, any partition, non-causal.
plan() (setup, JIT compilation on first use) runs outside timing; run() is the timed call, with
the layout changes the wrapper itself makes. FlashInfer's LSE is in base 2: multiplied by ln 2.
"""
from __future__ import annotations

import inspect

from ..formats import Bsr, Unsupported, VariableBsr
from .base import LN2, Availability, Case, Plan

WORKSPACE_BYTES = 128 << 20


def _filtered(fn, kwargs):
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


class _ForwardPlan(Plan):
    def __init__(self, call, standard, details):
        self.call = call
        self.standard = standard  # result -> (O [S, Hq, D], LSE [Hq, S] natural log)
        self.details = details
        self.result = None

    def forward(self) -> None:
        self.result = self.call()

    def outputs(self):
        return self.standard(self.result)


class FlashInferPeer:
    name = "flashinfer"
    summary = ("FlashInfer block-sparse prefill (BSR / variable blocks per KV head), forward only; "
               "block-sparse masks")
    dtypes = ("bf16", "fp16")
    backward = False

    def availability(self, torch, device) -> Availability:
        try:
            import flashinfer
        except Exception as e:
            return Availability(False, reason=f"import flashinfer: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}")
        version = f"flashinfer {getattr(flashinfer, '__version__', '?')}"
        if device.type != "cuda":
            return Availability(False, version, "runs on CUDA devices only")
        major, _ = torch.cuda.get_device_capability(device)
        if major < 8:
            return Availability(False, version, "needs compute capability 8.0+")
        return Availability(True, version)

    def prepare(self, c: Case) -> Plan:
        import flashinfer

        torch = c.torch
        fmt = c.plan.format
        S, Hq, Hkv, D = c.seqlen, c.heads_q, c.heads_kv, c.head_dim
        dt = c.q.dtype
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=c.device)
        common = {"sm_scale": c.scale, "q_data_type": dt, "kv_data_type": dt, "o_data_type": dt}
        q, k, v = c.q.detach(), c.k.detach(), c.v.detach()
        if isinstance(fmt, Bsr):
            w = flashinfer.BlockSparseAttentionWrapper(workspace)
            dev = lambda a: torch.from_numpy(a).to(c.device)  # noqa: E731
            kwargs = dict(common, causal=False)
            if fmt.element_mask is not None:
                kwargs["mask"] = dev(fmt.element_mask)
            w.plan(dev(fmt.indptr), dev(fmt.indices), S, S, fmt.block, fmt.block, Hq, Hkv, D,
                   **_filtered(w.plan, kwargs))

            def call():
                return w.run(q, k, v, return_lse=True)

            def standard(result):  # out [S, Hq, D], lse [S, Hq]
                out, lse = result
                return out, lse.transpose(0, 1).float() * LN2
        elif isinstance(fmt, VariableBsr):
            w = flashinfer.VariableBlockSparseAttentionWrapper(workspace)
            dev = lambda a: torch.from_numpy(a).to(c.device)  # noqa: E731
            kwargs = dict(common, causal=False)
            w.plan(dev(fmt.block_mask_map), dev(fmt.block_row_sz), dev(fmt.block_col_sz), Hq, Hkv,
                   D, **_filtered(w.plan, kwargs))
            # Its inputs are [H, S, D]: laid out once, in setup.
            qh, kh, vh = (t.transpose(0, 1).contiguous() for t in (q, k, v))

            def call():
                return w.run(qh, kh, vh, return_lse=True)

            def standard(result):  # out [Hq, S, D], lse [Hq, S]
                out, lse = result
                return out.transpose(0, 1), lse.float() * LN2
        else:
            raise Unsupported(f"flashinfer has no use for {type(fmt).__name__}")
        return _ForwardPlan(call, standard, {
            "mask_format": c.plan.description,
            "lse_source": "flashinfer's returned LSE (base 2) times ln 2",
            "workspace_bytes": WORKSPACE_BYTES,
        })


def peers():
    return [FlashInferPeer()]

"""FlashAttention as installed: FlashAttention-2 (flash_attn), FlashAttention-3 (flash_attn_interface,
Hopper) and FlashAttention-4 (flash_attn.cute, CuTe DSL). Each takes exactly the masks it has
arguments for: full, causal and sliding windows (causal / window_size from formats.Band) and
document masks (cu_seqlens from formats.Varlen through the varlen API). Their signatures differ
between releases, so arguments are matched against the installed function's parameters.
"""
from __future__ import annotations

import importlib
import inspect

from ..formats import Band, Unsupported, Varlen
from .base import AutogradPlan, Availability, Case

SPECS = {
    # name: (module, summary, minimum compute capability, window value for "unbounded")
    "flash_attn": ("flash_attn", "FlashAttention-2 (flash_attn): causal, window_size, cu_seqlens",
                   80, -1),
    "flash_attn_interface": ("flash_attn_interface",
                             "FlashAttention-3 (flash_attn_interface, Hopper): causal, "
                             "window_size, cu_seqlens", 90, -1),
    "flash_attn.cute": ("flash_attn.cute", "FlashAttention-4 (flash_attn.cute, CuTe DSL): causal, "
                        "window_size, cu_seqlens", 90, None),
}


def _version(module_name: str, module) -> str:
    v = getattr(module, "__version__", "")
    if v and v != "0.0.0":
        return v
    try:
        from importlib.metadata import version
        for dist in {"flash_attn": ("flash-attn",), "flash_attn_interface": ("flash-attn-3",
                     "flash_attn_3"), "flash_attn.cute": ("flash-attn-4", "fa4")}[module_name]:
            try:
                return version(dist)
            except Exception:
                continue
    except ImportError:
        pass
    return "unknown version"


class FlashAttnPeer:
    dtypes = ("bf16", "fp16")
    backward = True

    def __init__(self, name: str):
        self.name = name
        self.module_name, self.summary, self.min_cc, self.unbounded = SPECS[name]

    def _module(self):
        m = importlib.import_module(self.module_name)
        for fn in ("flash_attn_func", "flash_attn_varlen_func"):
            if not callable(getattr(m, fn, None)):
                raise ImportError(f"{self.module_name} has no {fn} (another package provides the "
                                  "module name)")
        return m

    def availability(self, torch, device) -> Availability:
        try:
            m = self._module()
        except Exception as e:  # ImportError, or a broken install raising anything at import
            return Availability(False, reason=f"import {self.module_name}: "
                                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        version = f"{self.module_name} {_version(self.module_name, m)}"
        if device.type != "cuda":
            return Availability(False, version, "runs on CUDA devices only")
        major, minor = torch.cuda.get_device_capability(device)
        if major * 10 + minor < self.min_cc:
            return Availability(False, version, f"needs compute capability {self.min_cc / 10:.1f}+, "
                                f"this GPU is {major}.{minor}")
        return Availability(True, version)

    def prepare(self, c: Case) -> AutogradPlan:
        m = self._module()
        fmt = c.plan.format
        S, Hq, Hkv, D = c.seqlen, c.heads_q, c.heads_kv, c.head_dim
        torch = c.torch
        if isinstance(fmt, Band):
            fn = m.flash_attn_func
            args = (c.q.view(1, S, Hq, D), c.k.view(1, S, Hkv, D), c.v.view(1, S, Hkv, D))
            kwargs = self._mask_kwargs(fn, fmt)
            standard = lambda o: o[0]  # noqa: E731
            grad_out = c.d_o.view(1, S, Hq, D) if c.d_o is not None else None
        elif isinstance(fmt, Varlen):
            fn = m.flash_attn_varlen_func
            cu = torch.from_numpy(fmt.offsets.astype("int32")).to(c.device)
            mx = fmt.max_seqlen()
            args = (c.q, c.k, c.v)
            kwargs = {"cu_seqlens_q": cu, "cu_seqlens_k": cu, "max_seqlen_q": mx,
                      "max_seqlen_k": mx, "causal": fmt.causal}
            standard = lambda o: o  # noqa: E731
            grad_out = c.d_o
        else:
            raise Unsupported(f"{self.name} has no use for {type(fmt).__name__}")
        params = inspect.signature(fn).parameters
        kwargs["softmax_scale"] = c.scale
        if "return_lse" in params:
            kwargs["return_lse"] = True
        elif "return_attn_probs" in params:
            kwargs["return_attn_probs"] = True
        unknown = [k for k in kwargs if k not in params]
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            raise Unsupported(f"{self.name}'s {fn.__name__} takes none of {unknown}")

        def call():
            return fn(*args, **kwargs)

        def lse(result):
            if not isinstance(result, tuple) or len(result) < 2:
                raise Unsupported(f"{self.name} returned no LSE")
            t = result[1].detach().float()
            if t.dim() == 3 and t.shape[0] == 1:  # (batch, heads, S)
                t = t[0]
            if tuple(t.shape) == (S, Hq):
                t = t.transpose(0, 1)
            if tuple(t.shape) != (Hq, S):
                raise Unsupported(f"{self.name} returned an LSE of shape {tuple(t.shape)}")
            return t

        return AutogradPlan(c, call, standard, grad_out, lse, {
            "mask_format": c.plan.description,
            "lse_source": f"{self.name}'s returned softmax LSE (natural log)",
            "layout": "[S, H, D] as (1, S, H, D) or varlen (S, H, D), no copy",
        })

    def _mask_kwargs(self, fn, band: Band) -> dict:
        causal = band.right == 0 and band.left is None
        if causal:
            return {"causal": True}
        if band.is_full:
            return {"causal": False}
        u = self.unbounded
        left = u if band.left is None else band.left
        right = u if band.right is None else band.right
        return {"causal": False, "window_size": (left, right)}


def peers():
    return [FlashAttnPeer(n) for n in SPECS]

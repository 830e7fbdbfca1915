"""PyTorch scaled_dot_product_attention, one peer per backend, forced with sdpa_kernel.

Masks: is_causal for full and causal masks (the only ones it expresses exactly); the efficient and
math backends also take the dense boolean mask of formats.Dense, turned once during setup into the
additive bias SDPA applies (0 allowed, -inf masked), so no conversion runs in the timed call.
Layout: longattn's [S, H, D] tensors viewed as SDPA's (1, H, S, D) without copying. GQA through
enable_gqa; a backend that refuses a case is reported unsupported with PyTorch's own reasons.
"""
from __future__ import annotations

import warnings

from ..formats import Band, Dense, Unsupported
from .base import AutogradPlan, Availability, Case, lse_from_scores, saved_lse

BACKENDS = {
    "torch.sdpa.flash": "FLASH_ATTENTION",
    "torch.sdpa.cudnn": "CUDNN_ATTENTION",
    "torch.sdpa.efficient": "EFFICIENT_ATTENTION",
    "torch.sdpa.math": "MATH",
}
SUMMARIES = {
    "torch.sdpa.flash": "PyTorch SDPA, FlashAttention-2 backend: full and causal (is_causal)",
    "torch.sdpa.cudnn": "PyTorch SDPA, cuDNN backend: full and causal (is_causal)",
    "torch.sdpa.efficient": "PyTorch SDPA, memory-efficient backend: is_causal or a dense mask "
                            "(small S)",
    "torch.sdpa.math": "PyTorch SDPA, math backend (unfused): is_causal or a dense mask (small S)",
}
DTYPES = {
    "torch.sdpa.flash": ("bf16", "fp16"),
    "torch.sdpa.cudnn": ("bf16", "fp16"),
    "torch.sdpa.efficient": ("fp32", "bf16", "fp16"),
    "torch.sdpa.math": ("fp32", "bf16", "fp16"),
}


class SdpaPeer:
    backward = True

    def __init__(self, name: str):
        self.name = name
        self.summary = SUMMARIES[name]
        self.dtypes = DTYPES[name]

    def availability(self, torch, device) -> Availability:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401
        except ImportError as e:
            return Availability(False, reason=f"torch.nn.attention.sdpa_kernel: {e}")
        version = f"torch {torch.__version__}"
        if self.name == "torch.sdpa.cudnn":
            if device.type != "cuda":
                return Availability(False, version, "the cuDNN backend runs on CUDA devices only")
            version += f", cuDNN {torch.backends.cudnn.version()}"
        if device.type == "cuda":
            version += f", CUDA {torch.version.cuda}"
        return Availability(True, version)

    def prepare(self, c: Case) -> AutogradPlan:
        torch = c.torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, BACKENDS[self.name])
        S, Hq, Hkv, D = c.seqlen, c.heads_q, c.heads_kv, c.head_dim
        q4 = c.q.view(1, S, Hq, D).transpose(1, 2)
        k4 = c.k.view(1, S, Hkv, D).transpose(1, 2)
        v4 = c.v.view(1, S, Hkv, D).transpose(1, 2)
        fmt = c.plan.format
        is_causal, bias = False, None
        if isinstance(fmt, Band):
            is_causal = fmt.is_causal
        elif isinstance(fmt, Dense):
            allowed = torch.from_numpy(fmt.masks).to(c.device)  # [mask heads, S, S]
            if allowed.shape[0] > 1:
                allowed = allowed.repeat_interleave(Hq // allowed.shape[0], dim=0)
            bias = torch.zeros(allowed.shape, dtype=c.q.dtype, device=c.device)
            bias.masked_fill_(~allowed, float("-inf"))
            bias = bias.unsqueeze(0)  # (1, 1 or Hq, S, S)
            del allowed
        else:
            raise Unsupported(f"{self.name} has no use for {type(fmt).__name__}")

        def call():
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias,
                                                      is_causal=is_causal, scale=c.scale,
                                                      enable_gqa=Hq != Hkv)

        # One untimed call: a backend that refuses the case says why in its warnings.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with torch.enable_grad():
                    probe = call()
            except RuntimeError as e:
                if not any(m in str(e) for m in ("No available kernel", "No viable backend")):
                    raise
                why = "; ".join(str(w.message).replace("\n", " ") for w in caught)
                raise Unsupported(f"{self.name} refused the case: {why or e}") from None
        math_backend = self.name == "torch.sdpa.math"
        if not math_backend and saved_lse(torch, probe) is None:
            raise Unsupported(f"{self.name}: the autograd graph holds no LSE to read back")
        del probe

        def lse(result):
            if not math_backend:
                t = saved_lse(torch, result).detach()
                return t.reshape(t.shape[0] * t.shape[1], -1)[:, :S].reshape(Hq, S).float()
            if bias is None:
                allowed = (lambda r, cols: cols[None, :] <= r[:, None]) if is_causal else (
                    lambda r, cols: None)
            else:
                allowed = lambda r, cols: bias[0][:, r] == 0  # noqa: E731
            return lse_from_scores(c, allowed)

        d_o = c.d_o.view(1, S, Hq, D).transpose(1, 2) if c.d_o is not None else None
        details = {
            "mask_format": c.plan.description,
            "lse_source": ("computed by the bridge in fp32 from Q, K and the same mask (the math "
                           "backend keeps no LSE)") if math_backend
            else "the LSE the backend saved for its backward",
            "layout": "[S, H, D] viewed as (1, H, S, D), no copy",
        }
        if bias is not None:
            details["mask_memory"] = "additive bias of the dense mask, made in setup"
        return AutogradPlan(c, call, lambda o: o[0].transpose(0, 1), d_o, lse, details)


def peers():
    return [SdpaPeer(n) for n in BACKENDS]

"""PyTorch FlexAttention (torch.compile'd), static and block-sparse masks.

The BlockMask is built with BlockMask.from_kv_blocks from formats.FlexPlan: the full and partial
tiles counted exactly from the canonical mask's per-row intervals, and a mask_mod over those
intervals (static masks) or over the kept-block table (block-sparse masks; tiles as large as the
blocks when the partition is uniform). The same mask_mod code is rasterised by conformance.py.
"""
from __future__ import annotations

from ..formats import FlexPlan, Unsupported
from .base import AutogradPlan, Availability, Case

_compiled = None


def _flex(torch, device):
    """torch.compile(flex_attention) on CUDA: the fused Triton kernels. On the CPU (development
    and tests only) the uncompiled function, which runs the reference path with LSE and backward."""
    global _compiled
    from torch.nn.attention.flex_attention import flex_attention
    if device.type != "cuda":
        return flex_attention
    if _compiled is None:
        # Every mask and shape compiles its own kernel; keep them all rather than falling back
        # to the unfused path after torch's default of 8 recompilations.
        dyn = torch._dynamo.config
        dyn.cache_size_limit = max(getattr(dyn, "cache_size_limit", 8), 1024)
        if hasattr(dyn, "accumulated_cache_size_limit"):
            dyn.accumulated_cache_size_limit = max(dyn.accumulated_cache_size_limit, 4096)
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def block_mask(torch, plan: FlexPlan, heads_q: int, device):
    """The torch BlockMask of a FlexPlan (also used by conformance.py to rasterise it back)."""
    from torch.nn.attention.flex_attention import BlockMask

    st = plan.structure
    kv_num, kv_idx, full_num, full_idx = (torch.from_numpy(a).to(device) for a in st.kv_blocks())
    mask_heads = st.full.shape[0]
    if mask_heads > 1:  # one structure per mask head -> one per query head
        rep = heads_q // mask_heads
        kv_num, kv_idx, full_num, full_idx = (t.repeat_interleave(rep, dim=1)
                                              for t in (kv_num, kv_idx, full_num, full_idx))
    arrays = {k: torch.from_numpy(v).to(device) for k, v in plan.arrays.items()}
    mask_mod = plan.mask_mod(arrays)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx,
                                    BLOCK_SIZE=(st.block_q, st.block_k), mask_mod=mask_mod,
                                    seq_lengths=(st.seqlen_q, st.seqlen_k))


class FlexPeer:
    name = "torch.flex"
    summary = ("PyTorch FlexAttention (torch.compile): BlockMask from a mask_mod over the "
               "canonical mask's row intervals or kept blocks; any mask")
    dtypes = ("fp32", "bf16", "fp16")
    backward = True

    def records_graph(self, device) -> bool:
        return device.type == "cuda"  # FlexAttention has no backward on the CPU

    def availability(self, torch, device) -> Availability:
        try:
            from torch.nn.attention.flex_attention import BlockMask, flex_attention  # noqa: F401
        except ImportError as e:
            return Availability(False, reason=f"torch.nn.attention.flex_attention: {e}")
        if not torch._dynamo.is_dynamo_supported():
            return Availability(False, reason="torch.compile (dynamo) is not supported here")
        return Availability(True, f"torch {torch.__version__}" + (
            f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""))

    def prepare(self, c: Case) -> AutogradPlan:
        torch = c.torch
        plan = c.plan.format
        if not isinstance(plan, FlexPlan):
            raise Unsupported(f"torch.flex has no use for {type(plan).__name__}")
        try:
            from torch.nn.attention.flex_attention import AuxRequest
            aux = {"return_aux": AuxRequest(lse=True)}
        except ImportError:  # before AuxRequest: the deprecated flag
            aux = {"return_lse": True}
        if c.backward and c.device.type != "cuda":
            raise Unsupported("FlexAttention has no backward pass on the CPU")
        S, Hq, Hkv, D = c.seqlen, c.heads_q, c.heads_kv, c.head_dim
        bm = block_mask(torch, plan, Hq, c.device)
        q4 = c.q.view(1, S, Hq, D).transpose(1, 2)
        k4 = c.k.view(1, S, Hkv, D).transpose(1, 2)
        v4 = c.v.view(1, S, Hkv, D).transpose(1, 2)
        flex = _flex(torch, c.device)

        def call():
            return flex(q4, k4, v4, block_mask=bm, scale=c.scale, enable_gqa=Hq != Hkv, **aux)

        def lse(result):
            second = result[1]
            t = second.lse if hasattr(second, "lse") else second
            return t.detach()[0].float()

        d_o = c.d_o.view(1, S, Hq, D).transpose(1, 2) if c.d_o is not None else None
        p = AutogradPlan(c, call, lambda o: o[0].transpose(0, 1), d_o, lse, {
            "mask_format": c.plan.description,
            "lse_source": "flex_attention's returned LSE (natural log)",
            "layout": "[S, H, D] viewed as (1, H, S, D), no copy",
        })
        p.issued_area = plan.structure.issued_area()
        return p


def peers():
    return [FlexPeer()]


def rasterise_block_mask(torch, bm, head: int, transposed: bool = False):
    """What a BlockMask makes FlexAttention compute for query head `head` (an index into its H
    dimension): its full blocks, and its partial blocks through its mask_mod, read from the key
    block lists of each query tile (forward) or, transposed, the query block lists of each key
    tile (backward). bool [Sq, Sk]."""
    bq, bk = bm.BLOCK_SIZE
    sq, sk = bm.seq_lengths
    out = torch.zeros((sq, sk), dtype=torch.bool)
    if transposed:
        lists = ((bm.q_num_blocks, bm.q_indices, False), (bm.full_q_num_blocks, bm.full_q_indices, True))
    else:
        lists = ((bm.kv_num_blocks, bm.kv_indices, False), (bm.full_kv_num_blocks, bm.full_kv_indices, True))
    b = torch.tensor(0)
    h = torch.tensor(head)
    for num, idx, full in lists:
        if num is None:
            continue
        num, idx = num[0, head].cpu(), idx[0, head].cpu()
        for outer in range(num.shape[0]):
            for inner in idx[outer, :int(num[outer])].tolist():
                qt, kt = (inner, outer) if transposed else (outer, inner)
                q0, k0 = qt * bq, kt * bk
                q = torch.arange(q0, min(sq, q0 + bq))[:, None]
                k = torch.arange(k0, min(sk, k0 + bk))[None, :]
                if full:
                    out[q0:q0 + bq, k0:k0 + bk] = True
                else:
                    out[q0:q0 + bq, k0:k0 + bk] = bm.mask_mod(b, h, q, k).cpu().expand(
                        q.shape[0], k.shape[1])
    return out

"""The conformance table: does each peer compute exactly the canonical mask? Each peer's format
(formats.plan_mask) is rasterised back to a dense boolean mask and compared bit for bit with the
canonical mask rasterised straight from its slices (or block table). With torch present, the
FlexAttention BlockMask that torch itself builds is rasterised too, in both directions (the
key-block lists the forward walks and the query-block lists the backward walks)."""
from __future__ import annotations

from typing import Iterable, List, Optional

import numpy as np

from .formats import PEERS, FlexPlan, Unsupported, plan_mask
from .masks import DEFAULT_DENSE_LIMIT, InputError


def _compare(truth: np.ndarray, got) -> int:
    got = np.asarray(got, dtype=bool)
    if got.shape != truth.shape:
        return int(truth.size)
    return int(np.count_nonzero(truth != got))


def check_mask(mask, heads_q: int, heads_kv: int, peers: Iterable[str] = PEERS,
               dense_limit: int = DEFAULT_DENSE_LIMIT, torch=None, label: str = "") -> List[dict]:
    """One row per peer: status exact / mismatch / unsupported, the format, differing pairs."""
    try:
        truth = [mask.dense(h) for h in range(mask.heads)]
    except InputError as e:
        raise InputError(f"conformance needs a small mask: {e}") from None
    rows = []
    for peer in peers:
        row = {"mask": label, "seqlen": mask.seqlen, "mask_heads": mask.heads, "peer": peer,
               "heads_q": heads_q, "heads_kv": heads_kv}
        try:
            plan = plan_mask(peer, mask, heads_q, heads_kv, dense_limit)
        except Unsupported as e:
            rows.append(dict(row, status="unsupported", reason=str(e), format=None,
                             differing_pairs=None, checked=None))
            continue
        diff = sum(_compare(truth[h], plan.dense(h)) for h in range(mask.heads))
        checked = "numpy"
        if torch is not None and isinstance(plan.format, FlexPlan):
            diff += _torch_flex_diff(torch, plan.format, heads_q, truth)
            checked = "numpy+torch (kv and q block lists)"
        rows.append(dict(row, status="exact" if diff == 0 else "mismatch", reason="",
                         format=plan.description, differing_pairs=diff, checked=checked))
    return rows


def _torch_flex_diff(torch, plan: FlexPlan, heads_q: int, truth) -> int:
    from .peers.flex import block_mask, rasterise_block_mask

    bm = block_mask(torch, plan, heads_q, torch.device("cpu"))
    diff = 0
    for h, t in enumerate(truth):
        qh = h * plan.group if bm.kv_num_blocks.shape[1] > 1 else 0
        for transposed in (False, True):
            diff += _compare(t, rasterise_block_mask(torch, bm, qh, transposed).numpy())
    return diff


def format_table(rows: List[dict], numeric: Optional[dict] = None) -> str:
    """Fixed-width rows under a '#' header; `numeric` maps (mask, peer) -> numerical status."""
    lines = ["#{:>22} {:>7} {:>22} {:>12} {:>10}  {}".format(
        "mask", "S", "peer", "conformance", "numeric", "format / reason")]
    for r in rows:
        num = (numeric or {}).get((r["mask"], r["peer"]), "-")
        status = r["status"] if r["status"] != "mismatch" else f"MISMATCH:{r['differing_pairs']}"
        lines.append(" {:>22} {:>7} {:>22} {:>12} {:>10}  {}".format(
            r["mask"][:22], r["seqlen"], r["peer"], status, num,
            r["format"] if r["status"] != "unsupported" else r["reason"]))
    return "\n".join(lines)

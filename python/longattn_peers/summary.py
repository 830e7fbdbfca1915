"""A short summary of a run's records (records.jsonl of `longattn bench`, peers and longattn's own
backends side by side): per sequence length and direction, a table of masks x backends with TF/s
or the status; the side-by-side check of torch.sdpa.cudnn against longattn's cudnn backend (the
issue asks for agreement within 5%); the failures; and, given `longattn peers conformance`'s
rows, whether each peer computes exactly the canonical mask of each pattern. Plain JSON: no
numpy, no torch."""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Dict, Iterable, List, Tuple

SHORT = {"unsupported": "unsup", "error": "ERROR", "wrong": "WRONG", "oom": "oom"}


def load(paths: Iterable[str]) -> List[dict]:
    out = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    out.append(json.loads(line))
    return out


def _size(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def _cell(r: dict, phase: str) -> str:
    if r["status"] != "ok":
        return SHORT.get(r["status"], r["status"])
    p = r.get(phase)
    return f"{p['tflops']:.0f}" if p and p.get("tflops") is not None else "-"


def tables(records: List[dict]) -> str:
    """One table per (S, heads, dtype, phase): rows masks, columns backends, cells TF/s."""
    groups: Dict[Tuple, "OrderedDict[str, Dict[str, dict]]"] = OrderedDict()
    backends: Dict[Tuple, List[str]] = {}
    for r in records:
        c = r["case"]
        key = (c["seqlen"], f"{c['heads_q']}:{c['heads_kv']}", c["head_dim"], c["dtype"])
        groups.setdefault(key, OrderedDict()).setdefault(c["pattern"], {})[r["backend"]] = r
        bl = backends.setdefault(key, [])
        if r["backend"] not in bl:
            bl.append(r["backend"])
    lines = []
    for key, rows in groups.items():
        cols = backends[key]
        phases = [p for p in ("forward", "backward")
                  if any(r.get(p) for m in rows.values() for r in m.values())] or ["status"]
        for phase in phases:
            lines.append(f"# {phase} TF/s  S={_size(key[0])} heads {key[1]} D={key[2]} {key[3]}  "
                         "(unsup = the backend has no exact format for the mask or is unavailable)")
            width = max(8, *(len(b) for b in cols))
            lines.append("#{:>22} ".format("mask") + " ".join(f"{b:>{width}}" for b in cols))
            for pattern, by in rows.items():
                cells = [(_cell(by[b], phase) if b in by else "") for b in cols]
                lines.append(" {:>22} ".format(pattern) + " ".join(f"{x:>{width}}" for x in cells))
            lines.append("")
    return "\n".join(lines)


AGREEMENT = 0.05  # the issue: torch.sdpa.cudnn and the C++ cudnn backend within 5% of each other


def _within(ratio: float) -> bool:
    return abs(ratio - 1.0) <= AGREEMENT


def cudnn_agreement(records: List[dict], peer: str = "torch.sdpa.cudnn", own: str = "cudnn") -> str:
    """Per case both ran ok: the TF/s of each, their ratio peer / own and whether it is within 5%,
    forward and backward; a last line counts the phases within 5%."""
    def key(r):
        c = r["case"]
        return (c["pattern"], c["seqlen"], c["heads_q"], c["heads_kv"], c["head_dim"], c["dtype"],
                c["direction"])
    ours = {key(r): r for r in records if r["backend"] == own and r["status"] == "ok"}
    head = "{:>9} {:>9} {:>7} {:>6}"
    lines = [f"# {peer} vs longattn {own}: TF/s of each, ratio peer / own, within "
             f"{AGREEMENT:.0%}?",
             ("#{:>22} {:>6} {:>6} " + head + " " + head).format(
                 "mask", "S", "heads", "fwd peer", "fwd own", "ratio", "5%", "bwd peer", "bwd own",
                 "ratio", "5%")]
    verdicts: List[bool] = []

    def pair(r, o, phase):
        a, b = r.get(phase), o.get(phase)
        if not a or not b or not a.get("tflops") or not b.get("tflops"):
            return "-", "-", "-", "-"
        ratio = a["tflops"] / b["tflops"]
        verdicts.append(_within(ratio))
        return (f"{a['tflops']:.1f}", f"{b['tflops']:.1f}", f"{ratio:.3f}",
                "yes" if verdicts[-1] else "NO")

    for r in records:
        if r["backend"] != peer or r["status"] != "ok" or key(r) not in ours:
            continue
        o = ours[key(r)]
        c = r["case"]
        lines.append((" {:>22} {:>6} {:>6} " + head + " " + head).format(
            c["pattern"], _size(c["seqlen"]), f"{c['heads_q']}:{c['heads_kv']}",
            *pair(r, o, "forward"), *pair(r, o, "backward")))
    if verdicts:
        lines.append(f"  {sum(verdicts)} of {len(verdicts)} phases within {AGREEMENT:.0%}")
    else:
        lines.append(f"  (no case ran ok on both {peer} and {own})")
    return "\n".join(lines)


def failures(records: List[dict]) -> str:
    bad = [r for r in records if r["status"] in ("error", "wrong", "oom")]
    lines = [f"# {len(bad)} cases error / wrong / oom"]
    for r in bad:
        c = r["case"]
        lines.append(f"  {r['backend']:<22} {c['pattern']:<22} S={_size(c['seqlen'])} "
                     f"{c['direction']:<6} {r['status']:<6} {r['reason'][:160]}")
    return "\n".join(lines)


def conformance_counts(rows: List[dict]) -> str:
    per: "OrderedDict[str, Dict[str, int]]" = OrderedDict()
    for r in rows:
        d = per.setdefault(r["peer"], {"exact": 0, "mismatch": 0, "unsupported": 0, "num ok": 0,
                                         "num bad": 0, "num not run": 0})
        d[r["status"]] += 1
        num = r.get("numeric")
        if isinstance(num, str):
            d["num ok" if num.startswith("ok") else
              "num not run" if num.startswith("unsupported") else "num bad"] += 1
    lines = ["# conformance per peer: masks whose format is exact / MISMATCH / unsupported; of the "
             "exact ones, numeric fwd+bwd ok / wrong-error-oom / not run (peer unavailable)",
             "#{:>21} {:>6} {:>9} {:>12} {:>7} {:>8} {:>12}".format(
                 "peer", "exact", "MISMATCH", "unsupported", "num ok", "num bad", "num not run")]
    for peer, d in per.items():
        lines.append(" {:>21} {:>6} {:>9} {:>12} {:>7} {:>8} {:>12}".format(
            peer, d["exact"], d["mismatch"], d["unsupported"], d["num ok"], d["num bad"],
            d["num not run"]))
    return "\n".join(lines)


def _conformance_cell(r: dict) -> str:
    """exact / differs / unsup; an exact format whose numerical check failed says how."""
    if r["status"] == "unsupported":
        return "unsup"
    if r["status"] == "mismatch":
        return "differs"
    num = r.get("numeric")
    if isinstance(num, str) and not num.startswith(("ok", "unsupported")):
        return "exact/" + num.split()[0].rstrip(":")
    return "exact"


def conformance_table(rows: List[dict]) -> str:
    """Rows (mask, S), columns peers: does the peer's own mask format compute exactly the
    canonical mask (exact), another one (differs), or can it not express it (unsup)?"""
    peers: List[str] = []
    cells: "OrderedDict[Tuple[str, int], Dict[str, str]]" = OrderedDict()
    for r in rows:
        if r["peer"] not in peers:
            peers.append(r["peer"])
        cells.setdefault((r["mask"], r.get("seqlen", 0)), {})[r["peer"]] = _conformance_cell(r)
    widths = [max(7, len(p)) for p in peers]
    mask_width = max([22] + [len(mask) for mask, _ in cells])
    lines = ["# conformance per peer x mask: exact = the peer's format computes exactly the "
             "canonical mask, differs = it computes another, unsup = it cannot express it "
             "(exact/wrong|error|oom: exact format, failed numerical check)",
             f"#{'mask':>{mask_width}} {'S':>6} " + " ".join(
                 f"{p:>{w}}" for p, w in zip(peers, widths))]
    for (mask, seqlen), by in cells.items():
        lines.append(f" {mask:>{mask_width}} {_size(seqlen) if seqlen else '':>6} " + " ".join(
            f"{by.get(p, ''):>{w}}" for p, w in zip(peers, widths)))
    return "\n".join(lines)

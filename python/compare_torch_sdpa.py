"""PyTorch's cuDNN SDPA timed with longattn's protocol, side by side with the cudnn backend.

Same shapes and memory layout as `longattn bench` (token-major [S][H][D] tensors, batch 1), same
protocol: CUDA events around the attention call only, an L2 flush (memset of 2x the L2 size)
before each repetition outside the events, warm-up, at least 20 repetitions up to a time budget,
median. Backward is timed alone (torch.autograd.grad of a saved forward). FLOPs are the exact
causal/full areas of DESIGN.md section 5.

Usage: python3 python/compare_torch_sdpa.py --records RUN/records.jsonl [--seqlen 16384 32768]
Prints one row per shape and direction with both TF/s and their ratio; --json writes them too.
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def area(mask, s):
    return s * (s + 1) // 2 if mask == "causal" else s * s


def timed(fn, flush, warmup=2, min_reps=20, max_reps=1000, budget_s=0.5):
    def one():
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        return start, end

    warm = [one() for _ in range(warmup)]
    torch.cuda.synchronize()
    estimate = min(s.elapsed_time(e) for s, e in warm)
    reps = max_reps if estimate <= 0 else max(min_reps, min(max_reps, int(budget_s * 1000 / estimate)))
    events = [one() for _ in range(reps)]
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in events)
    return statistics.median(ms), reps


def run(mask, s, hq, hkv, d, flush):
    dev = torch.device("cuda")
    # [1][S][H][D] storage viewed as (B, H, S, D): the layout longattn's tensors have.
    q = torch.randn(1, s, hq, d, device=dev, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    k = torch.randn(1, s, hkv, d, device=dev, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    v = torch.randn(1, s, hkv, d, device=dev, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    do = torch.randn(1, s, hq, d, device=dev, dtype=torch.bfloat16).transpose(1, 2)
    causal = mask == "causal"
    note = "enable_gqa"
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        try:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=hq != hkv)
            fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=hq != hkv)
        except RuntimeError:
            # cuDNN SDPA without GQA support in this PyTorch: K/V expanded outside the timed region.
            note = "K/V expanded (no GQA in this PyTorch's cuDNN path)"
            k2 = k.detach().repeat_interleave(hq // hkv, dim=1).requires_grad_()
            v2 = v.detach().repeat_interleave(hq // hkv, dim=1).requires_grad_()
            k, v = k2, v2
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        f_ms, f_reps = timed(fwd, flush)
        bwd = lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True)
        b_ms, b_reps = timed(bwd, flush)
    flops = 4.0 * area(mask, s) * hq * d
    return {"fwd_ms": f_ms, "fwd_tflops": flops / f_ms / 1e9, "fwd_reps": f_reps,
            "bwd_ms": b_ms, "bwd_tflops": 2.5 * flops / b_ms / 1e9, "bwd_reps": b_reps, "note": note}


def ours(records, mask, s, hq, hkv, d):
    """The cudnn backend's TF/s per direction from longattn's records."""
    out = {}
    for r in records:
        c = r["case"]
        if (r["backend"] == "cudnn" and r["status"] == "ok" and c["pattern"] == mask and c["seqlen"] == s
                and c["heads_q"] == hq and c["heads_kv"] == hkv and c["head_dim"] == d and c["dtype"] == "bf16"):
            for phase in ("forward", "backward"):
                if r[phase]:
                    out[phase] = r[phase]["tflops"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", required=True, help="records.jsonl of a `longattn bench --backend cudnn` run")
    ap.add_argument("--seqlen", type=int, nargs="+", default=[16384, 32768])
    ap.add_argument("--mask", nargs="+", default=["causal"], choices=["causal", "full"])
    ap.add_argument("--heads", default="64:8")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    hq, hkv = (int(x) for x in a.heads.split(":"))
    records = [json.loads(line) for line in open(a.records) if line.strip()]
    props = torch.cuda.get_device_properties(0)
    flush = torch.empty(max(2 * props.L2_cache_size, 32 << 20), dtype=torch.int8, device="cuda")
    print(f"# torch {torch.__version__}, its cuDNN {torch.backends.cudnn.version()}, {props.name}")
    print(f"# {'mask':>8} {'S':>6} {'heads':>6} {'dir':>4} {'torch_TF/s':>10} {'longattn_TF/s':>13} {'ratio':>6}")
    rows = []
    for mask in a.mask:
        for s in a.seqlen:
            t = run(mask, s, hq, hkv, a.head_dim, flush)
            o = ours(records, mask, s, hq, hkv, a.head_dim)
            for phase, key in (("forward", "fwd"), ("backward", "bwd")):
                mine = o.get(phase)
                ratio = mine / t[f"{key}_tflops"] if mine else math.nan
                rows.append({"mask": mask, "seqlen": s, "heads": a.heads, "head_dim": a.head_dim, "direction": key,
                             "torch_tflops": t[f"{key}_tflops"], "torch_ms": t[f"{key}_ms"],
                             "torch_reps": t[f"{key}_reps"], "longattn_tflops": mine, "ratio": ratio,
                             "torch_note": t["note"]})
                print(f"  {mask:>8} {s:>6} {a.heads:>6} {key:>4} {t[key + '_tflops']:>10.1f} "
                      f"{(mine or math.nan):>13.1f} {ratio:>6.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "torch_cudnn": torch.backends.cudnn.version(),
                       "gpu": props.name, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())

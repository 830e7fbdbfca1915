"""PyTorch SDPA's FlashAttention-2 backend on the flash kernels' headline shapes, for a side-by-side
comparison with tests/gpu/flash_timing (same conventions: median of CUDA-event times, L2 flushed,
mask-aware FLOPs: forward 4 * area * Hq * D, backward 2.5x).

    python3 tests/gpu/flash_sdpa_peer.py [S] [Hq] [Hkv] [D] [reps]
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps, flush):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        flush.zero_()
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    S, Hq, Hkv, D, reps = (int(x) for x in (sys.argv[1:] + ["16384", "64", "8", "128", "10"][len(sys.argv) - 1:])[:5])
    dev, dt = "cuda", torch.bfloat16
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    # Our layout [S][H][D], seen by SDPA as [1][H][S][D].
    q = torch.randn(1, S, Hq, D, device=dev, dtype=dt).transpose(1, 2).requires_grad_()
    k = torch.randn(1, S, Hkv, D, device=dev, dtype=dt).transpose(1, 2).requires_grad_()
    v = torch.randn(1, S, Hkv, D, device=dev, dtype=dt).transpose(1, 2).requires_grad_()
    print(f"# torch {torch.__version__} SDPA FLASH_ATTENTION S={S} H={Hq}:{Hkv} D={D} bf16, median of {reps}")
    print(f"{'mask':<10} {'fwd_ms':>9} {'fwd_TF':>8} {'bwd_ms':>9} {'bwd_TF':>8}")
    for causal in (False, True):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            def fwd():
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
            tf = median_ms(fwd, reps, flush)
            o = fwd()
            do = torch.randn_like(o)
            tb = median_ms(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True), reps, flush)
        area = S * (S + 1) / 2 if causal else S * S
        flops = 4 * area * Hq * D
        name = "causal" if causal else "full"
        print(f"{name:<10} {tf:9.3f} {flops / tf * 1e-9:8.1f} {tb:9.3f} {2.5 * flops / tb * 1e-9:8.1f}", flush=True)


if __name__ == "__main__":
    main()

"""The measurement protocol of the C++ harness (DESIGN.md section 5, src/bench/timing.cpp and
gpu_executor.cpp), in torch:
  - time: a pair of CUDA events around each call of the peer only; before each call (warm-up and
    timed) the L2 cache is flushed by overwriting a buffer of 2x its size; warm-up calls size the
    repetition count exactly as planned_reps() does; all repetitions are enqueued back to back;
    median / p20 / p80 by linear interpolation between closest ranks;
  - memory: device-wide used bytes (cudaMemGetInfo through torch.cuda.mem_get_info) above the
    case's baseline, polled by a thread during setup, warm-up and checks and read at every phase
    boundary (the poller pauses during timed repetitions), and torch.cuda.max_memory_allocated
    above the baseline as a second figure (the caching allocator's own view).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable, List

from .protocol import Timing

GIB = float(1 << 30)

MEMORY_METHOD = ("device-wide cudaMemGetInfo used bytes (torch.cuda.mem_get_info) above the case "
                 "baseline; polled by a Python thread every ~50 us (GIL permitting) during setup, "
                 "warm-up and checks plus at each phase boundary (paused during timed reps); "
                 "torch.cuda.max_memory_allocated above the baseline is reported beside it")


def planned_reps(estimate_ms: float, t: Timing) -> int:
    if not estimate_ms > 0:
        return t.max_reps
    fit = t.time_budget_s * 1000.0 / estimate_ms
    if fit >= t.max_reps:
        return t.max_reps
    return max(t.min_reps, int(fit))


def quantile(sorted_ms: List[float], q: float) -> float:
    if not sorted_ms:
        raise ValueError("quantile of no samples")
    pos = q * (len(sorted_ms) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (pos - lo) * (sorted_ms[hi] - sorted_ms[lo])


def summarize(samples_ms: List[float]) -> dict:
    s = sorted(samples_ms)
    return {"median_ms": quantile(s, 0.5), "p20_ms": quantile(s, 0.2), "p80_ms": quantile(s, 0.8),
            "min_ms": s[0], "max_ms": s[-1], "mean_ms": sum(s) / len(s), "reps": len(s)}


class MemoryPoller:
    """Keeps the maximum device-wide used bytes seen since the last take_max()."""

    def __init__(self, torch):
        self._torch = torch
        self._max = 0
        self._active = threading.Event()
        self._stop = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="longattn-memory", daemon=True)
        self._thread.start()

    def used(self) -> int:
        free, total = self._torch.cuda.mem_get_info()
        return total - free

    def sample(self) -> None:
        v = self.used()
        with self._lock:
            self._max = max(self._max, v)

    def take_max(self) -> int:
        with self._lock:
            m, self._max = self._max, 0
        return m

    def set_active(self, on: bool) -> None:
        if on:
            self._active.set()
        else:
            self._active.clear()

    def close(self) -> None:
        self._stop = True
        self._active.set()
        self._thread.join(timeout=1)

    def _loop(self) -> None:
        while not self._stop:
            self._active.wait()
            if self._stop:
                return
            try:
                self.sample()
            except Exception:  # a failing device: the case reports it, the poller just stops
                return
            time.sleep(50e-6)


class CudaMeasure:
    """Timing and memory of one process: the L2 flush buffer is made once, before any baseline."""

    def __init__(self, torch, device):
        self.torch = torch
        self.device = device
        props = torch.cuda.get_device_properties(device)
        l2 = getattr(props, "L2_cache_size", 0) or (50 << 20)
        self.flush_bytes = max(2 * l2, 32 << 20)
        self.flush_buf = torch.empty(self.flush_bytes, dtype=torch.uint8, device=device)
        self.flush_value = 0
        self.poller = MemoryPoller(torch)
        self.baseline_used = 0
        self.baseline_allocated = 0

    # Memory ---------------------------------------------------------------------------------

    def begin_case(self) -> None:
        torch = self.torch
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        self.baseline_used = self.poller.used()
        self.baseline_allocated = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        self.poller.take_max()
        self.poller.sample()
        self.poller.set_active(True)

    def phase_peak(self):
        """(device-wide GiB, allocator GiB) above the baseline since the previous call."""
        torch = self.torch
        self.poller.sample()
        peak = self.poller.take_max()
        self.poller.sample()
        alloc = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return (max(0, peak - self.baseline_used) / GIB,
                max(0, alloc - self.baseline_allocated) / GIB)

    def end_case(self) -> None:
        self.poller.set_active(False)

    def pause(self) -> None:
        self.poller.set_active(False)

    def resume(self) -> None:
        self.poller.set_active(True)

    # Time -----------------------------------------------------------------------------------

    def _flush(self, t: Timing) -> None:
        if t.l2_flush:
            self.flush_value = (self.flush_value + 1) & 0xFF
            self.flush_buf.fill_(self.flush_value)

    def time(self, body: Callable[[], None], t: Timing, before: Callable[[], None] = None
             ) -> List[float]:
        """`before` (untimed, ahead of the flush) runs before every call when given."""
        torch = self.torch
        ev = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731

        def calls(pairs):  # each call between its pair of events, then wait for all
            for a, b in pairs:
                if before:
                    before()
                self._flush(t)
                a.record()
                body()
                b.record()
            torch.cuda.synchronize()

        warm = [(ev(), ev()) for _ in range(t.warmup)]
        calls(warm)
        estimate = min(a.elapsed_time(b) for a, b in warm)
        reps = planned_reps(estimate, t)
        events = [(ev(), ev()) for _ in range(reps)]
        self.poller.sample()
        self.poller.set_active(False)  # nothing else runs on the host while we measure
        try:
            calls(events)
        finally:
            self.poller.set_active(True)
        self.poller.sample()
        return [a.elapsed_time(b) for a, b in events]

    def close(self) -> None:
        self.poller.close()


class HostMeasure:
    """device = cpu (development and tests only): host clock, no memory figures."""

    def __init__(self, torch):
        self.torch = torch

    def begin_case(self) -> None:
        pass

    def phase_peak(self):
        return None, None

    def end_case(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def time(self, body: Callable[[], None], t: Timing, before: Callable[[], None] = None
             ) -> List[float]:
        def once():
            if before:
                before()
            start = time.perf_counter()
            body()
            return (time.perf_counter() - start) * 1e3

        estimate = min(once() for _ in range(t.warmup))
        return [once() for _ in range(planned_reps(estimate, t))]

    def close(self) -> None:
        pass

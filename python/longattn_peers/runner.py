"""Runs the cases of a request, one after another, and never stops at a bad one: each failure
becomes its record's status (unsupported / oom / error). After a device fault, which leaves the
CUDA context unusable, the record says so and the process exits with DEVICE_FAULT_EXIT so that
the caller starts a fresh one for the remaining cases."""
from __future__ import annotations

import gc
import math
import os
import platform
import socket
import sys
import time
import traceback

import numpy as np

from . import PROTOCOL_VERSION, __version__
from . import npy
from .formats import Unsupported, format_family, plan_mask
from .measure import MEMORY_METHOD, summarize
from .protocol import Request, ResultWriter, new_record, phase_json

DEVICE_FAULT_EXIT = 3


class DeviceFault(Exception):
    pass


class _State:
    """What one process keeps across requests: torch, the device, the timing buffers, peers'
    availability, the masks' formats."""

    def __init__(self):
        self.torch = None
        self.torch_error = None
        self.device_kind = None
        self.device = None
        self.measure = None
        self.env = None
        self.availability = {}

    def setup(self, device_kind: str):
        if self.device_kind == device_kind:
            return
        if self.measure is not None:
            self.measure.close()
        self.device_kind = device_kind
        self.availability = {}
        try:
            import torch
            self.torch = torch
        except Exception as e:
            self.torch_error = f"torch is not importable: {type(e).__name__}: {e}"
            self.env = environment(None, None)
            return
        torch = self.torch
        if device_kind == "cuda":
            if not torch.cuda.is_available():
                self.torch_error = f"torch {torch.__version__} sees no CUDA device"
                self.env = environment(torch, None)
                return
            self.device = torch.device("cuda", torch.cuda.current_device())
            from .measure import CudaMeasure
            self.measure = CudaMeasure(torch, self.device)
        else:
            self.device = torch.device("cpu")
            from .measure import HostMeasure
            self.measure = HostMeasure(torch)
        self.torch_error = None
        self.env = environment(torch, self.device)

    def peer_availability(self, peer):
        if peer.name not in self.availability:
            try:
                self.availability[peer.name] = peer.availability(self.torch, self.device)
            except Exception as e:
                from .peers.base import Availability
                self.availability[peer.name] = Availability(False, reason=f"{type(e).__name__}: {e}")
        return self.availability[peer.name]


STATE = _State()


def environment(torch, device) -> dict:
    env = {
        "bridge": f"longattn_peers {__version__} (protocol {PROTOCOL_VERSION})",
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "gpu": False,
    }
    if torch is not None:
        env["cuda_runtime"] = torch.version.cuda
        try:
            env["cudnn"] = str(torch.backends.cudnn.version())
        except Exception:
            env["cudnn"] = None
    if device is not None and device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update({
            "gpu": True,
            "gpu_name": p.name,
            "gpu_sm_count": p.multi_processor_count,
            "gpu_cc": p.major * 10 + p.minor,
            "gpu_memory_gib": p.total_memory / float(1 << 30),
            "gpu_l2_mib": getattr(p, "L2_cache_size", 0) / float(1 << 20),
        })
    return env


def _to_device(torch, a: np.ndarray, dtype: str, device, grad: bool):
    a = np.ascontiguousarray(a)
    if dtype == "bf16":
        t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(a)
    return t.to(device).requires_grad_(grad)


def _to_host(torch, t, dtype: str) -> np.ndarray:
    t = t.detach().contiguous()
    if dtype == "bf16":
        return t.view(torch.int16).cpu().numpy().view(np.uint16)
    return t.cpu().numpy().astype(npy.storage_dtype(dtype), copy=False)


def _is_oom(torch, e: BaseException) -> bool:
    if isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(e, (MemoryError, RuntimeError)) and "out of memory" in str(e).lower()


def _message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if len(text) > 600:
        text = text[:600] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_request(req: Request, log=sys.stderr) -> None:
    """Runs every case of `req`, writing OUTPUT_DIR/results.jsonl and the output tensors."""
    from .peers import find

    st = STATE
    st.setup(req.device)
    writer = ResultWriter(req.output_dir)
    host_inputs = {}
    plans = {}
    try:
        for c in req.cases:
            writer.write({"event": "start", "id": c.id, "peer": c.peer})
            print(f"longattn_peers: {c.id} {c.peer}", file=log, flush=True)
            rec, outputs, details = _run_case(st, req, c, find(c.peer), host_inputs, plans)
            writer.write({"event": "record", "id": c.id, "record": rec, "outputs": outputs,
                          "peer": details})
            if details.get("device_fault"):
                raise DeviceFault(rec["reason"])
        writer.write({"event": "done", "cases": len(req.cases)})
    finally:
        writer.close()


def _run_case(st: _State, req: Request, c, peer, host_inputs, plans):
    rec = new_record(req, c, st.env)
    details = {}
    outputs = {}

    def finish(status, reason):
        rec["status"] = status
        rec["reason"] = reason
        if status != "ok":
            rec["forward"] = None
            rec["backward"] = None
        return rec, outputs, details

    if st.torch_error:
        return finish("unsupported", st.torch_error)
    a = st.peer_availability(peer)
    rec["backend_version"] = a.version
    if not a.ok:
        return finish("unsupported", f"{peer.name} is unavailable: {a.reason}")
    x = req.inputs[c.inputs]
    if x.dtype not in peer.dtypes:
        return finish("unsupported", f"{peer.name} runs {', '.join(peer.dtypes)}, not {x.dtype}")
    if c.backward and not peer.backward:
        return finish("unsupported", f"{peer.name} has no backward pass")
    mask = req.masks[c.mask]
    # Peers of one family take the same format: made once per mask and head shape.
    key = (format_family(peer.name), c.mask, x.heads_q, x.heads_kv)
    try:
        if key not in plans:
            plans[key] = plan_mask(peer.name, mask, x.heads_q, x.heads_kv, req.dense_limit)
        mplan = plans[key]
    except Unsupported as e:
        return finish("unsupported", str(e))
    details["mask_format"] = mplan.description

    torch, m = st.torch, st.measure
    if c.inputs not in host_inputs:
        host_inputs.clear()
        host_inputs[c.inputs] = {n: np.array(npy.load(p, x.dtype, x.shape(n)))
                                 for n, p in x.paths.items()}
    host = host_inputs[c.inputs]
    plan = case = None
    try:
        m.begin_case()
        # Autograd peers record the graph in every forward (the training forward; the fused
        # SDPA backends' LSE is reachable only through it), except where they have no backward.
        grad = peer.backward and getattr(peer, "records_graph", lambda d: True)(st.device)
        from .peers.base import Case
        case = Case(torch, st.device,
                    _to_device(torch, host["q"], x.dtype, st.device, grad),
                    _to_device(torch, host["k"], x.dtype, st.device, grad),
                    _to_device(torch, host["v"], x.dtype, st.device, grad),
                    _to_device(torch, host["d_o"], x.dtype, st.device, False) if c.backward else None,
                    mask, mplan, x.dtype, c.scale if c.scale > 0 else 1.0 / math.sqrt(x.head_dim),
                    c.backward)
        plan = peer.prepare(case)
        details.update(plan.details)
        rec["issued_area"] = plan.issued_area
        if c.forward:
            rec["forward"] = phase_json(summarize(m.time(plan.forward, req.timing)),
                                        rec["flops"]["forward"])
        else:
            plan.forward()  # untimed: the saved O and LSE the backward starts from
        _sync(torch, st.device)
        fwd_dev, fwd_alloc = m.phase_peak()

        m.pause()
        o, lse = plan.outputs()
        if req.write_outputs:
            outputs["o"] = _save(req, c, "o", _to_host(torch, o, x.dtype))
            outputs["lse"] = _save(req, c, "lse", lse.detach().float().contiguous().cpu().numpy())
        del o, lse
        m.resume()

        bwd_dev = bwd_alloc = None
        if c.backward:
            m.phase_peak()  # the backward phase starts here
            before = plan.backward_setup()
            rec["backward"] = phase_json(summarize(m.time(plan.backward, req.timing, before)),
                                         rec["flops"]["backward"])
            _sync(torch, st.device)
            bwd_dev, bwd_alloc = m.phase_peak()
            m.pause()
            if req.write_outputs:
                for name, t in zip(("dq", "dk", "dv"), plan.grads()):
                    outputs[name] = _save(req, c, name, _to_host(torch, t, x.dtype))
            m.resume()
        if fwd_dev is not None:
            peaks = [v for v in (fwd_dev, bwd_dev) if v is not None]
            allocs = [v for v in (fwd_alloc, bwd_alloc) if v is not None]
            rec["memory"] = {"peak_gib": max(peaks), "forward_peak_gib": fwd_dev,
                             "backward_peak_gib": bwd_dev, "method": MEMORY_METHOD,
                             "torch_max_allocated_gib": max(allocs),
                             "torch_forward_allocated_gib": fwd_alloc,
                             "torch_backward_allocated_gib": bwd_alloc}
        else:
            rec["memory"]["method"] = "not measured (device cpu)"
        return finish("ok", "")
    except Unsupported as e:
        return finish("unsupported", str(e))
    except BaseException as e:  # noqa: B902 - every failure is this case's record
        if isinstance(e, KeyboardInterrupt):
            raise
        status = "oom" if _is_oom(torch, e) else "error"
        reason = _message(e)
        if status == "error":
            details["traceback"] = traceback.format_exc(limit=6)
            if _device_broken(torch, st.device):
                details["device_fault"] = True
                reason = f"device fault (the peer process restarts): {reason}"
        return finish(status, reason)
    finally:
        m.end_case()
        del plan, case
        gc.collect()
        if st.device is not None and st.device.type == "cuda" and not details.get("device_fault"):
            try:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            except Exception:
                details["device_fault"] = True


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _device_broken(torch, device) -> bool:
    if device is None or device.type != "cuda":
        return False
    try:
        torch.cuda.synchronize()
        torch.empty(1, device=device).fill_(1).item()
        return False
    except Exception:
        return True


def _save(req: Request, c, name: str, a: np.ndarray) -> str:
    path = os.path.join(os.path.abspath(req.output_dir), f"{c.id}.{name}.npy")
    npy.save(path, a)
    return path

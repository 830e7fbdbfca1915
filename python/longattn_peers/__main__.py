"""python3 -m longattn_peers COMMAND (PROTOCOL.md):

  run REQUEST.json|-      run one request; records go to OUTPUT_DIR/results.jsonl
  serve                   run the requests whose paths arrive one per line on stdin, until EOF
  list [--device D]       the peers and whether each is usable here (JSON with --json)
  conformance MASK.json.. each peer's mask format rasterised and compared with the canonical mask
  summary RECORDS.jsonl.. TF/s tables, failures and the cuDNN side-by-side check of a run
                          (--conformance FILE: also the peer x mask conformance table)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from . import PROTOCOL_VERSION, __version__
from .masks import InputError, mask_from_json
from .protocol import ResultWriter, parse_request

EXIT_INPUT = 2
EXIT_ORPHANED = 4  # serve: the process that started it is gone


def _read_json(path: str):
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _fatal_event(raw, message: str) -> None:
    """A request that cannot run says so in its own results file when its output_dir is known."""
    out = raw.get("output_dir") if isinstance(raw, dict) else None
    if isinstance(out, str) and out:
        w = ResultWriter(out)
        w.write({"event": "fatal", "message": message})
        w.close()


def _run_one(path: str) -> int:
    from .runner import DEVICE_FAULT_EXIT, DeviceFault, run_request
    raw = None
    try:
        raw = _read_json(path)
        run_request(parse_request(raw))
    except DeviceFault:
        return DEVICE_FAULT_EXIT
    except (OSError, json.JSONDecodeError, InputError) as e:
        print(f"longattn_peers: error: {path}: {e}", file=sys.stderr, flush=True)
        _fatal_event(raw, str(e))
        return EXIT_INPUT
    return 0


def cmd_run(args) -> int:
    return _run_one(args.request)


def _exit_with_parent() -> None:
    """End this process when the one that started it is gone. longattn killed by a timeout (or
    SIGKILL) runs no destructor; a peer still compiling or timing a case would go on holding the
    GPU and slow down whatever runs next, and it would only notice the closed stdin at its next
    request."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def cmd_serve(args) -> int:
    from .runner import DEVICE_FAULT_EXIT
    _exit_with_parent()
    for line in sys.stdin:
        path = line.strip()
        if path and _run_one(path) == DEVICE_FAULT_EXIT:
            return DEVICE_FAULT_EXIT
    return 0


def cmd_list(args) -> int:
    from .peers import all_peers
    rows = []
    torch = device = None
    err = None
    try:
        import torch as _torch
        torch = _torch
        if args.device == "cuda" and not torch.cuda.is_available():
            err = f"torch {torch.__version__} sees no CUDA device"
        else:
            device = torch.device(args.device)
    except Exception as e:
        err = f"torch is not importable: {type(e).__name__}: {e}"
    for p in all_peers():
        if err:
            row = {"name": p.name, "available": False, "version": "", "reason": err}
        else:
            try:
                a = p.availability(torch, device)
            except Exception as e:
                from .peers.base import Availability
                a = Availability(False, reason=f"{type(e).__name__}: {e}")
            row = {"name": p.name, "available": a.ok, "version": a.version, "reason": a.reason}
        row.update({"summary": p.summary, "dtypes": list(p.dtypes), "backward": p.backward})
        rows.append(row)
    if args.json:
        print(json.dumps({"protocol": PROTOCOL_VERSION, "bridge": __version__, "peers": rows}))
    else:
        for r in rows:
            state = f"yes  {r['version']}" if r["available"] else f"no   {r['reason']}"
            print(f"{r['name']:<22} {state}")
    return 0


def cmd_conformance(args) -> int:
    from .conformance import check_mask, format_table
    torch = None
    if not args.no_torch:
        try:
            import torch as _torch
            torch = _torch
        except Exception:
            torch = None
    rows = []
    for path in args.masks:
        try:
            with open(path, encoding="utf-8") as f:
                mask = mask_from_json(json.load(f))
        except (OSError, json.JSONDecodeError, InputError) as e:
            print(f"longattn_peers: error: {path}: {e}", file=sys.stderr)
            return EXIT_INPUT
        label = os.path.splitext(os.path.basename(path))[0]
        heads_kv = args.heads_kv or mask.heads
        heads_q = args.heads_q or heads_kv
        rows += check_mask(mask, heads_q, heads_kv, torch=torch, label=label)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_table(rows))
    return 1 if any(r["status"] == "mismatch" for r in rows) else 0


def cmd_summary(args) -> int:
    from . import summary
    records = summary.load(args.records)
    parts = [summary.tables(records), summary.cudnn_agreement(records), summary.failures(records)]
    if args.conformance:
        rows = summary.load([args.conformance])
        parts[:0] = [summary.conformance_table(rows), summary.conformance_counts(rows)]
    print("\n\n".join(p for p in parts if p))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m longattn_peers",
                                 description="longattn's peer bridge (protocol "
                                 f"{PROTOCOL_VERSION}): PyTorch SDPA, FlexAttention, "
                                 "FlashAttention and FlashInfer on longattn's masks")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one request")
    p.add_argument("request", help="request JSON file, or - for stdin")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("serve", help="run request files named one per line on stdin")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("list", help="list the peers and whether each is usable")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("conformance", help="check every peer's mask format against masks")
    p.add_argument("masks", nargs="+", help="mask JSON files (longattn masks export --format json)")
    p.add_argument("--heads-q", type=int, default=0)
    p.add_argument("--heads-kv", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="numpy rasterisation only")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(fn=cmd_conformance)
    p = sub.add_parser("summary", help="tables of a run's records.jsonl")
    p.add_argument("records", nargs="+", help="records.jsonl files")
    p.add_argument("--conformance", help="conformance.jsonl of `longattn peers conformance --out`")
    p.set_defaults(fn=cmd_summary)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())

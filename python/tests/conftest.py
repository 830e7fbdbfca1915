"""Shared fixtures: the package on sys.path, the longattn CLI (masks come from it, so every test
compares with the canonical masks the C++ side generates), and whether torch is importable."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))


def _find_cli():
    env = os.environ.get("LONGATTN_CLI")
    if env:
        return env if os.path.isfile(env) else None
    found = sorted(glob.glob(os.path.join(ROOT, "build*", "apps", "longattn")), key=os.path.getmtime)
    return found[-1] if found else None


@pytest.fixture(scope="session")
def cli():
    path = _find_cli()
    if path is None:
        pytest.skip("the longattn CLI is not built (set LONGATTN_CLI; CTest does)")
    return path


@pytest.fixture(scope="session")
def export(cli, tmp_path_factory):
    """export(pattern, S, *flags) -> the canonical mask as the CLI writes it (parsed JSON)."""
    cache = {}

    def run(pattern, seqlen, *flags):
        key = (pattern, seqlen) + flags
        if key not in cache:
            out = subprocess.run([cli, "masks", "export", pattern, "-S", str(seqlen), "--format",
                                  "json", *flags], check=True, capture_output=True, text=True)
            cache[key] = json.loads(out.stdout)
        return cache[key]
    return run


@pytest.fixture(scope="session")
def show(cli):
    """show(pattern, S, *flags) -> `longattn masks show --json` (area, documents, ...)."""
    def run(pattern, seqlen, *flags):
        out = subprocess.run([cli, "masks", "show", pattern, "-S", str(seqlen), "--json",
                              "--no-picture", *flags], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)
    return run


@pytest.fixture(scope="session")
def peers_cli(cli):
    """The CLI, when it has the `peers` command (wired in apps/)."""
    r = subprocess.run([cli, "--help"], capture_output=True, text=True)
    if not re.search(r"^\s+peers\b", r.stdout, re.M):
        pytest.skip("this longattn binary has no `peers` command (apps/ does not register it)")
    return cli


def torch_or_skip():
    try:
        import torch  # noqa: F401
    except Exception as e:  # CI has no torch
        pytest.skip(f"torch is not importable here ({type(e).__name__})")
    return torch


# The masks of the tests: every pattern at odd sizes, with parameters that make each non-trivial
# (windows, globals and blocks much smaller than S; explicit and sampled documents; per-head and
# causal block-sparse masks; partitions whose last block is short).
DOCS = ["--doc-lens", "150,1,333,200,316"]
MASKS = [
    ("full", 1000, ()),
    ("causal", 777, ()),
    ("full_document", 1000, tuple(DOCS)),
    ("full_document", 999, ("--seed", "3")),
    ("causal_document", 1000, tuple(DOCS)),
    ("causal_document", 1501, ("--seed", "1")),
    ("sliding_window", 1000, ("--window", "37")),
    ("sliding_window_causal", 777, ("--window", "100")),
    ("shared_question", 1000, tuple(DOCS)),
    ("causal_blockwise", 1000, tuple(DOCS)),
    ("prefix_lm_causal", 999, ("--seed", "4")),
    ("prefix_lm_document", 1000, tuple(DOCS) + ("--seed", "2")),
    ("global_sliding_window", 1000, ("--window", "37", "--global", "11")),
    ("block_causal_document", 1001, ("--block", "50")),
    ("block_sparse_uniform", 1000, ("--sparse-block", "64", "--sparse-heads", "2")),
    ("block_sparse_uniform", 960, ("--sparse-block", "64", "--sparse-causal", "--keep", "0.3")),
    ("block_sparse_variable", 1000, ("--min-block", "16", "--avg-block", "40", "--sparse-heads", "3")),
    ("block_sparse_variable", 777, ("--min-block", "16", "--avg-block", "48", "--sparse-causal")),
]
MASK_IDS = [f"{p}-{s}-{i}" for i, (p, s, _) in enumerate(MASKS)]

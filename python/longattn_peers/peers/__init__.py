"""The peers, in formats.PEERS order. Importing this package imports no torch; each peer imports
its library only when probed or prepared."""
from __future__ import annotations

from ..formats import PEERS
from . import flash, flashinfer, flex, sdpa


def all_peers():
    found = {p.name: p for mod in (sdpa, flex, flash, flashinfer) for p in mod.peers()}
    return [found[name] for name in PEERS]


def find(name: str):
    for p in all_peers():
        if p.name == name:
            return p
    raise KeyError(name)

"""Tensors exchanged as .npy files (PROTOCOL.md, 'Tensors'), C order:
    fp32  '<f4'
    fp16  '<f2'
    bf16  '<u2'  the raw bfloat16 bits (numpy has no bfloat16)
LSE is always '<f4'. Q, O, dO, dQ: [S, Hq, D]; K, V, dK, dV: [S, Hkv, D]; LSE: [Hq, S].
"""
from __future__ import annotations

import numpy as np

from .masks import InputError

DTYPES = {"fp32": np.dtype("<f4"), "fp16": np.dtype("<f2"), "bf16": np.dtype("<u2")}


def storage_dtype(dtype: str) -> np.dtype:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise InputError(f"unknown dtype '{dtype}' (fp32, fp16, bf16)") from None


def load(path: str, dtype: str, shape) -> np.ndarray:
    """A tensor file in the storage type of `dtype`, checked against the expected shape."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read tensor file '{path}': {e}") from None
    want = storage_dtype(dtype)
    if a.dtype != want:
        raise InputError(f"'{path}' holds {a.dtype.str}, expected {want.str} for {dtype}")
    if tuple(a.shape) != tuple(shape):
        raise InputError(f"'{path}' has shape {tuple(a.shape)}, expected {tuple(shape)}")
    return a


def save(path: str, a: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(a), allow_pickle=False)


def bf16_to_float(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even, NaN kept quiet (as the C++ side and the device do)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def to_float(a: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values as float32 (for tests and tools)."""
    if dtype == "bf16":
        return bf16_to_float(np.asarray(a))
    return np.asarray(a, dtype=np.float32)


def from_float(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return float_to_bf16(x)
    return np.asarray(x, dtype=storage_dtype(dtype))

"""Input checks shared by the Python layer.

Policy (faiss conventions): vectors are float32, C-contiguous, shape (n, d).
- float32 C-contiguous arrays are passed to the C++ core without a copy;
- other floating dtypes (float16, float64) and non-contiguous arrays are converted with one
  copy (float64 values outside the float32 range become Inf and are then rejected);
- integer, bool, complex and object arrays raise TypeError;
- a wrong number of dimensions, wrong d, empty input, NaN or Inf raise ValueError naming the
  argument and the expected vs actual value.
"""
from __future__ import annotations

import numbers

import numpy as np


def as_float_matrix(x, d: int | None, name: str = "x", allow_empty: bool = False) -> np.ndarray:
    """Return x as a float32 C-contiguous (n, d) array, or raise TypeError/ValueError."""
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        else:
            raise TypeError(f"{name} must be a numpy array of shape (n, {d if d else 'd'}), "
                            f"got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype (float32 preferred), got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (n, {d if d else 'd'}), got shape {x.shape}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} must have d={d} columns, got {x.shape[1]} (shape {x.shape})")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {x.shape}); need at least one vector")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ValueError(f"{name} contains NaN or Inf (first at row {bad})")
    return x


def as_ids(ids, limit: int, name: str = "ids") -> np.ndarray:
    """Return ids as a 1-D int64 C-contiguous array with every value in [0, limit)."""
    if isinstance(ids, numbers.Integral):
        ids = np.array([ids], dtype=np.int64)
    ids = np.asarray(ids)
    if ids.size == 0 and ids.dtype.kind == "f":
        ids = ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= limit):
        bad = ids[(ids < 0) | (ids >= limit)][0]
        raise ValueError(f"{name} must be in [0, {limit}), got {int(bad)}")
    return ids


def as_positive_int(v, name: str, maximum: int | None = None) -> int:
    """Return v as an int >= 1 (and <= maximum), or raise TypeError/ValueError."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    v = int(v)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v

"""The one reader of feature files (``<id>.npy``): probe inputs, C2SER's Emotion2Vec-S rows and
the outputs ``c2ser extract`` checks before redoing them.

A file holds (T, D) frame features, (K, D) utterance rows or a (D,) vector (read as one row).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from c2ser.core.errors import BadInputError


def _shape_problem(shape: tuple[int, ...], dim: int | None, min_rows: int) -> str | None:
    if len(shape) != 2 or shape[0] == 0:
        return f"expected (T, D) features with T > 0, got shape {shape}"
    if dim is not None and shape[1] != dim:
        return f"feature width {shape[1]}, expected {dim}"
    if shape[0] < min_rows:
        return f"{shape[0]} feature rows, expected at least {min_rows}"
    return None


def load_feature(
    path: str | os.PathLike, dim: int | None = None, min_rows: int = 1
) -> torch.Tensor:
    """One feature file as a float32 (T, D) tensor; an unreadable file or a shape other than
    ``(>= min_rows, dim)`` is a :class:`BadInputError` naming the file."""
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: unreadable feature file ({e})") from None
    if x.ndim == 1:
        x = x[None]
    problem = _shape_problem(x.shape, dim, min_rows)
    if problem:
        raise BadInputError(f"{path}: {problem}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def is_complete(path: str | os.PathLike, dim: int, rows: int | None) -> bool:
    """True when ``path`` is a finished extraction output: a float32 (rows, dim) array (any
    number of rows for ``rows=None``). Writes are atomic, so a file cut short by a crash can only
    come from elsewhere and fails to load. Memory-mapped: checking a large folder reads headers."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    if x.ndim != 2 or _shape_problem(x.shape, dim, rows or 1) is not None:
        return False
    return (rows is None or x.shape[0] == rows) and x.dtype == np.float32

"""What the machine has: the device a run asked for, and what the CPU computes natively (the
basis for warning about a slow dtype choice)."""

from __future__ import annotations

import torch

from c2ser.core.errors import BadInputError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device` (None: cuda when available, else cpu).

    Asking for CUDA on a machine without it is the user's to fix, and every entry point
    (extract, infer, evaluate) says so with this one message instead of torch's
    ``AssertionError: Torch not compiled with CUDA enabled`` from deep inside a model move.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadInputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BadInputError(
                f"device {str(device)!r} requested but no CUDA device is available; use cpu"
            )
        if resolved.index is not None and resolved.index >= count:
            raise BadInputError(
                f"device {str(device)!r} requested but only {count} CUDA device(s) exist"
            )
    return resolved


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates bf16 matmuls and convolutions in float32 with conversions on top,
    which is several times slower than plain float32: on a 2-core AVX2 AMD EPYC, Emotion2Vec-S
    base extraction ran 6.5x slower in bf16
    (``scripts/bench_extract.py --bf16 yes``, BENCHMARKS.md).
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)

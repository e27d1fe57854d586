"""What the machine computes natively: the basis for warning about a slow dtype choice."""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates bf16 matmuls and convolutions in float32 with conversions on top,
    which is several times slower than plain float32: on a 2-core AVX2 AMD EPYC, Emotion2Vec-S
    base extraction ran 6.5x slower in bf16
    (``scripts/bench_extract.py --bf16 yes``, BENCHMARKS.md).
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)

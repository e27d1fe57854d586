"""c2ser: speech emotion recognition with audio language models (C2SER, Emotion2Vec-S, EmoBox).

``from c2ser import Pipeline`` gives the one-call API (:mod:`c2ser.inference.pipeline`); it is
imported on first use, so ``import c2ser`` (and ``c2ser --help``) stays instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from c2ser.inference.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'c2ser' has no attribute {name!r}")

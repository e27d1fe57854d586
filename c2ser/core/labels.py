"""The 7 Emo-Emilia emotion labels, in the order every confusion matrix and report uses."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "angry",
    "happy",
    "neutral",
    "sad",
    "surprised",
    "fearful",
    "disgusted",
)

"""Shared fixtures: deterministic seeds, synthetic audio, and the optional ../shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("C2SER_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_dir() -> Path:
    """The read-only reference folder beside the checkout; tests using it skip when it is absent."""
    if not (SHARED / "spec").is_dir():
        pytest.skip(f"reference data not found at {SHARED}")
    return SHARED


def tone(seconds: float, sr: int = 16_000, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    """A deterministic harmonic tone with a little seeded noise (speech-like enough for shapes)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(int(freq * 1000 + seconds * 10))
    x = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 5))
    return (x + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.fixture
def wav_file(tmp_path):
    """Factory writing a wav: ``wav_file(name, seconds, sr=16000, channels=1, subtype='PCM_16')``."""

    def make(
        name: str,
        seconds: float = 1.0,
        sr: int = 16_000,
        channels: int = 1,
        subtype: str = "PCM_16",
        freq: float = 220.0,
    ) -> Path:
        x = tone(seconds, sr, freq)
        if channels > 1:
            x = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
        path = tmp_path / name
        sf.write(path, x, sr, subtype=subtype)
        return path

    return make

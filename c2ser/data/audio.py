"""Audio loading: any soundfile-readable file -> mono float32 at 16 kHz.

Channels are averaged (as the official scripts do) and other rates are resampled with soxr's
high-quality polyphase filter. Every failure is an :class:`AudioError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

from c2ser.core.errors import BadInputError

SAMPLE_RATE = 16_000


class AudioError(BadInputError):
    """A missing, empty, corrupt or over-long audio file."""


def load_audio(
    path: str | os.PathLike,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 array in [-1, 1] at ``target_sr``.

    ``max_seconds`` refuses longer files with a clear error instead of truncating them silently;
    callers that can process long audio in chunks pass ``None``.
    """
    path = _check_file(path)
    try:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    if wav.shape[0] == 0:
        raise AudioError(f"{path}: zero-length audio")
    if max_seconds is not None and wav.shape[0] / sr > max_seconds:
        raise AudioError(
            f"{path}: {wav.shape[0] / sr:.1f} s is longer than the limit of {max_seconds:.1f} s"
        )
    wav = wav.mean(axis=1)
    if sr != target_sr:
        wav = soxr.resample(wav, sr, target_sr, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


def _check_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: audio file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    return path


def audio_seconds(path: str | os.PathLike) -> float:
    """Duration from the header only (cheap; used for length bucketing and validation)."""
    path = _check_file(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: cannot read audio header ({e})") from None
    return info.frames / info.samplerate

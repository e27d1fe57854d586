"""Audio loading: any soundfile-readable file -> mono float32 at 16 kHz.

Channels are averaged (as the official scripts do) and other rates are resampled. The default
resampler, ``sinc``, is torchaudio's default ``Resample`` (:mod:`c2ser.data.resample`), what the
official C2SER code feeds both its models, so converted official checkpoints see the inputs they
were trained on. ``soxr`` (soxr's high-quality polyphase filter, this project's earlier default)
stays selectable per call (``resampler=``) or for a whole process with ``$C2SER_RESAMPLER``,
which reaches every front end (extraction, inference, training datamodules and their workers).
Every failure is an :class:`AudioError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr
import torch

from c2ser.core.errors import BadInputError
from c2ser.data.resample import resample_sinc

SAMPLE_RATE = 16_000
RESAMPLERS = ("sinc", "soxr")
RESAMPLER_ENV = "C2SER_RESAMPLER"


class AudioError(BadInputError):
    """A missing, empty, corrupt or over-long audio file."""


def load_audio(
    path: str | os.PathLike,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    resampler: str | None = None,
) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 array in [-1, 1] at ``target_sr``.

    ``max_seconds`` refuses longer files with a clear error instead of truncating them silently;
    callers that can process long audio in chunks pass ``None``. ``resampler``: see
    :func:`resample`.
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
    return resample(wav.mean(axis=1), sr, target_sr, resampler)


def resample(
    wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE, resampler: str | None = None
) -> np.ndarray:
    """A 1-D waveform at ``orig_sr`` -> float32 at ``target_sr`` (unchanged at equal rates).

    ``resampler``: ``sinc`` (torchaudio's default, the official front end) or ``soxr``; None
    takes ``$C2SER_RESAMPLER``, else ``sinc``.
    """
    resampler = resampler or os.environ.get(RESAMPLER_ENV) or "sinc"
    if resampler not in RESAMPLERS:
        raise ValueError(f"unknown resampler {resampler!r} (choose from {RESAMPLERS})")
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if orig_sr != target_sr:
        if resampler == "sinc":
            wav = resample_sinc(torch.from_numpy(wav), orig_sr, target_sr).numpy()
        else:
            wav = soxr.resample(wav, orig_sr, target_sr, quality="HQ")
    return wav.astype(np.float32, copy=False)


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

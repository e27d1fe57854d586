"""Speaking-style attributes for the explicit chain of thought: pitch, loudness, speaking rate.

Measured per utterance, then binned into low / medium / high by the corpus mean ± one standard
deviation, as the C2SER paper does (it used PENN for F0; we use Praat's autocorrelation tracker
through ``praat-parselmouth``, maintained and pip-installable):

- **pitch**: median F0 (Hz) over voiced frames.
- **volume**: integrated loudness (LUFS, ITU-R BS.1770 via ``pyloudnorm``). Clips shorter than
  the 400 ms gating block have no integrated loudness; for those we fall back to the RMS level in
  dBFS minus 0.691 dB (the K-weighting offset), which tracks LUFS closely for speech.
- **speed**: written units per second of *active* speech (frames within 35 dB of the loudest
  20 ms frame), so leading/trailing silence and pauses do not count. Units: Chinese characters
  for Chinese (≈ syllables), vowel groups for English (a syllable estimate; the paper counted
  phonemes per second).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.language import CJK
from c2ser.data.audio import SAMPLE_RATE, load_audio
from c2ser.data.manifest import Utterance

BINS = ("low", "medium", "high")
ATTRIBUTES = {"pitch": "f0_median_hz", "volume": "loudness_lufs", "speed": "speech_rate"}

_VOWEL_GROUPS = re.compile(r"[aeiouy]+", re.I)


def count_units(text: str, language: str | None) -> int:
    """Syllable-like units: CJK characters for Chinese, vowel groups for English words."""
    cjk = len(CJK.findall(text))
    if language == "zh" or cjk:
        return cjk + sum(len(_VOWEL_GROUPS.findall(w)) for w in re.findall(r"[A-Za-z]+", text))
    words = re.findall(r"[A-Za-z']+", text)
    return sum(max(1, len(_VOWEL_GROUPS.findall(w)) - w.lower().endswith("e")) for w in words)


def f0_median(wav: np.ndarray, sr: int = SAMPLE_RATE, floor: float = 60.0) -> float:
    """Median F0 in Hz over voiced frames (NaN when nothing is voiced or the clip is too short).

    Praat needs three periods of the pitch floor (50 ms at 60 Hz) to analyse anything.
    """
    import parselmouth

    if len(wav) < 3 * sr / floor:
        return math.nan
    pitch = parselmouth.Sound(wav.astype(np.float64), sr).to_pitch(
        time_step=0.01, pitch_floor=floor, pitch_ceiling=600.0
    )
    f0 = pitch.selected_array["frequency"]
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else math.nan


def loudness(wav: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Integrated loudness in LUFS (RMS-based fallback for clips under 0.4 s); -70 for silence."""
    import pyloudnorm

    if len(wav) >= int(0.4 * sr):
        value = pyloudnorm.Meter(sr).integrated_loudness(wav.astype(np.float64))
    else:
        rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
        value = 20 * math.log10(rms) - 0.691 if rms > 0 else -math.inf
    return max(float(value), -70.0)


def active_seconds(wav: np.ndarray, sr: int = SAMPLE_RATE, floor_db: float = 35.0) -> float:
    """Seconds of 20 ms frames whose level is within ``floor_db`` of the loudest frame."""
    hop = sr // 50
    n = len(wav) // hop
    if n == 0:
        return len(wav) / sr
    frames = wav[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return float(np.sum(db > db.max() - floor_db)) * hop / sr


def measure_style(wav: np.ndarray, text: str, language: str | None) -> dict[str, float]:
    """The three raw measurements of one 16 kHz utterance."""
    return {
        "f0_median_hz": f0_median(wav),
        "loudness_lufs": loudness(wav),
        "speech_rate": count_units(text or "", language) / max(active_seconds(wav), 1e-3),
    }


def rounded(measured: dict[str, float]) -> dict[str, float | None]:
    """JSON-friendly measurements: 3 decimals, ``None`` for NaN (unvoiced audio)."""
    return {k: round(v, 3) if math.isfinite(v) else None for k, v in measured.items()}


def bin_attributes(values: Sequence[float]) -> list[str]:
    """low < mean − std ≤ medium ≤ mean + std < high; NaN (unmeasurable) counts as medium."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return ["medium"] * len(arr)
    mean, std = finite.mean(), finite.std()
    return [
        "medium"
        if not np.isfinite(v)
        else "low"
        if v < mean - std
        else "high"
        if v > mean + std
        else "medium"
        for v in arr
    ]


def assign_bins(utts: Sequence[Utterance], per_language: bool = False) -> None:
    """Write ``pitch/volume/speed`` bins into ``utt.extra`` from the measured values there."""
    groups: dict[str | None, list[Utterance]] = {}
    for u in utts:
        groups.setdefault(u.language if per_language else None, []).append(u)
    for group in groups.values():
        for attr, raw in ATTRIBUTES.items():
            values = [math.nan if u.extra.get(raw) is None else u.extra[raw] for u in group]
            for u, b in zip(group, bin_attributes(values), strict=True):
                u.extra[attr] = b


def add_style_attributes(
    utts: Sequence[Utterance],
    audio_loader: Callable[[str], np.ndarray] = load_audio,
    skip_bad: bool = False,
    report: SkipReport | None = None,
    per_language: bool = False,
    progress: bool = True,
) -> list[Utterance]:
    """Measure and bin every utterance; returns the utterances that could be measured."""
    from tqdm import tqdm

    report = report if report is not None else SkipReport()
    done: list[Utterance] = []
    for u in tqdm(utts, desc="style attributes", unit="utt", disable=not progress):
        try:
            wav = audio_loader(u.wav)
        except BadInputError as e:
            if not skip_bad:
                raise
            report.add(u.id, str(e))
            continue
        u.extra.update(rounded(measure_style(wav, u.text or "", u.language)))
        done.append(u)
    assign_bins(done, per_language)
    return done

"""Per-emotion prosody and per-speaker variation for the synthetic demo corpus.

Emotion must be learnable from acoustics, not from the text, so each emotion gets its own
pitch level, pitch range, speaking rate, loudness, word gaps and (for two emotions) a voice-quality
effect, loosely following the acoustic correlates reported in the SER literature (anger: loud,
fast, wide range; sadness: slow, low, quiet, flat; fear: high, fast, tremulous; surprise: very
wide range; disgust: slow, low, moderately loud). Speakers shift all of these a little, and every
utterance is jittered, so classes overlap as they do in real speech.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Prosody:
    pitch: float  # espeak 0-99 (50 = voice default)
    range: float  # espeak 0-99 pitch range
    rate: float  # words per minute
    gain_db: float  # applied to the waveform (espeak volume stays at 100 so nothing clips)
    wordgap: int = 0  # extra pause between words, in 10 ms units
    tremolo: float = 0.0  # amplitude modulation depth at ~7 Hz (a trembling voice)
    drive: float = 0.0  # soft saturation (a harsh, pressed voice)


EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(pitch=45, range=35, rate=165, gain_db=-6),
    "happy": Prosody(pitch=66, range=80, rate=195, gain_db=-3),
    "angry": Prosody(pitch=55, range=70, rate=215, gain_db=0, drive=2.5),
    "sad": Prosody(pitch=28, range=12, rate=115, gain_db=-13, wordgap=3),
    "surprised": Prosody(pitch=74, range=98, rate=170, gain_db=-3, wordgap=1),
    "fearful": Prosody(pitch=72, range=25, rate=205, gain_db=-10, wordgap=2, tremolo=0.35),
    "disgusted": Prosody(pitch=32, range=55, rate=125, gain_db=-5, wordgap=2),
}

# Variants with deterministic output only (f2, f3 and f5 add random breath noise).
VOICES = {
    "en": ("en-us+m3", "en-us+f4", "en-us+m7", "en-us+f1", "en-us+m1", "en-us+m2"),
    "zh": ("cmn+m3", "cmn+f4", "cmn+m7", "cmn+f1", "cmn+m1", "cmn+m2"),
}


@dataclass(frozen=True)
class Speaker:
    id: str
    voice: str
    pitch_shift: float
    rate_scale: float
    gain_db: float


def make_speakers(language: str, count: int, seed: int) -> list[Speaker]:
    """Deterministic speakers: a voice variant each plus small pitch/rate/loudness offsets."""
    voices = VOICES[language]
    if count > len(voices):
        raise ValueError(f"at most {len(voices)} speakers per language, got {count}")
    rng = np.random.default_rng([seed, ord(language[0]), 7])
    return [
        Speaker(
            f"{language.upper()}_S{i + 1:02d}",
            voices[i],
            float(rng.uniform(-6, 6)),
            float(rng.uniform(0.92, 1.08)),
            float(rng.uniform(-1.5, 1.5)),
        )
        for i in range(count)
    ]


def utterance_prosody(emotion: str, speaker: Speaker, rng: np.random.Generator) -> Prosody:
    """The emotion's prosody shifted by the speaker and jittered per utterance."""
    p = EMOTION_PROSODY[emotion]
    return replace(
        p,
        pitch=float(np.clip(p.pitch + speaker.pitch_shift + rng.normal(0, 3), 0, 99)),
        range=float(np.clip(p.range + rng.normal(0, 4), 0, 99)),
        rate=p.rate * speaker.rate_scale * float(rng.uniform(0.95, 1.05)),
        gain_db=p.gain_db + speaker.gain_db + float(rng.normal(0, 1.0)),
    )


def apply_effects(wav: np.ndarray, sr: int, p: Prosody) -> np.ndarray:
    """Waveform-level parts of the prosody: saturation, tremolo and gain."""
    x = wav.astype(np.float64)
    if p.drive:
        x = np.tanh(p.drive * x) / np.tanh(p.drive)
    if p.tremolo:
        t = np.arange(len(x)) / sr
        x = x * (1.0 - p.tremolo * 0.5 * (1 + np.sin(2 * np.pi * 7.0 * t)))
    x = x * 10 ** (p.gain_db / 20)
    peak = np.abs(x).max()
    return (x / peak * 0.99 if peak > 0.99 else x).astype(np.float32)

"""Build the embedded bilingual demo corpus: espeak-ng speech with emotion-specific prosody.

Layout (``out_dir``)::

    manifest.jsonl        Emo-Emilia schema + language, speaker, split, fold, duration,
                          style bins (speed/pitch/volume) and their measured values
    wav/<lang>/<id>.wav   16 kHz mono PCM16

Splits and folds are speaker-independent: per language, speaker k has ``fold = k``; the last
speaker is ``test``, the one before ``val``, the others ``train`` (4 speakers: 2 train, 1 val,
1 test). Every utterance is generated from ``(seed, id)`` alone, so the corpus is byte-identical
across runs and worker counts. Rebuilding resumes: a wav is synthesised only when it is missing,
unreadable or stale (its comment field holds a digest of the text, prosody, speaker, seed and
synthesiser version, see :meth:`Job.spec`). Wavs are written atomically and the manifest last.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from c2ser.core.errors import BadInputError
from c2ser.core.io import atomic_write_bytes
from c2ser.core.labels import EMOTIONS
from c2ser.data.audio import SAMPLE_RATE
from c2ser.data.demo.prosody import (
    EMOTION_PROSODY,
    VOICES,
    Speaker,
    apply_effects,
    make_speakers,
    utterance_prosody,
)
from c2ser.data.manifest import Utterance, relativize, write_manifest
from c2ser.data.style import assign_bins, measure_style, rounded

RENDER_VERSION = 2  # bump when _render's output changes for the same arguments
EMOTION_TEXT_SHARE = 0.3  # share of an emotion's utterances that use an emotion-bearing sentence


def load_sentences(language: str) -> dict[str, list[str]]:
    """``{emotion: [sentences]}`` from ``c2ser/resources/demo_texts/<language>.txt``."""
    text = (
        resources.files("c2ser.resources").joinpath(f"demo_texts/{language}.txt").read_text("utf-8")
    )
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            emotion, sentence = line.split("\t", 1)
            out.setdefault(emotion, []).append(sentence.strip())
    return out


@dataclass(frozen=True)
class Job:
    utt: Utterance
    speaker: Speaker
    seed: int

    def spec(self) -> str:
        """A digest of everything the audio depends on, stored in the wav's comment field so that
        a rebuild after a change of texts, prosody or synthesiser redoes stale files."""
        u = self.utt
        key = (RENDER_VERSION, _espeak_version(), self.seed, u.id, u.text, u.emotion, self.speaker)
        key += (EMOTION_PROSODY[u.emotion],)
        return "c2ser-demo " + hashlib.sha1(repr(key).encode()).hexdigest()


@lru_cache(maxsize=1)
def _espeak_version() -> str:
    return metadata.version("espeakng-loader")


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def plan(
    out_dir: Path, size: int, seed: int, languages: tuple[str, ...], num_speakers: int
) -> list[Job]:
    """Every utterance to produce: balanced over emotions and speakers, texts drawn per id."""
    most = min(len(v) for v in VOICES.values())
    if not 3 <= num_speakers <= most:
        raise BadInputError(
            f"speakers per language must be 3 to {most} (train, val, test), got {num_speakers}"
        )
    if size < num_speakers:
        raise BadInputError(f"size {size} < {num_speakers} speakers: some splits would be empty")
    jobs = []
    for lang in languages:
        sentences = load_sentences(lang)
        speakers = make_speakers(lang, num_speakers, seed)
        for emotion in EMOTIONS:
            for i in range(size):
                k = i % num_speakers
                uid = f"{speakers[k].id}_{emotion}_{i:04d}"
                rng = _rng(seed, uid)
                pool = (
                    sentences[emotion]
                    if rng.random() < EMOTION_TEXT_SHARE and emotion != "neutral"
                    else sentences["neutral"]
                )
                split = (
                    "test" if k == num_speakers - 1 else "val" if k == num_speakers - 2 else "train"
                )
                utt = Utterance(
                    uid,
                    str(out_dir / "wav" / lang / f"{uid}.wav"),
                    emotion,
                    pool[int(rng.integers(len(pool)))],
                    lang,
                    speakers[k].id,
                    split,
                    k + 1,
                )
                jobs.append(Job(utt, speakers[k], seed))
    return jobs


def _render(job: Job) -> np.ndarray:
    """espeak at the utterance's prosody, effects, 16 kHz, random lead/tail silence, noise floor."""
    from c2ser.data.demo.espeak import synthesize

    u = job.utt
    rng = _rng(job.seed, u.id + "/prosody")
    p = utterance_prosody(u.emotion, job.speaker, rng)
    wav, sr = synthesize(
        u.text,
        job.speaker.voice,
        rate=round(p.rate),
        pitch=round(p.pitch),
        range=round(p.range),
        wordgap=p.wordgap,
    )
    wav = soxr.resample(apply_effects(wav, sr, p), sr, SAMPLE_RATE, quality="HQ")
    lead, tail = (int(rng.uniform(0.1, 0.3) * SAMPLE_RATE) for _ in range(2))
    wav = np.concatenate([np.zeros(lead), wav, np.zeros(tail)])
    wav += rng.normal(0, 10 ** (-60 / 20), len(wav))  # a faint noise floor, not digital silence
    peak = np.abs(wav).max()  # resampling can overshoot a little: scale, never clip
    return (wav * min(1.0, 0.99 / peak)).astype(np.float32)


def _read_current(path: str, spec: str) -> np.ndarray | None:
    """The wav at ``path`` if it decodes and was rendered from ``spec``, else ``None``."""
    try:
        with sf.SoundFile(path) as f:
            if f.comment != spec or f.samplerate != SAMPLE_RATE or f.frames == 0:
                return None
            return f.read(dtype="float32")
    except (RuntimeError, OSError):  # missing or undecodable: synthesise it again
        return None


def _write_wav(path: str, wav: np.ndarray, spec: str) -> np.ndarray:
    """Write PCM16 atomically with ``spec`` in the comment; returns the audio as stored."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as f:
        f.comment = spec
        f.write(wav)
    atomic_write_bytes(path, buf.getvalue())
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def _produce(job: Job) -> tuple[str, dict, bool]:
    """Synthesise (unless an up-to-date wav exists) and measure one utterance."""
    spec = job.spec()
    wav = _read_current(job.utt.wav, spec)
    created = wav is None
    if created:
        wav = _write_wav(job.utt.wav, _render(job), spec)
    info = {
        "duration": round(len(wav) / SAMPLE_RATE, 3),
        **rounded(measure_style(wav, job.utt.text, job.utt.language)),
    }
    return job.utt.id, info, created


def build_demo_corpus(
    out_dir: str | os.PathLike,
    size: int = 40,
    seed: int = 0,
    languages: tuple[str, ...] | list[str] = ("en", "zh"),
    num_speakers: int = 4,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Synthesise ``size`` utterances per emotion and language; returns the manifest path.

    ``workers`` processes (default: up to 2) synthesise in parallel; each has its own espeak.
    """
    from tqdm import tqdm

    out = Path(out_dir).resolve()
    jobs = plan(out, size, seed, tuple(languages), num_speakers)
    for lang in languages:
        (out / "wav" / lang).mkdir(parents=True, exist_ok=True)
    workers = workers or min(2, os.cpu_count() or 1)
    results: dict[str, dict] = {}
    created = 0
    with ProcessPoolExecutor(workers) as pool:
        for uid, info, new in tqdm(
            pool.map(_produce, jobs, chunksize=8),
            total=len(jobs),
            desc="demo corpus",
            unit="utt",
            disable=not progress,
        ):
            results[uid] = info
            created += new
    utts = [j.utt for j in jobs]
    for u in utts:
        u.extra.update(results[u.id])
    assign_bins(utts, per_language=True)
    if progress:
        print(f"synthesised {created} wavs, reused {len(utts) - created} up-to-date ones")
    return write_manifest(out / "manifest.jsonl", relativize(utts, out))


def summarize(utts: list[Utterance]) -> str:
    """A table of utterance counts per split x emotion for each language, plus total audio."""
    counts = Counter((u.language, u.split, u.emotion) for u in utts)
    minutes = sum(float(u.extra.get("duration", 0.0)) for u in utts) / 60
    emotions = [e for e in EMOTIONS if any(k[2] == e for k in counts)]
    lines = [f"{len(utts)} utterances, {minutes:.1f} min of audio"]
    for lang in sorted({u.language for u in utts}):
        lines.append(f"{lang:<7}" + "".join(f"{e[:9]:>10}" for e in emotions) + f"{'total':>8}")
        for split in ("train", "val", "test"):
            row = [counts[lang, split, e] for e in emotions]
            lines.append(f"  {split:<5}" + "".join(f"{n:>10}" for n in row) + f"{sum(row):>8}")
    return "\n".join(lines)

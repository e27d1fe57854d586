"""Build the embedded bilingual demo corpus: espeak-ng speech with emotion-specific prosody.

Layout (``out_dir``)::

    manifest.jsonl        Emo-Emilia schema + language, speaker, split, fold, duration,
                          style bins (speed/pitch/volume) and their measured values
    wav/<lang>/<id>.wav   16 kHz mono PCM16

Splits and folds are speaker-independent: per language, speaker k has ``fold = k``; the last
speaker is ``test``, the one before ``val``, the others ``train``. Every utterance is generated
from ``(seed, id)`` alone, so the corpus is byte-identical across runs and worker counts, and a
rebuild only synthesises missing or unreadable wavs (resumable). The manifest is written last.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from c2ser.data.audio import SAMPLE_RATE, AudioError, load_audio
from c2ser.data.demo.prosody import apply_effects, make_speakers, utterance_prosody
from c2ser.data.manifest import Utterance, relativize, write_manifest
from c2ser.data.style import assign_bins, measure_style, rounded
from c2ser.evaluation.metrics import EMOTIONS

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
    voice: str
    seed: int
    path: str
    speaker_index: int


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def plan(
    out_dir: Path, size: int, seed: int, languages: tuple[str, ...], num_speakers: int
) -> list[Job]:
    """Every utterance to produce: balanced over emotions and speakers, texts drawn per id."""
    if num_speakers < 3:
        raise ValueError("num_speakers must be at least 3 (train, val and test speakers)")
    jobs = []
    for lang in languages:
        sentences = load_sentences(lang)
        speakers = make_speakers(lang, num_speakers, seed)
        for emotion in EMOTIONS:
            for i in range(size):
                k = i % num_speakers
                spk = speakers[k]
                uid = f"{spk.id}_{emotion}_{i:04d}"
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
                    spk.id,
                    split,
                    k + 1,
                )
                jobs.append(Job(utt, spk.voice, seed, utt.wav, k))
    return jobs


def _render(job: Job) -> np.ndarray:
    from c2ser.data.demo.espeak import synthesize

    u = job.utt
    speaker = make_speakers(u.language, job.speaker_index + 1, job.seed)[job.speaker_index]
    rng = _rng(job.seed, u.id + "/prosody")
    p = utterance_prosody(u.emotion, speaker, rng)
    wav, sr = synthesize(
        u.text,
        job.voice,
        rate=round(p.rate),
        pitch=round(p.pitch),
        range=round(p.range),
        wordgap=p.wordgap,
    )
    wav = soxr.resample(apply_effects(wav, sr, p), sr, SAMPLE_RATE, quality="HQ")
    lead, tail = (int(rng.uniform(0.1, 0.3) * SAMPLE_RATE) for _ in range(2))
    wav = np.concatenate([np.zeros(lead), wav, np.zeros(tail)])
    wav += rng.normal(
        0, 10 ** (-60 / 20), len(wav)
    )  # a faint noise floor instead of digital silence
    return np.clip(wav, -1, 1).astype(np.float32)


def _produce(job: Job) -> tuple[str, dict, bool]:
    """Synthesise (unless a readable wav exists) and measure one utterance."""
    created = False
    try:
        wav = load_audio(job.path)
    except AudioError:
        wav = _render(job)
        tmp = f"{job.path}.tmp.wav"
        sf.write(tmp, wav, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, job.path)
        wav = load_audio(job.path)  # measure what was written (PCM16-rounded)
        created = True
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
    """Synthesise ``size`` utterances per emotion and language; returns the manifest path."""
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
    manifest = write_manifest(out / "manifest.jsonl", relativize(utts, out))
    if progress:
        counts = Counter((u.split, u.language) for u in utts)
        hours = sum(u.extra["duration"] for u in utts) / 3600
        print(
            f"demo corpus: {len(utts)} utterances ({created} synthesised, {len(utts) - created} "
            f"reused), {hours * 60:.1f} min of audio; "
            + ", ".join(f"{s}/{lang}={n}" for (s, lang), n in sorted(counts.items()))
            + f"\nmanifest: {manifest}"
        )
    return manifest

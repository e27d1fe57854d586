"""Resumable, batched feature extraction over a manifest: one ``<id>.npy`` per utterance.

Layouts (official): Emotion2Vec-S ``frame`` (T, 768) at 50 Hz and ``utterance`` (10, 768)
(``utterance_mode`` ``mean`` gives (1, 768)); ``logmel`` (T, 80) at 100 Hz, the probe baseline.

How a run goes:

1. Read the manifest (jsonl or wav.scp) and every audio header. Outputs that already exist and
   load with the expected shape are skipped (a rerun resumes); unreadable or mis-shaped ones and
   stale temporary files of a killed run are redone. Bad entries stop the run before any work
   unless ``skip_bad``, which counts them as failed with their reason.
2. Sort by length (longest first, so an out-of-memory shows up at once) and cut padded batches
   of at most ``batch_frames`` output frames (the extractor's own count: 50 per second for
   Emotion2Vec-S, 100 for log-mel), at most ``max_padding`` of them padding
   (:func:`c2ser.data.batching.plan_batches`). Audio longer than ``max_seconds`` is processed in
   ``max_seconds`` pieces whose CNN frames tile the whole file exactly (see
   :func:`c2ser.inference.emotion2vec_s.chunks`); it is never truncated.
3. Decode each batch, run it, write every output atomically. A batch that fails (e.g. out of
   memory) is retried one utterance at a time (:mod:`c2ser.inference.runner`) so that one bad
   file costs only itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from c2ser.core.errors import SKIP_HINT, BadInputError
from c2ser.core.io import atomic_save_npy, write_json_atomic
from c2ser.data.audio import SAMPLE_RATE, AudioError, audio_seconds, load_audio
from c2ser.data.batching import plan_batches
from c2ser.data.features import is_complete
from c2ser.data.manifest import Utterance, read_manifest
from c2ser.inference.runner import RunSummary, run_or_retry_singly

EXTRACTORS = ("emotion2vec-s", "logmel")
MODEL_SIZES = ("base", "tiny")


@dataclass
class Extractor:
    """``fn(list of 16 kHz waveforms) -> list of (rows, dim) float32 arrays``, the shape contract
    used to validate existing outputs (``rows`` None: any number of frames), and the two rules the
    run plans with: ``frames(num_samples)``, the output frames of a file (the unit of
    ``batch_frames``), and ``too_short(num_samples)``, why a file is too short to extract (or
    None)."""

    fn: Callable[[list[np.ndarray]], list[np.ndarray]]
    dim: int
    rows: int | None
    name: str
    frames: Callable[[int], int]
    too_short: Callable[[int], str | None]


def make_extractor(
    extractor: str = "emotion2vec-s",
    level: str = "frame",
    utterance_mode: str = "official",
    checkpoint: str | os.PathLike | None = None,
    random_init: bool = False,
    size: str = "base",
    device: str = "cpu",
    dtype: str = "float32",
    max_seconds: float | None = 60.0,
) -> Extractor:
    """Build the batch function for ``extractor`` (``emotion2vec-s`` or ``logmel``)."""
    if extractor == "logmel":
        if level != "frame":
            raise BadInputError("--extractor logmel writes frame-level (T, 80) features only")
        return _logmel_extractor()
    if extractor != "emotion2vec-s":
        raise BadInputError(f"unknown extractor {extractor!r} (choose from {EXTRACTORS})")
    from c2ser.inference import emotion2vec_s as e2vs

    model = e2vs.load_emotion2vec_s(checkpoint, random_init, size, device, dtype)
    max_samples = int(max_seconds * SAMPLE_RATE) if max_seconds else None

    def fn(wavs: list[np.ndarray]) -> list[np.ndarray]:
        feats = e2vs.extract_batch(model, wavs, level, utterance_mode, max_samples)
        return [f.numpy() for f in feats]

    c = model.config
    rows = None
    if level == "utterance":
        rows = {"official": c.utterance_rows, "extra_tokens": c.num_extra_tokens, "mean": 1}[
            utterance_mode
        ]
    return Extractor(
        fn, c.dim, rows, f"emotion2vec-s ({level}, {utterance_mode})",
        frames=lambda n: e2vs.frame_count(model, n), too_short=lambda n: e2vs.too_short(model, n),
    )  # fmt: skip


def _logmel_extractor() -> Extractor:
    """(T, 80) log-mel frames at 100 Hz; at least one STFT window (400 samples) of audio."""
    from c2ser.data.mel import HOP, N_FFT, log_mel

    def too_short(n: int) -> str | None:
        return (
            f"audio of {n} samples is shorter than one frame ({N_FFT} samples)"
            if n < N_FFT
            else None
        )

    return Extractor(
        lambda wavs: [log_mel(w).numpy() for w in wavs], 80, None, "logmel",
        frames=lambda n: max(1, n // HOP), too_short=too_short,
    )  # fmt: skip


def extract_manifest(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    extractor: Extractor,
    batch_frames: int = 6000,
    max_padding: float | None = None,
    skip_bad: bool = False,
    audio_root: str | os.PathLike | None = None,
    progress: bool = True,
) -> RunSummary:
    """Extract every utterance of ``manifest`` into ``out_dir/<id>.npy``; see the module doc.

    Returns the summary (also written to ``out_dir/extract_summary.json``). Without
    ``skip_bad`` the first bad entry raises :class:`BadInputError`; outputs finished before it
    stay, so a rerun after the fix resumes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.npy.*.tmp"):  # temporaries of a killed run (writes are atomic)
        stale.unlink(missing_ok=True)
    summary = RunSummary()
    utts = read_manifest(manifest, audio_root, skip_bad, report=summary.failed)

    todo: list[Utterance] = []
    samples: list[int] = []
    for u in utts:
        if is_complete(out / f"{u.id}.npy", extractor.dim, extractor.rows):
            summary.skipped += 1
            continue
        try:
            n = round(audio_seconds(u.wav) * SAMPLE_RATE)
            reason = extractor.too_short(n)
            if reason:
                raise AudioError(f"{u.wav}: {reason}")
        except AudioError as e:
            _fail(summary, u, e, skip_bad)
            continue
        todo.append(u)
        samples.append(n)

    bar = _progress(len(todo), extractor.name, progress)
    start = time.perf_counter()
    for batch in plan_batches([extractor.frames(n) for n in samples], batch_frames, max_padding):
        items = []
        for i in batch:
            try:
                items.append((todo[i], load_audio(todo[i].wav)))
            except AudioError as e:
                _fail(summary, todo[i], e, skip_bad)
                bar.update(1)

        def failed(item: tuple[Utterance, np.ndarray], e: Exception) -> None:
            u = item[0]
            _fail(summary, u, BadInputError(f"{u.wav}: extraction failed ({e})"), skip_bad)
            bar.update(1)

        run = lambda its: extractor.fn([w for _, w in its])  # noqa: E731
        for done, feats in run_or_retry_singly(items, run, failed):
            for (u, wav), f in zip(done, feats, strict=True):
                atomic_save_npy(out / f"{u.id}.npy", np.asarray(f, dtype=np.float32))
                summary.done += 1
                summary.audio_seconds += len(wav) / SAMPLE_RATE
            bar.update(len(done))
    summary.seconds = time.perf_counter() - start
    bar.close()
    write_json_atomic(out / "extract_summary.json", _summary_json(summary))
    return summary


def _summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "done": summary.done,
        "skipped_existing": summary.skipped,
        "failed": len(summary.failed),
        "failures": summary.failed.items,
        "audio_seconds": round(summary.audio_seconds, 3),
        "wall_seconds": round(summary.seconds, 3),
    }


def _fail(summary: RunSummary, u: Utterance, error: Exception, skip_bad: bool) -> None:
    if not skip_bad:
        raise BadInputError(f"{u.id}: {error} ({SKIP_HINT})") from None
    summary.failed.add(u.id, str(error))


def _progress(total: int, name: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"extract {name}", unit="utt", disable=not enabled, smoothing=0.1)

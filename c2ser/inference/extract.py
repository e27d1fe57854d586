"""Resumable, batched feature extraction over a manifest: one ``<id>.npy`` per utterance.

Layouts (official): Emotion2Vec-S ``frame`` (T, 768) at 50 Hz and ``utterance`` (10, 768)
(``utterance_mode`` ``mean`` gives (1, 768)); ``logmel`` (T, 80) at 100 Hz, the probe baseline.

How a run goes:

1. Read the manifest (jsonl or wav.scp) and every audio header. Outputs that already exist and
   load with the expected shape are skipped (a rerun resumes); unreadable or mis-shaped ones and
   stale temporary files of a killed run are redone. Bad entries stop the run before any work
   unless ``skip_bad``, which counts them as failed with their reason.
2. Sort by length (longest first, so an out-of-memory shows up at once) and cut padded batches
   of at most ``batch_frames`` frames (50 per second), at most ``max_padding`` of them padding
   (:func:`c2ser.data.batching.plan_batches`). Audio longer than ``max_seconds`` is
   processed in ``max_seconds`` pieces whose CNN frames tile the whole file exactly (see
   :meth:`Emotion2VecS.chunks`); it is never truncated.
3. Decode each batch, run it, write every output atomically. A batch that fails (e.g. out of
   memory) is retried one utterance at a time so that one bad file costs only itself.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from c2ser.data.audio import SAMPLE_RATE, AudioError, audio_seconds, load_audio
from c2ser.data.batching import plan_batches
from c2ser.data.manifest import BadInputError, SkipReport, Utterance, read_manifest
from c2ser.utils.io import atomic_save_npy, write_json_atomic

EXTRACTORS = ("emotion2vec-s", "logmel")
MODEL_SIZES = ("base", "tiny")


@dataclass
class Extractor:
    """``fn(list of 16 kHz waveforms) -> list of (rows, dim) float32 arrays``, plus the shape
    contract used to validate existing outputs (``rows`` None: any number of frames)."""

    fn: Callable[[list[np.ndarray]], list[np.ndarray]]
    dim: int
    rows: int | None
    name: str


@dataclass
class ExtractSummary:
    done: int = 0
    existing: int = 0
    failed: SkipReport = field(default_factory=SkipReport)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def line(self) -> str:
        rate = self.done / self.wall_seconds if self.wall_seconds else 0.0
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0
        return (
            f"done {self.done}, skipped {self.existing} (already extracted), "
            f"failed {len(self.failed)}; {rate:.2f} utt/s, real-time factor {rtf:.4f}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "skipped_existing": self.existing,
            "failed": len(self.failed),
            "failures": self.failed.items,
            "audio_seconds": round(self.audio_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }


def load_emotion2vec_s(
    checkpoint: str | os.PathLike | None,
    random_init: bool = False,
    size: str = "base",
    device: str = "cpu",
    dtype: str = "float32",
) -> Any:
    """An :class:`Emotion2VecS` in eval mode on ``device``/``dtype``.

    ``checkpoint``: a converted directory (``c2ser convert emotion2vec-s``), a pretraining run
    directory (its ``emotion2vec_s/`` subfolder is used) or None with ``random_init`` (tests and
    benchmarks only: the features mean nothing).
    """
    import torch

    from c2ser.models.emotion2vec_s import Emotion2VecS, Emotion2VecSConfig, tiny_config
    from c2ser.utils.hardware import cpu_has_native_bf16

    if checkpoint is None:
        if not random_init:
            raise BadInputError(
                "no --checkpoint given: pass a converted Emotion2Vec-S directory "
                "(`c2ser convert emotion2vec-s CHECKPOINT.pt OUT_DIR`) or a pretraining run "
                "directory; --random-init extracts with random weights (tests/benchmarks only)"
            )
        torch.manual_seed(0)
        model = Emotion2VecS(tiny_config() if size == "tiny" else Emotion2VecSConfig()).eval()
    else:
        path = Path(checkpoint)
        if (path / "emotion2vec_s").is_dir():
            path = path / "emotion2vec_s"
        if path.is_file():
            raise BadInputError(
                f"{path}: a file; --checkpoint takes a model directory. Convert a released "
                f"fairseq checkpoint first: c2ser convert emotion2vec-s {path} OUT_DIR"
            )
        try:
            model = Emotion2VecS.from_pretrained(path)
        except FileNotFoundError as e:
            raise BadInputError(str(e)) from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError("--device cuda requested but no CUDA device is available")
    if device == "cpu" and dtype == "bfloat16" and not cpu_has_native_bf16():
        warnings.warn(
            "bfloat16 on a CPU without AVX512-BF16 or AMX is emulated and several times slower "
            "than float32 (6.5x measured on AVX2, BENCHMARKS.md); use --dtype float32 here",
            RuntimeWarning,
            stacklevel=2,
        )
    return model.to(device=device, dtype=getattr(torch, dtype))


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
        from c2ser.data.mel import log_mel

        return Extractor(lambda wavs: [log_mel(w).numpy() for w in wavs], 80, None, "logmel")
    if extractor != "emotion2vec-s":
        raise BadInputError(f"unknown extractor {extractor!r} (choose from {EXTRACTORS})")
    model = load_emotion2vec_s(checkpoint, random_init, size, device, dtype)
    max_samples = int(max_seconds * SAMPLE_RATE) if max_seconds else None

    def fn(wavs: list[np.ndarray]) -> list[np.ndarray]:
        feats = model.extract_batch(wavs, level, utterance_mode, max_samples)
        return [f.numpy() for f in feats]

    c = model.config
    rows = None
    if level == "utterance":
        rows = {"official": c.utterance_rows, "extra_tokens": c.num_extra_tokens, "mean": 1}[
            utterance_mode
        ]
    return Extractor(fn, c.dim, rows, f"emotion2vec-s ({level}, {utterance_mode})")


def is_valid_output(path: Path, dim: int, rows: int | None) -> bool:
    """True when ``path`` loads as a float32 (rows, dim) array: a finished output (writes are
    atomic, so a file cut short by a crash can only come from elsewhere and fails to load)."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    ok_shape = x.ndim == 2 and x.shape[0] > 0 and x.shape[1] == dim
    return ok_shape and (rows is None or x.shape[0] == rows) and x.dtype == np.float32


def extract_manifest(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    extractor: Extractor,
    batch_frames: int = 6000,
    max_padding: float | None = None,
    skip_bad: bool = False,
    audio_root: str | os.PathLike | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract every utterance of ``manifest`` into ``out_dir/<id>.npy``; see the module doc.

    Returns the summary (also written to ``out_dir/extract_summary.json``). Without
    ``skip_bad`` the first bad entry raises :class:`BadInputError`; outputs finished before it
    stay, so a rerun after the fix resumes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.npy.*.tmp"):  # temporaries of a killed run (writes are atomic)
        stale.unlink(missing_ok=True)
    summary = ExtractSummary()
    utts = read_manifest(manifest, audio_root, skip_bad, report=summary.failed)

    todo: list[Utterance] = []
    seconds: list[float] = []
    for u in utts:
        if is_valid_output(out / f"{u.id}.npy", extractor.dim, extractor.rows):
            summary.existing += 1
            continue
        try:
            s = audio_seconds(u.wav)
            if s * SAMPLE_RATE < 400:
                raise AudioError(f"{u.wav}: {s * 1000:.1f} ms is shorter than one frame (25 ms)")
        except AudioError as e:
            _fail(summary, u, e, skip_bad)
            continue
        todo.append(u)
        seconds.append(s)

    bar = _progress(len(todo), extractor.name, progress)
    start = time.perf_counter()
    frames = [max(1, int(s * 50)) for s in seconds]
    for batch in plan_batches(frames, batch_frames, max_padding):
        items = []
        for i in batch:
            try:
                items.append((todo[i], load_audio(todo[i].wav)))
            except AudioError as e:
                _fail(summary, todo[i], e, skip_bad)
                bar.update(1)
        _run_batch(items, extractor, out, summary, skip_bad, bar)
    summary.wall_seconds = time.perf_counter() - start
    bar.close()
    write_json_atomic(out / "extract_summary.json", summary.to_json())
    return summary


def _run_batch(
    items: list[tuple[Utterance, np.ndarray]],
    extractor: Extractor,
    out: Path,
    summary: ExtractSummary,
    skip_bad: bool,
    bar: Any,
) -> None:
    if not items:
        return
    try:
        feats = extractor.fn([w for _, w in items])
    except (RuntimeError, ValueError) as e:  # e.g. out of memory: retry one by one
        if len(items) > 1:
            for item in items:
                _run_batch([item], extractor, out, summary, skip_bad, bar)
            return
        u = items[0][0]
        _fail(summary, u, BadInputError(f"{u.wav}: extraction failed ({e})"), skip_bad)
        bar.update(1)
        return
    for (u, wav), f in zip(items, feats):
        atomic_save_npy(out / f"{u.id}.npy", np.asarray(f, dtype=np.float32))
        summary.done += 1
        summary.audio_seconds += len(wav) / SAMPLE_RATE
    bar.update(len(items))


def _fail(summary: ExtractSummary, u: Utterance, error: Exception, skip_bad: bool) -> None:
    if not skip_bad:
        raise BadInputError(f"{u.id}: {error} (use --skip-bad to skip bad entries)") from None
    summary.failed.add(u.id, str(error))


def _progress(total: int, name: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"extract {name}", unit="utt", disable=not enabled, smoothing=0.1)

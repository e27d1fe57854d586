"""Label audio files and folders with a model bundle: what ``c2ser predict`` runs.

:func:`find_audio` expands folders (recursively, audio suffixes only, sorted) and
:func:`predict_files` checks every file's header before any model work, as ``c2ser infer``
does, so that a bad file stops the run at once (or, with ``skip_bad``, is counted with its
reason); then it labels the files in chunks through the :class:`~c2ser.inference.pipeline.Pipeline`
(which batches by length inside each chunk), handing each chunk's results to ``on_results`` so
the command can print them as they come. :func:`write_results` writes the rows atomically, as
jsonl or csv.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from c2ser.core.errors import BadInputError
from c2ser.core.io import atomic_write_text, write_jsonl_atomic
from c2ser.core.labels import EMOTIONS
from c2ser.data.audio import AudioError, audio_seconds
from c2ser.inference.pipeline import Pipeline
from c2ser.inference.runner import RunSummary, failer

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
OUT_FORMATS = (".jsonl", ".csv")
CHUNK_BATCHES = 8  # files per chunk = batches x batch size: results are printed per chunk
PROGRESS_MIN = 16  # fewer files than this get no progress bar


def find_audio(paths: Sequence[str | os.PathLike], fail: Callable[[str, str], None]) -> list[str]:
    """Files given directly (any suffix: the decoder decides) and the audio files inside given
    folders; a missing path or a folder without audio is a failure (``fail(path, reason)``)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file()
            )
            if not found:
                fail(str(p), f"no audio files in this folder ({', '.join(AUDIO_SUFFIXES)})")
            files += found
        elif p.exists():
            files.append(str(p))
        else:
            fail(str(p), "audio file not found")
    return files


def check_output(out: str | os.PathLike | None) -> None:
    """Refuse an output format we cannot write before any work is done."""
    if out is not None and Path(out).suffix.lower() not in OUT_FORMATS:
        raise BadInputError(f"{out}: --out must end with {' or '.join(OUT_FORMATS)}")


def predict_files(
    pipe: Pipeline,
    paths: Sequence[str | os.PathLike],
    stage: int = 2,
    mode: str = "score",
    skip_bad: bool = False,
    on_results: Callable[[list[dict[str, Any]]], Any] | None = None,
    progress: bool = True,
    **options: Any,
) -> tuple[list[dict[str, Any]], RunSummary]:
    """Label every audio file of ``paths``; (results in input order, summary). ``options`` go
    to the pipeline call (``language``, ``decoding``, ``max_new_tokens``)."""
    summary = RunSummary()
    fail = failer(summary.failed, skip_bad)
    files = []
    for f in find_audio(paths, fail):
        try:
            summary.audio_seconds += audio_seconds(f)
            files.append(f)
        except AudioError as e:
            fail(f, str(e).removeprefix(f"{f}: "))
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(files), desc="predict", unit="file",
        disable=not progress or len(files) < PROGRESS_MIN,
    )  # fmt: skip
    results: list[dict[str, Any]] = []
    chunk = CHUNK_BATCHES * pipe.batch_size
    start = time.perf_counter()
    for i in range(0, len(files), chunk):
        found = pipe(
            files[i : i + chunk], stage=stage, mode=mode, skip_bad=skip_bad,
            progress=bar.update, **options,
        )  # fmt: skip
        for entry in pipe.failed.entries:
            summary.failed.add(entry.where, entry.reason)
        done = [r for r in found if r is not None]
        results += done
        summary.done += len(done)
        if on_results is not None:
            on_results(done)
    summary.seconds = time.perf_counter() - start
    bar.close()
    return results, summary


def write_results(out: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as jsonl (one object per file) or csv (``input, emotion, probability,
    language, text`` and one column per label), written atomically."""
    check_output(out)
    if Path(out).suffix.lower() == ".jsonl":
        return write_jsonl_atomic(out, rows)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "emotion", "probability", "language", "text", *EMOTIONS])
    for r in rows:
        scores = r.get("scores") or {}
        writer.writerow(
            [r["input"], r["emotion"] or "", top_probability(r) or "", r["language"], r["text"]]
            + [scores.get(e, "") for e in EMOTIONS]
        )
    return atomic_write_text(out, buf.getvalue())


def top_probability(row: dict[str, Any]) -> float | None:
    """The probability of the row's label (None for generated answers, which have no scores)."""
    scores = row.get("scores")
    return scores[row["emotion"]] if scores else None

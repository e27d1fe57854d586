"""The Stage 1 model's own explicit CoT as Stage 2 training targets (``c2ser distill-targets``).

Runs the Stage 1 model (batched, :func:`c2ser.inference.generate.run_inference`, Stage 1
prompt) over the manifest and stores each answer as ``cot_target``, with the gold-emotion check
of :func:`c2ser.data.teacher.merge_teacher_outputs`. The raw answers are kept in
``<out>.teacher.jsonl``; that file also makes the run resumable (finished ids are skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c2ser.core.errors import SkipReport
from c2ser.core.io import read_jsonl
from c2ser.core.parse import parse_emotion
from c2ser.data.manifest import read_manifest, relativize, write_manifest
from c2ser.data.teacher import merge_teacher_outputs
from c2ser.inference.generate import run_inference


def make_distill_manifest(
    checkpoint: str | Path,
    manifest: str | Path,
    out: str | Path,
    features: str | None = None,
    audio_root: str | None = None,
    on_mismatch: str = "template",
    batch_size: int = 8,
    decoding: str = "greedy",
    max_new_tokens: int = 200,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    skip_bad: bool = False,
    **model_overrides: Any,
) -> dict[str, int]:
    """``c2ser distill-targets`` as a function (see the module doc); returns counts by
    ``cot_source`` plus ``skipped``. A bad manifest line or utterance stops the run, unless
    ``skip_bad`` (the rule of every runner, :data:`c2ser.core.errors.SKIP_HINT`)."""
    out = Path(out)
    report = SkipReport()
    utts = read_manifest(manifest, audio_root, skip_bad, report=report)
    teacher_file = out.with_name(out.name + ".teacher.jsonl")
    summary = run_inference(
        checkpoint,
        utts,
        teacher_file,
        stage=1,
        features=features,
        batch_size=batch_size,
        decoding=decoding,
        seed=seed,
        device=device,
        max_new_tokens=max_new_tokens,
        parse=parse_emotion,
        progress=progress,
        skip_bad=skip_bad,
        **model_overrides,
    )
    for line in summary.failed.items:
        print(f"failed: {line}")
    teacher = {str(row["index"]): row for row in read_jsonl(teacher_file)}
    kept, counts = merge_teacher_outputs(utts, teacher, on_mismatch, seed, report=report)
    for line in report.items:
        print(f"skip: {line}")
    write_manifest(out, relativize(kept, out.resolve().parent))
    return {**counts, "skipped": len(report)}

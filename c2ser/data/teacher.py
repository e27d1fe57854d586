"""Stage 2 training targets from a Stage 1 model's own answers (the teacher-generated variant of
self-distillation): data preparation, so it lives with the other target builders of ``data``.
``c2ser distill-targets`` (:mod:`c2ser.inference.distill_targets`) runs the model and calls
:func:`merge_teacher_outputs`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.data.cot import explicit_target, implicit_target
from c2ser.data.manifest import Utterance

MISMATCH_POLICIES = ("template", "keep", "drop")


def merge_teacher_outputs(
    utts: Sequence[Utterance],
    teacher: Mapping[str, Mapping[str, Any]],
    on_mismatch: str = "template",
    cot_seed: int = 0,
    template_dir: str | None = None,
    report: SkipReport | None = None,
) -> tuple[list[Utterance], Counter]:
    """Use the Stage 1 model's explicit answers (``teacher[id]["text"]``) as ``cot_target``.

    The gold-emotion check: an answer whose parsed emotion (``pred_emotion``) differs from the
    label would teach Stage 2 a wrong chain of thought, so ``on_mismatch`` decides: ``template``
    (default) replaces it by the template CoT (needs the style attributes), ``keep`` keeps it
    anyway, ``drop`` leaves the utterance out. Utterances without a teacher answer (inference
    failed) are left out. Every kept utterance also gets ``implicit_target`` (if absent) and
    ``cot_source`` (teacher / teacher_mismatch / template). Returns them and counts by source.
    """
    if on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(f"on_mismatch must be one of {MISMATCH_POLICIES}, got {on_mismatch!r}")
    report = report if report is not None else SkipReport()
    kept, counts = [], Counter()
    for utt in utts:
        row = teacher.get(utt.id)
        if row is None:
            report.add(utt.id, "no teacher output: inference failed (see above)")
            continue
        agree = row.get("pred_emotion") == utt.emotion
        try:
            if agree or on_mismatch == "keep":
                text, source = row["text"], "teacher" if agree else "teacher_mismatch"
            elif on_mismatch == "template":
                text, source = explicit_target(utt, cot_seed, template_dir), "template"
            else:
                report.add(utt.id, f"teacher mismatch: {row.get('pred_emotion')} != {utt.emotion}")
                continue
            implicit = utt.extra.get("implicit_target") or implicit_target(utt, template_dir)
        except BadInputError as e:
            report.add(utt.id, str(e).removeprefix(f"{utt.id}: "))
            continue
        utt.extra.update(cot_target=text, implicit_target=implicit, cot_source=source)
        kept.append(utt)
        counts[source] += 1
    return kept, counts

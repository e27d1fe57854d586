"""Score labelled predictions: WA / UA / macro-F1 with bootstrap intervals, overall and per
language, and the paired comparison of two systems.

:func:`score_predictions` is the entry point for anything that already has labels, e.g. a
classifier's outputs or the demo summary: rows of ``index, emotion`` (reference),
``pred_emotion`` (one of ``labels``, or ``None`` for no answer) and optionally ``language`` and
``speaker``. :func:`score_rows` first parses free-text LLM answers (``text``) into labels.

Intervals resample speakers (:mod:`c2ser.evaluation.bootstrap`); "all" is stratified by
language. Rows without a speaker are resampled as their own cluster, and the result's
``bootstrap.unit`` says ``utterance`` (no speaker known), ``speaker`` or ``mixed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.core.language import language_of
from c2ser.core.metrics import classification_report
from c2ser.core.parse import parse_emotion
from c2ser.evaluation.bootstrap import N_RESAMPLES, bootstrap_ci, paired_bootstrap
from c2ser.evaluation.stability import label_indices

Parser = Callable[[str, str | None], str | None]


def row_language(row: Mapping[str, Any]) -> str:
    """A result row's language (:func:`c2ser.core.language.language_of`: the ``language``
    field, else the id prefix; the answer text is the model's, so it does not count)."""
    return language_of(row.get("language"), str(row["index"]))


def _report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: Sequence[str],
    clusters: Sequence[Any],
    strata: Sequence[Any] | None,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    rep = classification_report(y_true.tolist(), y_pred.tolist(), labels)
    rep["parse_rate"] = 1.0 - rep["invalid"] / rep["n"]
    if n_resamples:
        rep["ci"] = bootstrap_ci(
            y_true, y_pred, len(labels), clusters, strata, n_resamples=n_resamples, seed=seed
        )
    return rep


def _clusters(rows: Sequence[Mapping[str, Any]], speakers: Mapping[str, Any] | None) -> list:
    """Bootstrap cluster per row: its speaker, else the row itself."""
    out = []
    for row in rows:
        idx = str(row["index"])
        spk = (speakers or {}).get(idx) or row.get("speaker")
        out.append(("speaker", str(spk)) if spk else ("utterance", idx))
    return out


def score_predictions(
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[str] = EMOTIONS,
    speakers: Mapping[str, Any] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Score rows that already carry labels (see module doc).

    Args:
        rows: ``index``, ``emotion`` (must be in ``labels``), ``pred_emotion`` (a label; ``None``
            or anything else counts as wrong and lowers ``parse_rate``), optional ``language``
            (else the id prefix) and ``speaker``.
        speakers: id -> speaker, used where given instead of the rows' ``speaker``.
        n_resamples: bootstrap resamples for the intervals; 0 skips them.

    Returns:
        ``overall`` and ``languages[lang]``: :func:`classification_report` dicts plus
        ``parse_rate`` and ``ci`` (``{"wa": [lo, hi], "ua": [...], "f1": [...]}``, fractions);
        ``bootstrap``: how the intervals were drawn.
    """
    if not rows:
        raise BadInputError("no predictions to score")
    for row in rows:
        if row.get("emotion") not in labels:
            raise BadInputError(
                f"{row['index']}: reference emotion {row.get('emotion')!r} not in {list(labels)}"
            )
    langs = np.asarray([row_language(r) for r in rows])
    y_true = np.asarray(label_indices([r["emotion"] for r in rows], labels))
    y_pred = np.asarray(label_indices([r.get("pred_emotion") for r in rows], labels))
    clusters = _clusters(rows, speakers)
    kinds = {kind for kind, _ in clusters}
    out: dict[str, Any] = {
        "overall": _report(y_true, y_pred, labels, clusters, langs, n_resamples, seed),
        "languages": {},
    }
    for lang in sorted(set(langs)):
        keep = langs == lang
        sub = [c for c, k in zip(clusters, keep) if k]
        out["languages"][lang] = _report(
            y_true[keep], y_pred[keep], labels, sub, None, n_resamples, seed
        )
    if n_resamples:
        unit = "mixed" if len(kinds) > 1 else ("speaker" if "speaker" in kinds else "utterance")
        out["bootstrap"] = {
            "unit": unit,
            "resamples": n_resamples,
            "seed": seed,
            "level": 0.95,
            "stratified_by": "language (all)",
            "note": {
                "speaker": "two-level: speakers, then utterances within each drawn speaker",
                "mixed": "rows without a speaker are resampled as single utterances",
                "utterance": "no speakers known: utterances resampled independently "
                "(intervals are too narrow if speakers repeat)",
            }[unit],
        }
    return out


def score_rows(
    rows: Sequence[Mapping[str, Any]],
    parse: Parser = parse_emotion,
    labels: Sequence[str] = EMOTIONS,
    speakers: Mapping[str, Any] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Parse and score result rows (each: ``index``, reference ``emotion``, answer ``text``; a
    row without text, e.g. failed inference, is wrong).

    Returns :func:`score_predictions`' result plus ``unparsed`` rows (with a ``reason``) and
    ``predictions`` (id -> parsed emotion or ``None``).
    """
    labelled, unparsed = [], []
    for row in rows:
        text = row.get("text")
        lang = row_language(row)
        pred = parse(text, lang) if text is not None else None
        labelled.append({**row, "language": lang, "pred_emotion": pred})
        if pred is None:
            reason = row.get("error") or ("no emotion in the answer" if text else "empty answer")
            unparsed.append({"index": row["index"], "emotion": row.get("emotion"),
                             "language": lang, "text": text, "reason": reason})  # fmt: skip
    scored = score_predictions(labelled, labels, speakers, n_resamples, seed)
    scored["unparsed"] = unparsed
    scored["predictions"] = {str(r["index"]): r["pred_emotion"] for r in labelled}
    return scored


def compare_predictions(
    reference: Sequence[Mapping[str, Any]],
    system: Sequence[Mapping[str, Any]],
    labels: Sequence[str] = EMOTIONS,
    metric: str = "ua",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Paired bootstrap of ``system`` against ``reference`` (rows as for
    :func:`score_predictions`) on the utterances both scored; ``None`` when they share none.
    Resamples speakers (from either side's rows), stratified by language."""
    ref = {str(r["index"]): r for r in reference}
    common = [r for r in system if str(r["index"]) in ref]
    if not common:
        return None
    refs = [ref[str(r["index"])] for r in common]
    differ = [str(r["index"]) for r, a in zip(common, refs) if r.get("emotion") != a.get("emotion")]
    if differ:
        raise BadInputError(f"reference emotions differ between the two systems: {differ[:5]}")
    speakers = {str(r["index"]): r.get("speaker") or a.get("speaker") for r, a in zip(common, refs)}
    result = paired_bootstrap(
        label_indices([r["emotion"] for r in refs], labels),
        label_indices([r.get("pred_emotion") for r in refs], labels),
        label_indices([r.get("pred_emotion") for r in common], labels),
        len(labels), metric, _clusters(common, speakers), [row_language(r) for r in refs],
        n_resamples=n_resamples, seed=seed,
    )  # fmt: skip
    return {**result, "n": len(common)}

"""One table for a whole comparison: system x language, from evaluation and classifier runs.

The demo (``scripts/demo.py``) compares C2SER's stages and ablation with reference classifiers
on the same held-out speakers. Every system is reduced to per-utterance predictions
(``index, emotion, language, speaker, pred_emotion``) and scored by
:func:`c2ser.evaluation.scoring.score_predictions`, so all rows share one metric code path and
one bootstrap (speakers resampled; 95 % intervals). Sources:

- an ``evaluate.py`` run: its ``predictions.jsonl`` plus, from ``metrics.json``, what only an
  LLM has: answer length, the stability runs and (Stage 1) the chain-of-thought scores;
- a classifier training run (``train.py experiment=demo`` / ``probe_demo``): its
  ``test_predictions.jsonl``.

Each system is also compared with the first classifier (the log-mel baseline) by a paired
bootstrap of UA on the utterances both scored. ``summary.json`` holds
``{"rows": [{"system", "language": "all"|"en"|"zh", "n", "wa", "ua", "f1", "*_ci",
"per_class_recall": {label: recall}, ...}], "comparisons": [...]}`` (recall as a fraction, for
the labels present in that row's references); ``summary.md`` the same as a table, followed by a
compact per-class recall table (system x label, all languages: where Stage 3 should lift the
weak classes Stage 2 leaves, e.g. fear and disgust); one confusion PNG per system.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from c2ser.core.figures import plot_confusion
from c2ser.core.io import atomic_write_text, read_jsonl, write_json_atomic
from c2ser.core.labels import EMOTIONS
from c2ser.evaluation.scoring import compare_predictions, score_predictions

STABILITY_KEYS = ("ua_std", "flip_rate", "fleiss_kappa", "invalid_rate")
COT_KEYS = ("style_acc", "transcript_similarity")


def _evaluation_system(run_dir: Path) -> tuple[str, list[dict], dict[str, Any]]:
    """(name, predictions, LLM-only extras per language) of an evaluate.py run."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    name = (metrics.get("system") or {}).get("name") or run_dir.name
    extras: dict[str, dict[str, Any]] = {"all": {}}
    tokens = metrics.get("answer_tokens") or {}
    if tokens:
        extras["all"]["median_tokens"] = tokens.get("median")
    st = metrics.get("stability") or {}
    extras["all"].update({k: st.get(k) for k in STABILITY_KEYS if k in st})
    cot = metrics.get("cot") or {}
    extras["all"].update({k: cot.get(k) for k in COT_KEYS if k in cot})
    for lang, sub in (cot.get("languages") or {}).items():
        extras.setdefault(lang, {}).update({k: sub.get(k) for k in COT_KEYS if k in sub})
    return name, read_jsonl(run_dir / "predictions.jsonl"), extras


def _row(system: str, language: str, rep: Mapping[str, Any], extras: Mapping) -> dict[str, Any]:
    ci = rep.get("ci") or {}
    row = {"system": system, "language": language, "n": rep["n"]}
    for key in ("wa", "ua", "f1"):
        row[key] = rep[key]
        row[f"{key}_ci"] = ci.get(key)
    row["parse_rate"] = rep.get("parse_rate")
    row["per_class_recall"] = rep.get("per_class_recall")
    return row | dict(extras)


def demo_summary(
    evaluations: Sequence[str | Path],
    classifiers: Mapping[str, str | Path],
    n_resamples: int = 1000,
) -> dict[str, Any]:
    """Rows and comparisons for ``classifiers`` (name -> training run dir) and ``evaluations``
    (evaluate.py run dirs, named by their ``system``), in that order."""
    systems: list[tuple[str, list[dict], dict]] = [
        (name, read_jsonl(Path(run) / "test_predictions.jsonl"), {})
        for name, run in classifiers.items()
    ]
    systems += [_evaluation_system(Path(run)) for run in evaluations]
    rows, comparisons, confusions = [], [], {}
    reference = systems[0] if systems else None
    for name, preds, extras in systems:
        scored = score_predictions(preds, n_resamples=n_resamples)
        confusions[name] = scored["overall"]["confusion"]
        rows.append(_row(name, "all", scored["overall"], extras.get("all", {})))
        for lang, rep in scored["languages"].items():
            rows.append(_row(name, lang, rep, extras.get(lang, {})))
        if reference is not None and name != reference[0]:
            test = compare_predictions(reference[1], preds, n_resamples=n_resamples)
            if test is not None:
                comparisons.append({"system": name, "reference": reference[0], **test})
    return {"rows": rows, "comparisons": comparisons, "confusions": confusions}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(row: Mapping[str, Any], key: str) -> str:
    ci = row.get(f"{key}_ci")
    value = _pct(row[key])
    return f"{value} [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else value


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The table as markdown: percentages with 95 % speaker-bootstrap intervals."""
    head = (
        "| system | lang | n | WA | UA | macro-F1 | parse % | median tokens | UA std | "
        "flip % | Fleiss κ | invalid % | style acc | transcript sim |"
    )
    lines = [
        "# Demo summary (held-out test speakers)",
        "",
        "WA / UA / macro-F1 in %, with 95 % bootstrap intervals that resample speakers. "
        "Stability: over sampled decodings x prompt paraphrases (std of UA, share of utterances "
        "whose label flips, Fleiss' κ, share of invalid answers).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['system']} | {r['language']} | {r['n']} | {_ci(r, 'wa')} | {_ci(r, 'ua')} | "
            f"{_ci(r, 'f1')} | {_pct(r.get('parse_rate'))} | "
            f"{_num(r.get('median_tokens'), '{:g}')} | {_pct(r.get('ua_std'))} | "
            f"{_pct(r.get('flip_rate'))} | {_num(r.get('fleiss_kappa'))} | "
            f"{_pct(r.get('invalid_rate'))} | {_pct(r.get('style_acc'))} | "
            f"{_pct(r.get('transcript_similarity'))} |"
        )
    lines += recall_table(summary["rows"])
    if summary.get("comparisons"):
        lines += ["", "Paired bootstrap of UA against the reference (same utterances):", ""]
        for c in summary["comparisons"]:
            lines.append(
                f"- {c['system']} vs {c['reference']}: Δ UA {100 * c['delta']:+.1f} "
                f"[{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}], p = {c['p_value']:.3f}"
            )
    if summary.get("timings_s"):
        total = sum(summary["timings_s"].values())
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items())
        lines += ["", f"Steps run this time: {total / 60:.1f} min ({steps})."]
    return "\n".join(lines) + "\n"


def recall_table(rows: Sequence[Mapping[str, Any]], language: str = "all") -> list[str]:
    """Markdown lines of per-class recall in %, one row per system (its ``language`` row), a
    column per label (the 7 emotions, then any other label met), UA last; ``–`` for a label
    absent from a system's references. No lines when no row carries ``per_class_recall``."""
    picked = [r for r in rows if r["language"] == language and r.get("per_class_recall")]
    if not picked:
        return []
    seen = {lab for r in picked for lab in r["per_class_recall"]}
    labels = [lab for lab in EMOTIONS if lab in seen] + sorted(seen - set(EMOTIONS))
    where = "all languages" if language == "all" else language
    lines = [
        "",
        f"Per-class recall in % ({where}; per language: `per_class_recall` in summary.json):",
        "",
        "| system | " + " | ".join(labels) + " | UA |",
        "|---|" + "---:|" * (len(labels) + 1),
    ]
    for r in picked:
        recall = r["per_class_recall"]
        cells = [_pct(recall.get(lab)) for lab in labels]
        lines.append(f"| {r['system']} | " + " | ".join(cells) + f" | {_pct(r['ua'])} |")
    return lines


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write_summary(summary: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """``summary.json``, ``summary.md`` and ``confusion_<system>.png`` into ``out_dir``."""
    out = Path(out_dir)
    data = {k: v for k, v in summary.items() if k != "confusions"}
    files = [write_json_atomic(out / "summary.json", data)]
    files.append(atomic_write_text(out / "summary.md", summary_markdown(summary)))
    for name, cm in summary.get("confusions", {}).items():
        ua = next(
            r["ua"] for r in summary["rows"] if r["system"] == name and r["language"] == "all"
        )
        files.append(
            plot_confusion(
                np.asarray(cm),
                EMOTIONS,
                out / f"confusion_{slug(name)}.png",
                f"{name}: UA {100 * ua:.1f}%",
            )
        )
    return files

"""The demo summary: one row per system x language, scored from per-utterance predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from c2ser.core.labels import EMOTIONS
from c2ser.evaluation.summary import demo_summary, summary_markdown, write_summary


def predictions(correct: int, per_language: int = 14) -> list[dict]:
    """``per_language`` utterances per language (2 per emotion), the first ``correct`` right."""
    rows = []
    for lang in ("en", "zh"):
        for i in range(per_language):
            ref = EMOTIONS[i % 7]
            pred = ref if i < correct else EMOTIONS[(i + 1) % 7]
            rows.append({"index": f"{lang}_{i}", "emotion": ref, "language": lang,
                         "speaker": f"{lang}_S{i % 2}", "pred_emotion": pred})  # fmt: skip
    return rows


def write_rows(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def runs(tmp_path):
    baseline = tmp_path / "baseline"
    write_rows(baseline / "test_predictions.jsonl", predictions(7))
    ev = tmp_path / "eval"
    write_rows(ev / "predictions.jsonl", predictions(14))
    metrics = {
        "system": {"name": "C2SER Stage 1"},
        "answer_tokens": {"median": 61, "mean": 60.0, "max": 80},
        "stability": {"ua_std": 0.02, "flip_rate": 0.1, "fleiss_kappa": 0.8, "invalid_rate": 0.0},
        "cot": {"style_acc": 0.5, "transcript_similarity": 0.25,
                "languages": {"en": {"style_acc": 0.6, "transcript_similarity": 0.3}}},
    }  # fmt: skip
    (ev / "metrics.json").write_text(json.dumps(metrics))
    return baseline, ev


def test_rows_scores_and_llm_extras(runs):
    baseline, ev = runs
    s = demo_summary([ev], {"log-mel baseline": baseline}, n_resamples=50)
    rows = {(r["system"], r["language"]): r for r in s["rows"]}
    assert set(rows) == {(sys, lang) for sys in ("log-mel baseline", "C2SER Stage 1")
                         for lang in ("all", "en", "zh")}  # fmt: skip
    assert rows["log-mel baseline", "all"]["ua"] == pytest.approx(0.5)
    assert rows["log-mel baseline", "en"]["wa"] == pytest.approx(0.5)
    full = rows["C2SER Stage 1", "all"]
    assert full["ua"] == full["wa"] == full["f1"] == pytest.approx(1.0)
    assert full["ua_ci"] == [pytest.approx(1.0), pytest.approx(1.0)]
    lo, hi = rows["log-mel baseline", "all"]["ua_ci"]
    assert lo < 0.5 < hi
    assert full["median_tokens"] == 61 and full["flip_rate"] == 0.1 and full["style_acc"] == 0.5
    assert rows["C2SER Stage 1", "en"]["style_acc"] == 0.6
    assert "median_tokens" not in rows["log-mel baseline", "all"]
    (cmp,) = s["comparisons"]
    assert cmp["system"] == "C2SER Stage 1" and cmp["delta"] == pytest.approx(0.5)


def test_written_files(runs, tmp_path):
    baseline, ev = runs
    s = demo_summary([ev], {"log-mel baseline": baseline}, n_resamples=20)
    files = write_summary(s, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["system"] for r in data["rows"]][:3] == ["log-mel baseline"] * 3
    assert {"wa", "ua", "f1", "language"} <= set(data["rows"][0])
    assert (tmp_path / "out" / "confusion_c2ser_stage_1.png").stat().st_size > 0
    assert len(files) == 4
    md = summary_markdown(s)
    assert "| C2SER Stage 1 | all | 28 | 100.0 [100.0, 100.0] |" in md
    assert "vs log-mel baseline: Δ UA +50.0" in md


def test_per_class_recall_in_json_and_markdown(tmp_path):
    """Issue 16: held-out per-class recall for each system, beside UA (summary.json rows and a
    system x label table in summary.md), existing fields unchanged."""
    baseline, stage2, stage3 = tmp_path / "baseline", tmp_path / "s2", tmp_path / "s3"
    write_rows(baseline / "test_predictions.jsonl", predictions(7))
    # Stage 2: right on the first 3 of each language's 14 (angry, happy, neutral once each)
    # and on nothing else; Stage 3 also on the first 10 (all 7 once, angry/happy/neutral twice)
    for run, correct, name in ((stage2, 3, "C2SER Stage 2"), (stage3, 10, "C2SER Stage 3")):
        write_rows(run / "predictions.jsonl", predictions(correct))
        (run / "metrics.json").write_text(json.dumps({"system": {"name": name}}))
    s = demo_summary([stage2, stage3], {"log-mel baseline": baseline}, n_resamples=10)
    write_summary(s, tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    by = {(r["system"], r["language"]): r for r in rows}
    s2, s3 = by["C2SER Stage 2", "all"], by["C2SER Stage 3", "all"]
    assert set(s2["per_class_recall"]) == set(EMOTIONS)
    assert s2["per_class_recall"] == {
        lab: pytest.approx(0.5 if lab in ("angry", "happy", "neutral") else 0.0) for lab in EMOTIONS
    }
    assert s3["per_class_recall"]["angry"] == pytest.approx(1.0)
    assert s3["per_class_recall"]["disgusted"] == pytest.approx(0.5)
    assert by["C2SER Stage 3", "en"]["per_class_recall"]["fearful"] == pytest.approx(0.5)
    # the recall of each class averages to UA (all 7 present)
    assert np.mean(list(s3["per_class_recall"].values())) == pytest.approx(s3["ua"])
    assert {"system", "language", "n", "wa", "ua", "f1", "ua_ci", "parse_rate"} <= set(s2)

    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| system | " + " | ".join(EMOTIONS) + " | UA |" in md
    assert "| C2SER Stage 2 | 50.0 | 50.0 | 50.0 | 0.0 | 0.0 | 0.0 | 0.0 | 21.4 |" in md
    assert "| C2SER Stage 3 | 100.0 | 100.0 | 100.0 | 50.0 | 50.0 | 50.0 | 50.0 | 71.4 |" in md
    assert "| log-mel baseline | 50.0 |" in md
    table = md.split("Per-class recall in % (all languages")[1]
    assert "| C2SER Stage 2 | en |" not in table  # one row per system: all languages


def test_recall_table_marks_absent_labels():
    rows = [
        {"system": "a", "language": "all", "ua": 0.5,
         "per_class_recall": {"angry": 1.0, "sad": 0.0}},
        {"system": "b", "language": "all", "ua": 1.0, "per_class_recall": {"angry": 1.0}},
        {"system": "a", "language": "en", "ua": 0.5, "per_class_recall": {"angry": 1.0}},
    ]  # fmt: skip
    lines = summary_markdown({"rows": [], "comparisons": []}).splitlines()
    assert not any("Per-class" in line for line in lines)  # nothing to show, no table
    from c2ser.evaluation.summary import recall_table

    table = recall_table(rows)
    assert table[3] == "| system | angry | sad | UA |"
    assert table[5:] == ["| a | 100.0 | 0.0 | 50.0 |", "| b | 100.0 | – | 100.0 |"]

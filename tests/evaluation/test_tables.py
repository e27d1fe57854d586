"""`c2ser report`: systems and ablations named from fake evaluate.py run dirs, paper columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from c2ser.cli.main import main as cli
from c2ser.core.io import write_json_atomic
from c2ser.core.labels import EMOTIONS
from c2ser.core.metrics import classification_report
from c2ser.evaluation.evaluate import KIND
from c2ser.evaluation.tables import load_run, write_tables

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "conf" / "paper" / "c2ser_reported.yaml"


def fake_run(
    root: Path, name: str, correct: int, stage: int = 2, dataset: str = "emo_emilia",
    system: dict | None = None, cfg: dict | None = None, stability: dict | None = None,
) -> Path:  # fmt: skip
    """A run dir whose 7x2 utterances (one per emotion and language) have ``correct`` right
    in each language: UA = correct / 7."""
    y_true = list(range(7))
    y_pred = [i if i < correct else (i + 1) % 7 for i in range(7)]
    rep = classification_report(y_true, y_pred, EMOTIONS)
    both = classification_report(y_true * 2, y_pred * 2, EMOTIONS)
    metrics = {
        "kind": KIND, "dataset": dataset, "stage": stage, "source": "test",
        "system": system or {}, "n": 14, "n_unparsed": 0, "n_failed": 0, "n_missing": 0,
        "answer_tokens": None, "overall": both, "languages": {"en": rep, "zh": rep},
    }  # fmt: skip
    if stability:
        metrics["stability"] = stability
    run = root / name
    write_json_atomic(run / "metrics.json", metrics)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"stage": stage, **(cfg or {})}))
    return run


@pytest.fixture
def runs(tmp_path):
    cot_skipped = {"use_ssl": True, "use_whisper": True,
                   "train": {"task": "CotSFTTask", "data_stage": 2}}  # fmt: skip
    stab = {"runs": 5, "decoding": "official", "ua_mean": 0.7, "ua_std": 0.0123,
            "agreement": 0.9, "pairwise_agreement": 0.95}  # fmt: skip
    return [
        fake_run(tmp_path, "s2", 5, system={"use_ssl": True, "use_whisper": True},
                 stability=stab),
        fake_run(tmp_path, "s1", 4, stage=1),
        fake_run(tmp_path, "no_ssl", 3, system={"use_ssl": False, "use_whisper": True}),
        fake_run(tmp_path, "no_whisper", 2, system={"use_ssl": True, "use_whisper": False}),
        fake_run(tmp_path, "no_cot", 1, system=cot_skipped),
        fake_run(tmp_path, "named", 6, cfg={"system": "w/o CoT"}),
        fake_run(tmp_path, "demo", 7, dataset="demo_test"),
    ]  # fmt: skip


def test_runs_are_named_from_model_switches_and_training(runs):
    named = {r.run: (r.system, r.ablation) for r in map(load_run, runs)}
    assert named == {
        "s2": ("C2SER Implicit (Stage 2)", "full"),
        "s1": ("C2SER Explicit (Stage 1)", "full"),
        "no_ssl": ("C2SER Implicit (Stage 2) w/o Emotion2Vec-S", "w/o Emotion2Vec-S"),
        "no_whisper": ("C2SER Implicit (Stage 2) w/o Whisper", "w/o Whisper"),
        "no_cot": ("C2SER Implicit (Stage 2) w/o CoT", "w/o CoT"),
        "named": ("w/o CoT", "w/o CoT"),
        "demo": ("C2SER Implicit (Stage 2)", "full"),
    }


def test_tables_markdown_and_csv(runs, tmp_path):
    out = tmp_path / "report" / "tables.md"
    report = write_tables(runs, out, PAPER)
    md = report["markdown"]
    assert out.read_text() == md
    # main table: ours beside the paper's (unverified -> dagger), stability columns, paper-only rows
    assert "## emo_emilia: main results (%), paper: Tables VI-VII (zero-shot)" in md
    assert "| C2SER Implicit (Stage 2) | s2 | 71.43 | " in md
    assert "| 1.23 | 90.00 | 69.00† | 61.61† |" in md
    assert "| C2SER Explicit (Stage 1) | s1 | 57.14 |" in md and "| 68.29† | 61.28† |" in md
    assert "| Qwen2-Audio | (paper only) |" in md and "39.07† | 31.91† |" in md
    # ablation table: our drop from our full system beside the paper's drop
    assert "## emo_emilia: ablations of Stage 2 (UA %), paper: Table VIII" in md
    assert "| full | s2 | 71.43 | +0.00 | 69.00† | +0.00† |" in md
    assert "| w/o Emotion2Vec-S | no_ssl | 42.86 | -28.57 | 57.93† | -11.07† |" in md
    assert "| w/o Whisper | no_whisper | 28.57 | -42.86 | 32.07† | -36.93† |" in md
    assert "| w/o CoT | no_cot | 14.29 | -57.14 | 43.14† | -25.86† |" in md
    # other datasets: no paper numbers to compare with
    assert "## demo_test: main results (%)\n" in md
    assert "† reported by the paper but not checked against the PDF" in md
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    s2 = next(r for r in rows if r["table"] == "main" and r["run"] == "s2")
    assert (s2["ua"], s2["ua_zh"], s2["paper_ua"], s2["paper_verified"]) == (
        "71.43", "71.43", "69.00", "False",
    )  # fmt: skip
    cot = next(r for r in rows if r["table"] == "ablation" and r["run"] == "no_cot")
    assert (cot["system"], cot["ua_drop"], cot["paper_ua_drop"]) == ("w/o CoT", "-57.14", "-25.86")


def test_paper_file_marks_every_value_unverified():
    paper = yaml.safe_load(PAPER.read_text())
    rows = [r for t in ("main", "ablation") for d in paper[t].values() for r in d["rows"]]
    assert len(rows) >= 10 and all(r["verified"] is False for r in rows)


def test_cli(runs, tmp_path, capsys):
    out = tmp_path / "t.md"
    assert cli(["report", *map(str, runs[:2]), "--out", str(out), "--no-paper"]) == 0
    printed = capsys.readouterr().out
    assert "Paper UA" not in printed and "| C2SER Explicit (Stage 1) | s1 |" in printed
    assert cli(["report", str(runs[0]), "--out", str(out)]) == 0  # default: the checkout's paper
    printed = capsys.readouterr().out
    assert "| w/o CoT | (paper only) | — | — | 43.14† | -25.86† |" in printed
    assert out.with_suffix(".csv").is_file()
    # a training run's metrics.json, or a missing one: one clear error, exit code 2
    train_run = tmp_path / "train"
    train_run.mkdir()
    (train_run / "metrics.json").write_text('{"val/loss": 1.0}')
    assert cli(["report", str(train_run), "--out", str(out)]) == 2
    assert "not an evaluate.py metrics file" in capsys.readouterr().err
    assert cli(["report", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def _with_predictions(run: Path, correct: int, ci: list[float], cot: dict | None = None) -> Path:
    """Add what evaluate.py now writes: UA intervals, CoT scores and predictions.jsonl (7x2
    utterances, 2 speakers, the first ``correct`` per language right)."""
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    metrics["overall"]["ci"] = {"wa": ci, "ua": ci, "f1": ci}
    if cot:
        metrics["cot"] = cot
    write_json_atomic(run / "metrics.json", metrics)
    rows = [
        {"index": f"{lang}_{i}", "emotion": e, "language": lang, "speaker": f"{lang}_S",
         "pred_emotion": e if i < correct else EMOTIONS[(i + 1) % 7]}
        for lang in ("en", "zh") for i, e in enumerate(EMOTIONS)
    ]  # fmt: skip
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_intervals_cot_and_paired_test_columns(tmp_path):
    full = _with_predictions(fake_run(tmp_path, "full", 2), 2, [0.1, 0.5])
    better = _with_predictions(
        fake_run(tmp_path, "better", 7, system={"use_ssl": False}), 7, [0.9, 1.0]
    )
    s1 = _with_predictions(
        fake_run(tmp_path, "s1", 2, stage=1), 2, [0.1, 0.5],
        cot={"style_acc": 0.5, "transcript_similarity": 0.875},
    )  # fmt: skip
    md = write_tables([full, better, s1], tmp_path / "t.md")["markdown"]
    head = "| System | Run | UA | UA 95% CI | F1 | WA | UA en | F1 en | UA zh | F1 zh |"
    assert head + " Style acc | Transcript sim | Δ UA vs full (p) |" in md
    assert "| C2SER Implicit (Stage 2) | full | 28.57 | [10.00, 50.00] |" in md
    assert "| — | — | (ref) |" in md  # the reference itself: no CoT, no test
    # w/o Emotion2Vec-S is right on all 14, the reference on 4: +71.43 UA, with 2 speakers
    line = next(x for x in md.splitlines() if x.startswith("| C2SER Implicit (Stage 2) w/o"))
    assert "| [90.00, 100.00] |" in line and "| +71.43 (p=" in line
    assert "| 50.00 | 87.50 | +0.00 (p=1.000) |" in md  # Stage 1: same predictions as ref
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    b = next(r for r in rows if r["table"] == "main" and r["run"] == "better")
    assert (b["ua_ci_lo"], b["ref_run"], b["delta_ua_ref"]) == ("90.00", "full", "71.43")
    assert 0 < float(b["p_ref"]) < 0.05


def test_generated_and_scored_runs_side_by_side(tmp_path):
    import json

    runs = []
    for name, decoding, parse_rate in (("greedy", "greedy", 0.9), ("score", "score", 1.0)):
        run = fake_run(tmp_path, name, 5 if decoding == "greedy" else 6)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["decoding"], metrics["overall"]["parse_rate"] = decoding, parse_rate
        write_json_atomic(run / "metrics.json", metrics)
        runs.append(run)
    md = write_tables(runs, tmp_path / "t.md", PAPER)["markdown"]
    assert "| System | Run | Decoding | UA | F1 | WA | Parse % |" in md
    assert "| C2SER Implicit (Stage 2) | greedy | greedy | 71.43 |" in md
    assert "| C2SER Implicit (Stage 2) | score | score | 85.71 |" in md
    assert "| 100.00 |" in md
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["decoding"] for r in rows if r["table"] == "main" and r["run"]] == ["greedy", "score"]
    one = write_tables(runs[:1], tmp_path / "one.md", PAPER)["markdown"]
    assert "Decoding" not in one  # one decoding: no extra columns

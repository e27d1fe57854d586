"""SER metrics on a hand-computed confusion matrix, and the sweep aggregation rules."""

import json

import numpy as np
import pytest

from c2ser.cli.main import main as cli
from c2ser.core.errors import BadInputError
from c2ser.core.metrics import classification_report, confusion_matrix
from c2ser.evaluation.probe_report import aggregate, best_rows, load_jobs, write_probe_report

LABELS = ["a", "b", "c", "d", "e"]


def test_metrics_by_hand_with_classes_absent_from_the_fold():
    # references: a a a b b c ; predictions: a a b b d c.  'd' is predicted but never true,
    # 'e' is neither true nor predicted.
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 3, 2]
    r = classification_report(y_true, y_pred, LABELS)
    assert r["wa"] == pytest.approx(4 / 6)
    # recall a 2/3, b 1/2, c 1; 'd' and 'e' have no reference, so UA averages 3 classes
    assert r["ua"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1 a = 2*1*(2/3)/(1+2/3) = 0.8, b = 0.5, c = 1, d = 0 (predicted, never right); 'e' left out
    assert r["f1"] == pytest.approx((0.8 + 0.5 + 1 + 0) / 4)
    assert r["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    cm = np.asarray(r["confusion"])
    assert cm.shape == (5, 6) and cm[1, 3] == 1 and cm[:, 5].sum() == 0


def test_invalid_predictions_count_as_errors():
    r = classification_report([0, 1, 1], [0, -1, 1], ["x", "y"])
    assert r["wa"] == pytest.approx(2 / 3) and r["ua"] == pytest.approx(0.75)
    assert r["invalid"] == 1 and confusion_matrix([0], [-1], 2)[0, 2] == 1


def report(ua: float, wa: float | None = None, f1: float | None = None) -> dict:
    wa = ua if wa is None else wa
    return {
        "wa": wa,
        "ua": ua,
        "f1": ua if f1 is None else f1,
        "labels": ["x", "y"],
        "confusion": [[3, 1, 0], [1, 3, 0]],
    }


def write_job(root, name, lr, hidden, fold, val_ua, test_ua, features="/f/e2v", **val_kw):
    job = root / name
    job.mkdir(parents=True)
    (job / "config.yaml").write_text("{}\n")
    result = {
        "lr": lr,
        "hidden_size": hidden,
        "fold": fold,
        "features": features,
        "selected_epoch": 3,
        "val": {"epoch": 3, **report(val_ua, **val_kw)},
        "test": report(test_ua),
    }
    (job / "probe_result.json").write_text(json.dumps(result))


def test_best_is_chosen_on_validation_not_test(tmp_path):
    # lr 1e-3 wins on validation (0.7 vs 0.6) although lr 1e-4 is better on test
    for fold, (v1, t1, v2, t2) in enumerate([(0.7, 0.5, 0.6, 0.9), (0.7, 0.6, 0.6, 0.8)], 1):
        write_job(tmp_path, f"a{fold}", 1e-3, 128, fold, v1, t1)
        write_job(tmp_path, f"b{fold}", 1e-4, 128, fold, v2, t2)
    write_job(tmp_path, "c1", 1e-4, 256, 1, 0.99, 0.99)  # one fold only: cannot win
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "config.yaml").write_text("{}\n")
    out = write_probe_report(tmp_path)
    (best,) = out["best"].values()
    assert (best["lr"], best["hidden_size"], best["n_folds"]) == (1e-3, 128, 2)
    assert best["test_ua_mean"] == pytest.approx(0.55)
    assert best["test_ua_std"] == pytest.approx(np.std([0.5, 0.6], ddof=1))
    single = next(r for r in out["rows"] if r["hidden_size"] == 256)
    assert single["test_ua_std"] == 0.0
    assert "1 job(s) without probe_result.json" in out["markdown"] and "failed" in out["markdown"]
    assert "| 0.001 | 128 **best** | 2 | 70.00 ± 0.00" in out["markdown"]
    names = {p.name for p in out["files"]}
    assert {"probe_report.md", "probe_report.csv", "best_confusion_all_folds.png"} <= names


def test_ties_break_on_val_wa_then_smaller_model(tmp_path):
    write_job(tmp_path, "a", 1e-3, 256, 1, 0.7, 0.5, wa=0.8)
    write_job(tmp_path, "b", 1e-4, 128, 1, 0.7, 0.5, wa=0.75)
    write_job(tmp_path, "c", 1e-4, 64, 1, 0.7, 0.5, wa=0.75)
    jobs, _ = load_jobs(tmp_path)
    (best,) = best_rows(aggregate(jobs)).values()
    assert best["hidden_size"] == 256
    (tmp_path / "a" / "probe_result.json").unlink()
    jobs, unfinished = load_jobs(tmp_path)
    assert unfinished == [str(tmp_path / "a")]
    (best,) = best_rows(aggregate(jobs)).values()
    assert best["hidden_size"] == 64


def test_feature_sets_are_reported_separately(tmp_path):
    write_job(tmp_path, "m", 1e-3, 128, 1, 0.4, 0.4, features="/f/logmel")
    write_job(tmp_path, "e", 1e-3, 128, 1, 0.8, 0.8, features="/f/e2v")
    out = write_probe_report(tmp_path, tmp_path / "out")
    assert set(out["best"]) == {"/f/logmel", "/f/e2v"}
    assert (tmp_path / "out" / "best1_confusion_fold1.png").exists()


def test_bad_sweeps_are_clear(tmp_path, capsys):
    write_job(tmp_path, "a", 1e-3, 128, 1, 0.7, 0.5)
    write_job(tmp_path, "b", 1e-3, 128, 1, 0.6, 0.5)
    with pytest.raises(BadInputError, match=r"fold 1 of lr=0\.001 hidden=128 appears twice"):
        write_probe_report(tmp_path)
    assert cli(["probe-report", str(tmp_path / "nowhere")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match=r"no probe_result\.json"):
        load_jobs(tmp_path / "empty")

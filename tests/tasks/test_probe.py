"""The probe head and task, and a tiny end-to-end grid: ``train.py -m`` then ``probe-report``."""

import csv
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from c2ser.cli.main import main as cli
from c2ser.core.metrics import scores_from_confusion
from c2ser.data.batching import pad_batch
from c2ser.models.probe import ProbeHead
from c2ser.tasks.probe import ProbeTask
from c2ser.tasks.schedules import emobox, emobox_lr_factor

REPO = Path(__file__).resolve().parents[2]
LABELS = ("angry", "happy", "neutral", "sad")


def test_masked_pooling_ignores_padding():
    torch.manual_seed(0)
    head = ProbeHead(input_dim=8, num_classes=3, hidden_size=16)
    items = [torch.randn(n, 8) for n in (5, 2, 9)]
    alone = torch.cat([head(x[None]) for x in items])  # no padding, no mask
    padded, mask = pad_batch(items)
    torch.testing.assert_close(head(padded, mask), alone)
    garbage = padded.masked_fill(mask[..., None], 1e3)  # padding content must not matter
    torch.testing.assert_close(head(garbage, mask), alone)
    assert set(head.state_dict()) == {
        "pre_net.weight",
        "pre_net.bias",
        "post_net.weight",
        "post_net.bias",
    }


def test_emobox_schedule_matches_speechbrain_linear_warmup():
    lr = [emobox_lr_factor(e, 10, 100) for e in range(100)]
    assert lr[0] == 1.0 and lr[1] == 0.0  # epoch 1 at lr, epoch 2 at 0
    assert lr[6] == pytest.approx(0.5) and lr[11] == 1.0  # back to lr at epoch 12
    assert lr[99] == pytest.approx(2 / 90)  # ~0.02 lr at epoch 100


def test_probe_task_optimizer_is_adam_without_weight_decay():
    task = ProbeTask(ProbeHead(4, 2, 8), lr=1e-4)
    opt = task.configure_optimizers()
    assert type(opt) is torch.optim.Adam
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["weight_decay"] == 0.0
    conf = ProbeTask(ProbeHead(4, 2, 8), scheduler=partial(emobox)).configure_optimizers()
    assert conf["lr_scheduler"]["interval"] == "epoch"


def make_feature_corpus(root: Path, n: int = 64, dim: int = 12) -> tuple[Path, Path]:
    """Separable synthetic features (class k shifts dimension k) on 4 speaker-disjoint folds."""
    rng = np.random.default_rng(0)
    feats = root / "feats"
    feats.mkdir(parents=True)
    rows = []
    for i in range(n):
        k, spk = i % len(LABELS), (i // len(LABELS)) % 8
        x = rng.standard_normal((int(rng.integers(4, 20)), dim)).astype(np.float32)
        x[:, k] += 2.0
        np.save(feats / f"u{i}.npy", x)
        rows.append(
            {
                "index": f"u{i}",
                "emotion": LABELS[k],
                "wav": f"u{i}.wav",
                "speaker": f"s{spk}",
                "fold": spk // 2 + 1,
            }
        )
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return feats, manifest


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """2 lr x 1 hidden x 2 folds, 2 epochs each, through Hydra's multirun."""
    root = tmp_path_factory.mktemp("grid")
    feats, manifest = make_feature_corpus(root)
    sweep = root / "sweep"
    args = [
        "-m",
        "experiment=probe",
        "hparams_search=emobox_grid",
        f"data.feat_dir={feats}",
        f"data.manifest={manifest}",
        "task.lr=1e-2,1e-3",
        "model.hidden_size=32",
        "data.fold=1,2",
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "PROJECT_ROOT": str(root), "HYDRA_FULL_ERROR": "1"}
    r = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return sweep


def test_grid_jobs_write_results_of_the_epoch_selected_on_val_ua(grid):
    results = sorted(grid.glob("*/probe_result.json"))
    assert len(results) == 4
    seen = set()
    for path in results:
        job = json.loads(path.read_text())
        seen.add((job["lr"], job["hidden_size"], job["fold"]))
        assert job["max_epochs"] == 2 and job["test"]["labels"] == list(LABELS)
        for stage in ("val", "test"):  # every score recomputes from its confusion matrix
            scores = scores_from_confusion(np.asarray(job[stage]["confusion"]))
            assert scores == pytest.approx({m: job[stage][m] for m in scores})
        with open(path.parent / "csv" / "metrics.csv") as f:
            val_ua = [float(r["val/ua"]) for r in csv.DictReader(f) if r.get("val/ua")]
        assert job["selected_epoch"] == int(np.argmax(val_ua))  # first best epoch
        assert job["val"]["ua"] == pytest.approx(max(val_ua))
        metrics = json.loads((path.parent / "metrics.json").read_text())
        assert metrics["test/ua"] == pytest.approx(job["test"]["ua"])
    assert seen == {(lr, 32, fold) for lr in (1e-2, 1e-3) for fold in (1, 2)}


def test_probe_report_recomputes_from_job_json(grid, capsys):
    assert cli(["probe-report", str(grid)]) == 0
    printed = capsys.readouterr().out
    assert "| 0.01 | 32" in printed and "Best (highest mean validation UA" in printed
    jobs = [json.loads(p.read_text()) for p in grid.glob("*/probe_result.json")]
    with open(grid / "report" / "probe_report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        mine = [j for j in jobs if j["lr"] == float(row["lr"])]
        assert len(mine) == 2 and row["folds"] == "1 2"
        for stage in ("val", "test"):
            for m in ("wa", "ua", "f1"):
                values = [j[stage][m] for j in mine]
                assert float(row[f"{stage}_{m}_mean"]) == pytest.approx(np.mean(values))
                assert float(row[f"{stage}_{m}_std"]) == pytest.approx(np.std(values, ddof=1))
    best = max(rows, key=lambda r: float(r["val_ua_mean"]))
    report = json.loads((grid / "report" / "probe_report.json").read_text())
    (chosen,) = report["best"].values()
    if rows[0]["val_ua_mean"] != rows[1]["val_ua_mean"]:
        assert chosen["lr"] == float(best["lr"])
    for name in (
        "best_confusion_fold1.png",
        "best_confusion_fold2.png",
        "best_confusion_all_folds.png",
    ):
        assert (grid / "report" / name).stat().st_size > 0

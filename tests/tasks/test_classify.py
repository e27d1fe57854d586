"""ClassificationTask (baseline + probe): it learns, scores each utterance once, and writes its
test predictions per utterance."""

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from c2ser.data.feature_datamodule import FeatureDataModule
from c2ser.models.probe import ProbeHead
from c2ser.tasks.probe import ProbeTask
from c2ser.tasks.strategies import gather_unique

LABELS = ("angry", "happy", "neutral", "sad")


def easy_features(root: Path, n: int = 96, dim: int = 8) -> tuple[Path, Path]:
    """Features that encode the label (class k adds 3 to dimension k of unit noise), 8 speakers
    on 4 speaker-disjoint folds, English for even speakers and Chinese for odd ones."""
    rng = np.random.default_rng(0)
    feats = root / "feats"
    feats.mkdir(parents=True)
    rows = []
    for i in range(n):
        k, spk = i % len(LABELS), (i // len(LABELS)) % 8
        x = rng.standard_normal((int(rng.integers(4, 12)), dim)).astype(np.float32)
        x[:, k] += 3.0
        np.save(feats / f"u{i}.npy", x)
        rows.append({"index": f"u{i}", "emotion": LABELS[k], "wav": f"u{i}.wav",
                     "speaker": f"s{spk}", "language": ("en", "zh")[spk % 2],
                     "fold": spk // 2 + 1})  # fmt: skip
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return feats, manifest


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory) -> tuple[pl.Trainer, Path, list[dict]]:
    """A probe trained on folds 2-4 (lr 1e-2, 12 epochs) and tested on the unseen speakers of
    fold 1: the trainer, the run directory and the manifest rows."""
    root = tmp_path_factory.mktemp("probe")
    feats, manifest = easy_features(root)
    pl.seed_everything(0)
    dm = FeatureDataModule(str(feats), fold=1, manifest=str(manifest), batch_size=16)
    dm.setup()
    task = ProbeTask(ProbeHead(dm.input_dim, len(dm.labels), hidden_size=32), lr=1e-2)
    trainer = pl.Trainer(
        max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root / "run"),
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    trainer.test(task, datamodule=dm, verbose=False)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return trainer, root / "run", rows


def test_probe_learns_features_that_encode_the_label(probe_run):
    """Held-out speakers: a working classifier scores near 1.0; one that picks the wrong logit
    (argmin, a label shift) scores near chance (0.25)."""
    trainer, _, _ = probe_run
    metrics = trainer.callback_metrics
    assert float(metrics["test/ua"]) >= 0.9, {k: float(v) for k, v in metrics.items()}
    assert float(metrics["test/n"]) == 24


def test_test_predictions_are_one_row_per_test_utterance(probe_run):
    trainer, run, manifest = probe_run
    rows = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    test = {r["index"]: r for r in manifest if r["fold"] == 1}
    assert sorted(r["index"] for r in rows) == sorted(test)
    for row in rows:
        ref = test[row["index"]]
        assert set(row) == {"index", "emotion", "language", "speaker", "pred_emotion", "scores"}
        assert (row["emotion"], row["language"], row["speaker"]) == (
            ref["emotion"], ref["language"], ref["speaker"],
        )  # fmt: skip
        assert list(row["scores"]) == list(LABELS)
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["pred_emotion"] == max(row["scores"], key=row["scores"].get)
    report = json.loads((run / "test_report.json").read_text())
    accuracy = np.mean([r["pred_emotion"] == r["emotion"] for r in rows])
    assert report["wa"] == pytest.approx(accuracy)  # the rows are what was scored
    assert float(trainer.callback_metrics["test/wa"]) == pytest.approx(accuracy)


def test_gather_unique_keeps_the_first_row_of_each_id():
    rows = [{"index": "a", "v": 1}, {"index": "b", "v": 2}, {"index": "a", "v": 3}]
    assert gather_unique(rows, "index", world_size=1) == rows[:2]
    assert gather_unique([], "index", world_size=1) == []


def test_language_and_speaker_reach_the_batches(tmp_path):
    feats, manifest = easy_features(tmp_path, n=32)
    dm = FeatureDataModule(str(feats), fold=1, manifest=str(manifest), batch_size=4)
    batch = next(iter(dm.test_dataloader()))
    by_id = {json.loads(x)["index"]: json.loads(x) for x in manifest.read_text().splitlines()}
    assert batch["language"] == [by_id[i]["language"] for i in batch["id"]]
    assert batch["speaker"] == [by_id[i]["speaker"] for i in batch["id"]]
    assert isinstance(batch["label"], torch.Tensor)

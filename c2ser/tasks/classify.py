"""Utterance classification task (the baseline job): cross-entropy + WA/UA/F1 on val and test."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from c2ser.core.figures import plot_confusion
from c2ser.core.io import write_json_atomic, write_jsonl_atomic
from c2ser.core.labels import EMOTIONS
from c2ser.core.metrics import classification_report
from c2ser.tasks.schedules import (
    OptimizerFactory,
    SchedulerFactory,
    build_optimizer,
    build_scheduler,
    linear_warmup,
)
from c2ser.tasks.strategies import gather_unique

PREDICTIONS_FILE = "test_predictions.jsonl"
WARMUP_50 = partial(linear_warmup, warmup_steps=50)


class ClassificationTask(pl.LightningModule):
    """Trains ``model(x, x_mask) -> logits`` and reports SER metrics per epoch; ``x`` is the
    batch's ``input_key`` (``mel`` here, ``feats`` for :class:`~c2ser.tasks.probe.ProbeTask`).

    Predictions are gathered over the whole epoch and from every rank, each utterance once (DDP
    samplers repeat batches), and scored once (UA is not an average of per-batch UAs);
    ``<stage>/n`` logs how many utterances were scored. At test end the run directory gets
    ``test_report.json``, the confusion matrix and ``test_predictions.jsonl``: one row per test
    utterance (``index, emotion, language, speaker, pred_emotion`` and ``scores``, the softmax
    probability of each label), so that later summaries can score per language and bootstrap
    over speakers without running the model again.

    Args:
        optimizer: ``optimizer(params) -> Optimizer``, a partial config entry (default AdamW,
            weight decay 0.01); ``lr`` and ``weight_decay`` are its shortcuts (``task.lr``).
        scheduler: ``scheduler(optimizer) -> LR scheduler`` stepped every optimiser step, a
            partial entry of :mod:`c2ser.tasks.schedules` (default: linear warmup over 50
            steps); None: constant.
    """

    input_key = "mel"
    scheduler_interval = "step"

    def __init__(
        self,
        model: nn.Module,
        labels: Sequence[str] = EMOTIONS,
        lr: float | None = 1e-3,
        weight_decay: float | None = 0.01,
        optimizer: OptimizerFactory = torch.optim.AdamW,
        scheduler: SchedulerFactory | None = WARMUP_50,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model, self.labels = model, list(labels)
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def _logits(self, batch: dict[str, Any]) -> torch.Tensor:
        key = self.input_key
        return self.model(batch[key], batch[f"{key}_mask"])

    def training_step(self, batch: dict[str, Any], _: int) -> torch.Tensor:
        logits = self._logits(batch)
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self._logits(batch)
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.log(f"{stage}/loss", loss, batch_size=len(batch["label"]), sync_dist=True)
        preds = logits.argmax(-1).tolist()
        probs = logits.float().softmax(-1).tolist()
        rows = self._rows.setdefault(stage, [])
        for i, (label, pred) in enumerate(zip(batch["label"].tolist(), preds, strict=True)):
            rows.append(
                {
                    "index": batch["id"][i],
                    "emotion": self.labels[label],
                    "language": batch["language"][i],
                    "speaker": batch["speaker"][i],
                    "pred_emotion": self.labels[pred],
                    "scores": dict(zip(self.labels, probs[i], strict=True)),
                }
            )

    def validation_step(self, batch: dict[str, Any], _: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], _: int) -> None:
        self._eval_step(batch, "test")

    def _report(self, stage: str) -> tuple[dict, list[dict[str, Any]]]:
        """Score the epoch's predictions of every rank; returns the report and the rows."""
        rows = gather_unique(self._rows.pop(stage, []), "index", self.trainer.world_size)
        index = {label: k for k, label in enumerate(self.labels)}
        report = classification_report(
            [index[r["emotion"]] for r in rows],
            [index[r["pred_emotion"]] for r in rows],
            self.labels,
        )
        for key in ("wa", "ua", "f1"):
            self.log(f"{stage}/{key}", report[key], prog_bar=key == "ua", rank_zero_only=True)
        self.log(f"{stage}/n", float(report["n"]), rank_zero_only=True)
        return report, rows

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        report, rows = self._report("test")
        if self.trainer.is_global_zero:
            out = Path(self.trainer.default_root_dir)
            write_json_atomic(out / "test_report.json", report)
            write_jsonl_atomic(out / PREDICTIONS_FILE, rows)
            plot_confusion(
                report["confusion"],
                self.labels,
                out / "test_confusion.png",
                title=f"test UA {100 * report['ua']:.1f}%",
            )

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = build_optimizer(
            self.optimizer_factory, self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay
        )
        sched = build_scheduler(
            self.scheduler_factory, opt, lambda: self.trainer.estimated_stepping_batches
        )
        if sched is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "interval": self.scheduler_interval},
        }

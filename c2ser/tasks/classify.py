"""Utterance classification task (the baseline job): cross-entropy + WA/UA/F1 on val and test."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from c2ser.evaluation.metrics import EMOTIONS, classification_report, plot_confusion
from c2ser.utils.io import write_json_atomic


class ClassificationTask(pl.LightningModule):
    """Trains ``model(mel, mel_mask) -> logits`` and reports SER metrics per epoch.

    Predictions are gathered over the whole epoch and scored once (UA is not an average of
    per-batch UAs). At test end the confusion matrix is written next to the checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        labels: Sequence[str] = EMOTIONS,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model, self.labels = model, list(labels)
        self._preds: dict[str, list[tuple[int, int]]] = {}

    def training_step(self, batch: dict[str, Any], _: int) -> torch.Tensor:
        logits = self.model(batch["mel"], batch["mel_mask"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self.model(batch["mel"], batch["mel_mask"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.log(f"{stage}/loss", loss, batch_size=len(batch["label"]), sync_dist=True)
        pairs = zip(batch["label"].tolist(), logits.argmax(-1).tolist(), strict=True)
        self._preds.setdefault(stage, []).extend(pairs)

    def validation_step(self, batch: dict[str, Any], _: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], _: int) -> None:
        self._eval_step(batch, "test")

    def _report(self, stage: str) -> dict:
        pairs = self._preds.pop(stage, [])
        if self.trainer.world_size > 1:
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, pairs)
            pairs = [p for part in gathered for p in part]
        report = classification_report([t for t, _ in pairs], [p for _, p in pairs], self.labels)
        for key in ("wa", "ua", "f1"):
            self.log(f"{stage}/{key}", report[key], prog_bar=key == "ua", rank_zero_only=True)
        return report

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        report = self._report("test")
        if self.trainer.is_global_zero:
            out = Path(self.trainer.default_root_dir)
            write_json_atomic(out / "test_report.json", report)
            plot_confusion(
                report["confusion"],
                self.labels,
                out / "test_confusion.png",
                title=f"test UA {100 * report['ua']:.1f}%",
            )

    def configure_optimizers(self) -> dict:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        warmup = max(1, self.hparams.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

"""EmoBox-style probing of frozen features: the probe head trained with EmoBox's recipe.

The recipe (``emo-box/EmoBox`` ``examples/sb``): Adam without weight decay, log-softmax + NLL
(= cross-entropy, which :class:`ClassificationTask` already computes), batch 32, 100 epochs. The
learning rate is constant by default. ``lr_schedule="emobox"`` reproduces SpeechBrain's
``LinearWarmupScheduler(lr, 10, 100)`` as EmoBox steps it (once per epoch, after validation):
epoch 1 runs at ``lr``, epoch 2 at 0, the rate climbs back to ``lr`` by epoch 12, then decays
linearly towards 0 at ``schedule_epochs``. It is opt-in because that dip is an artefact of the
recipe, not a design choice, and with short demo runs it wastes a large share of the epochs.

Selection follows the recommended protocol rather than EmoBox's (which tests every epoch and
picks nothing): the runner's checkpoint callback keeps the epoch with the best validation UA and
tests that checkpoint. The validation report of that epoch travels inside the checkpoint, so the
``probe_result.json`` written at test end holds the job's configuration (lr, hidden size, fold,
features), the selected epoch, and its validation and test reports: everything
:mod:`c2ser.evaluation.probe_report` aggregates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from c2ser.core.io import write_json_atomic
from c2ser.tasks.classify import ClassificationTask


def emobox_lr_factor(epoch: int, warmup_epochs: int = 10, total_epochs: int = 100) -> float:
    """Multiplier of ``lr`` during 0-based ``epoch`` under EmoBox's per-epoch LinearWarmup."""
    if epoch == 0:
        return 1.0
    step = epoch - 1
    if step < warmup_epochs:
        return step / max(1, warmup_epochs)
    return max(0.0, (total_epochs - step) / max(1, total_epochs - warmup_epochs))


class ProbeTask(ClassificationTask):
    """Trains ``model(feats, feats_mask) -> logits`` on feature batches (see
    :class:`c2ser.data.feature_datamodule.FeatureDataModule`).

    Args:
        model: the probe head (any ``(feats, mask) -> logits`` module). The class names are
            the datamodule's ``labels`` (its label indices are the targets).
        lr: Adam learning rate.
        lr_schedule: ``constant`` or ``emobox`` (see the module docstring).
        warmup_epochs / schedule_epochs: the ``emobox`` schedule's 10 and 100.
    """

    input_key = "feats"

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        lr_schedule: str = "constant",
        warmup_epochs: int = 10,
        schedule_epochs: int = 100,
    ) -> None:
        if lr_schedule not in ("constant", "emobox"):
            raise ValueError(f"lr_schedule must be constant or emobox, not {lr_schedule!r}")
        super().__init__(model, labels=(), lr=lr, weight_decay=0.0, warmup_steps=0)
        self._reports: dict[str, dict] = {}
        self._selected: dict | None = None

    def setup(self, stage: str) -> None:
        self.labels = list(self.trainer.datamodule.labels)

    def _report(self, stage: str) -> tuple[dict, list[dict[str, Any]]]:
        report, rows = super()._report(stage)
        self._reports[stage] = {"epoch": self.current_epoch, **report} if stage == "val" else report
        return report, rows

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["probe_val_report"] = self._reports.get("val")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._selected = checkpoint.get("probe_val_report")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if not self.trainer.is_global_zero:
            return
        val = self._selected or self._reports.get("val")
        dm = self.trainer.datamodule
        result = {
            "lr": self.hparams.lr,
            "hidden_size": getattr(self.model, "hidden_size", None),
            "fold": getattr(dm, "fold", None),
            "features": str(getattr(dm, "feat_dir", "")),
            "lr_schedule": self.hparams.lr_schedule,
            "max_epochs": self.trainer.max_epochs,
            "selected_epoch": val["epoch"] if val else None,
            "val": val,
            "test": self._reports["test"],
        }
        write_json_atomic(Path(self.trainer.default_root_dir) / "probe_result.json", result)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=0.0)
        if self.hparams.lr_schedule == "constant":
            return opt
        warmup, total = self.hparams.warmup_epochs, self.hparams.schedule_epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: emobox_lr_factor(e, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

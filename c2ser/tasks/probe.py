"""EmoBox-style probing of frozen features: the probe head trained with EmoBox's recipe.

The recipe (``emo-box/EmoBox`` ``examples/sb``): Adam without weight decay, log-softmax + NLL
(= cross-entropy, which :class:`ClassificationTask` already computes), batch 32, 100 epochs. The
learning rate is constant by default (``scheduler: null``). The scheduler entry
:func:`c2ser.tasks.schedules.emobox` reproduces SpeechBrain's ``LinearWarmupScheduler(lr, 10,
100)`` as EmoBox steps it (once per epoch, after validation): epoch 1 runs at ``lr``, epoch 2 at
0, the rate climbs back to ``lr`` by epoch 12, then decays linearly towards 0 at
``total_epochs``. It is opt-in because that dip is an artefact of the recipe, not a design
choice, and with short demo runs it wastes a large share of the epochs.

Selection follows the recommended protocol rather than EmoBox's (which tests every epoch and
picks nothing): the runner's checkpoint callback keeps the epoch with the best validation UA and
tests that checkpoint. The validation report of that epoch travels inside the checkpoint, so the
``probe_result.json`` written at test end holds the job's configuration (lr, hidden size, fold,
features), the selected epoch, and its validation and test reports: everything
:mod:`c2ser.evaluation.probe_report` aggregates.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from c2ser.core.io import write_json_atomic
from c2ser.tasks.classify import ClassificationTask
from c2ser.tasks.schedules import OptimizerFactory, SchedulerFactory

EMOBOX_OPTIMIZER = partial(torch.optim.Adam, weight_decay=0.0)


class ProbeTask(ClassificationTask):
    """Trains ``model(feats, feats_mask) -> logits`` on feature batches (see
    :class:`c2ser.data.feature_datamodule.FeatureDataModule`).

    Args:
        model: the probe head (any ``(feats, mask) -> logits`` module). The class names are
            the datamodule's ``labels`` (its label indices are the targets).
        lr: the optimizer's learning rate (the shortcut ``task.lr``).
        optimizer: a partial entry, default Adam without weight decay.
        scheduler: None (constant) or a partial entry stepped once per epoch, e.g.
            :func:`c2ser.tasks.schedules.emobox` (see the module docstring).
    """

    input_key = "feats"
    scheduler_interval = "epoch"

    def __init__(
        self,
        model: nn.Module,
        lr: float | None = 1e-3,
        optimizer: OptimizerFactory = EMOBOX_OPTIMIZER,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(
            model, labels=(), lr=lr, weight_decay=None, optimizer=optimizer, scheduler=scheduler
        )
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
            "lr_schedule": schedule_name(self.scheduler_factory),
            "max_epochs": self.trainer.max_epochs,
            "selected_epoch": val["epoch"] if val else None,
            "val": val,
            "test": self._reports["test"],
        }
        write_json_atomic(Path(self.trainer.default_root_dir) / "probe_result.json", result)


def schedule_name(factory: SchedulerFactory | None) -> str:
    """``constant`` without a scheduler, else the scheduler's function name (``emobox``)."""
    if factory is None:
        return "constant"
    return getattr(getattr(factory, "func", factory), "__name__", type(factory).__name__)

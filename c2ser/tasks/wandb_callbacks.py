"""Rich wandb media next to the scalars Lightning already sends (losses, metrics, learning rate).

:class:`WandbMedia` (added by ``logger=wandb``) forwards what the tasks produce anyway, so that
the tasks stay logger-agnostic:

* at test end, the files a task writes into the run directory: ``test_confusion.png`` as an
  image, and ``test_report.json``'s confusion matrix and per-class recall as tables;
* after each validation, the task's ``samples`` attribute if it has one: decoded generations,
  a list of flat dicts, as a table. The C2SER tasks (Stage 1 and 2) keep their last validation's
  greedy answers there (id, reference emotion, parsed prediction, text, tokens).

Without a ``WandbLogger`` among the trainer's loggers it does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only


def _wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


class WandbMedia(pl.Callback):
    """Log confusion matrices (image + table) and generation samples (table) to wandb."""

    def __init__(
        self,
        report: str = "test_report.json",
        confusion_image: str = "test_confusion.png",
        samples_attr: str = "samples",
    ) -> None:
        self.report, self.confusion_image, self.samples_attr = report, confusion_image, samples_attr

    @rank_zero_only
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = _wandb_logger(trainer)
        rows = getattr(pl_module, self.samples_attr, None)
        if logger is None or trainer.sanity_checking or not rows:
            return
        columns = list(rows[0])
        data = [[row.get(c) for c in columns] for row in rows]
        logger.log_table("val/samples", columns=columns, data=data)

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = _wandb_logger(trainer)
        if logger is None:
            return
        run_dir = Path(trainer.default_root_dir)
        image = run_dir / self.confusion_image
        if image.is_file():
            logger.log_image("test/confusion", images=[str(image)])
        report_file = run_dir / self.report
        if not report_file.is_file():
            return
        report = json.loads(report_file.read_text())
        labels = report["labels"]
        predicted = labels + ["invalid"] * (len(report["confusion"][0]) - len(labels))
        logger.log_table(
            "test/confusion_matrix",
            columns=["reference", *predicted],
            data=[[label, *row] for label, row in zip(labels, report["confusion"], strict=True)],
        )
        recall = report.get("per_class_recall", {})
        logger.log_table(
            "test/per_class_recall",
            columns=["emotion", "recall"],
            data=[[label, value] for label, value in recall.items()],
        )

"""What every c2ser DataModule shares, so that each one only says how it reads and batches.

* a missing demo manifest is synthesised in ``prepare_data`` (``demo_corpus``: kwargs of
  :func:`c2ser.data.demo.build_demo_corpus`), the demo jobs' one-command start;
* a bad entry found in ``setup`` raises one clear :class:`BadInputError`, or with ``skip_bad`` is
  counted in a :class:`SkipReport` that is printed once (:meth:`skip_or_raise`,
  :meth:`print_report`);
* loaders come from one ``dataloader(split, shuffle)``: training shuffles, validation and test do
  not, and a split the data lacks gives no validation (an empty list) where
  :meth:`has_split` says so;
* :meth:`replicas` is the (world size, rank) that distributed samplers split batches by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from c2ser.core.errors import BadInputError, SkipReport

SKIP_HINT = "set data.skip_bad=true to skip bad entries"


class SplitDataModule(pl.LightningDataModule):
    """Base of the datamodules; subclasses implement :meth:`dataloader` (and ``setup``)."""

    def __init__(
        self,
        skip_bad: bool = False,
        demo_corpus: dict[str, Any] | None = None,
        demo_manifest: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.skip_bad = skip_bad
        self.demo_corpus = dict(demo_corpus) if demo_corpus else None
        self.demo_manifest = Path(demo_manifest) if demo_manifest else None

    def prepare_data(self) -> None:
        path = self.demo_manifest
        if path is not None and self.demo_corpus is not None and not path.exists():
            from c2ser.data.demo import build_demo_corpus

            build_demo_corpus(path.parent, **self.demo_corpus)

    def skip_or_raise(
        self, report: SkipReport, where: str, error: BadInputError, context: str = ""
    ) -> None:
        """Raise ``error`` (after ``context``, e.g. the manifest) with the hint to skip, or
        (``skip_bad``) record it in ``report`` under ``where``."""
        if not self.skip_bad:
            raise BadInputError(f"{context}{error} ({SKIP_HINT})") from None
        report.add(where, str(error).removeprefix(f"{where}: "))

    @staticmethod
    def print_report(report: SkipReport, name: str, limit: int | None = None) -> None:
        """Every skipped item (the first ``limit``), then ``<name>: skipped N (...)``."""
        for line in report.items[:limit]:
            print(f"skip: {line}")
        print(f"{name}: {report.summary()}")

    def replicas(self) -> tuple[int, int]:
        """(world size, rank) of the trainer, (1, 0) without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def has_split(self, split: str) -> bool:
        """Whether ``split`` has data; a missing ``val`` then means no validation."""
        return True

    def dataloader(self, split: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self.dataloader("val", shuffle=False) if self.has_split("val") else []

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test", shuffle=False)

"""LightningDataModule over pre-extracted features (``<feat_dir>/<id>.npy``) for probing.

Each npy is (T, D) frame features, (K, D) utterance tokens or a (D,) vector (read as one frame);
batches are right-padded with an explicit padding mask. The fold comes from
:mod:`c2ser.data.emobox` (an EmoBox folder or a manifest with ``fold``). Like EmoBox's
``check_exists``, utterances whose feature file is missing are dropped, but here they are
counted and listed, because a silent drop (the official extractor skips files that fail) changes
the test set. The split is made before that filter, so two feature sets of the same corpus get
the same train/val/test ids wherever both have the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.data.base import SplitDataModule
from c2ser.data.batching import collate_padded
from c2ser.data.emobox import FoldSplit, emobox_fold, manifest_fold
from c2ser.data.features import load_feature
from c2ser.data.manifest import Utterance

SPLITS = ("train", "val", "test")


class FeatureDataset(Dataset):
    """(feature path, class index, utterance) triples, loaded lazily (feature sets can exceed
    RAM). Samples carry the utterance's language and speaker for per-group scoring."""

    def __init__(self, items: Sequence[tuple[Path, int, Utterance]], dim: int) -> None:
        self.items, self.dim = list(items), dim

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label, utt = self.items[i]
        sample = {"id": utt.id, "language": utt.language, "speaker": utt.speaker}
        return {**sample, "feats": load_feature(path, self.dim), "label": label}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return collate_padded(samples, "feats")


class FeatureDataModule(SplitDataModule):
    """Batches ``{"feats" (B,T,D), "feats_mask" (B,T) True=pad, "label" (B,), "id", "language",
    "speaker"}`` of one fold.

    Args:
        feat_dir: folder of ``<id>.npy`` feature files.
        fold: the test fold (1-based, as in EmoBox).
        manifest: jsonl manifest with ``fold`` fields (give this or ``emobox_dir``).
        emobox_dir: EmoBox dataset folder (``label_map.json``, ``fold_<k>/``).
        labels: class names for a manifest (default: the emotions it contains).
        val_ratio / val_split: how validation is carved from training (see
            :func:`c2ser.data.emobox.split_validation`).
        seed: seeds the validation split and the training shuffle.
    """

    def __init__(
        self,
        feat_dir: str,
        fold: int,
        manifest: str | None = None,
        emobox_dir: str | None = None,
        labels: Sequence[str] | None = None,
        val_ratio: float = 0.2,
        val_split: str = "auto",
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        if (manifest is None) == (emobox_dir is None):
            raise BadInputError("give exactly one of data.manifest and data.emobox_dir")
        self.feat_dir, self.fold = Path(feat_dir), int(fold)
        self.manifest, self.emobox_dir = manifest, emobox_dir
        self.label_names = list(labels) if labels is not None else None
        self.val_ratio, self.val_split, self.seed = val_ratio, val_split, seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.skipped = SkipReport()
        self.datasets: dict[str, FeatureDataset] = {}
        self.labels: list[str] = []

    def _fold(self) -> FoldSplit:
        args = (self.fold, self.val_ratio, self.val_split, self.seed)
        if self.emobox_dir is not None:
            return emobox_fold(self.emobox_dir, *args)
        return manifest_fold(self.manifest, self.fold, self.label_names, *args[1:])

    def _items(self, split: str, utts: list[Utterance]) -> list[tuple[Path, int, Utterance]]:
        items = []
        for u in utts:
            path = self.feat_dir / f"{u.id}.npy"
            if path.is_file():
                items.append((path, self.labels.index(u.emotion), u))
            else:
                self.skipped.add(f"{split} {u.id}", f"missing feature file: {path}")
        if not items:
            raise BadInputError(f"{self.feat_dir}: no feature file for any {split} utterance")
        return items

    def setup(self, stage: str | None = None) -> None:
        """Read the fold, drop (and report) utterances without features, check the width."""
        if self.datasets:
            return
        if not self.feat_dir.is_dir():
            raise BadInputError(f"{self.feat_dir}: feature directory not found")
        split = self._fold()
        self.labels = split.labels
        items = {s: self._items(s, getattr(split, s)) for s in SPLITS}
        dim = load_feature(items["train"][0][0]).shape[1]
        self.datasets = {s: FeatureDataset(items[s], dim) for s in SPLITS}
        sizes = ", ".join(f"{s} {len(d)}" for s, d in self.datasets.items())
        self.print_report(self.skipped, f"fold {self.fold}: {sizes} utterances", limit=20)

    @property
    def input_dim(self) -> int:
        self.setup()
        return self.datasets["train"].dim

    def model_kwargs(self) -> dict[str, Any]:
        """Sizes the model needs (the runner passes them to the model config)."""
        self.setup()
        return {"input_dim": self.input_dim, "num_classes": len(self.labels)}

    def dataloader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

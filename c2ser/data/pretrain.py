"""Raw-waveform batches for Emotion2Vec-S pretraining, mixing labelled and unlabelled speech.

Emotion2Vec-S is semi-supervised: the self-supervised losses use every utterance, the category
loss only the labelled ones. :class:`MixedBatchSampler` puts a fixed share of labelled utterances
into every batch (``labelled_fraction``), so the category loss sees labels at every step however
large the unlabelled pool is. Batches::

    {"wav" (B, L) float32, "wav_mask" (B, L) True=pad, "label" (B,) class index or -1, "id"}

Training crops each utterance at a random offset to ``crop_seconds`` (fairseq's
``max_sample_size``); validation takes the first ``crop_seconds`` so its loss is comparable
across epochs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.labels import EMOTIONS
from c2ser.data.audio import SAMPLE_RATE, AudioError, audio_seconds, load_audio
from c2ser.data.base import SplitDataModule
from c2ser.data.batching import ResumableLoader, collate_padded
from c2ser.data.manifest import read_manifest


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of indices into ``[labelled..., unlabelled...]`` with ``round(labelled_fraction *
    batch_size)`` labelled items each (all of one kind when the other pool is empty).

    Every pool is walked in a fresh random order and restarted when used up, so a small
    labelled set is revisited more often than a large unlabelled one. With ``pairs`` the
    labelled items come as two utterances of one emotion (emotions taken in turn): a
    contrastive loss then has a positive for every anchor, which 4 random picks out of 7
    classes rarely give. ``set_epoch`` reseeds; ``rank`` gives each process its own stream.
    """

    def __init__(
        self,
        labels: Sequence[int],
        n_unlabelled: int,
        batch_size: int,
        labelled_fraction: float = 0.5,
        num_batches: int | None = None,
        seed: int = 0,
        rank: int = 0,
        pairs: bool = True,
    ) -> None:
        if len(labels) + n_unlabelled == 0:
            raise ValueError("no utterances to sample from")
        if not 0.0 <= labelled_fraction <= 1.0:
            raise ValueError("labelled_fraction must be in [0, 1]")
        self.labels, self.n_unlabelled, self.batch_size = list(labels), n_unlabelled, batch_size
        k = round(labelled_fraction * batch_size)
        self.k = batch_size if n_unlabelled == 0 else 0 if not self.labels else k
        self.num_batches = num_batches or math.ceil((len(labels) + n_unlabelled) / batch_size)
        self.seed, self.rank, self.epoch, self.pairs = seed, rank, 0, pairs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}")
        n_lab = len(self.labels)
        unlabelled = _cycle(range(self.n_unlabelled), rng)
        by_class: dict[int, list[int]] = {}
        for i, c in enumerate(self.labels):
            by_class.setdefault(c, []).append(i)
        paired = {c: _cycle(ids, rng) for c, ids in by_class.items() if len(ids) > 1}
        classes = _cycle(sorted(paired), rng) if self.pairs and paired else None
        labelled = _cycle(range(n_lab), rng)
        for _ in range(self.num_batches):
            lab: list[int] = []
            while len(lab) < self.k:
                if classes is None or self.k - len(lab) == 1:
                    lab.append(next(labelled))
                    continue
                pool = paired[next(classes)]
                a, b = next(pool), next(pool)
                lab += [a, b if b != a else next(pool)]
            yield lab + [n_lab + next(unlabelled) for _ in range(self.batch_size - self.k)]


def _cycle(items: Sequence[int], rng: random.Random) -> Iterator[int]:
    while True:
        order = list(items)
        rng.shuffle(order)
        yield from order


class WaveDataset(Dataset):
    """(wav path, label, id) triples decoded on access and cropped to ``crop`` samples."""

    def __init__(
        self, items: Sequence[tuple[str, int, str]], crop: int, random_crop: bool, seed: int
    ):
        self.items, self.crop, self.random_crop = list(items), crop, random_crop
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label, uid = self.items[i]
        wav = torch.from_numpy(load_audio(path))
        if len(wav) > self.crop:
            start = self.rng.randrange(len(wav) - self.crop + 1) if self.random_crop else 0
            wav = wav[start : start + self.crop]
        return {"wav": wav, "label": label, "id": uid}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return collate_padded(samples, "wav", meta=("id",))


class PretrainDataModule(SplitDataModule):
    """Labelled + unlabelled manifests -> mixed waveform batches (see the module doc).

    Args:
        labelled: jsonl manifest whose ``emotion`` is one of ``labels`` (None: no labels).
        unlabelled: jsonl or wav.scp manifest; emotions, if any, are ignored (may be the same
            file as ``labelled``: its utterances then also serve as unlabelled speech).
        train_splits: manifest ``split`` values used for training (rows without a split count
            as train); ``val_split``: labelled rows for the validation losses.
        labelled_fraction: share of labelled utterances in every training batch.
        labelled_pairs: draw labelled utterances in same-emotion pairs (see the sampler; an
            emotion with a single labelled utterance is then never drawn).
        batches_per_epoch: default: one pass over both pools' size.
        demo_corpus: kwargs for :func:`c2ser.data.demo.build_demo_corpus` to synthesise a
            missing ``labelled`` manifest first (the demo job).
    """

    def __init__(
        self,
        labelled: str | None = None,
        unlabelled: str | None = None,
        labels: Sequence[str] = EMOTIONS,
        train_splits: Sequence[str] = ("train",),
        val_split: str | None = "val",
        labelled_fraction: float = 0.5,
        labelled_pairs: bool = True,
        batch_size: int = 8,
        batches_per_epoch: int | None = None,
        crop_seconds: float = 4.0,
        min_seconds: float = 0.5,
        audio_root: str | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
        demo_corpus: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(skip_bad, demo_corpus, labelled)
        if labelled is None and unlabelled is None:
            raise ValueError("give a labelled and/or an unlabelled manifest")
        self.labelled, self.unlabelled, self.labels = labelled, unlabelled, list(labels)
        self.train_splits, self.val_split = set(train_splits), val_split
        self.labelled_fraction, self.batch_size = labelled_fraction, batch_size
        self.labelled_pairs = labelled_pairs
        self.batches_per_epoch, self.num_workers, self.seed = batches_per_epoch, num_workers, seed
        self.crop, self.min_seconds = int(crop_seconds * SAMPLE_RATE), min_seconds
        self.audio_root = audio_root
        self.pools: dict[str, list[tuple[str, int, str]]] = {}

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def setup(self, stage: str | None = None) -> None:
        if self.pools:
            return
        report = SkipReport()
        pools: dict[str, list[tuple[str, int, str]]] = {"labelled": [], "unlabelled": [], "val": []}
        sources = [("labelled", self.labelled, self.labels), ("unlabelled", self.unlabelled, None)]
        for kind, manifest, labels in sources:
            if manifest is None:
                continue
            for u in read_manifest(manifest, self.audio_root, self.skip_bad, labels, report):
                split = u.split or "train"
                pool = "val" if kind == "labelled" and split == self.val_split else kind
                if pool != "val" and split not in self.train_splits:
                    continue
                try:
                    seconds = audio_seconds(u.wav)
                except AudioError as e:
                    self.skip_or_raise(report, u.id, e)
                    continue
                if seconds < self.min_seconds:
                    report.add(u.id, f"shorter than min_seconds={self.min_seconds}")
                    continue
                label = self.labels.index(u.emotion) if kind == "labelled" else -1
                pools[pool].append((u.wav, label, u.id))
        if report:
            self.print_report(report, "pretraining data")
        if not pools["labelled"] and not pools["unlabelled"]:
            raise BadInputError(f"no training utterances in splits {sorted(self.train_splits)}")
        self.pools = pools

    def has_split(self, split: str) -> bool:
        return split == "train" or bool(self.pools.get(split))

    def dataloader(self, split: str, shuffle: bool) -> DataLoader:
        """Training: the mixed sampler over both pools; validation: the labelled val rows."""
        if split != "train":
            data = WaveDataset(self.pools[split], self.crop, random_crop=False, seed=self.seed)
            return DataLoader(
                data, batch_size=self.batch_size, collate_fn=collate,
                num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            )  # fmt: skip
        lab, unl = self.pools["labelled"], self.pools["unlabelled"]
        _, rank = self.replicas()
        sampler = MixedBatchSampler(
            [label for _, label, _ in lab], len(unl), self.batch_size, self.labelled_fraction,
            self.batches_per_epoch, self.seed, rank, self.labelled_pairs,
        )  # fmt: skip
        data = WaveDataset(lab + unl, self.crop, random_crop=True, seed=self.seed + rank)
        # resumes at its batch position mid-epoch (the random crops of a resumed run differ)
        return ResumableLoader(
            data, sampler, seed=self.seed, collate_fn=collate, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )  # fmt: skip

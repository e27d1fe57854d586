"""Padding with masks and length-bucketed dynamic batching.

Speech batches are sized by the total number of padded frames (``max_frames``), not by a fixed
count, so that short utterances share big batches and a 25-second one travels nearly alone, as in
the official ``dynamic`` batching. Sorting by length inside a shuffled window keeps padding low
while epochs still differ.

Every datamodule's batch follows one naming rule: the utterance ids are ``id`` (a list), a padded
input ``x`` (``mel``, ``feats``, ``wav``) comes with ``x_mask`` (True at padding, from
:func:`pad_batch`), and labels are ``label``; tasks read the input by its name.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


def pad_batch(
    items: Sequence[torch.Tensor], pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad tensors of shape (T_i, ...) into (B, T_max, ...).

    Returns ``(padded, padding_mask)`` where ``padding_mask`` is (B, T_max) with True at padding,
    the convention of fairseq/data2vec and ``nn.MultiheadAttention``'s ``key_padding_mask``.
    """
    lengths = torch.tensor([len(t) for t in items])
    padded = torch.nn.utils.rnn.pad_sequence(list(items), batch_first=True, padding_value=pad_value)
    mask = torch.arange(padded.shape[1])[None, :] >= lengths[:, None]
    return padded, mask


def collate_padded(
    samples: Sequence[dict[str, Any]], key: str, meta: Sequence[str] = ("id", "language", "speaker")
) -> dict[str, Any]:
    """A classification batch: ``key`` padded with its ``<key>_mask``, ``label`` as a tensor
    and the ``meta`` fields as lists (the naming rule of the module doc)."""
    x, mask = pad_batch([s[key] for s in samples])
    return {
        key: x,
        f"{key}_mask": mask,
        "label": torch.tensor([s["label"] for s in samples]),
        **{k: [s[k] for s in samples] for k in meta},
    }


class DynamicBucketSampler(Sampler[list[int]]):
    """Yield lists of indices whose padded size ``len(batch) * max_len`` stays under ``max_frames``.

    ``window`` consecutive (shuffled) items are sorted by length before cutting batches; the
    batches themselves are shuffled again. ``epoch`` seeds the shuffle (call :meth:`set_epoch`), so
    a resumed run sees the same order. With ``num_replicas > 1`` each rank takes every
    ``num_replicas``-th batch (the batch list is padded by repetition to a multiple of the ranks,
    so that every rank runs as many steps; the evaluating tasks score a repeated utterance once,
    see :func:`c2ser.tasks.strategies.gather_unique`).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        window: int = 500,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if max_frames <= 0:
            raise ValueError("max_frames must be positive")
        self.lengths = list(lengths)
        self.max_frames, self.max_batch_size = max_frames, max_batch_size
        self.shuffle, self.window, self.seed, self.drop_last = shuffle, window, seed, drop_last
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        if self.shuffle:
            rng.shuffle(order)
        batches: list[list[int]] = []
        window = self.window if self.shuffle else max(len(order), 1)
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batch: list[int] = []
            longest = 0
            for i in chunk:
                longest_new = max(longest, self.lengths[i])
                full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
                if batch and (longest_new * (len(batch) + 1) > self.max_frames or full):
                    batches.append(batch)
                    batch, longest_new = [], self.lengths[i]
                batch.append(i)
                longest = longest_new
            if batch:
                batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches = (batches + batches[: total - len(batches)])[self.rank :: self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())


INFERENCE_MAX_PADDING = 0.1  # default padding cap of feature extraction (see plan_batches)


def plan_batches(
    lengths: Sequence[int], max_frames: int, max_padding: float | None = None
) -> list[list[int]]:
    """Inference batches: indices sorted by length, longest first (running out of memory shows
    at once), each batch with at most ``max_frames`` padded frames, of which at most
    ``max_padding`` (default :data:`INFERENCE_MAX_PADDING`; 1 = no cap) are padding. A longer
    item than ``max_frames`` goes alone.

    The padding cap is for CPUs, where models are compute-bound: a batch runs no faster per frame
    than one utterance, so every padded frame is lost time. On real corpora sorted neighbours
    differ by milliseconds, so the cap rarely splits a GPU batch.
    """
    if max_padding is None:
        max_padding = INFERENCE_MAX_PADDING
    if max_frames <= 0 or not 0.0 <= max_padding <= 1.0:
        raise ValueError(
            f"need max_frames > 0 and 0 <= max_padding <= 1, got {max_frames} and {max_padding}"
        )
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        padded = (lengths[batch[0]] if batch else lengths[i]) * (len(batch) + 1)
        if batch and (padded > max_frames or 1 - (real + lengths[i]) / padded > max_padding):
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += lengths[i]
    return [*batches, batch] if batch else batches


class _Wrapped(Sampler[list[int]]):
    """A batch sampler around ``inner`` with its length, epoch and ``set_epoch``."""

    inner: Sampler[list[int]]

    @property
    def epoch(self) -> int:
        return getattr(self.inner, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


class EpochTagged(_Wrapped):
    """Wrap an epoch-seeded batch sampler over ``n`` items so that it yields ``epoch * n + i``
    for item ``i``: the dataset learns the epoch from the index itself, which reaches DataLoader
    workers (persistent ones included) where an attribute set on the dataset would not. Epoch-
    seeded draws per item (training augmentation) then survive a resume."""

    def __init__(self, inner: Sampler[list[int]], n: int) -> None:
        self.inner, self.n = inner, n

    def __iter__(self) -> Iterator[list[int]]:
        offset = self.epoch * self.n
        for batch in self.inner:
            yield [offset + i for i in batch]


class _SkipFirst(_Wrapped):
    """Wrap a batch sampler; on the next iteration of ``epoch`` skip its first ``start`` batches.

    Skipping happens on index lists, so resumed batches cost no audio decoding. ``len`` stays the
    full epoch (Lightning counts the skipped batches as already seen).

    Lightning calls ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler`` (where
    a DistributedSampler would sit), never on the batch sampler itself, so a bare epoch-seeded
    batch sampler would replay epoch 0's order every epoch. The wrapper names itself as that
    ``sampler`` so that Lightning's per-epoch call reaches the inner batch sampler.
    """

    def __init__(self, inner: Sampler[list[int]]) -> None:
        self.inner, self.resume_at = inner, (None, 0)
        self.sampler = self

    def __iter__(self) -> Iterator[list[int]]:
        (epoch, start), self.resume_at = self.resume_at, (None, 0)
        it = iter(self.inner)
        if epoch == self.epoch:
            for _ in range(start):
                next(it, None)
        yield from it


class ResumableLoader(DataLoader):
    """A DataLoader over an epoch-seeded batch sampler whose position survives a checkpoint.

    Lightning stores ``state_dict()`` of stateful train loaders in its checkpoints and calls
    ``load_state_dict`` before iterating again, but a plain DataLoader restarts the epoch from its
    first batch, so a run resumed mid-epoch would see some batches twice and others never. This
    loader records the epoch and how many batches it has served, and skips those on resume. The
    batch sampler must reproduce an epoch's order from ``set_epoch`` alone
    (:class:`DynamicBucketSampler` does). It draws worker seeds from its own generator, so
    creating an iterator never consumes the global torch RNG (whose state a resume restores).
    """

    def __init__(
        self, dataset: Any, batch_sampler: Sampler[list[int]], seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(
            dataset,
            batch_sampler=_SkipFirst(batch_sampler),
            generator=torch.Generator().manual_seed(seed),
            **kwargs,
        )
        self._served = 0

    def __iter__(self) -> Iterator[Any]:
        sampler: _SkipFirst = self.batch_sampler  # type: ignore[assignment]
        epoch, start = sampler.resume_at
        self._served = start if epoch == sampler.epoch else 0
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler: _SkipFirst = self.batch_sampler  # type: ignore[assignment]
        return {"epoch": sampler.epoch, "served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: _SkipFirst = self.batch_sampler  # type: ignore[assignment]
        sampler.set_epoch(state["epoch"])
        sampler.resume_at = (state["epoch"], state["served"])

"""Padding with masks and length-bucketed dynamic batching.

Speech batches are sized by the total number of padded frames (``max_frames``), not by a fixed
count, so that short utterances share big batches and a 25-second one travels nearly alone, as in
the official ``dynamic`` batching. Sorting by length inside a shuffled window keeps padding low
while epochs still differ.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


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


class DynamicBucketSampler(Sampler[list[int]]):
    """Yield lists of indices whose padded size ``len(batch) * max_len`` stays under ``max_frames``.

    ``window`` consecutive (shuffled) items are sorted by length before cutting batches; the
    batches themselves are shuffled again. ``epoch`` seeds the shuffle (call :meth:`set_epoch`), so
    a resumed run sees the same order. With ``num_replicas > 1`` each rank takes every
    ``num_replicas``-th batch (the batch list is padded by repetition to a multiple of the ranks).
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

"""A Hugging Face ``datasets`` table of a manifest: paths and metadata live in Arrow columns,
audio is decoded lazily by a transform.

We do not use ``datasets.Audio``: it needs torchcodec + ffmpeg builds that do not match every
torch. Decoding with soundfile in ``with_transform`` keeps the table cheap to build and to map
(filters, joins with features) while samples are decoded on access, in the DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets

from c2ser.data.manifest import Utterance

_COLUMNS = ("id", "wav", "emotion", "text", "language", "speaker", "split", "fold")


def manifest_table(utts: Sequence[Utterance], extra: Sequence[str] = ()) -> datasets.Dataset:
    """Build an in-memory table with one row per utterance (``extra`` copies fields of
    ``Utterance.extra`` such as ``speed`` or ``duration``)."""
    rows = {c: [getattr(u, c) for u in utts] for c in _COLUMNS}
    for key in extra:
        rows[key] = [u.extra.get(key) for u in utts]
    return datasets.Dataset.from_dict(rows)


def with_decoder(
    table: datasets.Dataset, decode: Callable[[dict[str, Any]], dict[str, Any]]
) -> datasets.Dataset:
    """Attach ``decode(row) -> sample`` as a lazy per-row transform (batched under the hood)."""

    def transform(batch: dict[str, list]) -> dict[str, list]:
        n = len(next(iter(batch.values())))
        samples = [decode({k: v[i] for k, v in batch.items()}) for i in range(n)]
        return {k: [s[k] for s in samples] for k in samples[0]} if samples else {}

    return table.with_transform(transform)

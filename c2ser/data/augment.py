"""The official C2SER training augmentation of the log-mel: SpecAug and SpecSub (wenet).

The release trains on normalised log-mel features augmented as wenet's ``spec_aug`` and
``spec_sub`` processors do (``../shared/spec/c2ser_llm.md``, section 5):

* **SpecAug**: ``time_masks`` spans of 1..``max_time`` frames and ``freq_masks`` bands of
  1..``max_freq`` bins set to 0;
* **SpecSub**: ``sub_spans`` spans of 1..``max_sub`` frames each replaced by the frames a random
  distance earlier (so the utterance keeps its length and its statistics).

Each span's start is uniform over the utterance (a mask may run past the end and is cut there),
as in wenet. The draws come from the ``rng`` given, which the SFT datamodule seeds by (seed,
epoch, utterance), so an epoch of a resumed run sees the same masks as the uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch


def spec_augment(
    mel: torch.Tensor,
    rng: np.random.Generator,
    time_masks: int = 2,
    max_time: int = 50,
    freq_masks: int = 2,
    max_freq: int = 10,
    sub_spans: int = 3,
    max_sub: int = 30,
) -> torch.Tensor:
    """A new ``(T, n_mels)`` log-mel: SpecAug masks, then SpecSub spans (official defaults)."""
    frames, bins = mel.shape
    y = mel.clone()
    for _ in range(time_masks):
        start = int(rng.integers(0, frames))
        y[start : start + int(rng.integers(1, max_time + 1))] = 0.0
    for _ in range(freq_masks):
        start = int(rng.integers(0, bins))
        y[:, start : start + int(rng.integers(1, max_freq + 1))] = 0.0
    x = y.clone()
    for _ in range(sub_spans):
        start = int(rng.integers(0, frames))
        end = min(frames, start + int(rng.integers(1, max_sub + 1)))
        shift = int(rng.integers(0, start + 1))
        y[start:end] = x[start - shift : end - shift]
    return y

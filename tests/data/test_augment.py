"""The official SpecAug + SpecSub of training mels, and where the SFT datamodule applies them."""

from __future__ import annotations

import numpy as np
import torch

from c2ser.data.audio import load_audio
from c2ser.data.augment import spec_augment
from c2ser.data.mel import log_mel
from tests.data.test_sft import batches, corpus, make  # noqa: F401 (fixture)


def _mel(frames: int = 300, bins: int = 80) -> torch.Tensor:
    return torch.randn(frames, bins, generator=torch.Generator().manual_seed(0)) + 5.0  # no 0s


def test_masks_are_zeros_within_their_bounds():
    mel = _mel()
    out = spec_augment(mel, np.random.default_rng(1), sub_spans=0)
    zero_rows = (out == 0).all(1)
    zero_cols = (out == 0).all(0)
    assert 1 <= int(zero_rows.sum()) <= 2 * 50 and 1 <= int(zero_cols.sum()) <= 2 * 10
    keep = ~zero_rows[:, None] & ~zero_cols[None, :]
    assert torch.equal(out[keep], mel[keep])  # everything else untouched
    assert torch.equal(spec_augment(mel, np.random.default_rng(1), 0, 50, 0, 10, 0), mel)


def test_substituted_spans_copy_earlier_frames():
    mel = _mel()
    out = spec_augment(mel, np.random.default_rng(3), time_masks=0, freq_masks=0, sub_spans=3)
    changed = [t for t in range(len(mel)) if not torch.equal(out[t], mel[t])]
    assert 0 < len(changed) <= 3 * 30
    for t in changed:  # each changed frame is a copy of a frame before it
        assert any(torch.equal(out[t], mel[s]) for s in range(t))
    assert out.shape == mel.shape and torch.equal(mel, _mel())  # the input is not modified


def test_same_rng_same_masks():
    a = spec_augment(_mel(), np.random.default_rng(7))
    assert torch.equal(a, spec_augment(_mel(), np.random.default_rng(7)))
    assert not torch.equal(a, spec_augment(_mel(), np.random.default_rng(8)))


def _train_mels(dm, epoch: int) -> dict[str, torch.Tensor]:
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    out = {}
    for b in loader:
        for i, uid in enumerate(b["id"]):
            out[uid] = b["mel"][i, : int((~b["mel_mask"][i]).sum())]
    return out


def test_datamodule_augments_training_only_seeded_by_epoch(corpus):  # noqa: F811
    manifest, _ = corpus
    plain = _train_mels(make(manifest), 0)
    dm = make(manifest, augment={"max_time": 10, "max_sub": 10})
    e0, e1 = _train_mels(dm, 0), _train_mels(dm, 1)
    again = _train_mels(make(manifest, augment={"max_time": 10, "max_sub": 10}), 0)
    assert set(e0) == set(plain) and all(e0[u].shape == plain[u].shape for u in plain)
    assert all(not torch.equal(e0[u], plain[u]) for u in plain)  # every utterance augmented
    assert all(not torch.equal(e0[u], e1[u]) for u in plain)  # new draws each epoch
    assert all(torch.equal(e0[u], again[u]) for u in plain)  # the same draws on a rerun
    wav_dir = manifest.parent
    for b in batches(dm, "val"):  # validation sees the plain mel
        for i, uid in enumerate(b["id"]):
            ref = log_mel(load_audio(str(wav_dir / f"{uid}.wav")))
            assert torch.equal(b["mel"][i, : len(ref)], ref)

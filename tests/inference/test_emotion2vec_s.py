"""Emotion2Vec-S extraction (c2ser.inference.emotion2vec_s): batched == one at a time, short
and long audio, eval mode, files and arrays, bfloat16 (tiny sizes, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from c2ser.inference.emotion2vec_s import chunks, extract, extract_batch
from c2ser.models.emotion2vec_s import Emotion2VecS
from tests.factories import tiny_emotion2vec_s, waves


@pytest.fixture(scope="module")
def tiny() -> Emotion2VecS:
    return tiny_emotion2vec_s()


@pytest.mark.parametrize("level, mode", [("frame", None), ("utterance", "official"),
                                         ("utterance", "extra_tokens"), ("utterance", "mean")])  # fmt: skip
def test_batched_equals_one_at_a_time(tiny, level, mode):
    wavs = waves(1.0, 0.5, 1.47, 0.03, 2.2, 0.15)
    single = [extract_batch(tiny, [w], level, mode)[0] for w in wavs]
    batched = extract_batch(tiny, wavs, level, mode)
    for a, b in zip(single, batched):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4


def test_short_audio_official_rows_are_zero_padded(tiny):
    (wav,) = waves(0.1)  # 4 frames
    u = extract_batch(tiny, [wav], "utterance")[0]
    assert u.shape == (10, 64) and u[4:].abs().max() == 0 and u[:4].abs().min() > 0
    with pytest.raises(ValueError, match="shorter than one frame"):
        extract_batch(tiny, [torch.zeros(399)])


def test_long_audio_is_chunked_with_the_full_frame_count(tiny):
    (wav,) = waves(3.3)
    full = extract_batch(tiny, [wav])[0]
    pieces = chunks(tiny, wav, 16_000)
    assert len(pieces) == 4 and all(len(p) <= 16_000 + 80 for p in pieces)
    chunked = extract_batch(tiny, [wav], max_samples=16_000)[0]
    assert chunked.shape == full.shape == (164, 64)
    first = extract_batch(tiny, [pieces[0]])[0]
    torch.testing.assert_close(chunked[: len(first)], first)
    # the CNN frames are exactly those of the whole file
    cnn = [tiny.local_features(p[None])[0] for p in pieces]
    torch.testing.assert_close(torch.cat(cnn), tiny.local_features(wav[None])[0], atol=1e-5, rtol=0)


def test_extraction_is_eval_mode_but_train_mode_is_stochastic(tiny):
    (wav,) = waves(1.0)
    tiny.train()
    torch.manual_seed(1)
    a = tiny.extract_features(wav[None])["x"]
    b = tiny.extract_features(wav[None])["x"]
    assert not torch.allclose(a, b)  # the official script's features: dropout + LayerDrop on
    e1, e2 = extract_batch(tiny, [wav])[0], extract_batch(tiny, [wav])[0]
    assert torch.equal(e1, e2) and tiny.training  # eval inside, mode restored after
    tiny.eval()


def test_extract_api_takes_paths_and_arrays_in_order(tiny, tmp_path):
    wavs = waves(0.6, 1.2, 0.3)
    path = tmp_path / "a.wav"
    sf.write(path, wavs[1].numpy(), 16000, subtype="FLOAT")
    feats = extract(tiny, [wavs[0].numpy(), str(path), wavs[2]], batch_frames=60)
    assert [f.shape for f in feats] == [(29, 64), (59, 64), (14, 64)]
    assert all(isinstance(f, np.ndarray) and f.dtype == np.float32 for f in feats)
    np.testing.assert_allclose(feats[1], extract_batch(tiny, [wavs[1]])[0].numpy(), atol=1e-5)
    utt = extract(tiny, wavs, level="utterance", utterance_mode="mean")
    assert [u.shape for u in utt] == [(1, 64)] * 3


def test_bfloat16_runs_close_to_float32(tiny):
    (wav,) = waves(1.0)
    bf = Emotion2VecS(tiny.config)
    bf.load_state_dict(tiny.state_dict())
    out = extract_batch(bf.to(torch.bfloat16), [wav])[0]
    ref = extract_batch(tiny, [wav])[0]
    assert out.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out, ref, dim=-1).min() > 0.98

"""Emotion2Vec-S port: frame counts, ALiBi, utterance modes, batched == one at a time, chunking,
persistence and the extraction API (tiny sizes, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from c2ser.models.emotion2vec_s import (
    Decoder,
    Emotion2VecS,
    Emotion2VecSConfig,
    alibi_slopes,
    tiny_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny() -> Emotion2VecS:
    torch.manual_seed(0)
    return Emotion2VecS(tiny_config()).eval()


def waves(*seconds: float, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(int(s * 16000), generator=g) for s in seconds]


def test_frame_count_follows_the_conv_formula(tiny):
    n = torch.tensor([65_621, 182_272, 400, 399, 16_000])
    assert tiny.num_frames(n).tolist() == [204, 569, 1, 0, 49]
    for length in (400, 719, 720, 16_000, 16_321):
        assert tiny.local_features(torch.zeros(1, length)).shape[1] == tiny.num_frames(
            torch.tensor(length)
        )
    assert (tiny.config.stride, tiny.config.receptive_field) == (320, 400)


def test_alibi_slopes_interleave_for_twelve_heads():
    want = [2.0**-i for i in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(want))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))


def test_base_size_matches_the_release():
    model = Emotion2VecS()
    assert sum(p.numel() for p in model.parameters()) == 93_171_212  # spec: 93.17 M
    assert sum(p.numel() for p in Decoder(model.config).parameters()) / 1e6 == pytest.approx(
        0.62, abs=0.01
    )


def test_extract_features_outputs(tiny):
    (wav,) = waves(1.0)
    out = tiny.extract_features(wav[None])
    assert out["x"].shape == (1, 49, 64) and out["tokens"].shape == (1, 10, 64)
    assert out["padding_mask"] is None and len(out["layer_results"]) == 2
    assert out["layer_results"][0].shape == (1, 59, 64)  # extra tokens included
    torch.testing.assert_close(out["utt_x"], out["x"][:, :10])
    assert tiny.utterance(out["x"], out["tokens"], None, "extra_tokens") is out["tokens"]
    torch.testing.assert_close(
        tiny.utterance(out["x"], out["tokens"], None, "mean"), out["x"].mean(1, keepdim=True)
    )


@pytest.mark.parametrize("level, mode", [("frame", None), ("utterance", "official"),
                                         ("utterance", "extra_tokens"), ("utterance", "mean")])  # fmt: skip
def test_batched_equals_one_at_a_time(tiny, level, mode):
    wavs = waves(1.0, 0.5, 1.47, 0.03, 2.2, 0.15)
    single = [tiny.extract_batch([w], level, mode)[0] for w in wavs]
    batched = tiny.extract_batch(wavs, level, mode)
    for a, b in zip(single, batched):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4


def test_short_audio_official_rows_are_zero_padded(tiny):
    (wav,) = waves(0.1)  # 4 frames
    u = tiny.extract_batch([wav], "utterance")[0]
    assert u.shape == (10, 64) and u[4:].abs().max() == 0 and u[:4].abs().min() > 0
    with pytest.raises(ValueError, match="shorter than one frame"):
        tiny.extract_batch([torch.zeros(399)])


def test_long_audio_is_chunked_with_the_full_frame_count(tiny):
    (wav,) = waves(3.3)
    full = tiny.extract_batch([wav])[0]
    pieces = tiny.chunks(wav, 16_000)
    assert len(pieces) == 4 and all(len(p) <= 16_000 + 80 for p in pieces)
    chunked = tiny.extract_batch([wav], max_samples=16_000)[0]
    assert chunked.shape == full.shape == (164, 64)
    first = tiny.extract_batch([pieces[0]])[0]
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
    e1, e2 = tiny.extract_batch([wav])[0], tiny.extract_batch([wav])[0]
    assert torch.equal(e1, e2) and tiny.training  # eval inside, mode restored after
    tiny.eval()


def test_save_and_load_round_trip(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "m")
    again = Emotion2VecS.from_pretrained(out)
    assert again.config == tiny.config and not again.training
    (wav,) = waves(0.7)
    torch.testing.assert_close(again.extract_batch([wav])[0], tiny.extract_batch([wav])[0])
    assert Emotion2VecS.from_pretrained(out, utterance_mode="mean").config.utterance_mode == "mean"
    with pytest.raises(FileNotFoundError, match="convert"):
        Emotion2VecS.from_pretrained(tmp_path / "nothing")


def test_extract_api_takes_paths_and_arrays_in_order(tiny, tmp_path):
    wavs = waves(0.6, 1.2, 0.3)
    path = tmp_path / "a.wav"
    sf.write(path, wavs[1].numpy(), 16000, subtype="FLOAT")
    feats = tiny.extract([wavs[0].numpy(), str(path), wavs[2]], batch_frames=60)
    assert [f.shape for f in feats] == [(29, 64), (59, 64), (14, 64)]
    assert all(isinstance(f, np.ndarray) and f.dtype == np.float32 for f in feats)
    np.testing.assert_allclose(feats[1], tiny.extract_batch([wavs[1]])[0].numpy(), atol=1e-5)
    utt = tiny.extract(wavs, level="utterance", utterance_mode="mean")
    assert [u.shape for u in utt] == [(1, 64)] * 3


def test_bfloat16_runs_close_to_float32(tiny):
    (wav,) = waves(1.0)
    bf = Emotion2VecS(tiny.config)
    bf.load_state_dict(tiny.state_dict())
    out = bf.to(torch.bfloat16).extract_batch([wav])[0]
    ref = tiny.extract_batch([wav])[0]
    assert out.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out, ref, dim=-1).min() > 0.98


@pytest.mark.parametrize("name", ["emotion2vec_s_tiny", "emotion2vec_s_base"])
def test_hydra_configs(name):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf" / "model"), version_base="1.3"):
        cfg = compose(name)
    built = instantiate(cfg, _convert_="all").config
    assert built == (tiny_config() if name.endswith("tiny") else Emotion2VecSConfig())

"""Emotion2Vec-S port: frame counts, ALiBi, utterance modes and persistence (tiny sizes, CPU);
extraction is tested in tests/inference/test_emotion2vec_s.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from c2ser.core.errors import BadInputError
from c2ser.inference.emotion2vec_s import extract_batch
from c2ser.models.emotion2vec_s import (
    Decoder,
    Emotion2VecS,
    Emotion2VecSConfig,
    alibi_slopes,
    tiny_config,
)
from tests.factories import tiny_emotion2vec_s, waves

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny() -> Emotion2VecS:
    return tiny_emotion2vec_s()


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


def test_save_and_load_round_trip(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "m")
    again = Emotion2VecS.from_pretrained(out)
    assert again.config == tiny.config and not again.training
    (wav,) = waves(0.7)
    torch.testing.assert_close(extract_batch(again, [wav])[0], extract_batch(tiny, [wav])[0])
    assert Emotion2VecS.from_pretrained(out, utterance_mode="mean").config.utterance_mode == "mean"
    with pytest.raises(BadInputError, match="convert"):
        Emotion2VecS.from_pretrained(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["emotion2vec_s_tiny", "emotion2vec_s_base"])
def test_hydra_configs(name):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf" / "model"), version_base="1.3"):
        cfg = compose(name)
    built = instantiate(cfg, _convert_="all").config
    assert built == (tiny_config() if name.endswith("tiny") else Emotion2VecSConfig())

"""Model sizes live once, in the presets the model configs name; saved configs stay explicit."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from c2ser.models.c2ser_llm import C2SER, C2SERConfig, preset_config
from c2ser.models.emotion2vec_s import Emotion2VecS, Emotion2VecSConfig, tiny_config
from c2ser.models.emotion2vec_s import preset_config as e2vs_preset
from tests.factories import tiny_qwen2_config

REPO = Path(__file__).resolve().parents[2]


def model_cfg(name: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"model={name}", "paths.llm_dir=/qwen2", "paths.data_dir=/d"]
        )
    cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def test_c2ser_configs_name_a_preset_and_hold_no_sizes():
    for name, preset in (("c2ser_7b", "7b"), ("c2ser_tiny", "tiny")):
        cfg = model_cfg(name)
        assert cfg["preset"] == preset and "encoder_dim" not in cfg and "connector_ffn" not in cfg
    assert preset_config(**model_cfg("c2ser_7b")) == C2SERConfig(llm_path="/qwen2")
    tiny = preset_config(**model_cfg("c2ser_tiny"))
    assert (tiny.encoder_dim, tiny.connector_layers, tiny.llm_config) == (
        64,
        2,
        tiny_qwen2_config(),
    )
    assert model_cfg("c2ser_demo")["vocab"] == "/d/demo/vocab.json"
    demo = preset_config(**model_cfg("c2ser_demo") | {"encoder_init": None, "vocab": None})
    # c2ser_demo's llm_config adds to the tiny Qwen2 instead of replacing it
    assert demo.llm_config == tiny_qwen2_config(initializer_range=0.125) and demo.encoder_dim == 384
    with pytest.raises(ValueError, match="unknown C2SER preset"):
        preset_config("13b")


def test_saved_c2ser_config_is_explicit_and_loads(tmp_path):
    model = C2SER(preset="tiny", encoder_layers=1, llm_dtype="float32")
    out = model.save_pretrained(tmp_path / "model")
    saved = json.loads((out / "config.json").read_text())
    assert "preset" not in saved and saved["encoder_dim"] == 64 and saved["encoder_layers"] == 1
    moved = {"llm_path", "llm_config"}  # the random base LLM is saved beside it, in <model>/llm
    loaded = asdict(C2SER.from_pretrained(out).config)
    assert {k: v for k, v in loaded.items() if k not in moved} == {
        k: v for k, v in asdict(model.config).items() if k not in moved
    }


def test_emotion2vec_s_configs_name_a_preset(tmp_path):
    for name, want in (
        ("emotion2vec_s_base", Emotion2VecSConfig()),
        ("emotion2vec_s_tiny", tiny_config()),
    ):
        cfg = model_cfg(name)
        assert "dim" not in cfg and "config" not in cfg  # flat, as C2SER's
        assert e2vs_preset(**cfg) == want
    model = Emotion2VecS(preset="tiny", utterance_mode="mean")
    assert model.config == tiny_config(utterance_mode="mean")
    out = model.save_pretrained(tmp_path / "e2vs")
    saved = json.loads((out / "config.json").read_text())
    assert "preset" not in saved and saved["dim"] == 64
    assert Emotion2VecS.from_pretrained(out).config == model.config

"""A broken model directory or init_from checkpoint is one line naming the file and what is
wrong, wherever it is read (infer, evaluate, Stage 2's task.init_from, extract --checkpoint)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from c2ser.core.errors import BadInputError
from c2ser.models.checkpoint import from_pretrained, load_weights
from c2ser.models.emotion2vec_s import Emotion2VecS
from tests.factories import tiny_emotion2vec_s
from tests.models.conftest import make_tiny_c2ser


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_c2ser().save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_model_directory_problems_name_the_file(tiny_dir, tmp_path):
    with pytest.raises(BadInputError, match=r"nothing: no config\.json; not a c2ser model"):
        from_pretrained(tmp_path / "nothing")
    cut = _copy(tiny_dir, tmp_path / "cut")
    _truncate(cut / "model.safetensors")
    with pytest.raises(BadInputError, match=r"cut/model.safetensors: not a readable safetensors"):
        from_pretrained(cut)
    gone = _copy(tiny_dir, tmp_path / "gone")
    (gone / "model.safetensors").unlink()
    with pytest.raises(BadInputError, match=r"gone/model.safetensors: not found"):
        from_pretrained(gone)
    bad_json = _copy(tiny_dir, tmp_path / "json")
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(BadInputError, match=r"json/config.json: not a readable c2ser model config"):
        from_pretrained(bad_json)
    other = _copy(tiny_dir, tmp_path / "other")  # another model's sizes
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(cfg | {"encoder_dim": cfg["encoder_dim"] * 2}))
    with pytest.raises(BadInputError, match=r"other: not a readable c2ser model directory"):
        from_pretrained(other)


def test_init_from_problems_name_the_file(tmp_path):
    model = make_tiny_c2ser()
    with pytest.raises(BadInputError, match=r"neither a model directory nor a \.ckpt"):
        load_weights(model, tmp_path / "missing.ckpt")
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(3)}}, ckpt)
    with pytest.raises(BadInputError, match=r"last.ckpt: not a readable Lightning checkpoint"):
        load_weights(model, ckpt)
    _truncate(ckpt)
    with pytest.raises(BadInputError, match=r"last.ckpt: not a readable Lightning checkpoint"):
        load_weights(model, ckpt)


def test_emotion2vec_s_directory_problems_name_the_file(tmp_path):
    out = tiny_emotion2vec_s().save_pretrained(tmp_path / "e2vs")
    _truncate(out / "model.safetensors")
    with pytest.raises(BadInputError, match=r"e2vs: not a readable Emotion2Vec-S model dir"):
        Emotion2VecS.from_pretrained(out)

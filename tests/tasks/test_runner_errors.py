"""train.py's instantiation keeps a user's error one line: a broken ``task.init_from`` names
the file instead of ending in Hydra's InstantiationException traceback."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from c2ser.core.errors import BadInputError
from c2ser.tasks.runner import instantiate, instantiate_task
from tests.models.conftest import make_tiny_c2ser


def test_bad_input_errors_pass_through_instantiation(tmp_path):
    cfg = OmegaConf.create(
        {"_target_": "c2ser.models.checkpoint.read_config", "model_dir": str(tmp_path)}
    )
    with pytest.raises(BadInputError, match=r"no config\.json; not a c2ser model directory"):
        instantiate(cfg)


@pytest.mark.parametrize("case", ["missing", "truncated"])
def test_task_init_from_names_the_file(tmp_path, case):
    ckpt = tmp_path / "stage1.ckpt"
    if case == "truncated":
        torch.save({"state_dict": {"model.x": torch.zeros(64)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    cfg = OmegaConf.create({"_target_": "c2ser.tasks.cot_sft.CotSFTTask", "init_from": str(ckpt)})
    expected = "neither a model directory nor a .ckpt" if case == "missing" else "truncated"
    with pytest.raises(BadInputError, match=rf"stage1\.ckpt: .*{expected}"):
        instantiate_task(cfg, make_tiny_c2ser())

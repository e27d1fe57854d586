import os

import torch
from omegaconf import OmegaConf

from c2ser.convert.safe_pickle import Opaque, load_checkpoint, to_plain


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_loads_tensors_and_cfg_without_running_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create(
        {
            "model": {"depth": 8, "modalities": {"audio": {"extra": 10}}},
            "task": {"normalize": False, "labels": ["a", "b"]},
        }
    )
    state = {"w": torch.randn(3, 4, dtype=torch.bfloat16), "b": torch.arange(5)}
    torch.save({"cfg": cfg, "model": state, "evil": Exploit()}, tmp_path / "ckpt.pt")
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert not (tmp_path / "PWNED").exists()
    assert isinstance(ck["evil"], Opaque) and ck["evil"].qualname == "posix.system"
    assert torch.equal(ck["model"]["w"], state["w"]) and ck["model"]["w"].dtype == torch.bfloat16
    assert to_plain(ck["cfg"]) == OmegaConf.to_container(cfg)


def test_legacy_non_zip_format(tmp_path):
    torch.save({"x": torch.ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(tmp_path / "old.pt")["x"], torch.ones(2))

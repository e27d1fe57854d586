"""--device cuda without CUDA: the same one-line error from every entry point."""

from __future__ import annotations

import json

import pytest
import torch

from c2ser.cli.main import main
from c2ser.core.errors import BadInputError
from c2ser.inference.hardware import resolve_device
from tests.models.conftest import make_tiny_c2ser

NO_CUDA = "device 'cuda' requested but no CUDA device is available; use cpu"


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_resolve_device(no_cuda):
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(BadInputError, match=NO_CUDA):
        resolve_device("cuda")
    with pytest.raises(BadInputError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_every_entry_point_gives_the_same_message(no_cuda, tmp_path, wav_file, capsys):
    wav = wav_file("a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"index": "a", "wav": str(wav), "emotion": "sad"}) + "\n")
    model = make_tiny_c2ser(use_ssl=False).save_pretrained(tmp_path / "model")
    runs = {
        "infer": ["infer", "--checkpoint", str(model), "--manifest", str(manifest),
                  "--out", str(tmp_path / "r.jsonl"), "--device", "cuda"],
        "extract": ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "f"),
                    "--random-init", "--model", "tiny", "--device", "cuda"],
    }  # fmt: skip
    for argv in runs.values():
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {NO_CUDA}"

"""Every broken checkpoint a user can hand to ``c2ser convert`` ends in one line that names the
file and what is wrong (exit 2), never a traceback; no pickled code runs on the way."""

from __future__ import annotations

import pickle

import pytest
import torch
import yaml

from c2ser.cli.main import main


def _truncated(path):
    torch.save({"speech_llama_proj.weight": torch.zeros(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _raw_pickle(path):
    path.write_bytes(pickle.dumps({"model": {}}))
    return path


def _wrong_model(path):
    torch.save({"speech_llama_proj.weight": torch.zeros(2, 2), "foo.weight": torch.zeros(1)}, path)
    return path


BROKEN = {
    "truncated": (_truncated, "truncated or corrupt zip archive"),
    "missing": (lambda p: p, "not found"),
    "raw pickle": (_raw_pickle, "not a torch.save zip file"),
    "wrong model": (_wrong_model, "not a readable C2SER-LLM checkpoint"),
}


def _one_error_line(capsys, name: str, expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and name in err and expected in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", list(BROKEN))
def test_convert_c2ser_llm_names_the_file(tmp_path, capsys, case):
    make, expected = BROKEN[case]
    ckpt = make(tmp_path / "C2SER_llm.pt")
    conf = tmp_path / "config.yaml"
    conf.write_text(yaml.safe_dump({"lora_rank": 2}))
    argv = ["convert", "c2ser-llm", "--checkpoint", str(ckpt), "--config", str(conf),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    _one_error_line(capsys, "C2SER_llm.pt", expected)
    assert not (tmp_path / "out").exists()


def test_convert_c2ser_llm_refuses_a_config_that_is_not_a_mapping(tmp_path, capsys):
    ckpt = _wrong_model(tmp_path / "C2SER_llm.pt")
    conf = tmp_path / "config.yaml"
    conf.write_text("just a string\n")
    argv = ["convert", "c2ser-llm", "--checkpoint", str(ckpt), "--config", str(conf),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    _one_error_line(capsys, "config.yaml", "expected a mapping")


@pytest.mark.parametrize("case", ["truncated", "missing", "raw pickle"])
def test_convert_emotion2vec_s_names_the_file(tmp_path, capsys, case):
    make, expected = BROKEN[case]
    ckpt = make(tmp_path / "e2vs.pt")
    assert main(["convert", "emotion2vec-s", str(ckpt), str(tmp_path / "out")]) == 2
    _one_error_line(capsys, "e2vs.pt", expected)


def test_convert_emotion2vec_s_refuses_another_models_state_dict(tmp_path, capsys):
    ckpt = tmp_path / "e2vs.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "cfg": "not a config"}, ckpt)
    assert main(["convert", "emotion2vec-s", str(ckpt), str(tmp_path / "out")]) == 2
    _one_error_line(capsys, "e2vs.pt", "not a readable Emotion2Vec-S checkpoint")

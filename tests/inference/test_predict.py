"""``c2ser predict``: files and folders through the pipeline, jsonl / csv outputs, and the one
bad-input rule (stop with exit 2 naming the input, or count and skip with --skip-bad)."""

from __future__ import annotations

import csv
import json

import pytest

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.inference.predict import find_audio, predict_files, write_results


@pytest.fixture
def folder(tmp_path, wav_file):
    """3 readable files of different rates/channels in a nested folder, and a text file."""
    wav_file("a.wav", seconds=1.1)
    wav_file("b.flac", seconds=0.7, sr=48_000, channels=2)
    (tmp_path / "sub").mkdir()
    (wav_file("c.wav", seconds=1.6, sr=22_050)).rename(tmp_path / "sub" / "c.wav")
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def test_find_audio_expands_folders_and_reports_missing(folder):
    failed = []
    found = find_audio(
        [folder, folder / "a.wav", folder / "nope.wav"], lambda w, r: failed.append(r)
    )
    names = [p.rsplit("/", 1)[-1] for p in found]
    assert names == ["a.wav", "b.flac", "c.wav", "a.wav"]
    assert failed == ["audio file not found"]


def test_predict_files_and_outputs(pipe, folder, tmp_path):
    shown = []
    rows, summary = predict_files(pipe, [folder], on_results=shown.extend, progress=False)
    assert summary.done == 3 and not summary.failed and shown == rows
    assert [r["input"] for r in rows] == sorted(r["input"] for r in rows)  # input order
    for r in rows:
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-6)
    write_results(tmp_path / "r.jsonl", rows)
    assert [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()] == rows
    write_results(tmp_path / "r.csv", rows)
    table = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [t["input"] for t in table] == [r["input"] for r in rows]
    top = float(table[0]["probability"])
    assert top == pytest.approx(rows[0]["scores"][rows[0]["emotion"]])
    assert sum(float(table[0][e]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(BadInputError, match=r"--out must end with \.jsonl or \.csv"):
        write_results(tmp_path / "r.txt", rows)


def test_cli_contract(official_bundle_dir, folder, tmp_path, capsys):
    from c2ser.cli.main import main

    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    out = tmp_path / "res.csv"
    base = ["predict", "--model", str(official_bundle_dir), "--device", "cpu", "--no-progress"]
    assert main([*base, str(folder / "a.wav"), str(folder / "sub"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{folder / 'a.wav'}\t") and len(printed[0].split("\t")) == 3
    assert printed[-1].startswith(f"{out}: done 2, failed 0")
    assert len(list(csv.DictReader(out.open()))) == 2

    bad = [str(tmp_path / "empty.wav"), str(tmp_path / "missing.wav"), str(tmp_path / "empty_dir")]
    for path in bad:  # each stops the run with one line, before any model work
        assert main([*base, str(folder / "a.wav"), path]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"error: {path}: ") and "--skip-bad" in err
    assert main([*base, str(folder / "a.wav"), *bad, "--skip-bad", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "done 1, failed 3 (" in captured.out
    assert "failed: 1 audio file not found" in captured.err
    assert "failed: 1 empty file" in captured.err
    assert len(list(csv.DictReader(out.open()))) == 1

    assert main(["predict", "--model", str(tmp_path), str(folder)]) == 2
    assert "not a c2ser model bundle" in capsys.readouterr().err
    assert main([*base, str(folder), "--out", str(tmp_path / "x.txt")]) == 2

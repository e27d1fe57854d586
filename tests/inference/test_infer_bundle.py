"""``c2ser infer --checkpoint BUNDLE`` (issue 15): a model bundle answers as its inner C2SER-LLM
model directory does, with feature files or with the features its own Emotion2Vec-S computes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from c2ser.core.errors import BadInputError
from c2ser.inference.emotion2vec_s import extract
from c2ser.inference.generate import run_inference
from c2ser.models.bundle import C2SER_SUBDIR, E2VS_SUBDIR, read_bundle_config
from c2ser.models.emotion2vec_s import Emotion2VecS


@pytest.fixture
def corpus(tmp_path, wav_file, official_bundle_dir):
    """4 utterances of both languages, and their features from the bundle's Emotion2Vec-S
    (its recorded utterance mode), saved as ``c2ser extract`` does."""
    rows, wavs = [], []
    for i, (sec, lang) in enumerate([(1.2, "en"), (0.6, "zh"), (2.0, "en"), (0.9, "zh")]):
        wav = wav_file(f"u{i}.wav", seconds=sec, freq=150 + 40 * i)
        wavs.append(wav)
        rows.append({"index": f"u{i}", "wav": wav.name, "emotion": "sad", "language": lang})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mode = read_bundle_config(official_bundle_dir).utterance_mode
    e2vs = Emotion2VecS.from_pretrained(official_bundle_dir / E2VS_SUBDIR, utterance_mode=mode)
    feats = tmp_path / "feats"
    feats.mkdir()
    for wav, f in zip(wavs, extract(e2vs.eval(), [str(w) for w in wavs], "utterance", mode)):
        np.save(feats / f"{wav.stem}.npy", f)
    return manifest, feats


def _rows(path):
    return {r["index"]: r for r in map(json.loads, path.read_text().splitlines())}


def _predictions(path):
    return {k: (r["pred_emotion"], r["text"]) for k, r in _rows(path).items()}


@pytest.mark.parametrize("decoding", ["score", "greedy"])
def test_bundle_answers_as_its_model_directory(official_bundle_dir, corpus, tmp_path, decoding):
    manifest, feats = corpus
    kw = dict(stage=2, decoding=decoding, max_new_tokens=5, batch_size=3, progress=False,
              device="cpu", parse=lambda text, lang: "sad")  # fmt: skip
    inner = official_bundle_dir / C2SER_SUBDIR
    ref = tmp_path / "inner.jsonl"
    run_inference(inner, manifest, ref, features=feats, **kw)
    with_files = tmp_path / "bundle_files.jsonl"
    run_inference(official_bundle_dir, manifest, with_files, features=feats, **kw)
    own = tmp_path / "bundle_own.jsonl"  # no --features: the bundle's Emotion2Vec-S computes them
    s = run_inference(official_bundle_dir, manifest, own, **kw)
    assert (s.done, len(s.failed)) == (4, 0)

    assert len(_rows(ref)) == 4
    assert _predictions(with_files) == _predictions(ref)
    assert _predictions(own) == _predictions(ref)
    if decoding == "score":
        for a, b in zip(_rows(own).values(), _rows(ref).values(), strict=True):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)

    record = json.loads((tmp_path / "bundle_own.jsonl.run.json").read_text())
    assert record["model"] == str(inner.resolve())
    assert record["features"] == str((official_bundle_dir / E2VS_SUBDIR).resolve())
    assert record["features_from"]["utterance_mode"] == "official"
    assert "features_from" not in json.loads((tmp_path / "inner.jsonl.run.json").read_text())
    with pytest.raises(BadInputError, match="other settings"):  # files vs own features: no mix
        run_inference(official_bundle_dir, manifest, own, features=feats, **kw)


def test_cli_infer_on_a_bundle(official_bundle_dir, corpus, tmp_path, capsys):
    from c2ser.cli.main import main

    manifest, _ = corpus
    out = tmp_path / "cli.jsonl"
    argv = ["infer", "--checkpoint", str(official_bundle_dir), "--manifest", str(manifest),
            "--out", str(out), "--decoding", "score", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "done 4" in capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["u0", "u1", "u2", "u3"]
    assert all(sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-5) for r in rows.values())


def test_model_dir_without_features_points_to_bundles(official_bundle_dir, corpus, tmp_path):
    with pytest.raises(BadInputError, match="or give a model bundle"):
        run_inference(official_bundle_dir / C2SER_SUBDIR, corpus[0], tmp_path / "x.jsonl",
                      progress=False, device="cpu")  # fmt: skip


def test_evaluate_records_the_bundle_model_switches(official_bundle_dir):
    from c2ser.evaluation.evaluate import system_info

    info = system_info(official_bundle_dir)
    assert info["checkpoint"] == str(official_bundle_dir)
    assert info["use_ssl"] is True and "use_whisper" in info

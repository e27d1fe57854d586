"""evaluate.py: input checks (incl. the real Emo-Emilia manifest), scoring, and end-to-end runs
on existing predictions and on a tiny saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from c2ser.data.manifest import BadInputError, Utterance
from c2ser.evaluation.evaluate import EvalSet, check_inputs, run_evaluation, score_rows
from c2ser.evaluation.metrics import EMOTIONS

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def compose_eval(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROJECT_ROOT": str(cwd), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_inputs_lists_missing_files(tmp_path, wav_file):
    utts = [
        Utterance(id=f"u{i}", wav=str(tmp_path / f"u{i}.wav"), emotion="sad") for i in range(14)
    ]
    for i in (0, 5):
        wav_file(f"u{i}.wav", seconds=0.2)
    listing = tmp_path / "missing.txt"
    with pytest.raises(BadInputError) as e:
        check_inputs(utts, listing=listing)
    msg = str(e.value)
    assert "12 input file(s) missing for 12 of 14 utterances" in msg
    assert "u1.wav" in msg and "u11.wav" in msg and "u12.wav" not in msg  # first 10 only
    assert "skip_missing=true" in msg
    assert len(listing.read_text().splitlines()) == 12
    kept, missing = check_inputs(utts, skip_missing=True)
    assert [u.id for u in kept] == ["u0", "u5"] and len(missing) == 12


def test_check_inputs_counts_missing_features(tmp_path, wav_file):
    utts = [Utterance(id="u0", wav=str(wav_file("u0.wav", seconds=0.2)), emotion="sad")]
    with pytest.raises(BadInputError, match=r"u0\.npy"):
        check_inputs(utts, features=tmp_path / "feats")
    with pytest.raises(BadInputError, match="nothing left to evaluate"):
        check_inputs(utts, features=tmp_path / "feats", skip_missing=True)


@pytest.mark.shared
def test_real_emo_emilia_manifest(shared_dir, tmp_path):
    manifest = shared_dir / "data" / "emo-emilia" / "Emo-Emilia-ALL.jsonl"
    utts = EvalSet(manifest=str(manifest), name="emo_emilia", audio_root=str(tmp_path)).utterances()
    assert len(utts) == 1400
    assert Counter((u.language, u.emotion) for u in utts) == {
        (lang, e): 100 for lang in ("zh", "en") for e in EMOTIONS
    }
    with pytest.raises(BadInputError) as e:
        check_inputs(utts)
    assert "1400 input file(s) missing for 1400 of 1400" in str(e.value)
    assert f"{tmp_path}/Emo-Emilia/wav/ZH_B00090_S00350_W000000.wav" in str(e.value)

    # through the Hydra entry point: one clear message, exit code 2, no traceback
    common = ["data=emo_emilia", f"data.manifest={manifest}", f"data.audio_root={tmp_path}",
              f"checkpoint={tmp_path}", "run_name=missing"]  # fmt: skip
    r = run_script(common, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "1400 input file(s) missing" in r.stderr
    listing = tmp_path / "logs/evaluate/runs/missing/missing_inputs.txt"
    assert len(listing.read_text().splitlines()) == 1400
    r = run_script([*common, "skip_missing=true"], tmp_path)
    assert r.returncode == 2 and "nothing left to evaluate" in r.stderr


ROWS = [
    # en: 3 rows, one unparseable
    {"index": "EN_1", "emotion": "happy", "text": "The speaker's emotion is happy."},
    {"index": "EN_2", "emotion": "sad", "text": "The speaker is not sad but angry."},
    {"index": "EN_3", "emotion": "sad", "text": "The speaker talks about the weather."},
    # zh: 2 rows, one failed inference (no text)
    {"index": "ZH_1", "emotion": "angry", "text": "这条语音的的情感为生气"},
    {"index": "ZH_2", "emotion": "happy", "text": None, "error": "inference failed: audio"},
]


def test_score_rows_per_language_and_unparsed():
    s = score_rows(ROWS)
    en, zh, overall = s["languages"]["en"], s["languages"]["zh"], s["overall"]
    assert (en["n"], en["wa"], en["invalid"]) == (3, pytest.approx(1 / 3), 1)
    assert en["ua"] == pytest.approx((1 + 0) / 2)  # happy 1/1, sad 0/2
    # F1 over happy (1), sad (0), angry (predicted, never true: 0)
    assert en["f1"] == pytest.approx(1 / 3)
    assert (zh["wa"], zh["ua"], zh["invalid"]) == (0.5, 0.5, 1)
    assert overall["wa"] == pytest.approx(2 / 5)
    assert overall["ua"] == pytest.approx((1 + 1 / 2 + 0) / 3)  # angry 1/1, happy 1/2, sad 0/2
    assert [(u["index"], u["reason"]) for u in s["unparsed"]] == [
        ("EN_3", "no emotion in the answer"),
        ("ZH_2", "inference failed: audio"),
    ]
    assert s["predictions"]["EN_2"] == "angry"
    with pytest.raises(BadInputError, match="reference emotion 'bored'"):
        score_rows([{"index": "x", "emotion": "bored", "text": "happy"}])


def test_end_to_end_on_existing_predictions(tmp_path):
    """`python evaluate.py predictions=...` (no model): tables, files, and stability runs."""
    preds = tmp_path / "results.jsonl"
    preds.write_text(
        "".join(json.dumps({**r, "n_tokens": 7 + i}) + "\n" for i, r in enumerate(ROWS))
    )
    runs = []
    for k, swap in enumerate(["happy", "angry"]):
        path = tmp_path / f"sampled_{k}.jsonl"
        rows = [{**r, "text": swap if r["index"] == "EN_1" else r["text"]} for r in ROWS]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(str(path))
    r = run_script(
        [
            "data=emo_emilia",
            f"predictions={preds}",
            "run_name=p",
            "system=mine",
            f"stability.predictions=[{runs[0]},{runs[1]}]",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| en | 3 | 33.33 | 50.00 | 33.33 | 1 |" in r.stdout
    out = tmp_path / "logs/evaluate/runs/p"
    m = json.loads((out / "metrics.json").read_text())
    assert (m["kind"], m["dataset"], m["stage"], m["n"], m["n_unparsed"], m["n_failed"]) == (
        "c2ser-evaluation", "emo_emilia", 2, 5, 2, 1,
    )  # fmt: skip
    assert m["system"]["name"] == "mine" and m["answer_tokens"]["median"] == 9
    assert m["stability"]["runs"] == 2 and m["stability"]["agreement"] == pytest.approx(4 / 5)
    assert len((out / "unparsed.jsonl").read_text().splitlines()) == 2
    for name in ("confusion_all", "confusion_en", "confusion_zh", "stability"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
    assert "| all | 5 |" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tests.models.conftest import make_tiny_c2ser

    return make_tiny_c2ser().save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


def test_end_to_end_tiny_model(tmp_path, wav_file, tiny_model_dir):
    """Inference through run_inference on a tiny model, with a missing file skipped, then the
    stability machinery over 2 re-decodings (greedy here, so they must agree: the official beam
    sampling costs seconds per utterance on CPU); a rerun resumes from results.jsonl."""
    feats = tmp_path / "feats"
    feats.mkdir()
    rows = []
    for i, emotion in enumerate(["happy", "sad", "angry", "neutral", "happy"]):
        lang = ("en", "zh")[i % 2]
        wav = wav_file(f"{lang.upper()}_{i}.wav", seconds=0.5 + 0.1 * i, freq=140 + 30 * i)
        np.save(feats / f"{wav.stem}.npy", np.random.default_rng(i).standard_normal((10, 32)))
        rows.append({"index": wav.stem, "wav": wav.name, "emotion": emotion, "split": "test"})
    rows.append({"index": "EN_gone", "wav": "gone.wav", "emotion": "sad", "split": "test"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [
        "data=demo_test", f"data.manifest={manifest}", f"data.features={feats}",
        f"checkpoint={tiny_model_dir}", f"paths.output_dir={tmp_path / 'run'}",
        "skip_missing=true", "max_new_tokens=6", "batch_size=2", "device=cpu",
        "stability.runs=2", "stability.decoding=greedy",
    ]  # fmt: skip
    m = run_evaluation(compose_eval(overrides))
    out = tmp_path / "run"
    assert (m["n"], m["n_missing"]) == (5, 1)
    assert set(m["languages"]) == {"en", "zh"}
    assert m["system"]["use_ssl"] is True and m["answer_tokens"]["max"] <= 6
    assert len((out / "results.jsonl").read_text().splitlines()) == 5
    assert m["stability"]["runs"] == 2 and m["stability"]["agreement"] == 1.0  # greedy
    assert all((out / "stability" / f"run_{i}.jsonl").is_file() for i in range(2))
    assert (out / "stability.png").read_bytes()[:8] == PNG
    before = (out / "results.jsonl").read_text()
    again = run_evaluation(compose_eval([*overrides, "stability.runs=1"]))
    assert (out / "results.jsonl").read_text() == before  # resumed: nothing regenerated
    assert again["overall"] == m["overall"] and "stability" not in again


def test_predictions_mode_refuses_stability_runs_without_outputs(tmp_path):
    preds = tmp_path / "r.jsonl"
    preds.write_text(json.dumps(ROWS[0]) + "\n")
    cfg = compose_eval(
        [
            f"predictions={preds}",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={tmp_path}",
            "stability.runs=3",
        ]
    )
    with pytest.raises(BadInputError, match=r"stability\.predictions"):
        run_evaluation(cfg)


def test_llm_judge_on_a_tiny_local_model(tmp_path):
    """judge_emotions runs a local HF causal LM; a random one answers nonsense -> None mostly,
    but every label is one of the 7 (or None), empty answers are None, duplicates agree."""
    from c2ser.evaluation.parse import judge_emotions
    from c2ser.models.tokenizer import make_tiny_qwen2

    model = make_tiny_qwen2(tmp_path / "judge", hidden=32, layers=1, heads=2, kv_heads=1)
    texts = ["The speaker is happy.", "", None, "这条语音的情感为高兴", "The speaker is happy."]
    labels = judge_emotions(texts, str(model), batch_size=2, device="cpu", max_new_tokens=3)
    assert len(labels) == 5 and labels[1] is None and labels[2] is None
    assert labels[0] == labels[4] and set(labels) <= {*EMOTIONS, None}


def test_judge_labels_replace_the_rule_parser(tmp_path, monkeypatch):
    import c2ser.evaluation.evaluate as ev

    seen = []

    def fake_judge(texts, model_dir, batch_size, device):
        seen.append((list(texts), model_dir))
        return ["happy"] * len(texts)

    monkeypatch.setattr(ev, "judge_emotions", fake_judge)
    preds = tmp_path / "r.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = compose_eval(
        [
            f"predictions={preds}",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={tmp_path}",
            "judge.model=/models/qwen2.5-14b-instruct",
        ]
    )
    m = run_evaluation(cfg)
    assert m["parser"] == "llm judge /models/qwen2.5-14b-instruct"
    assert len(seen) == 1 and len(seen[0][0]) == 4  # unique non-empty answers, judged once
    assert m["overall"]["wa"] == pytest.approx(1 / 5)  # only EN_1 is happy and has an answer
    assert m["n_unparsed"] == 1  # the failed inference

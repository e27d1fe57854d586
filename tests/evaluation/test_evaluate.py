"""evaluate.py: input checks (incl. the real Emo-Emilia manifest), scoring, and end-to-end runs
on existing predictions and on a tiny saved model."""

from __future__ import annotations

import itertools
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

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.data.manifest import Utterance
from c2ser.evaluation.evaluate import EvalSet, check_inputs, run_evaluation, score_rows

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
    assert "skip_bad=true" in msg
    assert len(listing.read_text().splitlines()) == 12
    kept, missing = check_inputs(utts, skip_bad=True)
    assert [u.id for u in kept] == ["u0", "u5"] and len(missing) == 12


def test_check_inputs_counts_missing_features(tmp_path, wav_file):
    utts = [Utterance(id="u0", wav=str(wav_file("u0.wav", seconds=0.2)), emotion="sad")]
    with pytest.raises(BadInputError, match=r"u0\.npy"):
        check_inputs(utts, features=tmp_path / "feats")
    with pytest.raises(BadInputError, match="nothing left to evaluate"):
        check_inputs(utts, features=tmp_path / "feats", skip_bad=True)


@pytest.mark.shared
def test_real_emo_emilia_manifest(shared_dir, tmp_path):
    manifest = shared_dir / "data" / "emo-emilia" / "Emo-Emilia-ALL.jsonl"
    utts = EvalSet(manifest=str(manifest), name="emo_emilia", audio_root=str(tmp_path)).utterances()
    assert len(utts) == 1400
    from c2ser.evaluation.sets import is_emo_emilia

    assert is_emo_emilia(utts)
    assert Counter((u.language, u.emotion) for u in utts) == {
        (lang, e): 100 for lang in ("zh", "en") for e in EMOTIONS
    }
    with pytest.raises(BadInputError) as e:
        check_inputs(utts)
    assert "1400 input file(s) missing for 1400 of 1400" in str(e.value)
    assert f"{tmp_path}/Emo-Emilia/wav/ZH_B00090_S00350_W000000.wav" in str(e.value)

    # through the Hydra entry point: one clear message, exit code 2, no traceback
    common = ["eval_set=emo_emilia", f"eval_set.manifest={manifest}", f"eval_set.audio_root={tmp_path}",
              f"checkpoint={tmp_path}", "run_name=missing"]  # fmt: skip
    r = run_script(common, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "1400 input file(s) missing" in r.stderr
    listing = tmp_path / "logs/evaluate/runs/missing/missing_inputs.txt"
    assert len(listing.read_text().splitlines()) == 1400
    r = run_script([*common, "skip_bad=true"], tmp_path)
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
            "eval_set=emo_emilia",
            f"predictions={preds}",
            "run_name=p",
            "system=mine",
            f"stability.predictions=[{runs[0]},{runs[1]}]",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| en | 3 | 33.33 [0.00, 100.00] | 50.00 [" in r.stdout and "| 66.67 | 1 |" in r.stdout
    out = tmp_path / "logs/evaluate/runs/p"
    m = json.loads((out / "metrics.json").read_text())
    assert (m["kind"], m["dataset"], m["stage"], m["n"], m["n_unparsed"], m["n_failed"]) == (
        "c2ser-evaluation",
        "results",
        2,
        5,
        2,
        1,
    )  # fmt: skip  (5 rows are not Emo-Emilia: named after the predictions file)
    assert m["system"]["name"] == "mine" and m["answer_tokens"]["median"] == 9
    assert m["split"] is None and m["bootstrap"]["unit"] == "utterance"  # no manifest to read
    assert m["overall"]["parse_rate"] == pytest.approx(3 / 5)
    assert m["languages"]["zh"]["parse_rate"] == 0.5
    for rep in (m["overall"], *m["languages"].values()):
        assert set(rep["ci"]) == {"wa", "ua", "f1"}
        assert all(lo <= rep[k] <= hi for k, (lo, hi) in rep["ci"].items())
    st = m["stability"]
    assert st["runs"] == 2 and st["agreement"] == pytest.approx(4 / 5)
    assert st["flip_rate"] == pytest.approx(1 / 5) and st["invalid_rate"] == pytest.approx(2 / 5)
    assert "cot" not in m  # stage 2
    assert len((out / "unparsed.jsonl").read_text().splitlines()) == 2
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(p["index"], p["language"], p["pred_emotion"]) for p in preds[:2]] == [
        ("EN_1", "en", "happy"), ("EN_2", "en", "angry"),
    ]  # fmt: skip
    for name in ("confusion_all", "confusion_en", "confusion_zh", "stability"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
    assert "| all | 5 |" in (out / "summary.md").read_text()


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_an_absent_split_is_refused(tmp_path):
    rows = [{"index": f"u{i}", "wav": "x.wav", "emotion": "sad", "split": s}
            for i, s in enumerate(["train", "val", "train"])]  # fmt: skip
    manifest = _manifest(tmp_path / "m.jsonl", rows)
    with pytest.raises(BadInputError, match=r"no utterances in split 'test' \(its splits are "
                       r"train, val\); choose one with eval_set\.split="):  # fmt: skip
        EvalSet(manifest=str(manifest), split="test").utterances()
    assert len(EvalSet(manifest=str(manifest), split="val").utterances()) == 1
    no_split = _manifest(tmp_path / "n.jsonl", [{k: v for k, v in r.items() if k != "split"}
                                                for r in rows])  # fmt: skip
    with pytest.raises(BadInputError, match="it has no 'split' field"):
        EvalSet(manifest=str(no_split), split="test").utterances()
    assert len(EvalSet(manifest=str(no_split)).utterances()) == 3


STYLE_ANSWER = {"en": "A low pitch and a fast pace", "zh": "语调低沉，语速较快"}
TRANSCRIPT = {"en": "Good morning.", "zh": "早上好"}


def test_stage1_predictions_with_a_manifest(tmp_path):
    """Existing Stage 1 answers scored against a manifest with speakers and style bins: the
    intervals resample speakers and the chain of thought is scored."""
    refs, answers = [], []
    for lang, (i, emotion) in itertools.product(("en", "zh"), enumerate(EMOTIONS)):
        idx, text = f"{lang.upper()}_{i}", TRANSCRIPT[lang]
        bins = {"pitch": "low", "volume": "medium", "speed": "high" if i else "low"}
        refs.append({"index": idx, "wav": f"{idx}.wav", "emotion": emotion, "language": lang,
                     "speaker": f"{lang}_S1", "split": "test", "text": text, **bins})  # fmt: skip
        answer = f"{STYLE_ANSWER[lang]}: “{text}” The emotion is {emotion}."
        answers.append({"index": idx, "emotion": emotion, "language": lang, "text": answer})
    manifest = _manifest(tmp_path / "m.jsonl", refs)
    preds = _manifest(tmp_path / "r.jsonl", answers)
    out = tmp_path / "run"
    cfg = compose_eval(["eval_set=demo_test", f"eval_set.manifest={manifest}", f"predictions={preds}",
                        "stage=1", f"paths.output_dir={out}", "bootstrap.resamples=200"])  # fmt: skip
    m = run_evaluation(cfg)
    assert m["split"] == "test" and m["bootstrap"]["unit"] == "speaker"
    assert m["bootstrap"]["resamples"] == 200 and m["overall"]["ua"] == 1.0
    cot = m["cot"]
    assert (cot["n"], cot["pitch_acc"], cot["volume_acc"]) == (14, 1.0, 0.0)  # volume not stated
    assert cot["speed_acc"] == pytest.approx(12 / 14)  # utterance 0 of each language is slow
    assert cot["style_parse_rate"] == pytest.approx(2 / 3)
    assert cot["transcript_similarity"] == 1.0 and cot["languages"]["zh"]["n"] == 7
    summary = (out / "summary.md").read_text()
    assert "Chain of thought" in summary and "| zh | 7 | 100.00 | 0.00 | 85.71 |" in summary
    speakers = {json.loads(x)["speaker"] for x in (out / "predictions.jsonl").open()}
    assert speakers == {"en_S1", "zh_S1"}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tests.models.conftest import make_tiny_c2ser

    return make_tiny_c2ser().save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


def test_end_to_end_tiny_model(tmp_path, wav_file, tiny_model_dir):
    """Inference through run_inference on a tiny model, with a missing file skipped, then the
    stability machinery over 2 seeds x 2 prompt paraphrases (greedy here, so the seeds must
    agree; sampling is tested in tests/inference); a rerun resumes from results.jsonl."""
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
        "eval_set=demo_test", f"eval_set.manifest={manifest}", f"eval_set.features={feats}",
        f"checkpoint={tiny_model_dir}", f"paths.output_dir={tmp_path / 'run'}",
        "skip_bad=true", "max_new_tokens=6", "batch_size=2", "device=cpu",
        "stability.runs=2", "stability.prompts=2", "stability.decoding=greedy",
    ]  # fmt: skip
    m = run_evaluation(compose_eval(overrides))
    out = tmp_path / "run"
    assert (m["n"], m["n_missing"], m["split"]) == (5, 1, "test")
    assert set(m["languages"]) == {"en", "zh"}
    assert m["system"]["use_ssl"] is True and m["answer_tokens"]["max"] <= 6
    assert m["bootstrap"]["unit"] == "utterance"  # the manifest names no speakers
    assert len((out / "results.jsonl").read_text().splitlines()) == 5
    st = m["stability"]
    assert (st["runs"], st["prompts"]) == (4, 2)
    assert [(b["prompt"], b["runs"], b["flip_rate"]) for b in st["by_prompt"]] == [
        (0, 2, 0.0),
        (1, 2, 0.0),
    ]  # fmt: skip  (greedy: seeds agree within a prompt)
    assert "prompt paraphrases 0..1" in st["decoding"]
    texts = lambda p: {r["index"]: r["text"] for r in map(json.loads, p.open())}  # noqa: E731
    assert texts(out / "stability" / "run_0.jsonl") == texts(out / "results.jsonl")
    assert texts(out / "stability" / "prompt_1" / "run_1.jsonl") != texts(out / "results.jsonl")
    assert (out / "stability.png").read_bytes()[:8] == PNG
    before = (out / "results.jsonl").read_text()
    again = run_evaluation(compose_eval([*overrides, "stability.runs=1", "stability.prompts=1"]))
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
    from tests.factories import make_tiny_qwen2

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


def _tiny_set(tmp_path, wav_file, corrupt: str):
    """Three utterances with features; ``corrupt``'s wav exists but is not audio."""
    feats = tmp_path / "feats"
    feats.mkdir()
    rows = []
    for i, name in enumerate(["EN_a", "EN_b", "ZH_c"]):
        wav = wav_file(f"{name}.wav", seconds=0.4 + 0.1 * i)
        if name == corrupt:
            wav.write_bytes(b"RIFF....WAVEfmt garbage" * 10)
        np.save(feats / f"{name}.npy", np.random.default_rng(i).standard_normal((10, 32)))
        rows.append({"index": name, "wav": wav.name, "emotion": "sad"})
    manifest = tmp_path / "my.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, feats


def test_inference_failures_stop_or_are_counted_with_skip_bad(tmp_path, wav_file, tiny_model_dir):
    """One rule as in `c2ser infer` / `c2ser extract`: stop with one line, or with
    skip_bad=true count, print and score the failure as wrong."""
    manifest, feats = _tiny_set(tmp_path, wav_file, corrupt="EN_b")
    overrides = [
        "eval_set=emo_emilia", f"eval_set.manifest={manifest}", f"eval_set.features={feats}",
        f"checkpoint={tiny_model_dir}", f"paths.output_dir={tmp_path / 'run'}",
        "max_new_tokens=3", "device=cpu", "bootstrap.resamples=10",
    ]  # fmt: skip
    with pytest.raises(BadInputError, match=r"EN_b: audio: .*skip_bad=true"):
        run_evaluation(compose_eval(overrides))
    m = run_evaluation(compose_eval([*overrides, "skip_bad=true"]))
    assert (m["n"], m["n_failed"], m["n_unparsed"]) == (3, 1, m["n_unparsed"])
    unparsed = [json.loads(line) for line in (tmp_path / "run" / "unparsed.jsonl").open()]
    assert any(u["index"] == "EN_b" and "inference failed: audio" in u["reason"] for u in unparsed)
    # named from the data, not the config group: never compared with the paper's Emo-Emilia
    assert m["dataset"] == "my"
    with pytest.raises(BadInputError, match=r"data\.name=emo_emilia is kept for the released"):
        run_evaluation(compose_eval([*overrides, "skip_bad=true", "eval_set.name=emo_emilia"]))


def test_set_names_come_from_the_data(tmp_path):
    from c2ser.evaluation.sets import is_emo_emilia, set_name

    emilia = [
        Utterance(id=f"{lang}_B00090_S{n:05d}_W000000", wav="x.wav", emotion=e)
        for lang in ("ZH", "EN") for e in EMOTIONS for n in range(100)
    ]  # fmt: skip
    assert is_emo_emilia(emilia) and set_name(None, "any.jsonl", None, emilia) == "emo_emilia"
    assert not is_emo_emilia(emilia[:-1])
    assert set_name(None, "d/my.jsonl", None, emilia[:-1]) == "my"
    assert set_name(None, "d/manifest.jsonl", "test", emilia[:3]) == "manifest_test"
    assert set_name("demo_test", "d/manifest.jsonl", "test", emilia[:3]) == "demo_test"


def test_score_decoding_has_nothing_unparsed(tmp_path, wav_file, tiny_model_dir):
    """decoding=score: every utterance answers one of the 7 sentences (parse rate 1), in the
    utterance's language, and metrics.json says how it was decoded (for c2ser report)."""
    feats = tmp_path / "feats"
    feats.mkdir()
    rows = []
    for i, emotion in enumerate(["happy", "sad", "angry", "fearful"]):
        lang = ("en", "zh")[i % 2]
        wav = wav_file(f"{lang.upper()}_{i}.wav", seconds=0.6 + 0.1 * i, freq=150 + 20 * i)
        np.save(feats / f"{wav.stem}.npy", np.random.default_rng(i).standard_normal((10, 32)))
        rows.append({"index": wav.stem, "wav": wav.name, "emotion": emotion, "language": lang})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = run_evaluation(compose_eval([
        "eval_set=demo_test", f"eval_set.manifest={manifest}", f"eval_set.features={feats}", "eval_set.split=null",
        f"checkpoint={tiny_model_dir}", f"paths.output_dir={tmp_path / 'run'}", "decoding=score",
        "batch_size=4", "device=cpu",
    ]))  # fmt: skip
    assert (m["n"], m["n_unparsed"], m["decoding"]) == (4, 0, "score")
    assert m["overall"]["parse_rate"] == 1.0
    results = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").open()]
    assert [r["text"].startswith("这条语音的情感为") for r in results] == [False, True] * 2
    assert all(sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-6) for r in results)

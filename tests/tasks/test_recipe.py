"""The shipped C2SER recipes learn what the data holds, and nothing else.

Features that encode the label (and the language) outright, on a small bilingual demo corpus with
speaker-independent splits: ``experiment=stage1_demo`` then ``experiment=stage2_demo`` (their
optimiser, schedule, epochs and Stage 2 mixing, unchanged) must reach >= 95 % UA on the held-out
speakers, Stage 1 parsed from its chain of thought, and answer in each utterance's language.
The same features shuffled across utterances must stay near chance: the model reads the speech
input, not the prompt or the label prior. Only the size changes for speed: the Whisper path is
off (``model.use_whisper=false``), so Emotion2Vec-S rows are the only speech input.

Marked slow: the two stages take the demo's number of optimiser steps (several minutes on 2
cores). The shuffled control is what makes it fail when the speech path is cut (zeroing
``C2SER.encode_speech``'s output gives label-free answers, like shuffled features).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from c2ser.data.demo import build_demo_corpus
from c2ser.data.manifest import read_manifest
from c2ser.evaluation.metrics import EMOTIONS
from c2ser.evaluation.parse import parse_emotion
from c2ser.evaluation.scoring import score_predictions
from c2ser.inference.generate import run_inference
from c2ser.tasks.runner import train

REPO = Path(__file__).resolve().parents[2]
DIM = 16  # oracle rows: one-hot emotion (7) + language bit (1) + noise
FAST = ["model.encoder_init=null", "model.use_whisper=false", f"model.ssl_dim={DIM}",
        "model.ssl_tokens=1", "logger=none", "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "task.val_generate=0", "test=false", "callbacks.lr_monitor=null"]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """3 utterances per speaker x emotion x language: 84 train, 42 test (held-out speakers)."""
    out = tmp_path_factory.mktemp("corpus")
    return build_demo_corpus(out, size=12, seed=3, workers=2, progress=False)


def oracle_features(manifest: Path, out: Path, shuffle: bool) -> Path:
    """(1, DIM) rows that encode emotion and language; ``shuffle`` permutes them across ids."""
    utts = read_manifest(manifest)
    rng = np.random.default_rng(0)
    rows = []
    for u in utts:
        x = rng.normal(0.0, 0.1, DIM).astype(np.float32)
        x[EMOTIONS.index(u.emotion)] += 1.0
        x[7] += 1.0 if u.language == "zh" else -1.0
        rows.append(x)
    order = rng.permutation(len(rows)) if shuffle else np.arange(len(rows))
    out.mkdir(parents=True, exist_ok=True)
    for u, i in zip(utts, order):
        np.save(out / f"{u.id}.npy", rows[i][None])
    return out


def run_stage(experiment: str, run_dir: Path, *overrides: str) -> Path:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"experiment={experiment}",
                f"paths.output_dir={run_dir}",
                *FAST,
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # resolved through HydraConfig, as under @hydra.main
    train(cfg)
    return run_dir / "model"


def held_out_scores(model: Path, manifest: Path, feats: Path, stage: int, out: Path) -> dict:
    test = [u for u in read_manifest(manifest) if u.split == "test"]
    results = out / f"stage{stage}.jsonl"
    budget = 150 if stage == 1 else 30
    run_inference(model, test, results, stage=stage, features=feats, batch_size=16,
                  device="cpu", max_new_tokens=budget, parse=parse_emotion, progress=False)  # fmt: skip
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    scored = score_predictions(rows, n_resamples=0)
    zh = ["\u4e00" <= c <= "\u9fff" for r in rows for c in r["text"][:1]]
    same_language = np.mean([z == (r["language"] == "zh") for z, r in zip(zh, rows)])
    return {"ua": scored["overall"]["ua"], "language": float(same_language)}


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [False, True], ids=["label_features", "shuffled"])
def test_stage1_and_stage2_learn_emotion_and_language_from_the_features(corpus, tmp_path, shuffle):
    feats = oracle_features(corpus, tmp_path / "feats", shuffle)
    data = [f"data.manifest={corpus}", f"data.ssl_dir={feats}"]
    # as many optimiser steps as the demo takes (6 x 36 and 12 x 36 batches of 8): 11 batches here
    stage1 = run_stage("stage1_demo", tmp_path / "stage1", *data, "trainer.max_epochs=20")
    stage2 = run_stage("stage2_demo", tmp_path / "stage2", *data, f"task.init_from={stage1}",
                       "trainer.max_epochs=40")  # fmt: skip
    s1 = held_out_scores(stage1, corpus, feats, 1, tmp_path)
    s2 = held_out_scores(stage2, corpus, feats, 2, tmp_path)
    if shuffle:  # chance is 1/7; 42 test utterances leave room for luck, not for learning
        assert s1["ua"] < 0.4 and s2["ua"] < 0.4, (s1, s2)
    else:
        assert s1["ua"] >= 0.95 and s2["ua"] >= 0.95, (s1, s2)
        assert s1["language"] == 1.0 and s2["language"] == 1.0, (s1, s2)

"""The Hydra/Lightning entry point: every experiment composes, and a fast_dev_run trains."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from c2ser.core.labels import EMOTIONS

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_targets_import(experiment):
    cfg = compose_train([f"experiment={experiment}"])
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_class, get_method

    HydraConfig.instance().set_config(cfg)
    for group in ("data", "model", "task", "trainer", "strategy"):
        target = cfg[group]["_target_"]
        try:
            get_class(target)
        except (ImportError, ValueError):
            get_method(target)  # factories are functions
    OmegaConf.to_container(cfg.trainer, resolve=True)


def test_every_experiment_is_headed_by_its_run_command():
    for experiment in EXPERIMENTS:
        head = (
            (REPO / "conf" / "experiment" / f"{experiment}.yaml").read_text().split("defaults:")[0]
        )
        assert f"python train.py experiment={experiment}" in head, experiment


def test_evaluation_sets_are_not_datamodules():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="data"):
        compose_train(["experiment=stage1_tiny", "data=emo_emilia"])
    assert not (REPO / "conf" / "data" / "demo_test.yaml").exists()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["eval_set=demo_test"])
    assert cfg.eval_set._target_.endswith("EvalSet") and "data" not in cfg


def make_tone_corpus(root: Path, per_class: int = 4) -> Path:
    """Pitch encodes the class: a corpus any working pipeline can learn."""
    rows = []
    rng = np.random.default_rng(0)
    for i in range(per_class * len(EMOTIONS)):
        k = i % len(EMOTIONS)
        t = np.arange(int(16000 * (0.5 + 0.3 * rng.random()))) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 60 * k) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(root / f"u{i}.wav", x.astype(np.float32), 16000)
        split = ("train", "train", "val", "test")[(i // len(EMOTIONS)) % 4]
        rows.append({"index": f"u{i}", "emotion": EMOTIONS[k], "wav": f"u{i}.wav", "split": split})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def run_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROJECT_ROOT": str(cwd), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fast_dev_run_trains_and_writes_metrics(tmp_path):
    manifest = make_tone_corpus(tmp_path)
    r = run_train(
        [
            "experiment=demo",
            f"data.manifest={manifest}",
            "trainer.fast_dev_run=true",
            "run_name=fdr",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "logs/demo/runs/fdr"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train/loss", "val/ua", "test/ua"} <= set(metrics)
    assert (run / "config.yaml").exists()
    rows = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    test_ids = {json.loads(x)["index"] for x in manifest.read_text().splitlines() if '"test"' in x}
    assert len(rows) == metrics["test/n"] and {r["index"] for r in rows} <= test_ids


def test_print_config(tmp_path):
    r = run_train(["--cfg", "job"], tmp_path)
    assert r.returncode == 0 and "_target_: c2ser.tasks.classify.ClassificationTask" in r.stdout


def test_bad_manifest_is_one_clear_line(tmp_path):
    manifest = make_tone_corpus(tmp_path)
    with open(manifest, "a") as f:
        f.write('{"index": "x", "wav": "gone.wav", "emotion": "happy", "split": "train"}\n')
    r = run_train(
        ["experiment=demo", f"data.manifest={manifest}", "trainer.fast_dev_run=true"], tmp_path
    )
    assert r.returncode == 2
    assert "gone.wav: audio file not found" in r.stderr and "Traceback" not in r.stderr
    r = run_train(
        [
            "experiment=demo",
            f"data.manifest={manifest}",
            "trainer.fast_dev_run=true",
            "data.skip_bad=true",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1" in r.stdout


def test_task_hyperparameters_are_plain_python():
    """Every experiment's task saves hyper-parameters that ``torch.load(weights_only=True)``
    reads, as Lightning does to resume from ``last.ckpt`` (OmegaConf lists are refused)."""
    import io

    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from c2ser.tasks.runner import instantiate_task

    probe = {"input_dim": 4, "num_classes": 2}
    sizes = {"demo": {"num_classes": 7}, "probe": probe, "probe_demo": probe}
    for experiment in EXPERIMENTS:
        cfg = compose_train([f"experiment={experiment}", "paths.output_dir=/tmp/run"])
        HydraConfig.instance().set_config(cfg)
        if "init_from" in cfg.task:  # Stage 2 asks for its Stage 1 model (???)
            cfg.task.init_from = None
        if cfg.model.get("encoder_init"):  # the demo's Whisper tiny.en: converted by make demo
            cfg.model.encoder_init = None
        if cfg.model.get("vocab"):  # the demo's corpus vocabulary: written by make demo
            cfg.model.vocab = None
        if cfg.model.get("preset") == "7b":  # paper sizes need a local Qwen2-7B: a tiny stand-in
            cfg.model.preset, cfg.model.llm_path = "tiny", None
        task = instantiate_task(cfg.task, instantiate(cfg.model, **sizes.get(experiment, {})))
        buffer = io.BytesIO()
        torch.save(dict(task.hparams), buffer)
        buffer.seek(0)
        assert torch.load(buffer, weights_only=True) == dict(task.hparams), experiment


def test_missing_optimized_metric_warns_and_gives_the_sweeper_none(caplog):
    from c2ser.tasks.runner import optimized_metric

    cfg = OmegaConf.create({"optimized_metric": "val/loss"})
    assert optimized_metric(cfg, {"val/loss": 0.5}) == 0.5
    with caplog.at_level("WARNING", logger="c2ser.tasks.runner"):
        assert optimized_metric(cfg, {"train/loss": 1.0}) is None
    assert "optimized_metric 'val/loss' was not logged" in caplog.text
    assert optimized_metric(OmegaConf.create({"optimized_metric": None}), {}) is None


def test_c2ser_without_feature_source_fails_before_training(tmp_path):
    """A C2SER with Emotion2Vec-S (the default) over SFT data without data.ssl_dir: one line
    naming the keys to set, before any training step."""
    from tests.scale.conftest import sft_corpus

    manifest = sft_corpus(tmp_path / "corpus", n=2)
    r = run_train(["experiment=cot_explicit", f"data.manifest={manifest}", "run_name=x"], tmp_path)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for key in ("data.ssl_dir=<dir of <id>.npy from c2ser extract --level utterance>",
                "model.ssl_dim=<feature width>", "model.use_ssl=false"):  # fmt: skip
        assert key in r.stderr
    assert not (tmp_path / "logs/cot_explicit/runs/x/checkpoints").exists()


def test_feature_source_check_passes_whatever_feeds_the_model(tmp_path):
    from c2ser.core.errors import BadInputError
    from c2ser.data.sft import SFTDataModule
    from c2ser.tasks.runner import check_model_inputs

    with_ssl, without_ssl = OmegaConf.create({"use_ssl": True}), OmegaConf.create({})
    bare = SFTDataModule(str(tmp_path / "m.jsonl"))
    with pytest.raises(BadInputError, match=r"data\.ssl_dir="):
        check_model_inputs(bare, with_ssl)
    check_model_inputs(bare, without_ssl)
    check_model_inputs(bare, OmegaConf.create({"use_ssl": False}))
    check_model_inputs(SFTDataModule(str(tmp_path / "m.jsonl"), ssl_dir=str(tmp_path)), with_ssl)
    check_model_inputs(SFTDataModule(str(tmp_path / "m.jsonl"), ssl_extractor=len), with_ssl)

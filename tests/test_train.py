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

from c2ser.evaluation.metrics import EMOTIONS

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
    metrics = json.loads((tmp_path / "logs/demo/runs/fdr/metrics.json").read_text())
    assert {"train/loss", "val/ua", "test/ua"} <= set(metrics)
    assert (tmp_path / "logs/demo/runs/fdr/config.yaml").exists()


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

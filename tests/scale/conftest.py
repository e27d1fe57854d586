"""Helpers for the scale-out tests: a tiny tone corpus and ``python train.py`` in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from c2ser.core.labels import EMOTIONS

REPO = Path(__file__).resolve().parents[2]


def tone_corpus(
    root: Path, n_train: int, n_val: int = 7, seconds: float | None = None, seed: int = 0
) -> Path:
    """Pitch encodes the class. ``seconds`` fixes every length (batches without padding);
    otherwise lengths vary in 0.3-0.6 s. Returns the manifest."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_val):
        k = i % len(EMOTIONS)
        dur = seconds or 0.3 + 0.3 * rng.random()
        t = np.arange(int(16000 * dur)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 60 * k) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(root / f"u{i}.wav", x.astype(np.float32), 16000)
        split = "train" if i < n_train else "val"
        rows.append({"index": f"u{i}", "emotion": EMOTIONS[k], "wav": f"u{i}.wav", "split": split})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def sft_corpus(root: Path, n: int = 6) -> Path:
    """A Stage 1 (explicit CoT) corpus: tones with style bins, Emotion2Vec-S-shaped features in
    ``root/ssl`` (10 x 768), the last utterance for validation. Returns the manifest."""
    (root / "ssl").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        t = np.arange(int(16000 * (0.5 + 0.1 * i))) / 16000
        sf.write(root / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t)), 16000)
        feats = np.random.default_rng(i).standard_normal((10, 768)).astype(np.float32)
        np.save(root / "ssl" / f"u{i}.npy", feats)
        lang = ("en", "zh")[i % 2]
        rows.append(
            {"index": f"u{i}", "emotion": ("happy", "sad")[i % 2], "wav": f"u{i}.wav",
             "text": "We did it." if lang == "en" else "我们做到了。", "language": lang,
             "split": "train" if i < n - 1 else "val", "speed": "high", "pitch": "medium",
             "volume": "low"}
        )  # fmt: skip
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest


def train_cmd(*overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *overrides]


def train_env(root: Path, **extra: str) -> dict[str, str]:
    """Runs under ``root`` (PROJECT_ROOT: logs/ and data/ go there), one torch thread per process
    (the machine is shared; also keeps the float reductions of compared runs identical)."""
    return {
        **os.environ,
        "PROJECT_ROOT": str(root),
        "HYDRA_FULL_ERROR": "1",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        **extra,
    }


def start_train(root: Path, *overrides: str, **env: str) -> subprocess.Popen:
    """``python train.py overrides`` in the background (output captured)."""
    return subprocess.Popen(
        train_cmd(*overrides),
        cwd=root,
        env=train_env(root, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: int = 300) -> str:
    """Wait for a :func:`start_train` process; assert success; return stdout + stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    return out + err


def run_train(root: Path, *overrides: str, **env: str) -> str:
    return finish(start_train(root, *overrides, **env))


def step_losses(metrics_csv: Path) -> dict[int, float]:
    """``train/loss`` per optimiser step from a CSVLogger file. A resumed run's logger starts
    the file afresh (Lightning deletes the old one), so it holds the steps from the resume on."""
    out: dict[int, float] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


@pytest.fixture
def corpus(tmp_path: Path):
    """Factory: ``corpus(n_train, **kw) -> manifest`` written under ``tmp_path/corpus``."""

    def make(n_train: int, **kw) -> Path:
        root = tmp_path / "corpus"
        root.mkdir(exist_ok=True)
        return tone_corpus(root, n_train, **kw)

    return make


# ~10 batches an epoch (max_frames 150 = 3 utterances of <= 0.5 s), 4 epochs, a checkpoint every
# 2 steps: most kills land mid-epoch. Dropout stays on (0.1), so the RNG must be restored too.
# Everything else is the default config: atomic checkpoint IO, the RNG-state callback, the
# resumable train loader (see test_defaults_make_training_resumable).
RESUMABLE = (
    "experiment=demo",
    "data.max_frames=150",
    "model.dim=32",
    "model.layers=1",
    "trainer.max_epochs=4",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "test=false",
    "ckpt_path=auto",
    "~callbacks.progress_bar",
    "callbacks.model_checkpoint.every_n_train_steps=2",
)


# The same for C2SER Stage 1 and 2 on an :func:`sft_corpus`: a tiny random model (its Qwen2 16 wide,
# ~35 MB checkpoints), one utterance per batch, a checkpoint every 2 steps, dropout on (0.1).
C2SER_RESUMABLE = (
    "model.llm_config={hidden_size:16,intermediate_size:32}",  # merged into the tiny preset's
    "data.max_batch_size=1",
    "task.val_generate=1",
    "task.max_new_tokens=4",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "ckpt_path=auto",
    "~callbacks.progress_bar",
    "callbacks.model_checkpoint.every_n_train_steps=2",
)


def stage1_export(out: Path) -> Path:
    """A random Stage 1 model of the :data:`C2SER_RESUMABLE` shape, exported for Stage 2's
    ``task.init_from`` (what ``experiment=cot_explicit`` writes to ``<run>/model``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=cot_explicit", *C2SER_RESUMABLE])
    return instantiate(cfg.model).save_pretrained(out)


def run_dir(root: Path, name: str, task: str = "demo") -> Path:
    return root / "logs" / task / "runs" / name

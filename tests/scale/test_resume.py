"""Fault tolerance: ``kill -9`` a training run at a random moment, rerun the same command, and the
resumed run continues exactly where the uninterrupted one went (model, optimizer, scheduler,
sampler position mid-epoch, RNG); checkpoints are written atomically. The baseline, C2SER Stage 1
and Stage 2 all resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from c2ser.tasks.checkpoint_io import AtomicCheckpointIO
from tests.scale.conftest import (
    C2SER_RESUMABLE,
    REPO,
    RESUMABLE,
    finish,
    run_dir,
    run_train,
    sft_corpus,
    stage1_export,
    start_train,
    step_losses,
    train_cmd,
    train_env,
)

STAGES = {"stage1": "cot_explicit", "stage2": "cot_implicit", "stage3": "cot_implicit"}


def wait_for_new_file(path: Path, proc: subprocess.Popen, previous) -> tuple[tuple, float]:
    """Wait until ``path`` exists as another file than ``previous`` (inode + mtime); return
    (identity, monotonic time seen)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            st = path.stat()
            identity = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            identity = None
        if identity is not None and (previous is None or identity != previous[0]):
            return identity, time.monotonic()
        time.sleep(0.005)
    raise AssertionError(f"{path} did not appear (again) while the run was alive")


def kill9_and_rerun(root: Path, args: tuple[str, ...], task: str) -> None:
    """Run ``args`` as ``killed`` and, side by side, as ``reference``; ``kill -9`` the first at a
    random moment, rerun it, and check that it logs the reference's losses from the kill on."""
    victim = subprocess.Popen(
        train_cmd(*args, "run_name=killed"),
        cwd=root,
        env=train_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reference_run = start_train(root, *args, "run_name=reference")
    # kill at a random moment within the next ~12 steps after the first checkpoint (of ~40),
    # paced by the time between the first two checkpoints, so that fast and slow machines alike
    # kill mid-run
    last = run_dir(root, "killed", task) / "checkpoints" / "last.ckpt"
    first = wait_for_new_file(last, victim, previous=None)
    wait_for_new_file(last, victim, previous=first)
    time.sleep(random.uniform(0.0, 6 * (time.monotonic() - first[1])))
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    finish(reference_run)
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]

    assert "resuming from" in run_train(root, *args, "run_name=killed")

    reference = step_losses(run_dir(root, "reference", task) / "csv" / "metrics.csv")
    resumed = step_losses(run_dir(root, "killed", task) / "csv" / "metrics.csv")
    after = sorted(s for s in resumed if s >= killed_at)
    assert after and after == sorted(s for s in reference if s >= killed_at)
    assert max(after) == max(reference)  # the resumed run finished the whole schedule
    for s in after:
        assert resumed[s] == pytest.approx(reference[s], abs=1e-6), f"step {s}"


def test_kill9_and_rerun_continues_like_an_uninterrupted_run(tmp_path, corpus):
    manifest = corpus(28, seconds=None)
    kill9_and_rerun(tmp_path, (*RESUMABLE, f"data.manifest={manifest}"), "demo")


def c2ser_args(root: Path, stage: str, manifest: Path) -> tuple[str, ...]:
    """``train.py`` overrides of a tiny resumable C2SER run of ``stage`` (Stage 2 starts from a
    random Stage 1 export and decays its explicit share over 10 steps, whatever the run length;
    Stage 3 is GRPO from the same export: its losses depend on the sampled answers, which a
    resumed run must draw again, and on the dropout masks of the policy and reference passes)."""
    args = (f"experiment={STAGES[stage]}", *C2SER_RESUMABLE, f"data.manifest={manifest}",
            f"data.ssl_dir={manifest.parent / 'ssl'}")  # fmt: skip
    if stage != "stage1":
        args += (f"task.init_from={stage1_export(root / 'stage1')}",)
    if stage == "stage2":
        args += ("task.decay_steps=10",)
    if stage == "stage3":
        args += ("task=grpo", "task.group_size=2", "task.lr=1e-3")
    return args


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_kill9_and_rerun_c2ser_continues_like_an_uninterrupted_run(tmp_path, stage):
    manifest = sft_corpus(tmp_path / "corpus", n=13)  # 12 steps an epoch, 36 in all
    args = (*c2ser_args(tmp_path, stage, manifest), "trainer.max_epochs=3")
    kill9_and_rerun(tmp_path, args, STAGES[stage])


def without_split(manifest: Path) -> Path:
    """The manifest with its ``split`` fields removed: everything trains, nothing validates."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    out = manifest.with_name("no_split.jsonl")
    out.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n"
                           for r in rows))  # fmt: skip
    return out


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_c2ser_rerun_resumes_from_last_ckpt(tmp_path, stage):
    """Stage 1 stops at ``trainer.max_steps=2``, before its first validation; Stage 2 reads a
    manifest without ``split``, so it never validates. Both still exit 0 (the sweeper's
    ``optimized_metric`` is missing: a warning), and the same command with more steps resumes
    from ``last.ckpt``, whose hyper-parameters ``torch.load(weights_only=True)`` must read."""
    manifest = sft_corpus(tmp_path / "corpus")  # 5 training utterances: 5 steps an epoch
    if stage == "stage2":
        manifest = without_split(manifest)
    args = (*c2ser_args(tmp_path, stage, manifest), "run_name=r")
    first = run_train(tmp_path, *args, "trainer.max_steps=2")
    assert "optimized_metric 'val/loss' was not logged" in first
    run = run_dir(tmp_path, "r", STAGES[stage])
    assert (run / "model" / "config.json").is_file()  # trained and exported
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2

    assert "resuming from" in run_train(tmp_path, *args, "trainer.max_steps=4")
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4
    assert sorted(step_losses(run / "csv" / "metrics.csv")) == [2, 3]  # went on, not over


def test_defaults_make_training_resumable():
    from c2ser.data.batching import ResumableLoader

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo"])
    assert cfg.ckpt_path == "auto"
    assert cfg.plugins.atomic_checkpoint_io._target_.endswith("checkpoint_io.AtomicCheckpointIO")
    assert cfg.callbacks.rng_state._target_.endswith("checkpoint_io.RNGStateCheckpoint")
    assert "every_n_train_steps" in cfg.callbacks.model_checkpoint
    assert hasattr(ResumableLoader, "state_dict") and hasattr(ResumableLoader, "load_state_dict")


def test_resume_picks_the_newest_checkpoint_of_the_run(tmp_path):
    """``auto`` starts fresh in an empty run and otherwise takes the newest of ``last.ckpt`` and
    SLURM's requeue checkpoints; ``last`` insists on one; explicit paths pass through."""
    from c2ser.tasks.runner import resolve_ckpt_path

    assert resolve_ckpt_path("auto", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_ckpt_path("last", tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(last, (100, 100))
    os.utime(hpc, (200, 200))  # the requeue came after the last periodic checkpoint
    assert resolve_ckpt_path("auto", tmp_path) == resolve_ckpt_path("last", tmp_path) == str(hpc)
    os.utime(last, (300, 300))  # the requeued job has trained on since
    assert resolve_ckpt_path("auto", tmp_path) == str(last)
    assert resolve_ckpt_path("/x/y.ckpt", tmp_path) == "/x/y.ckpt"
    assert resolve_ckpt_path(None, tmp_path) is None


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_save_fails(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    assert io.load_checkpoint(path, weights_only=False)["step"] == 1

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("interrupted mid-save")

    with pytest.raises(RuntimeError, match="mid-save"):
        io.save_checkpoint({"step": 2, "bad": Unpicklable()}, path)
    assert io.load_checkpoint(path, weights_only=False)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left

"""SLURM without SLURM: fake ``sbatch``/``srun``/``sacct``/``scancel``/``scontrol`` on PATH record
what the launcher and the sbatch script would run, and Lightning's requeue handler is driven by a
real SIGUSR1 under a faked SLURM environment."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.scale.conftest import (
    REPO,
    RESUMABLE,
    finish,
    run_dir,
    run_train,
    start_train,
    step_losses,
    train_cmd,
    train_env,
)

FAKES = {
    # submit: keep the script, answer like sbatch; the job never runs
    "sbatch": 'cp "${@: -1}" "$FAKE_SLURM/submitted.sh"\necho "Submitted batch job 4242"',
    # the fake cluster cancels every job, so the launcher stops waiting at once
    "sacct": 'echo "JobID|State"\necho "4242|CANCELLED"\necho "4242_0|CANCELLED"',
    "srun": 'echo "srun $*" >> "$FAKE_SLURM/calls"',
    "scancel": 'echo "scancel $*" >> "$FAKE_SLURM/calls"',
    "scontrol": 'echo "scontrol $*" >> "$FAKE_SLURM/calls"',
}


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """Environment with the fake SLURM commands first on PATH; they write into ``$FAKE_SLURM``."""
    bin_dir, state = tmp_path / "fake-bin", tmp_path / "fake-slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM": str(state)}


def sbatch_options(script: str) -> dict[str, str]:
    return dict(
        line.removeprefix("#SBATCH --").split("=", 1)
        for line in script.splitlines()
        if line.startswith("#SBATCH --") and "=" in line
    )


def test_submitit_launcher_submits_a_multi_node_job(tmp_path, fake_slurm):
    # ${now:...} in the sweep dir: a requeued job must recompose the very same run directory
    sweep = tmp_path / "sweep" / "${now:%H-%M-%S-%f}"
    cmd = train_cmd(
        "-m", "experiment=cot_explicit", "hydra/launcher=slurm", "hydra.launcher.nodes=2",
        "hydra.launcher.partition=gpu", "hydra.launcher.account=proj", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    r = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=train_env(tmp_path, **fake_slurm),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "CANCELLED" in r.stderr  # what the fake cluster does to jobs
    script = (Path(fake_slurm["FAKE_SLURM"]) / "submitted.sh").read_text()
    opts = sbatch_options(script)
    assert opts["nodes"] == "2" and opts["ntasks-per-node"] == "8"
    assert opts["gpus-per-node"] == "8" and opts["cpus-per-task"] == "8"
    assert opts["partition"] == "gpu" and opts["account"] == "proj"
    assert opts["signal"] == "USR2@120" and opts["time"] == "1440"
    assert "srun --unbuffered" in script and "-m submitit.core._submit" in script

    # the pickled job: its overrides, and the config it composes on the node (twice: requeue)
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals
    from submitit.core.utils import DelayedSubmission

    (pickled,) = Path(sweep.parent).glob("*/.submitit/4242/4242_submitted.pkl")
    job = DelayedSubmission.load(pickled)
    launcher, overrides = job.function, job.args[0]
    assert overrides == ["experiment=cot_explicit"]
    setup_globals()
    loader = launcher.hydra_context.config_loader
    first = loader.load_sweep_config(launcher.config, overrides)
    time.sleep(0.01)
    again = loader.load_sweep_config(launcher.config, overrides)
    HydraConfig.instance().set_config(first)  # as run_job does on the node
    assert first.trainer.num_nodes == 2 and first.trainer.devices == 8
    assert first.task_name == "cot_explicit"
    assert first.hydra.sweep.dir == again.hydra.sweep.dir == str(pickled.parents[2])


def test_sbatch_script_runs_one_task_per_gpu_and_resumes(tmp_path, fake_slurm):
    script = REPO / "scripts" / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    opts = sbatch_options(script.read_text())
    assert opts["ntasks-per-node"] == opts["gpus-per-node"] == "8"
    assert opts["signal"] == "SIGUSR1@90" and "#SBATCH --requeue" in script.read_text()

    env = {**os.environ, **fake_slurm, "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "2"}
    env["SLURM_NTASKS_PER_NODE"] = "8(x2)"
    r = subprocess.run(
        ["bash", str(script), "experiment=cot_explicit", "strategy=deepspeed_zero2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (call,) = (Path(fake_slurm["FAKE_SLURM"]) / "calls").read_text().splitlines()
    assert call.startswith("srun --kill-on-bad-exit=1 .venv/bin/python train.py ")
    assert call.endswith(
        "trainer.num_nodes=2 trainer.devices=8 run_name=slurm-77 ckpt_path=auto "
        "experiment=cot_explicit strategy=deepspeed_zero2"
    )


@pytest.mark.slow
def test_lightning_requeue_signal_saves_and_the_requeued_job_resumes(tmp_path, corpus, fake_slurm):
    """SIGUSR1 (sbatch --signal) -> Lightning saves hpc_ckpt_1.ckpt mid-epoch and calls scontrol
    requeue; SLURM then kills the job; the requeued run resumes from that newest checkpoint and
    trains to the end of the schedule. (Checkpoints only at epoch ends here, so that the requeue
    checkpoint is the newest one.) Lightning writes the requeue checkpoint inside the step that
    the signal interrupts, so the step in flight may be lost or repeated: unlike the kill -9
    resume from a between-steps checkpoint (test_resume.py), this one is not bit-exact."""
    slurm = {
        **fake_slurm, "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "c2ser", "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
    }  # fmt: skip
    args = (
        *(a for a in RESUMABLE if "every_n_train_steps" not in a),
        f"data.manifest={corpus(28)}",
    )
    job = subprocess.Popen(
        train_cmd(*args, "run_name=slurm-77"),
        cwd=tmp_path,
        env=train_env(tmp_path, **slurm),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reference = start_train(tmp_path, *args, "run_name=reference")
    run = run_dir(tmp_path, "slurm-77")
    while not (run / "checkpoints" / "last.ckpt").exists() and job.poll() is None:
        time.sleep(0.02)
    job.send_signal(signal.SIGUSR1)
    hpc = run / "hpc_ckpt_1.ckpt"
    while not hpc.exists() and job.poll() is None:
        time.sleep(0.01)
    assert job.poll() is None, "the job finished before SLURM could kill it"
    job.kill()  # the time limit
    job.wait()
    finish(reference)
    assert "scontrol requeue 77" in (Path(fake_slurm["FAKE_SLURM"]) / "calls").read_text()
    saved_at = torch.load(hpc, map_location="cpu", weights_only=False)["global_step"]

    out = run_train(tmp_path, *args, "run_name=slurm-77", **slurm)
    assert f"resuming from {hpc}" in out
    expected = step_losses(run_dir(tmp_path, "reference") / "csv" / "metrics.csv")
    resumed = step_losses(run / "csv" / "metrics.csv")
    after = sorted(s for s in resumed if s >= saved_at)
    assert after and min(after) <= saved_at + 1  # continued from the requeue point
    assert abs(max(after) - max(expected)) <= 1  # and trained to the end of the schedule

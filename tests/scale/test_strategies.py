"""Strategies: every conf/strategy entry composes and builds; DeepSpeed ZeRO-2/3 (+offload) train,
checkpoint and resume on CPU; LoRA + ZeRO-3 trainable weights export, reload and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from pytorch_lightning.strategies import DDPStrategy

from c2ser.models.checkpoint import load_trainable_state, trainable_state
from c2ser.tasks.strategies import PortableDeepSpeedStrategy, full_parameters
from tests.scale.conftest import REPO, run_train, sft_corpus

STRATEGIES = sorted(p.stem for p in (REPO / "conf" / "strategy").glob("*.yaml"))
# name -> (ZeRO stage, optimizer offloaded, parameters offloaded)
ZERO = {
    "deepspeed_zero2": (2, False, False),
    "deepspeed_zero3": (3, False, False),
    "deepspeed_zero3_offload": (3, True, True),
}


def strategy_from_config(name: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo", f"strategy={name}"])
    return instantiate(cfg.strategy)


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_config_composes_and_builds(name):
    strategy = strategy_from_config(name)
    if name == "auto":
        assert strategy == "auto"
    elif name == "ddp":
        assert isinstance(strategy, DDPStrategy)
    else:
        stage, offload_optimizer, offload_params = ZERO[name]
        assert isinstance(strategy, PortableDeepSpeedStrategy)
        zero = strategy.config["zero_optimization"]
        assert zero["stage"] == stage
        assert ("offload_optimizer" in zero) == offload_optimizer
        assert ("offload_param" in zero) == offload_params
        # the tasks' torch AdamW is accepted under offload (DeepSpeed refuses it by default)
        assert strategy.config.get("zero_force_ds_cpu_optimizer", True) is not offload_optimizer


def test_bf16_follows_the_trainer_precision():
    strategy = strategy_from_config("deepspeed_zero2")
    pl.Trainer(
        accelerator="cpu", devices=1, strategy=strategy, precision="bf16-mixed", logger=False
    )
    strategy._format_config()  # what fit does before deepspeed.initialize
    assert strategy.config["bf16"] == {"enabled": True}


def test_cpu_devices_are_numbered_by_local_rank():
    strategy = PortableDeepSpeedStrategy(stage=2)
    strategy.parallel_devices = [torch.device("cpu")] * 2
    assert strategy.parallel_devices == [torch.device("cpu", 0), torch.device("cpu", 1)]
    assert strategy.root_device == torch.device("cpu", 0)


def test_full_parameters_is_a_noop_without_zero3():
    model = torch.nn.Linear(3, 2)
    with full_parameters(model):
        assert model.weight.shape == (2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZERO))
def test_deepspeed_trains_checkpoints_and_resumes_the_baseline_on_cpu(tmp_path, corpus, name):
    """The first DeepSpeed use on a machine JIT-builds its CPU comm op (30-75 s)."""
    args = (
        "experiment=demo", f"strategy={name}", "trainer.accelerator=cpu", "model.dim=32",
        "model.layers=1", f"data.manifest={corpus(14)}", "~callbacks.progress_bar",
        "trainer.limit_val_batches=1", "run_name=ds",
    )  # fmt: skip
    run_train(tmp_path, *args, "trainer.max_steps=3")
    last = tmp_path / "logs" / "demo" / "runs" / "ds" / "checkpoints" / "last.ckpt"
    assert (last / "checkpoint").is_dir()  # DeepSpeed checkpoints are directories of shards
    out = run_train(tmp_path, *args, "trainer.max_steps=5")
    assert f"resuming from {last}" in out
    metrics = json.loads((last.parents[1] / "metrics.json").read_text())
    assert {"train/loss", "test/ua"} <= set(metrics)


def zero_lora_job(out: Path, *args: str) -> None:
    r = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "zero_lora_job.py"), str(out), *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_lora_trainable_weights_export_reload_and_resume_under_zero(tmp_path, stage):
    """2 CPU processes, so ZeRO-3 really shards: the exported LoRA + speech-side weights are whole,
    trained, equal to DeepSpeed's own consolidation of the checkpoint, and give the same loss in a
    fresh (unsharded) model; loaded back into the sharded model they give it again."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from safetensors.torch import load_file

    from tests.factories import make_tiny_qwen2
    from tests.scale.zero_lora_job import batch, loss_of, tiny_model

    make_tiny_qwen2(tmp_path / "qwen2", hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64)
    zero_lora_job(tmp_path, str(stage), "2")
    result = json.loads((tmp_path / "loss.json").read_text())
    assert result["partitioned"] == (stage == 3)

    exported = torch.load(tmp_path / "exported.pt")
    fresh = tiny_model(tmp_path / "qwen2").eval()
    assert {k: v.shape for k, v in exported.items()} == {
        k: v.shape for k, v in trainable_state(fresh).items()
    }
    assert all(exported[k].abs().sum() > 0 for k in exported if "lora_B" in k)  # LoRA B starts at 0
    consolidated = get_fp32_state_dict_from_zero_checkpoint(tmp_path / "ckpt", tag="checkpoint")
    for key, value in exported.items():
        torch.testing.assert_close(consolidated[f"model.{key}"], value, rtol=0, atol=0)
    task_export = load_file(tmp_path / "export" / "model.safetensors")  # the task's on_fit_end
    for key, value in exported.items():
        torch.testing.assert_close(task_export[key], value, rtol=0, atol=0)

    load_trainable_state(fresh, exported)
    assert loss_of(fresh, batch(99)) == pytest.approx(result["loss"], abs=1e-5)
    reloaded = json.loads((tmp_path / "reloaded.json").read_text())["loss"]
    assert reloaded == pytest.approx(result["loss"], abs=1e-6)

    zero_lora_job(tmp_path, str(stage), "2", "resume")  # one more step from the sharded checkpoint
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert any(not torch.equal(resumed[k], exported[k]) for k in exported if "lora_" in k)


@pytest.mark.slow
def test_stage1_trains_alike_under_ddp_zero2_and_zero3(tmp_path):
    """C2SER Stage 1 (experiment=cot_explicit, tiny random model) on 2 CPU processes: the three
    strategies log the same losses and export the same trainable weights; ZeRO-3 resumes."""
    from safetensors.torch import load_file

    manifest = sft_corpus(tmp_path / "corpus")
    args = (
        "experiment=cot_explicit", f"data.manifest={manifest}", f"data.ssl_dir={manifest.parent}/ssl",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1", "task.val_generate=2", "task.max_new_tokens=8",
        "~callbacks.progress_bar",
    )  # fmt: skip
    exports, metrics = {}, {}
    for name in ("ddp", "deepspeed_zero2", "deepspeed_zero3"):
        run_train(tmp_path, *args, f"strategy={name}", f"run_name={name}")
        run = tmp_path / "logs" / "cot_explicit" / "runs" / name
        exports[name] = load_file(run / "model" / "model.safetensors")
        metrics[name] = json.loads((run / "metrics.json").read_text())
    for name in ("deepspeed_zero2", "deepspeed_zero3"):
        for key in ("train/loss", "val/loss"):
            assert metrics[name][key] == pytest.approx(metrics["ddp"][key], abs=1e-4)
        for key, value in exports["ddp"].items():
            torch.testing.assert_close(exports[name][key], value, rtol=0, atol=1e-5)

    out = run_train(
        tmp_path, *args, "strategy=deepspeed_zero3", "run_name=deepspeed_zero3",
        "trainer.max_epochs=3",
    )  # fmt: skip
    assert "resuming from" in out


@pytest.mark.slow
def test_stage3_grpo_trains_alike_under_ddp_and_zero2(tmp_path):
    """C2SER Stage 3 (GRPO from a random Stage 1-shaped export, tiny model) on 2 CPU processes:
    DDP and ZeRO-2 sample the same answers (seeded by step and rank), log the same loss, KL and
    reward, and export the same weights."""
    from safetensors.torch import load_file

    from tests.scale.conftest import C2SER_RESUMABLE, stage1_export

    manifest = sft_corpus(tmp_path / "corpus")
    args = (
        "experiment=cot_implicit", "task=grpo", f"data.manifest={manifest}",
        f"data.ssl_dir={manifest.parent}/ssl", f"task.init_from={stage1_export(tmp_path / 's1')}",
        *(a for a in C2SER_RESUMABLE if a.startswith("model.")), "model.dropout=0.0", "model.lora_dropout=0.0", "task.group_size=2", "task.lr=1e-3",
        "task.max_new_tokens=4", "task.val_generate=2", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1",
        "~callbacks.progress_bar",
    )  # fmt: skip
    exports, metrics = {}, {}
    for name in ("ddp", "deepspeed_zero2"):
        run_train(tmp_path, *args, f"strategy={name}", f"run_name={name}")
        run = tmp_path / "logs" / "cot_implicit" / "runs" / name
        exports[name] = load_file(run / "model" / "model.safetensors")
        metrics[name] = json.loads((run / "metrics.json").read_text())
    for key in ("train/loss", "train/kl", "train/reward", "val/loss"):
        assert metrics["deepspeed_zero2"][key] == pytest.approx(metrics["ddp"][key], abs=1e-4)
    for key, value in exports["ddp"].items():
        torch.testing.assert_close(exports["deepspeed_zero2"][key], value, rtol=0, atol=1e-5)

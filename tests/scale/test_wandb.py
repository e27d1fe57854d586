"""wandb offline (no server): a run logs scalars and media; sweep definitions compose into valid
runs; the Optuna search runs offline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from pytorch_lightning.loggers import WandbLogger

from c2ser.tasks.wandb_callbacks import WandbMedia
from tests.scale.conftest import REPO, run_train

SWEEPS = sorted((REPO / "conf" / "sweeps").glob("*.yaml"))
TINY = ("model.dim=32", "model.layers=1", "~callbacks.progress_bar")


def test_offline_wandb_run_logs_scalars_confusion_and_tables(tmp_path, corpus):
    manifest = corpus(14)
    run_train(
        tmp_path, "experiment=demo", "logger=wandb", f"data.manifest={manifest}", *TINY,
        "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "run_name=wb",
        WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb-home"),
    )  # fmt: skip
    (offline,) = (tmp_path / "logs/demo/runs/wb/wandb").glob("offline-run-*")
    media = offline / "files" / "media"
    assert list((media / "images" / "test").glob("confusion_*.png"))
    for table in ("confusion_matrix", "per_class_recall"):
        assert list((media / "table" / "test").glob(f"{table}_*.table.json"))
    (records,) = offline.glob("run-*.wandb")  # scalars live in the binary record log
    for key in (b"train/loss", b"lr-AdamW", b"val/ua", b"test/ua", b"trainer/global_step"):
        assert key in records.read_bytes(), key


class RecordingWandbLogger(WandbLogger):
    """A WandbLogger that records tables instead of starting a wandb run."""

    def __init__(self) -> None:
        super().__init__(offline=True)
        self.tables: dict[str, tuple[list, list]] = {}

    def log_table(self, key, columns=None, data=None, dataframe=None, step=None) -> None:
        self.tables[key] = (columns, data)


def test_generation_samples_become_a_table():
    logger = RecordingWandbLogger()
    trainer = SimpleNamespace(loggers=[logger], sanity_checking=False)
    samples = [{"id": "u1", "emotion": "happy", "pred": "happy", "text": "<think>...</think>"}]
    WandbMedia().on_validation_end(trainer, SimpleNamespace(samples=samples))
    assert logger.tables["val/samples"] == (
        ["id", "emotion", "pred", "text"],
        [["u1", "happy", "happy", "<think>...</think>"]],
    )
    trainer = SimpleNamespace(loggers=[], sanity_checking=False)  # no wandb logger: nothing
    WandbMedia().on_validation_end(trainer, SimpleNamespace(samples=samples))


def test_stage1_validation_answers_become_a_wandb_table(tmp_path, wav_file):
    """The real Stage 1 task feeds WandbMedia: its last validation's greedy answers are logged
    as the ``val/samples`` table of an offline wandb run."""
    import json

    import pytorch_lightning as pl

    from c2ser.tasks.cot_sft import CotSFTTask
    from tests.tasks.test_cot_sft import datamodule, make_corpus, tiny_model

    dm = datamodule(make_corpus(tmp_path, wav_file, n=5))  # u4 validates
    task = CotSFTTask(tiny_model(), lr=1e-2, val_generate=2, max_new_tokens=3)
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="c2ser-test")
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=logger, callbacks=[WandbMedia()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path), num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    logger.experiment.finish()
    assert [r["id"] for r in task.samples] == ["u4"]
    (table,) = tmp_path.glob("wandb/offline-run-*/files/media/table/val/samples_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["id", "emotion", "pred", "text", "tokens"]
    assert logged["data"] == [[r[c] for c in logged["columns"]] for r in task.samples]


def sample_value(spec: dict):
    return spec["values"][0] if "values" in spec else spec.get("min", spec.get("value"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_definition_composes_into_the_run_the_agent_starts(path: Path, monkeypatch):
    sweep = yaml.safe_load(path.read_text())
    assert (REPO / sweep["program"]).is_file()
    assert sweep["method"] in {"grid", "random", "bayes"}
    assert sweep["metric"]["goal"] in {"maximize", "minimize"}
    command = sweep["command"]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"]
    assert command[-1] == "${args_no_hyphens}"  # hydra overrides: key=value, no dashes
    fixed = [c for c in command if not c.startswith("${")]
    params = [f"{k}={sample_value(v)}" for k, v in sweep["parameters"].items()]

    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*fixed, *params], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert cfg.run_name == "abc123"
    assert "wandb" in cfg.logger
    # the metric the sweep optimises is the one the experiment selects checkpoints by
    assert cfg.optimized_metric == sweep["metric"]["name"]
    assert cfg.callbacks.model_checkpoint.mode == sweep["metric"]["goal"][:3]
    OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.slow
def test_optuna_search_runs_offline(tmp_path, corpus):
    manifest = corpus(14)
    sweep_dir = tmp_path / "optuna"
    run_train(
        tmp_path, "experiment=demo", "hparams_search=optuna", "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep_dir}", f"data.manifest={manifest}", *TINY,
        "trainer.max_epochs=1", "test=false",
    )  # fmt: skip
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"task.lr", "task.weight_decay"}
    assert 0.0 <= results["best_value"] <= 1.0
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]

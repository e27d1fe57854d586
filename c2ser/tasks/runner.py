"""The training recipe behind ``python train.py``: compose, fit, test, record.

1. seed everything; 2. instantiate ``data``, check that it can feed the model
(:func:`check_model_inputs`) and ask it for the sizes the model needs (``model_kwargs()``);
3. instantiate ``model`` (an ``nn.Module``) and ``task`` (the LightningModule wrapping it, with
plain Python arguments: :func:`instantiate_task`); 4. build the trainer from ``trainer`` +
``strategy`` + ``callbacks`` + ``logger`` (+ optional ``plugins``); 5. fit, resuming when asked;
6. test the best checkpoint (the final weights under ZeRO-3, whose shards DeepSpeed cannot reload
without an optimizer); 7. write ``metrics.json`` (all logged scalars) into the run directory,
atomically, so that sweeps and reports read plain files; 8. hand the sweeper its
``optimized_metric`` (:func:`optimized_metric`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from c2ser.core.errors import BadInputError
from c2ser.core.io import write_json_atomic
from c2ser.tasks.strategies import is_zero3_partitioned

log = logging.getLogger(__name__)


def _instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-shaped group (callbacks, loggers, plugins)."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def instantiate(cfg: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, except that a :class:`BadInputError` raised by the target
    (a broken ``task.init_from`` checkpoint, bad data) stays itself: Hydra wraps every error
    in an ``InstantiationException`` with a traceback, where the user needs the one line."""
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, BadInputError):
            raise e.__cause__ from None
        raise


def instantiate_task(cfg: DictConfig, model: Any) -> pl.LightningModule:
    """The ``task`` config as a LightningModule around ``model``, its arguments converted to plain
    Python types.

    Tasks save their arguments as hyper-parameters in every checkpoint. An OmegaConf container
    there (``betas: [0.9, 0.99]`` arrives as a ``ListConfig``) cannot be unpickled by
    ``torch.load(weights_only=True)``, which is how Lightning reads ``last.ckpt`` to resume.
    """
    return instantiate(cfg, model=model, _convert_="all")


def check_model_inputs(datamodule: Any, model_cfg: DictConfig) -> None:
    """Fail before training (and before loading any weights) when the model needs Emotion2Vec-S
    features the data cannot give.

    Without this, a C2SER with ``use_ssl=true`` over an SFT datamodule with neither ``ssl_dir``
    nor ``ssl_extractor`` starts training and stops at its first forward pass, with an error
    about the batch instead of the keys to set.
    """
    if not model_cfg.get("use_ssl", False) or not hasattr(datamodule, "ssl_dir"):
        return
    if datamodule.ssl_dir or datamodule.ssl_extractor is not None:
        return
    raise BadInputError(
        "the model uses Emotion2Vec-S features (model.use_ssl=true) but the data has no source "
        "for them: set data.ssl_dir=<dir of <id>.npy from c2ser extract --level utterance> "
        "(and model.ssl_dim=<feature width> if it is not 768), or train without them: "
        "model.use_ssl=false"
    )


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``last``: resume from the newest checkpoint of the run (error if none); ``auto``: resume
    from it when there is one, else start fresh; any other string is a checkpoint path.

    The newest of ``<run>/checkpoints/last.ckpt`` and the ``<run>/hpc_ckpt_<n>.ckpt`` files that
    Lightning saves when SLURM signals a requeue, so a requeued job continues from the requeue
    point rather than from the last periodic checkpoint.
    """
    if ckpt_path in (None, "", "none"):
        return None
    if ckpt_path not in ("auto", "last"):
        return ckpt_path
    found = [output_dir / "checkpoints" / "last.ckpt", *output_dir.glob("hpc_ckpt_*.ckpt")]
    found = [p for p in found if p.exists()]
    if not found:
        if ckpt_path == "last":
            raise FileNotFoundError(f"ckpt_path=last but {output_dir} holds no checkpoint")
        return None
    return str(max(found, key=lambda p: p.stat().st_mtime))


def scalar_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if isinstance(v, float | int | torch.Tensor) and torch.as_tensor(v).numel() == 1
    }


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by a composed Hydra config; returns its final metrics."""
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    check_model_inputs(datamodule, cfg.model)
    extra = datamodule.model_kwargs() if hasattr(datamodule, "model_kwargs") else {}
    model = instantiate(cfg.model, **extra)
    task = instantiate_task(cfg.task, model)

    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        strategy=hydra.utils.instantiate(cfg.strategy),
        callbacks=_instantiate_group(cfg.get("callbacks")),
        logger=_instantiate_group(cfg.get("logger")) or False,
        plugins=_instantiate_group(cfg.get("plugins")) or None,
    )
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        for lg in trainer.loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
        if ckpt:
            log.info("resuming from %s", ckpt)
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update(scalar_metrics(trainer))
    if cfg.get("test", False) and type(task).test_step is not pl.LightningModule.test_step:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.trainer.get("fast_dev_run") or not best:
            best = None
        elif is_zero3_partitioned(task):
            # DeepSpeed cannot load ZeRO-3 shards into the optimizer-less engine of `test`
            log.warning("ZeRO-3: testing the final weights, not the best checkpoint %s", best)
            best = None
        trainer.test(task, datamodule=datamodule, ckpt_path=best, weights_only=False)
        metrics.update(scalar_metrics(trainer))
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json", metrics)
        summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        log.info("metrics: %s", summary)
        print(f"\nrun dir: {output_dir}\nmetrics: {summary}")
    return metrics


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a sweeper (Optuna) optimises, named by ``optimized_metric`` in the config.

    A run can finish without it: it ended before its first validation (``trainer.max_steps``)
    or had no validation set (an SFT manifest without ``split``). Its training, export and
    ``metrics.json`` are still good, so it warns and returns None instead of failing the job.
    Hydra's Optuna sweeper records a None as a failed trial and goes on with the next; it does
    not accept NaN (Optuna refuses the value, and the sweeper's fallback then raises).
    """
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        log.warning(
            "optimized_metric %r was not logged (no validation ran?); logged: %s; "
            "a sweeper gets None for this run",
            name,
            ", ".join(sorted(metrics)) or "nothing",
        )
        return None
    return metrics[name]

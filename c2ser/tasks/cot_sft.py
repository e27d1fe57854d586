"""Stage 1: explicit chain-of-thought SFT of C2SER (and the base of Stage 2, :mod:`.distill`).

What trains is the model's business (``model.trainable``: by default the official
``link_and_encoder_and_lora`` set, i.e. encoder, downsampler, connector, projection, speech
embeddings and LoRA; the base Qwen2 is frozen unless the ``llm`` group is listed, as the tiny demo
models do with their random one; Emotion2Vec-S features come precomputed);
this task optimises every parameter that requires grad with the official recipe:

* ``optimizer``: AdamW lr 5e-5, betas (0.9, 0.99), eps 1e-6, weight decay 0.01 (a partial
  config entry; ``task.lr`` is the shortcut of its lr);
* ``scheduler``: a partial entry of :mod:`c2ser.tasks.schedules` stepped every optimiser step:
  ``warmup_lr``, the official wenet WarmupLR, lr * min(s / w, sqrt(w / s)) over optimiser steps s
  (w = 8000); ``linear_warmup``: linear warmup to lr, then constant; or ``linear_decay``: linear
  warmup, then linear decay to 0 at the run's last optimiser step (its ``total_steps``, injected;
  the demo recipes: a constant 3e-3 made the tiny demo model's loss climb back after ~200 steps);
* ``group_lr`` gives some parameter groups of the model (``C2SER.param_groups``: encoder,
  connector, llm, ...) their own learning rate; the others use ``lr``;
* clipping, accumulation and precision (bf16-mixed on GPU) come from the trainer config;
  activation checkpointing of the encoder and the LLM is ``model.gradient_checkpointing=true``.

Checkpoints hold only what cannot be rebuilt from the config, by the rules of
:mod:`c2ser.models.checkpoint` (speech side + LoRA, plus the base LLM when it trains; the whole
model when the base LLM is random, i.e. has no ``llm_path``) and the resolved model config. At the
end of ``fit`` the model is exported as a model directory to ``export_dir`` (default
``<run>/model``), the directory ``c2ser infer --checkpoint`` and Stage 2's ``init_from`` read.

Validation reports the teacher-forced loss and, for the first ``val_generate`` utterances of each
rank, greedy answers parsed for an emotion: ``val/parse_rate``, ``val/acc`` and
``val/answer_tokens``, over the answers of every rank, each utterance once. The last validation's
answers stay in ``samples`` (id, emotion, pred, text, tokens), which ``logger=wandb`` logs as a
table (:class:`~c2ser.tasks.wandb_callbacks.WandbMedia`).
"""

from __future__ import annotations

import logging
import random
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from c2ser.models.checkpoint import (
    check_lightning_state,
    config_dict,
    lightning_state,
    load_weights,
    save_pretrained,
)
from c2ser.tasks.schedules import (
    OptimizerFactory,
    SchedulerFactory,
    build_optimizer,
    build_scheduler,
    warmup_lr,
)
from c2ser.tasks.strategies import gather_unique

log = logging.getLogger(__name__)

# the official optimiser (its lr is the ``lr`` argument, the ``task.lr`` shortcut)
OFFICIAL_OPTIMIZER = partial(torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01)
OFFICIAL_SCHEDULER = partial(warmup_lr, warmup_steps=8000)


class CotSFTTask(pl.LightningModule):
    """Trains ``model(mel, mel_mask, ssl, prompt_ids, target_ids).loss`` on SFT batches.

    Args:
        model: a :class:`~c2ser.models.c2ser_llm.C2SER`.
        lr: the optimizer's learning rate (the shortcut ``task.lr``; ``group_lr`` overrides it
            for some groups).
        optimizer: ``optimizer(param_groups) -> Optimizer``, a partial entry.
        scheduler: ``scheduler(optimizer) -> LR scheduler`` (stepped every optimiser step), a
            partial entry of :mod:`c2ser.tasks.schedules`; None: constant.
        init_from: start from these weights (an exported model dir or a Lightning ``.ckpt``),
            e.g. Stage 1's for Stage 2. A later resume of this run overrides them.
        export_dir: where ``save_pretrained`` writes at the end of ``fit`` (None: no export).
        val_generate: utterances greedily decoded per validation (0: none).
        max_new_tokens: generation budget of those decodes.
        speech_stats_batches: training batches the pool downsampler's statistics are estimated
            from before the first step (``model.downsampler=pool`` only).
        seed: seeds the per-step draws of subclasses (Stage 2's mixing, Stage 3's sampling) by
            (seed, step, batch, rank), so a resumed run repeats them (:meth:`step_rng`).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float | None = 5e-5,
        optimizer: OptimizerFactory = OFFICIAL_OPTIMIZER,
        scheduler: SchedulerFactory | None = OFFICIAL_SCHEDULER,
        init_from: str | None = None,
        export_dir: str | None = None,
        val_generate: int = 8,
        max_new_tokens: int = 200,
        group_lr: dict[str, float] | None = None,
        speech_stats_batches: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model = model
        self.strict_loading = False  # checkpoints omit the frozen base LLM (checked on load)
        self._answers: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        if init_from:
            load_weights(model, init_from)

    # ------------------------------------------------------------------------- steps
    def on_fit_start(self) -> None:
        # transformers' from_pretrained returns the LLM in eval mode and Lightning keeps module
        # modes as found; LoRA dropout (0.1) must be live in training, as in the official recipe.
        self.model.train()
        if self.model.needs_speech_statistics():
            self._estimate_speech_statistics()

    @torch.no_grad()
    def _estimate_speech_statistics(self) -> None:
        """Per-channel mean/std of the encoder output over ``speech_stats_batches`` training
        batches, averaged over ranks, for the pool downsampler. Runs only while the model has
        none: a resumed run or ``init_from`` brings them with the weights."""
        loader = self.trainer.datamodule.train_dataloader()
        dim = self.model.config.encoder_dim
        moments = torch.zeros(3, dim, dtype=torch.float64, device=self.device)
        for i, batch in enumerate(loader):
            if i >= self.hparams.speech_stats_batches:
                break
            if batch is None:
                continue
            x, pad = self.model.encoder(
                batch["mel"].to(self.device), batch["mel_mask"].to(self.device)
            )
            frames = x[~pad].double()
            moments += torch.stack(
                [frames.new_full((dim,), len(frames)), frames.sum(0), frames.square().sum(0)]
            )
        moments = self.trainer.strategy.reduce(moments, reduce_op="sum")
        if moments[0, 0] < 2:
            raise ValueError("no training audio to estimate the pool downsampler's statistics from")
        n, total, squares = moments
        mean = total / n
        std = (squares / n - mean.square()).clamp(min=0).sqrt()
        self.model.downsampler.set_statistics(mean.float(), std.float())

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        out = self.model(
            batch["mel"], batch["mel_mask"], batch["ssl"], batch["prompt_ids"], batch["target_ids"]
        )
        return out.loss

    def step_rng(self, batch_idx: int) -> random.Random:
        """The draws of this optimiser step, batch and rank (repeated by a resumed run)."""
        return random.Random(
            f"{self.hparams.seed}/{self.global_step}/{batch_idx}/{self.global_rank}"
        )

    def training_step(self, batch: dict[str, Any] | None, _: int) -> torch.Tensor | None:
        if batch is None:  # every sample of the batch failed to load (reported by the collate)
            return None
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["id"]))
        return loss

    def validation_step(self, batch: dict[str, Any] | None, _: int) -> None:
        if batch is None:
            return
        n = len(batch["id"])
        self.log("val/loss", self._loss(batch), batch_size=n, sync_dist=True, prog_bar=True)
        todo = self.hparams.val_generate - len(self._answers)
        if todo > 0:
            self._answers += self.answer(batch, todo)

    def answer(self, batch: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        """Greedy answers for the first ``limit`` rows of ``batch`` with their parsed emotion."""
        from c2ser.core.parse import parse_emotion

        k = len(batch["id"]) if limit is None else min(limit, len(batch["id"]))
        mask = batch["mel_mask"][:k]
        frames = int((~mask).sum(1).max())
        ids = self.model.generate(
            batch["mel"][:k, :frames],
            mask[:, :frames],
            None if batch["ssl"] is None else batch["ssl"][:k],
            batch["prompt_ids"][:k],
            max_new_tokens=self.hparams.max_new_tokens,
        )
        tok = self.trainer.datamodule.tokenizer
        rows = []
        for i, new in enumerate(ids):
            text = tok.decode(new, skip_special_tokens=True)
            rows.append(
                {
                    "id": batch["id"][i],
                    "emotion": batch["emotion"][i],
                    "pred": parse_emotion(text, batch["language"][i]),
                    "text": text,
                    "tokens": len(new),
                }
            )
        return rows

    def on_validation_epoch_end(self) -> None:
        if not self.hparams.val_generate:
            return
        rows = gather_unique(self._answers, "id", self.trainer.world_size)  # every rank, once each
        self._answers, self.samples = [], rows  # samples: the last validation's, for WandbMedia
        if not rows:
            return
        n = len(rows)
        parsed = sum(r["pred"] is not None for r in rows) / n
        acc = sum(r["pred"] == r["emotion"] for r in rows) / n
        tokens = sorted(r["tokens"] for r in rows)[n // 2]
        self.log_dict(
            {"val/parse_rate": parsed, "val/acc": acc, "val/answer_tokens": float(tokens)}
        )
        for r in rows[:2]:
            log.info("val %s [%s -> %s]: %s", r["id"], r["emotion"], r["pred"], r["text"][:200])

    # ------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: every model parameter is frozen (model.trainable)")
        groups = self._param_groups(params)
        opt = build_optimizer(self.optimizer_factory, groups, lr=self.hparams.lr)
        sched = build_scheduler(
            self.scheduler_factory, opt, lambda: self.trainer.estimated_stepping_batches
        )
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _param_groups(self, params: list[nn.Parameter]) -> list[dict[str, Any]]:
        """Optimiser groups: one per ``group_lr`` entry (trainable parameters of that model
        group), then the rest at ``lr``."""
        group_lr = dict(self.hparams.get("group_lr") or {})
        if not group_lr:
            return [{"params": params}]
        named = self.model.param_groups()
        unknown = set(group_lr) - set(named)
        if unknown:
            raise ValueError(
                f"group_lr names unknown groups {sorted(unknown)}; known: {list(named)}"
            )
        groups, taken = [], set()
        for name, lr in group_lr.items():
            ps = [p for p in named[name] if p.requires_grad and id(p) not in taken]
            taken |= {id(p) for p in ps}
            if ps:
                groups.append({"params": ps, "lr": lr, "name": name})
        rest = [p for p in params if id(p) not in taken]
        return groups + ([{"params": rest, "name": "rest"}] if rest else [])

    # ------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = lightning_state(self.model, checkpoint["state_dict"])
        checkpoint["c2ser_config"] = config_dict(self.model.config)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" in checkpoint:  # DeepSpeed restores the weights from its own files
            check_lightning_state(self.model, checkpoint)

    def on_fit_end(self) -> None:
        if not self.hparams.export_dir:
            return
        from c2ser.tasks.strategies import full_parameters

        with full_parameters(self.model):  # ZeRO-3 shards -> whole weights (every rank enters)
            if self.trainer.is_global_zero:
                out = save_pretrained(self.model, self.hparams.export_dir)
                log.info("exported the trained model to %s", out)
                print(f"exported model: {out}")

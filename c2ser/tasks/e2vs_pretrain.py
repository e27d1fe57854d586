"""Emotion2Vec-S pretraining: data2vec 2.0 teacher-student + emotion2vec's utterance loss + the
semi-supervised category loss (spec section 4).

One step on a batch of waveforms (B, L)::

    CNN features (B, T, D) --detach--> EMA teacher (all frames, eval mode) -> FFN outputs of the
        top-K blocks, extra tokens removed, each instance-normalised over time, averaged = Y
    CNN features x clone_batch, each clone with its own inverse block mask (kept spans of 5
        frames, ~50 % of spans masked, same kept count per row) -> student sees kept frames only
    student output -> (kept frames + N(0, 0.01^2) mask tokens, in order) -> conv decoder

    L_frame = sum_D (decoder - Y)^2 / sqrt(D), mean over masked frames
    L_utt   = sum_D (last extra token - mean_t Y)^2 / sqrt(D), mean over utterances
    L_cat   = CLIP-style contrastive loss over the labelled utterances' embeddings (the student's
              frames mean-pooled, averaged over the clones): same emotion = positive. Clones
              are averaged, not contrasted, so the loss cannot be met by telling utterances
              apart (instance discrimination) instead of emotions.
    L = L_frame + utt_weight * L_utt + cat_weight * L_cat     (paper: 1, 0.1, 100)

The teacher is an EMA of the whole student (positional conv, extra tokens, ALiBi scale, prenet,
blocks); its decay rises linearly from ``ema_decay`` to ``ema_end_decay`` over
``ema_anneal_end_step`` optimiser steps (default: the whole run). The teacher reads the student's
CNN features, so its own CNN copy is unused. Where fairseq sums the utterance loss over the batch,
this task takes means, so the weights do not depend on the batch size.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from c2ser.models.emotion2vec_s import Decoder, Emotion2VecS
from c2ser.tasks.schedules import (
    OptimizerFactory,
    SchedulerFactory,
    build_optimizer,
    build_scheduler,
    linear_ramp,
    warmup_cosine,
)

# the paper's optimiser and schedule (lr 7.5e-5 is the ``lr`` argument, the ``task.lr`` shortcut)
PAPER_OPTIMIZER = partial(torch.optim.AdamW, betas=(0.9, 0.98), weight_decay=0.01)
PAPER_SCHEDULER = partial(warmup_cosine, warmup_fraction=0.05)


def inverse_block_mask(
    lengths: Tensor, mask_prob: float, span: int, generator: torch.Generator | None = None
) -> Tensor:
    """data2vec 2.0 inverse block masking -> (B, N) sorted indices of the *kept* frames.

    About ``(1 - mask_prob) * T / span`` spans of ``span`` frames with random starts are kept
    (overlaps allowed, so more than ``mask_prob`` ends up masked); padding is never kept. Every
    row keeps the same number of frames (the smallest count, extra ones dropped at random) so
    the student's input stays rectangular.
    """
    keeps = []
    for n in lengths.tolist():
        num = max(1, int((1 - mask_prob) * n / span + torch.rand((), generator=generator)))
        starts = torch.randperm(max(1, n - span + 1), generator=generator)[:num]
        idx = (starts[:, None] + torch.arange(span)).flatten().unique()
        keeps.append(idx[idx < n])
    n_keep = min(len(k) for k in keeps)
    rows = [k[torch.randperm(len(k), generator=generator)[:n_keep]].sort().values for k in keeps]
    return torch.stack(rows)


def instance_norm(x: Tensor, padding_mask: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalise each channel of (B, T, D) over its valid time steps."""
    if padding_mask is None:
        return F.instance_norm(x.transpose(1, 2).float(), eps=eps).transpose(1, 2)
    w = (~padding_mask)[..., None].float()
    n = w.sum(1, keepdim=True).clamp(min=1)
    mean = (x * w).sum(1, keepdim=True) / n
    var = ((x - mean) ** 2 * w).sum(1, keepdim=True) / n
    return (x - mean) / (var + eps).sqrt()


def make_targets(
    layers: list[Tensor], num_extra: int, top_k: int, padding_mask: Tensor | None
) -> Tensor:
    """Teacher FFN outputs (B, E + T, D) of every block -> (B, T, D) targets Y."""
    top = [instance_norm(t[:, num_extra:].float(), padding_mask) for t in layers[-top_k:]]
    return torch.stack(top).mean(0)


def masked_mean(x: Tensor, padding_mask: Tensor | None) -> Tensor:
    """(B, T, D) -> (B, D) mean over valid frames."""
    if padding_mask is None:
        return x.mean(1)
    w = (~padding_mask)[..., None].to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp(min=1)


def regression_loss(pred: Tensor, target: Tensor) -> Tensor:
    """data2vec 2.0's per-item loss: squared error summed over D, scaled by 1/sqrt(D); mean."""
    if pred.numel() == 0:
        return pred.sum()
    return ((pred.float() - target) ** 2).sum(-1).mean() / math.sqrt(pred.shape[-1])


def category_loss(g: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised CLIP-style loss: for each anchor, softmax over its cosine similarities to all
    other items (/ temperature); the target spreads evenly over the same-label items. Anchors
    without a positive are skipped; 0 when there is none."""
    n = len(labels)
    if n < 2:
        return g.sum() * 0.0
    z = F.normalize(g.float(), dim=-1)
    eye = torch.eye(n, dtype=torch.bool, device=g.device)
    logp = (z @ z.T / temperature).masked_fill(eye, float("-inf")).log_softmax(-1)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has = pos.any(1)
    if not has.any():
        return g.sum() * 0.0
    target = pos.float() / pos.sum(1, keepdim=True).clamp(min=1)
    return -(target * logp.masked_fill(eye, 0.0)).sum(1)[has].mean()


class Emotion2VecSPretrainTask(pl.LightningModule):
    """Teacher-student pretraining of an :class:`Emotion2VecS` (see the module doc).

    Args:
        model: the student (sizes from ``model=emotion2vec_s_*``).
        init_from: a converted official checkpoint or a previous run's ``emotion2vec_s/``
            directory to start from (student and teacher).
        clone_batch: masks per utterance sharing one teacher pass (fairseq ``clone_batch``).
        top_k: teacher blocks averaged into the targets.
        utt_weight, cat_weight: loss weights (paper: 0.1 and 100; ``cat_weight=0`` is plain
            emotion2vec pretraining).
        save_dir_name: the student is written there (``save_pretrained``) under the run
            directory at the end of fit, ready for ``c2ser extract --checkpoint``.
        lr: the optimizer's learning rate (the shortcut ``task.lr``).
        optimizer: a partial entry (default AdamW, betas (0.9, 0.98), weight decay 0.01, which
            biases, norms and ALiBi scales are exempt from).
        scheduler: a partial entry stepped every optimiser step (default: 5 % linear warmup,
            then cosine to 0 over the run, :func:`c2ser.tasks.schedules.warmup_cosine`).
    """

    def __init__(
        self,
        model: Emotion2VecS,
        init_from: str | None = None,
        lr: float | None = 7.5e-5,
        optimizer: OptimizerFactory = PAPER_OPTIMIZER,
        scheduler: SchedulerFactory | None = PAPER_SCHEDULER,
        ema_decay: float = 0.999,
        ema_end_decay: float = 0.99999,
        ema_anneal_end_step: int | None = None,
        mask_prob: float = 0.5,
        mask_length: int = 5,
        clone_batch: int = 8,
        top_k: int = 8,
        decoder_input_dropout: float = 0.1,
        mask_noise_std: float = 0.01,
        utt_weight: float = 0.1,
        cat_weight: float = 100.0,
        temperature: float = 0.1,
        save_dir_name: str | None = "emotion2vec_s",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        if init_from:
            try:
                model.load_state_dict(Emotion2VecS.from_pretrained(init_from).state_dict())
            except RuntimeError as e:
                raise ValueError(
                    f"init_from={init_from}: sizes differ from model config ({e})"
                ) from None
        self.model = model
        self.decoder = Decoder(model.config)
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        self._ema_step = 0

    # -- losses ------------------------------------------------------------------------------

    def losses(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict:
        """All loss terms for one batch (train or eval mode of the student)."""
        hp, model = self.hparams, self.model
        e, c = model.config.num_extra_tokens, hp.clone_batch
        feats = model.local_features(batch["wav"], batch["wav_mask"])
        b, t, d = feats.shape
        pad = model.frame_padding_mask(batch["wav_mask"], t)
        lengths = (~pad).sum(1) if pad is not None else torch.full((b,), t, device=feats.device)

        self.teacher.eval()
        with torch.no_grad():
            tx, bias = self.teacher.contextualize(feats.detach(), pad)
            _, layers = self.teacher.encode(tx, bias)
            y = make_targets(layers, e, hp.top_k, pad)

        x = feats.repeat_interleave(c, 0)
        pad_c = pad.repeat_interleave(c, 0) if pad is not None else None
        lengths = lengths.repeat_interleave(c).cpu()
        keep = inverse_block_mask(lengths, hp.mask_prob, hp.mask_length, generator).to(x.device)
        sx, sbias = model.contextualize(x, pad_c, keep)
        sx, _ = model.encode(sx, sbias, return_layers=False)

        kept = F.dropout(sx[:, e:], hp.decoder_input_dropout, self.training)
        dec_in = torch.randn(b * c, t, d, device=x.device, dtype=x.dtype) * hp.mask_noise_std
        dec_in = dec_in.scatter(1, keep[..., None].expand(-1, -1, d), kept)
        pred = self.decoder(dec_in)
        masked = torch.ones(b * c, t, dtype=torch.bool, device=x.device).scatter(1, keep, False)
        if pad_c is not None:
            masked &= ~pad_c
        y_c = y.repeat_interleave(c, 0)
        frame = regression_loss(pred[masked], y_c[masked])
        utt = regression_loss(sx[:, e - 1], masked_mean(y, pad).repeat_interleave(c, 0))

        labels = batch["label"].to(x.device)
        lab = labels >= 0
        g = sx[:, e:].mean(1).view(b, c, d).mean(1)  # one embedding per utterance (its clones)
        cat = category_loss(g[lab], labels[lab], hp.temperature)
        total = frame + hp.utt_weight * utt + hp.cat_weight * cat
        with torch.no_grad():
            target_var = y[~pad].float().std(0).mean() if pad is not None else y.std((0, 1)).mean()
            pred_var = (
                pred[masked].float().std(0).mean() if masked.sum() > 1 else pred.new_zeros(())
            )
        return {"loss": total, "loss_frame": frame, "loss_utt": utt, "loss_cat": cat,
                "target_std": target_var, "pred_std": pred_var,
                "labelled": lab.float().mean(), "masked_frac": masked.float().mean()}  # fmt: skip

    def training_step(self, batch: dict[str, Any], _: int) -> Tensor:
        out = self.losses(batch)
        n = len(batch["id"])
        for k, v in out.items():
            self.log(f"train/{k}", v, batch_size=n, prog_bar=k in ("loss", "loss_frame"))
        self.log("train/ema_decay", self._decay(), batch_size=n)
        return out["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        g = torch.Generator().manual_seed(batch_idx)  # the same masks every epoch
        out = self.losses(batch, g)
        for k in ("loss", "loss_frame", "loss_utt", "loss_cat"):
            self.log(f"val/{k}", out[k], batch_size=len(batch["id"]), sync_dist=True)

    # -- teacher -----------------------------------------------------------------------------

    def _anneal_steps(self) -> int:
        if self.hparams.ema_anneal_end_step:
            return self.hparams.ema_anneal_end_step
        return max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1

    def _decay(self) -> float:
        hp = self.hparams
        return linear_ramp(self.global_step, hp.ema_decay, hp.ema_end_decay, self._anneal_steps())

    @torch.no_grad()
    def ema_update(self, decay: float) -> None:
        """teacher <- decay * teacher + (1 - decay) * student, parameter by parameter."""
        for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
            t.lerp_(s.detach().to(t.dtype), 1.0 - decay)

    def on_train_batch_end(self, *_: Any) -> None:
        if self.global_step != self._ema_step:  # once per optimiser step (grad accumulation)
            self._ema_step = self.global_step
            self.ema_update(self._decay())

    def on_fit_end(self) -> None:
        name = self.hparams.save_dir_name
        if name and self.trainer.is_global_zero:
            out = self.model.save_pretrained(Path(self.trainer.default_root_dir) / name)
            print(f"pretrained Emotion2Vec-S written to {out} (c2ser extract --checkpoint {out})")

    # -- optimisation ------------------------------------------------------------------------

    def configure_optimizers(self) -> dict:
        decay, no_decay = [], []
        for name, p in [*self.model.named_parameters(), *self.decoder.named_parameters()]:
            if p.requires_grad:
                flat = p.dim() == 1 or name.endswith(".bias") or "alibi_scale" in name
                (no_decay if flat else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt = build_optimizer(self.optimizer_factory, groups, lr=self.hparams.lr)
        sched = build_scheduler(
            self.scheduler_factory, opt, lambda: self.trainer.estimated_stepping_batches
        )
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

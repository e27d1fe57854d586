"""Optimisers and learning-rate schedules as config entries, and the schedule maths they share.

A task config names its optimiser and scheduler as partial entries (lightning-hydra-template
style); the task calls them with its parameters and its optimiser::

    optimizer:
      _target_: torch.optim.AdamW
      _partial_: true
      lr: ${..lr}              # task.lr, the shortcut every recipe and sweep sets
      betas: [0.9, 0.99]
    scheduler:
      _target_: c2ser.tasks.schedules.linear_decay
      _partial_: true
      warmup_steps: 20         # total_steps: injected by the task (the run's optimiser steps)

Every scheduler here is a factory ``f(optimizer, ...) -> LambdaLR``; one that takes
``total_steps`` gets ``trainer.estimated_stepping_batches`` from :func:`build_scheduler` unless
the entry sets it. The factors behind them are plain functions of the step:

* :func:`linear_ramp`: start -> end linearly over ``steps`` (Stage 2's explicit-sample chance,
  Emotion2Vec-S's EMA teacher decay, and the decay half of :func:`linear_decay`);
* :func:`warmup_factor`: the linear warmup every warmed-up schedule starts with (but wenet's);
* :func:`warmup_lr_factor`: wenet's WarmupLR, the official C2SER schedule;
* :func:`cosine_factor`: warmup, then cosine to 0 (Emotion2Vec-S pretraining, as the paper);
* :func:`emobox_lr_factor`: SpeechBrain's LinearWarmup as EmoBox steps it, once per epoch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


# ---------------------------------------------------------------------------- factors


def linear_ramp(step: float, start: float, end: float, steps: float) -> float:
    """``start`` at step 0, ``end`` from step ``steps`` on, linear in between (``end`` for
    ``steps <= 0``)."""
    if steps <= 0:
        return end
    return start + (end - start) * min(max(step / steps, 0.0), 1.0)


def warmup_factor(step: int, warmup: int) -> float:
    """Linear warmup at optimiser step ``step`` (0-based): (step + 1) / warmup, then 1 (1
    throughout when ``warmup <= 0``)."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def warmup_lr_factor(step: int, warmup: int) -> float:
    """wenet WarmupLR factor at optimiser step ``step`` (0-based): min(s/w, sqrt(w/s)), s=step+1."""
    s = step + 1
    return min(s / warmup, math.sqrt(warmup / s)) if warmup > 0 else 1.0


def linear_decay_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then linear decay to 0 at step ``total``: the
    decay line (total - step) / (total - warmup), capped by the warmup (written out rather than
    as a :func:`linear_ramp`, which rounds differently, so that trained recipes keep their
    exact rates)."""
    return min(warmup_factor(step, warmup), max(0.0, (total - step) / max(1, total - warmup)))


def cosine_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to 0 at step ``total``."""
    if step < warmup:
        return warmup_factor(step, warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def emobox_lr_factor(epoch: int, warmup_epochs: int = 10, total_epochs: int = 100) -> float:
    """Multiplier of ``lr`` during 0-based ``epoch`` under EmoBox's per-epoch LinearWarmup
    (SpeechBrain ``LinearWarmupScheduler(lr, 10, 100)`` stepped after each validation): epoch 1
    at lr, epoch 2 at 0, back to lr by epoch 12, then linear towards 0 at ``total_epochs``."""
    if epoch == 0:
        return 1.0
    step = epoch - 1
    if step < warmup_epochs:
        return step / max(1, warmup_epochs)
    return max(0.0, (total_epochs - step) / max(1, total_epochs - warmup_epochs))


# ---------------------------------------------------------------------------- schedulers


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> LambdaLR:
    """Linear warmup to lr over ``warmup_steps`` optimiser steps, then constant."""
    return LambdaLR(optimizer, lambda s: warmup_factor(s, warmup_steps))


def warmup_lr(optimizer: torch.optim.Optimizer, warmup_steps: int = 8000) -> LambdaLR:
    """The official C2SER schedule, wenet's WarmupLR: lr * min(s / w, sqrt(w / s))."""
    return LambdaLR(optimizer, lambda s: warmup_lr_factor(s, warmup_steps))


def linear_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warmup, then linear decay to 0 at the run's last optimiser step."""
    return LambdaLR(optimizer, lambda s: linear_decay_factor(s, warmup_steps, total_steps))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05
) -> LambdaLR:
    """Linear warmup over ``warmup_fraction`` of the run, then cosine to 0 at its end."""
    total = max(1, int(total_steps))
    warmup = max(1, int(warmup_fraction * total))
    return LambdaLR(optimizer, lambda s: cosine_factor(s, warmup, total))


def emobox(
    optimizer: torch.optim.Optimizer, warmup_epochs: int = 10, total_epochs: int = 100
) -> LambdaLR:
    """EmoBox's per-epoch LinearWarmup (:func:`emobox_lr_factor`); step it once per epoch."""
    return LambdaLR(optimizer, lambda e: emobox_lr_factor(e, warmup_epochs, total_epochs))


# ---------------------------------------------------------------------------- building


def build_optimizer(
    factory: OptimizerFactory, params: Iterable[Any], **shortcuts: Any
) -> torch.optim.Optimizer:
    """``factory(params, **shortcuts)`` for the shortcuts that are not None (``task.lr``).

    The shipped entries interpolate the shortcut (``lr: ${..lr}``); a shortcut that contradicts
    a value the entry binds (``task.optimizer.lr`` overridden alone) is refused, never one of the
    two silently dropped.
    """
    given = {k: v for k, v in shortcuts.items() if v is not None}
    bound = getattr(factory, "keywords", None) or {}
    clash = [f"task.{k}={v} but task.optimizer.{k}={bound[k]}" for k, v in given.items()
             if k in bound and bound[k] != v]  # fmt: skip
    if clash:
        raise ValueError(
            f"{'; '.join(clash)}: set one of them (the optimizer entry reads task.{{name}})"
        )
    return factory(params, **given)


def build_scheduler(
    factory: SchedulerFactory | None,
    optimizer: torch.optim.Optimizer,
    total_steps: Callable[[], float],
) -> Any:
    """``factory(optimizer)``, with ``total_steps=total_steps()`` when the factory takes it and
    its entry does not set it; None without a factory (constant lr)."""
    if factory is None:
        return None
    bound = getattr(factory, "keywords", None) or {}
    if "total_steps" in inspect.signature(factory).parameters and "total_steps" not in bound:
        total = total_steps()
        if total == float("inf"):
            name = getattr(getattr(factory, "func", factory), "__name__", "this scheduler")
            raise ValueError(f"scheduler {name} needs trainer.max_steps or max_epochs")
        return factory(optimizer, total_steps=total)
    return factory(optimizer)

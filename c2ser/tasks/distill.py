"""Stage 2: self-distillation from explicit to implicit chain of thought.

The paper starts from the Stage 1 model and trains it to answer the Stage 2 prompt directly
("The speaker's emotion is happy."), while explicit-CoT samples stay in the mix with a chance that
falls linearly from 1.0 to 0.0 over the stage; the loss is plain next-token cross-entropy (the
release has no KL or other distillation term). The schedule itself is not released, so here it is
configurable: ``explicit_start`` -> ``explicit_end`` over ``decay_steps`` optimiser steps, or over
``decay_fraction`` of the run's total optimiser steps (``trainer.estimated_stepping_batches``:
``max_steps`` or epochs x batches / accumulation).

The datamodule (``stage=2, keep_explicit=true``) carries both pairs of every utterance; this task
draws, per sample (or per batch: ``per: batch``, the paper's wording), which one to train on.
The explicit targets are the manifest's ``cot_target``: template CoT, or the Stage 1 model's own
answers written by ``c2ser distill-targets`` (the teacher-generated variant,
:mod:`c2ser.inference.distill_targets`). The draws are seeded
by (seed, step, batch index, rank), so a resumed run repeats them.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from c2ser.tasks.cot_sft import CotSFTTask
from c2ser.tasks.schedules import linear_ramp


def mix_explicit(
    batch: dict[str, Any], prob: float, rng: random.Random, per: str = "sample"
) -> tuple[dict[str, Any], list[bool]]:
    """Swap rows to their explicit (Stage 1) prompt/target pair with probability ``prob``.

    Returns the new batch (the input is not modified) and which rows are explicit.
    """
    n = len(batch["prompt_ids"])
    if per == "batch":
        chosen = [rng.random() < prob] * n
    elif per == "sample":
        chosen = [rng.random() < prob for _ in range(n)]
    else:
        raise ValueError(f"per must be 'sample' or 'batch', got {per!r}")
    out = dict(batch)
    for key in ("prompt_ids", "target_ids"):
        explicit = batch[f"explicit_{key}"]
        out[key] = [e if c else i for c, e, i in zip(chosen, explicit, batch[key], strict=True)]
    return out, chosen


class DistillTask(CotSFTTask):
    """:class:`CotSFTTask` whose training batches mix explicit samples in by a decaying chance.

    Args (beyond :class:`CotSFTTask`'s; ``init_from`` should name the Stage 1 model):
        explicit_start / explicit_end: chance of an explicit sample at the start / end.
        decay_steps: optimiser steps of the decay; None: ``decay_fraction`` of the run.
        per: ``sample`` (each row drawn independently) or ``batch`` (one draw per batch).
    """

    def __init__(
        self,
        *args: Any,
        explicit_start: float = 1.0,
        explicit_end: float = 0.0,
        decay_steps: int | None = None,
        decay_fraction: float = 1.0,
        per: str = "sample",
        **kwargs: Any,
    ) -> None:
        if per not in ("sample", "batch"):
            raise ValueError(f"per must be 'sample' or 'batch', got {per!r}")
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])

    def decay_length(self) -> int:
        hp = self.hparams
        if hp.decay_steps is not None:
            return int(hp.decay_steps)
        total = self.trainer.estimated_stepping_batches
        if total == float("inf"):
            raise ValueError("set task.decay_steps or a finite trainer.max_steps/max_epochs")
        return max(1, round(hp.decay_fraction * total))

    def explicit_prob(self, step: int) -> float:
        hp = self.hparams
        return linear_ramp(step, hp.explicit_start, hp.explicit_end, self.decay_length())

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:
            return None
        if "explicit_prompt_ids" not in batch:
            raise ValueError("Stage 2 needs data.stage=2 and data.keep_explicit=true")
        prob = self.explicit_prob(self.global_step)
        batch, chosen = mix_explicit(batch, prob, self.step_rng(batch_idx), self.hparams.per)
        n = len(chosen)
        self.log("train/explicit_prob", prob, batch_size=n)
        self.log("train/explicit_frac", sum(chosen) / n, batch_size=n)
        return super().training_step(batch, batch_idx)

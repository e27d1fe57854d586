"""Stage 3: GRPO on a verifiable emotion reward, after Stage 2's self-distillation.

Each training step, for every utterance of the batch:

1. **Rollout.** ``group_size`` (G) answers are sampled to the batch's prompt (the Stage 2 prompt,
   or with ``data.prompt_paraphrase`` a training-only rewording of it) in one batched
   ``C2SER.generate`` call (KV cache; each row repeated G times; ``temperature``, ``top_p``,
   ``top_k``), seeded by (seed, step, batch, rank) so that a resumed run draws the same answers.
2. **Reward** (:class:`~c2ser.tasks.reward.EmotionReward`): the parsed label against the
   reference, a format term, optional partial credit from an emotion-similarity matrix.
3. **Advantages** normalised within each group (:func:`group_advantages`); a group whose G rewards
   are all equal carries no signal and gets exactly zero.
4. **Objective** (:func:`policy_loss`): PPO's clipped surrogate ``min(rho A, clip(rho) A)`` with
   ``rho = pi / pi_old`` (the sampling policy's log-probs) plus ``kl_coef`` x the k3 estimator of
   KL(pi || pi_ref) to the frozen starting policy, averaged over every answer token of the batch
   (the DAPO token mean: long answers are not down-weighted). With ``ppo_epochs=1`` rho is 1 and
   the surrogate is the plain policy gradient; ``ppo_epochs=k`` trains k optimiser steps on one
   rollout (the batches of the k-1 steps in between go unused; a run resumed in the middle of such
   a cycle draws a fresh rollout), where the clip matters.

**The reference policy** is the starting model. What differs from it is only what trains, so the
task keeps a frozen copy of the trainable tensors alone and swaps it in for the reference pass
(:meth:`GRPOTask.reference_policy`): with LoRA (``model.trainable=[lora]``, the paper-size
default) that is the starting adapter, and no second copy of the base LLM exists. peft's
``disable_adapter()`` would be wrong: the start is a trained adapter, not none. The tiny demo
model trains its random Qwen2 too (the ``llm`` group), so its copy is the whole model (~40 MB).

Policy, sampling-policy and reference log-probs must come from one deterministic function (or the
ratio and the KL measure dropout masks, and KL is not 0 at step 0): the experiments set
``model.dropout=0`` and ``model.lora_dropout=0``. Scores use the sampling temperature
(:meth:`~c2ser.models.c2ser_llm.C2SER.target_logprobs`), so the trained distribution is the one
sampled from.

Everything else is :class:`~c2ser.tasks.cot_sft.CotSFTTask`'s: optimiser and schedule, what the
checkpoints hold, ``init_from`` (the Stage 2 export), the export at the end of fit, and
validation (teacher-forced loss on the implicit targets, greedy answers: ``val/acc``).
Logged per rollout: ``train/reward`` (mean), ``train/reward_std`` (mean std within groups),
``train/acc``, ``train/answer_tokens``, ``train/zero_adv_groups`` (share of groups without
signal); per step: ``train/loss``, ``train/kl``, ``train/clip_frac``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from c2ser.core.tokens import EOD_ID
from c2ser.tasks.cot_sft import CotSFTTask
from c2ser.tasks.reward import EmotionReward


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``(B, G)`` rewards -> ``(r - mean) / (std + eps)`` within each row (group).

    A group of equal rewards gets exactly 0: its ``r - mean`` is float rounding (8 x 1.2 does not
    average to 1.2 in float32), which would otherwise train as a small spurious signal."""
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, keepdim=True, unbiased=False)
    flat = (rewards == rewards[:, :1]).all(1, keepdim=True)
    return torch.where(flat, torch.zeros_like(rewards), (rewards - mean) / (std + eps))


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    kl_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-mean clipped surrogate + ``kl_coef`` x k3 KL; log-probs ``(N, T)``, advantages
    ``(N,)``, ``mask`` ``(N, T)`` (True on answer tokens). Returns the loss and (kl, clip_frac)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    log_r = ref_logp - logp
    kl = torch.exp(log_r) - log_r - 1  # k3: unbiased, >= 0, exactly 0 where pi == pi_ref
    n = mask.sum()
    loss = ((kl_coef * kl - surrogate) * mask).sum() / n
    clipped = ((ratio - 1).abs() > clip) & mask
    return loss, {"kl": (kl.detach() * mask).sum() / n, "clip_frac": clipped.sum() / n}


class GRPOTask(CotSFTTask):
    """Stage 3 (see the module doc).

    Args (beyond :class:`CotSFTTask`'s; ``init_from`` names the Stage 2 model, and
    ``max_new_tokens`` is the rollouts' generation budget as well as validation's):
        group_size: answers sampled per utterance (G).
        temperature / top_p / top_k: the sampling of the rollouts (``top_k=0``: off).
        clip: PPO's clip range epsilon.
        kl_coef: beta of the KL penalty to the starting policy (0: no reference pass).
        ppo_epochs: optimiser steps per rollout.
        reward: :class:`~c2ser.tasks.reward.EmotionReward` arguments.
    """

    def __init__(
        self,
        *args: Any,
        group_size: int = 8,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        clip: float = 0.2,
        kl_coef: float = 0.04,
        ppo_epochs: int = 1,
        reward: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if group_size < 2 or ppo_epochs < 1:
            raise ValueError(f"need group_size >= 2, ppo_epochs >= 1 ({group_size}, {ppo_epochs})")
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.reward = EmotionReward(**(reward or {}))
        # the starting policy: init_from is loaded by now; a resumed run's weights come later
        self._reference = [p.detach().clone() for p in self._trainable()]
        self._rollout: dict[str, Any] | None = None
        self._uses = 0

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        # the strategy has placed (and maybe cast) the model: keep the reference alike, once
        self._reference = [
            r.to(p.device, p.dtype) for r, p in zip(self._reference, self._trainable())
        ]

    @contextmanager
    def reference_policy(self) -> Iterator[None]:
        """The model with the starting values of its trainable tensors (swapped, not copied)."""
        params = self._trainable()
        current = [p.data for p in params]
        try:
            for p, r in zip(params, self._reference, strict=True):
                p.data = r
            yield
        finally:
            for p, c in zip(params, current):
                p.data = c

    def _logprobs(self, ro: dict[str, Any]) -> torch.Tensor:
        return self.model.target_logprobs(
            ro["mel"], ro["mel_mask"], ro["ssl"], ro["prompt_ids"], ro["answer_ids"],
            temperature=self.hparams.temperature,
        )  # fmt: skip

    @torch.no_grad()
    def rollout(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Sample G answers per utterance, score them, and compute the advantages and the
        reference (and, for ``ppo_epochs > 1``, sampling-policy) log-probs."""
        hp, g = self.hparams, self.hparams.group_size
        n = len(batch["id"])
        ro: dict[str, Any] = {
            k: None if batch[k] is None else batch[k].repeat_interleave(g, 0)
            for k in ("mel", "mel_mask", "ssl")
        }
        ro["prompt_ids"] = [p for p in batch["prompt_ids"] for _ in range(g)]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.step_rng(batch_idx).getrandbits(63))
            ids = self.model.generate(
                ro["mel"], ro["mel_mask"], ro["ssl"], ro["prompt_ids"],
                max_new_tokens=hp.max_new_tokens, do_sample=True, temperature=hp.temperature,
                top_p=hp.top_p, top_k=hp.top_k,
            )  # fmt: skip
        finished = [len(a) < hp.max_new_tokens for a in ids]
        ro["answer_ids"] = [a + [EOD_ID] * f for a, f in zip(ids, finished)]
        tok = self.trainer.datamodule.tokenizer
        scored = [
            self.reward(tok.decode(a, skip_special_tokens=True), batch["emotion"][i // g],
                        batch["language"][i // g], len(a), f)
            for i, (a, f) in enumerate(zip(ids, finished))
        ]  # fmt: skip
        rewards = [s for s, _ in scored]
        correct = [pred == batch["emotion"][i // g] for i, (_, pred) in enumerate(scored)]
        r = torch.tensor(rewards, device=self.device).view(n, g)
        ro["advantages"] = group_advantages(r).flatten()
        lengths = torch.tensor([len(a) for a in ro["answer_ids"]], device=self.device)
        ro["mask"] = (
            torch.arange(int(lengths.max()), device=self.device)[None, :] < lengths[:, None]
        )
        ro["old_logp"] = self._logprobs(ro) if hp.ppo_epochs > 1 else None
        if hp.kl_coef > 0:
            with self.reference_policy():
                ro["ref_logp"] = self._logprobs(ro)
        stats = {
            "reward": r.mean(),
            "reward_std": r.std(1, unbiased=False).mean(),
            "acc": torch.tensor(correct, dtype=torch.float, device=self.device).mean(),
            "answer_tokens": torch.tensor([len(a) for a in ids], dtype=torch.float).mean(),
            "zero_adv_groups": (ro["advantages"].view(n, g) == 0).all(1).float().mean(),
        }
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, batch_size=n, sync_dist=True)
        return ro

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:
            return None
        if self._rollout is None or self._uses >= self.hparams.ppo_epochs:
            self._rollout, self._uses = self.rollout(batch, batch_idx), 0
        ro, hp = self._rollout, self.hparams
        self._uses += 1
        logp = self._logprobs(ro)
        old = logp.detach() if ro["old_logp"] is None else ro["old_logp"]
        ref = ro.get("ref_logp", logp.detach())
        loss, stats = policy_loss(logp, old, ref, ro["advantages"], ro["mask"], hp.clip, hp.kl_coef)
        n = len(ro["answer_ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, batch_size=n, sync_dist=True)
        return loss

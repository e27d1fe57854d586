"""Stage 3 GRPO: the reward table, advantages, the objective, the reference policy, and a few CPU
steps that raise the reward of a weak Stage 2 model on features that encode the label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from c2ser.data.sft import SFTDataModule
from c2ser.data.tokenizer import load_tokenizer
from c2ser.models.c2ser_llm import C2SER
from c2ser.tasks.cot_sft import CotSFTTask
from c2ser.tasks.grpo import GRPOTask, group_advantages, policy_loss
from c2ser.tasks.reward import EmotionReward
from tests.factories import tiny_qwen2_config

EN, ZH = "The speaker's emotion is happy.", "这条语音的情感为高兴"
REWARD = EmotionReward(correct=1.0, format=0.2, max_tokens=10, similarity={"sad": {"fearful": 0.5}})


@pytest.mark.parametrize(
    ("text", "ref", "lang", "tokens", "finished", "want"),
    [
        (EN, "happy", "en", 7, True, 1.2),
        (ZH, "happy", "zh", 6, True, 1.2),
        ("The speaker's emotion is sad.", "happy", "en", 7, True, 0.2),  # wrong, well formed
        ("这条语音的情感为悲伤", "happy", "zh", 6, True, 0.2),
        ("The speaker is not happy, but sad.", "sad", "en", 9, True, 1.2),  # negation skipped
        ("说话人不高兴，很难过", "sad", "zh", 8, True, 1.2),
        ("The speaker is not happy.", "happy", "en", 6, True, 0.0),  # negated: no label
        ("The speaker's emotion is fearful.", "sad", "en", 7, True, 0.7),  # partial credit
        ("The speaker's emotion is sad.", "fearful", "en", 7, True, 0.7),  # read both ways
        (EN, "happy", "en", 11, True, 1.0),  # over the token budget: no format term
        (EN, "happy", "en", 7, False, 1.0),  # cut off by the generation limit
        ("I cannot tell.", "happy", "en", 4, True, 0.0),  # does not parse
        ("", "happy", "en", 0, True, 0.0),
    ],
)
def test_reward_table(text, ref, lang, tokens, finished, want):
    reward, _ = REWARD(text, ref, lang, tokens, finished)
    assert reward == pytest.approx(want)


def test_reward_refuses_a_bad_similarity_matrix():
    with pytest.raises(ValueError, match="labels"):
        EmotionReward(similarity={"sad": {"bored": 0.5}})
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EmotionReward(similarity={"sad": {"fearful": 1.0}})


def test_group_advantages_normalise_and_zero_variance_groups_get_zero():
    r = torch.tensor([[1.2, 0.2] * 4, [1.2] * 8, [0.7] * 8])  # G = 8
    a = group_advantages(r)
    torch.testing.assert_close(a[0], torch.tensor([1.0, -1.0] * 4), atol=1e-3, rtol=0)
    # every answer right (1.2 each): the float mean of 8 x 1.2 is not 1.2, yet no signal
    assert torch.equal(a[1:], torch.zeros(2, 8))


def test_zero_advantage_groups_give_zero_gradient():
    """Without KL a group of equal rewards contributes no gradient; the others do, and a better
    answer is pushed up, a worse one down."""
    r = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    adv = group_advantages(r).flatten()
    logp = torch.randn(4, 3).mul(0.1).sub(1.0).requires_grad_()
    mask = torch.ones(4, 3, dtype=torch.bool)
    loss, stats = policy_loss(logp, logp.detach(), logp.detach(), adv, mask, 0.2, 0.0)
    loss.backward()
    assert torch.equal(logp.grad[2:], torch.zeros(2, 3))
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()  # descent raises row 0
    assert float(stats["kl"]) == 0.0 and float(stats["clip_frac"]) == 0.0


def test_clip_and_kl_terms():
    """The surrogate stops pushing once the ratio leaves [1 - eps, 1 + eps] in the advantage's
    direction; k3 is exp(r) - r - 1 of r = log pi_ref - log pi."""
    old = torch.zeros(1, 2)
    logp = torch.tensor([[0.5, -0.05]], requires_grad=True)  # ratios 1.65 (clipped), 0.95
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = policy_loss(logp, old, old, torch.tensor([1.0]), mask, 0.2, 0.1)
    loss.backward()
    assert float(stats["clip_frac"]) == 0.5
    kl = np.exp(-0.5) + 0.5 - 1, np.exp(0.05) - 0.05 - 1
    assert float(stats["kl"]) == pytest.approx(np.mean(kl))
    k3_grad = 0.1 * (1 - np.exp(-0.5)) / 2  # d/dlogp of beta * k3, token mean
    assert float(logp.grad[0, 0]) == pytest.approx(k3_grad)  # clipped: only the KL pulls
    assert float(logp.grad[0, 1]) < -0.4  # inside the clip range: -ratio * A / 2 + KL


# ------------------------------------------------------------------- tiny models on oracle features
DIM = 8  # one-hot emotion (7) + noise
TINY_LLM = dict(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, initializer_range=0.2)
TINY = dict(
    encoder_dim=32, encoder_layers=1, encoder_heads=2, encoder_ffn=64, connector_layers=1,
    connector_heads=2, connector_ffn=64, dropout=0.0, lora_dropout=0.0, llm_dtype="float32",
    use_whisper=False, ssl_dim=DIM, ssl_tokens=1,
    trainable=["connector", "projection", "speech_embeddings", "lora", "llm"],
)  # fmt: skip


def tiny_model() -> C2SER:
    torch.manual_seed(0)
    return C2SER(llm_config=tiny_qwen2_config(**TINY_LLM), **TINY)


def oracle_corpus(root: Path, wav_file, n: int = 8) -> Path:
    """n utterances, happy / sad alternating over en / zh (the last two for validation), with
    Emotion2Vec-S-shaped rows that encode the emotion."""
    (root / "ssl").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        emotion, lang = ("happy", "sad")[i % 2], ("en", "en", "zh", "zh")[i % 4]
        wav_file(f"u{i}.wav", seconds=0.3)
        x = np.random.default_rng(i).normal(0, 0.1, (1, DIM)).astype(np.float32)
        x[0, 1 if emotion == "happy" else 3] += 3.0
        np.save(root / "ssl" / f"u{i}.npy", x)
        rows.append(
            {"index": f"u{i}", "emotion": emotion, "wav": f"u{i}.wav", "language": lang,
             "text": "We did it." if lang == "en" else "我们做到了。",
             "split": "train" if i < n - 2 else "val", "speed": "high", "pitch": "medium",
             "volume": "low"}
        )  # fmt: skip
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest


def datamodule(manifest: Path) -> SFTDataModule:
    return SFTDataModule(str(manifest), stage=2, tokenizer=load_tokenizer(), max_frames=100_000,
                         ssl_dir=str(manifest.parent / "ssl"), ssl_dim=DIM, ssl_rows=1)  # fmt: skip


class Metrics(pl.Callback):
    """The logged scalars of every training step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def fit(task: pl.LightningModule, dm, steps: int, root: Path) -> Metrics:
    metrics = Metrics()
    pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root),
        limit_val_batches=0, callbacks=[metrics], num_sanity_val_steps=0,
    ).fit(task, datamodule=dm)  # fmt: skip
    return metrics


def grpo(init_from: Path | None = None, **kw) -> GRPOTask:
    kw = {"group_size": 4, "max_new_tokens": 12, "val_generate": 0, "scheduler": None, **kw}
    return GRPOTask(tiny_model(), init_from=str(init_from) if init_from else None, **kw)


def test_target_logprobs_are_the_forward_loss_per_token(tmp_path, wav_file):
    dm = datamodule(oracle_corpus(tmp_path, wav_file))
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    model = tiny_model().eval()
    targets = [t[: 2 + i] for i, t in enumerate(b["target_ids"])]  # rows of unequal length
    args = (b["mel"], b["mel_mask"], b["ssl"], b["prompt_ids"], targets)
    with torch.no_grad():
        logp = model.target_logprobs(*args)
        loss = model(*args).loss
    n = [len(t) for t in targets]
    assert logp.shape == (len(n), max(n))
    assert all((logp[i, k:] == 0).all() and (logp[i, :k] < 0).all() for i, k in enumerate(n))
    assert float(-logp.sum() / sum(n)) == pytest.approx(float(loss), rel=1e-5)
    with torch.no_grad():
        hot = model.target_logprobs(*args, temperature=0.5)
    assert not torch.allclose(hot, logp)


def test_kl_is_exactly_zero_at_step_0_and_the_reference_stays_the_start(tmp_path, wav_file):
    """Step 0 scores the policy against itself: KL exactly 0. After updates the KL is positive,
    the reference pass still sees the starting weights, and the model gets its own back."""
    dm = datamodule(oracle_corpus(tmp_path, wav_file))
    task = grpo(lr=3e-3, kl_coef=0.1, temperature=1.5)
    start = [p.detach().clone() for p in task.model.parameters() if p.requires_grad]
    metrics = fit(task, dm, 4, tmp_path)
    assert metrics.steps[0]["train/kl"] == 0.0
    assert metrics.steps[-1]["train/kl"] > 0
    trainable = [p for p in task.model.parameters() if p.requires_grad]
    with task.reference_policy():
        assert all(torch.equal(p, s) for p, s in zip(trainable, start))
    assert any(not torch.equal(p, s) for p, s in zip(trainable, start))
    assert {"train/reward", "train/reward_std", "train/answer_tokens", "train/zero_adv_groups",
            "train/clip_frac", "train/acc"} <= set(metrics.steps[0])  # fmt: skip


def test_ppo_epochs_reuse_a_rollout_and_clip(tmp_path, wav_file):
    """With 2 optimiser steps per rollout the second step's ratio is no longer 1. (A random
    model's answers never parse: a reward by answer length gives the groups some signal.)"""
    dm = datamodule(oracle_corpus(tmp_path, wav_file))
    task = grpo(lr=3e-2, ppo_epochs=2, clip=0.01)
    task.reward = lambda text, ref, lang, tokens, finished: (float(len(text) % 3), None)
    metrics = fit(task, dm, 2, tmp_path)
    assert metrics.steps[0]["train/clip_frac"] == 0.0
    assert metrics.steps[1]["train/clip_frac"] > 0.0


def test_grpo_steps_raise_the_reward_of_a_weak_stage2(tmp_path, wav_file):
    """A Stage 2 model trained briefly on label-carrying features answers in the right form but
    picks the label at about chance; GRPO steps raise the mean reward of its sampled answers."""
    dm = datamodule(oracle_corpus(tmp_path, wav_file))
    sft = CotSFTTask(tiny_model(), lr=1e-2, scheduler=None, val_generate=0,
                     export_dir=str(tmp_path / "stage2"))  # fmt: skip
    fit(sft, dm, 20, tmp_path / "sft")
    task = grpo(tmp_path / "stage2", lr=3e-3, kl_coef=0.01, max_new_tokens=10)
    rewards = [s["train/reward"] for s in fit(task, dm, 8, tmp_path / "grpo").steps]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.2, rewards


@pytest.mark.parametrize("experiment", ["stage3_grpo_demo", "stage3_grpo_7b"])
def test_experiments_compose(experiment):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "task.init_from=/x/model"])
    assert cfg.task._target_ == "c2ser.tasks.grpo.GRPOTask" and cfg.data.stage == 2
    assert not cfg.data.keep_explicit and cfg.model.lora_dropout == 0.0
    assert cfg.model.dropout == 0.0 and cfg.task.group_size >= 2
    assert ("llm" in cfg.model.trainable) == (experiment == "stage3_grpo_demo")
    assert cfg.optimized_metric == "val/acc"

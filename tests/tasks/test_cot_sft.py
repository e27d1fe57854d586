"""Stage 1 task: optimiser schedule, loss falls, label masking, checkpoints round-trip, configs."""

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from c2ser.core.tokens import EOD_ID
from c2ser.data.sft import SFTDataModule
from c2ser.data.tokenizer import load_tokenizer
from c2ser.models.c2ser_llm import C2SER, preset_config
from c2ser.models.checkpoint import load_weights, trainable_state
from c2ser.tasks.cot_sft import CotSFTTask
from c2ser.tasks.schedules import (
    linear_decay_factor,
    linear_warmup,
    warmup_factor,
    warmup_lr,
    warmup_lr_factor,
)
from tests.factories import make_tiny_qwen2, tiny_qwen2_config

REPO = Path(__file__).resolve().parents[2]
WARMUP_1 = partial(linear_warmup, warmup_steps=1)  # linear warmup over one step, then constant
# initializer_range 0.2: a frozen random LM head at Qwen's 0.02 is too flat to fit any target
TINY_LLM = dict(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, initializer_range=0.2)
TINY = dict(
    encoder_dim=32, encoder_layers=1, encoder_heads=2, encoder_ffn=64, connector_layers=1,
    connector_heads=2, connector_ffn=64, dropout=0.0, lora_dropout=0.0, llm_dtype="float32",
)  # fmt: skip


def tiny_model(llm_path=None, **kw) -> C2SER:
    torch.manual_seed(0)
    if llm_path is None:
        return C2SER(llm_config=tiny_qwen2_config(**TINY_LLM), **TINY, **kw)
    return C2SER(llm_path=str(llm_path), **TINY, **kw)


def make_corpus(root: Path, wav_file, n: int = 4) -> Path:
    """n utterances (the last one is val) with style bins and Emotion2Vec-S features in ssl/."""
    rows = []
    (root / "ssl").mkdir(exist_ok=True)
    for i in range(n):
        wav_file(f"u{i}.wav", seconds=0.4 + 0.1 * i, freq=180 + 40 * i)
        feats = np.random.default_rng(i).standard_normal((10, 768)).astype(np.float32)
        np.save(root / "ssl" / f"u{i}.npy", feats)
        lang = ("en", "zh")[i % 2]
        text = "We did it." if lang == "en" else "我们做到了。"
        rows.append(
            {"index": f"u{i}", "emotion": ("happy", "sad")[i % 2], "wav": f"u{i}.wav",
             "text": text, "language": lang, "split": "train" if i < n - 1 else "val",
             "speed": "high", "pitch": "medium", "volume": "low"}
        )  # fmt: skip
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest


def datamodule(manifest: Path, **kw) -> SFTDataModule:
    kw.setdefault("ssl_dir", str(manifest.parent / "ssl"))
    return SFTDataModule(str(manifest), tokenizer=load_tokenizer(), max_frames=100_000, **kw)


class LossLog(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def fit(task, dm, steps: int, root: Path, ckpt_path=None, **kw) -> LossLog:
    log = LossLog()
    opts = dict(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root),
        limit_val_batches=0, callbacks=[log], num_sanity_val_steps=0,
    )  # fmt: skip
    pl.Trainer(**{**opts, **kw}).fit(task, datamodule=dm, ckpt_path=ckpt_path)
    return log


def test_schedules():
    assert warmup_lr_factor(0, 8000) == pytest.approx(1 / 8000)
    assert warmup_lr_factor(7999, 8000) == pytest.approx(1.0)
    assert warmup_lr_factor(31999, 8000) == pytest.approx(0.5)  # sqrt(8000 / 32000)
    assert [warmup_factor(s, 4) for s in (0, 1, 3, 100)] == [0.25, 0.5, 1.0, 1.0]
    task = CotSFTTask(tiny_model(), scheduler=partial(warmup_lr, warmup_steps=10))
    opt = task.configure_optimizers()["optimizer"]
    group = opt.param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.99), 1e-6, 0.01)
    trainable = {id(p) for p in task.model.parameters() if p.requires_grad}
    assert {id(p) for p in group["params"]} == trainable
    assert not any(p.requires_grad for p in task.model.param_groups()["llm"])


def test_linear_decay_and_group_learning_rates():
    assert [linear_decay_factor(s, 10, 110) for s in (0, 9, 60, 110, 200)] == pytest.approx(
        [0.1, 1.0, 0.5, 0.0, 0.0]
    )
    task = CotSFTTask(
        tiny_model(),
        lr=1e-3,
        scheduler=partial(linear_warmup, warmup_steps=8000),
        group_lr={"connector": 1e-2},
    )
    groups = task.configure_optimizers()["optimizer"].param_groups
    assert [(g["name"], g["initial_lr"]) for g in groups] == [("connector", 1e-2), ("rest", 1e-3)]
    connector = {id(p) for p in task.model.param_groups()["connector"]}
    assert {id(p) for p in groups[0]["params"]} == connector
    trainable = {id(p) for p in task.model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    with pytest.raises(ValueError, match="unknown groups"):
        CotSFTTask(tiny_model(), group_lr={"decoder": 1e-2}).configure_optimizers()


def test_label_masking_prompt_and_speech(tmp_path, wav_file):
    dm = datamodule(make_corpus(tmp_path, wav_file))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model = tiny_model()
    speech, lengths = model.encode_speech(batch["mel"], batch["mel_mask"], batch["ssl"])
    _, mask, _, labels = model.assemble(speech, lengths, batch["prompt_ids"], batch["target_ids"])
    for b, (p, t) in enumerate(zip(batch["prompt_ids"], batch["target_ids"])):
        n = len(p) + int(lengths[b]) + 2  # prompt, BOS, speech, EOS: all masked
        assert (labels[b, :n] == -100).all()
        assert labels[b, n : n + len(t)].tolist() == t and t[-1] == EOD_ID
        assert int(mask[b].sum()) == n + len(t)


def test_training_steps_reduce_loss(tmp_path, wav_file):
    """A few CPU steps of a tiny C2SER on one repeated batch: the loss must fall clearly."""
    dm = datamodule(make_corpus(tmp_path, wav_file))
    task = CotSFTTask(tiny_model(), lr=1e-2, scheduler=WARMUP_1, val_generate=0)
    log = fit(task, dm, 12, tmp_path)
    assert len(log.losses) == 12 and log.losses[-1] < 0.85 * log.losses[0], log.losses
    assert all(b < a + 0.05 for a, b in zip(log.losses, log.losses[1:])), log.losses


@pytest.mark.parametrize(
    ("model_kw", "stage"),
    [({"use_ssl": False}, 1), ({"use_whisper": False}, 1), ({}, 2)],
    ids=["w/o Emotion2Vec-S", "w/o Whisper", "w/o CoT"],
)
def test_ablations_train(tmp_path, wav_file, model_kw, stage):
    """The paper's ablations are switches of the same recipe, and each one trains: no
    Emotion2Vec-S features, no Whisper path, or implicit targets from the start (no CoT)."""
    manifest = make_corpus(tmp_path, wav_file)
    dm = datamodule(
        manifest, stage=stage, **({} if model_kw.get("use_ssl", True) else {"ssl_dir": None})
    )
    task = CotSFTTask(tiny_model(**model_kw), lr=1e-2, scheduler=WARMUP_1, val_generate=0)
    log = fit(task, dm, 8, tmp_path)
    assert log.losses[-1] < 0.9 * log.losses[0], log.losses


def test_validation_decodes_and_scores(tmp_path, wav_file):
    """Validation logs the loss and, for the first utterances, parse rate / accuracy / length."""
    pytest.importorskip("c2ser.evaluation.parse")
    dm = datamodule(make_corpus(tmp_path, wav_file, n=6))
    task = CotSFTTask(tiny_model(), lr=1e-2, val_generate=1, max_new_tokens=4)
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    m = trainer.callback_metrics
    assert {"val/loss", "val/parse_rate", "val/acc", "val/answer_tokens"} <= set(m)
    assert 0 <= float(m["val/parse_rate"]) <= 1 and 0 < float(m["val/answer_tokens"]) <= 4


def logits_of(model: C2SER, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        args = (batch["mel"], batch["mel_mask"], batch["ssl"], batch["prompt_ids"])
        return model(*args, batch["target_ids"], return_logits=True).logits


def test_checkpoint_export_and_load_round_trip(tmp_path, wav_file):
    """Lightning .ckpt keeps only trainable weights + config; export and reload give equal logits."""
    llm = make_tiny_qwen2(tmp_path / "qwen2", **TINY_LLM)
    dm = datamodule(make_corpus(tmp_path, wav_file))
    export = tmp_path / "export"
    task = CotSFTTask(tiny_model(llm), lr=3e-3, scheduler=WARMUP_1,
                      val_generate=0, export_dir=str(export))  # fmt: skip
    fit(task, dm, 3, tmp_path, enable_checkpointing=True)
    ckpt_path = next((tmp_path / "checkpoints").glob("*.ckpt"))
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    keys = {k.removeprefix("model.") for k in ckpt["state_dict"]}
    assert keys == set(trainable_state(task.model))
    assert not any(k.startswith("llm.") and "lora_" not in k for k in keys)
    assert ckpt["c2ser_config"]["encoder_dim"] == 32

    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    want = logits_of(task.model, batch)
    assert torch.equal(logits_of(C2SER.from_pretrained(export), batch), want)
    fresh = tiny_model(llm)
    assert not torch.equal(logits_of(fresh, batch), want)
    load_weights(fresh, ckpt_path)
    assert torch.equal(logits_of(fresh, batch), want)

    # resuming from the trimmed checkpoint works (base LLM comes from llm_path)
    task2 = CotSFTTask(tiny_model(llm), lr=3e-3, scheduler=WARMUP_1,
                       val_generate=0)  # fmt: skip
    fit(task2, dm, 4, tmp_path / "resume", ckpt_path=str(ckpt_path))


def test_random_base_llm_is_kept_whole(tmp_path, wav_file):
    """Without an llm_path the base LLM exists nowhere else: checkpoints and exports keep it."""
    dm = datamodule(make_corpus(tmp_path, wav_file))
    task = CotSFTTask(tiny_model(), lr=3e-3, val_generate=0, export_dir=str(tmp_path / "m"))
    fit(task, dm, 2, tmp_path, enable_checkpointing=True)
    ckpt = torch.load(next((tmp_path / "checkpoints").glob("*.ckpt")), weights_only=False)
    assert len(ckpt["state_dict"]) == len(task.model.state_dict())
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    other = tiny_model()
    torch.nn.init.normal_(other.llm.get_input_embeddings().weight)
    load_weights(other, tmp_path / "m")
    assert torch.equal(logits_of(other, batch), logits_of(task.model, batch))


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("experiment", ["cot_explicit", "cot_implicit"])
@pytest.mark.parametrize(
    "ablation", [[], ["model.use_whisper=false"], ["model.use_ssl=false"]], ids=str
)
def test_experiments_compose_with_ablations(experiment, ablation):
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_class

    extra = ["task.init_from=/x/model"] if experiment == "cot_implicit" else []
    cfg = compose_train([f"experiment={experiment}", *ablation, *extra])
    HydraConfig.instance().set_config(cfg)
    assert get_class(cfg.task._target_) is not None and get_class(cfg.data._target_)
    assert cfg.data.stage == (1 if experiment == "cot_explicit" else 2)
    assert cfg.data.keep_explicit == (experiment == "cot_implicit")
    for flag in ablation:
        key, value = flag.removeprefix("model.").split("=")
        assert str(cfg.model[key]).lower() == value


def test_paper_sizes_compose():
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_train(["experiment=cot_explicit", "model=c2ser_7b"])
    HydraConfig.instance().set_config(cfg)
    m = preset_config(**{k: v for k, v in cfg.model.items() if not k.startswith("_")})
    assert (m.encoder_dim, m.encoder_layers, m.encoder_heads, m.encoder_ffn) == (1024, 24, 16, 4096)
    assert (m.connector_layers, m.connector_heads, m.connector_ffn) == (4, 4, 2560)
    assert (m.lora_r, m.lora_alpha, m.lora_dropout) == (8, 32, 0.1)
    assert cfg.task._target_.endswith("CotSFTTask")


def test_pool_downsampler_statistics_are_estimated_once(tmp_path, wav_file):
    """``downsampler=pool``: fit estimates the encoder-output statistics from training audio
    before the first step (equal to the moments computed by hand), and a run that starts from
    those weights keeps them instead of re-estimating."""
    dm = datamodule(make_corpus(tmp_path, wav_file))
    model = tiny_model(downsampler="pool")
    assert model.needs_speech_statistics()
    task = CotSFTTask(model, lr=0.0, scheduler=WARMUP_1, val_generate=0)
    fit(task, dm, 1, tmp_path)
    assert not model.needs_speech_statistics()
    frames = []
    with torch.no_grad():
        for batch in dm.train_dataloader():
            x, pad = model.encoder(batch["mel"], batch["mel_mask"])
            frames.append(x[~pad])
    frames = torch.cat(frames)
    torch.testing.assert_close(model.downsampler.mean, frames.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        model.downsampler.std, frames.std(0, unbiased=False), atol=1e-5, rtol=1e-4
    )
    out = model.save_pretrained(tmp_path / "stage1")
    again = tiny_model(downsampler="pool")
    task = CotSFTTask(again, lr=0.0, scheduler=WARMUP_1, init_from=str(out))
    assert not again.needs_speech_statistics()
    torch.testing.assert_close(again.downsampler.mean, model.downsampler.mean)


def test_resuming_a_checkpoint_of_another_model_is_refused_in_one_line():
    """A run resumed after its model config changed (here the downsampler) stops with a line
    naming the change; a checkpoint that predates a field counts as its default, and runtime
    switches (gradient checkpointing, dropout, trainable groups) may change."""
    from c2ser.core.errors import BadInputError
    from c2ser.models.checkpoint import check_lightning_state, config_dict

    conv = tiny_model()
    checkpoint = {
        "c2ser_config": config_dict(conv.config),
        "state_dict": {f"model.{k}": v for k, v in trainable_state(conv).items()},
    }
    check_lightning_state(tiny_model(gradient_checkpointing=True), checkpoint)
    with pytest.raises(BadInputError, match=r"downsampler: 'conv' -> 'pool'.*start a new run"):
        check_lightning_state(tiny_model(downsampler="pool"), checkpoint)
    del checkpoint["c2ser_config"]["downsampler"]  # written before the field existed
    check_lightning_state(tiny_model(), checkpoint)
    del checkpoint["c2ser_config"]
    with pytest.raises(BadInputError, match=r"lacks 3 model weights.*downsampler.mean"):
        check_lightning_state(tiny_model(downsampler="pool"), checkpoint)

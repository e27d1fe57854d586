"""Emotion2Vec-S pretraining: masking, targets, losses, EMA teacher, the mixed-batch data module
and a short run through ``train.py``'s runner (tiny sizes, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from c2ser.core.labels import EMOTIONS
from c2ser.data.pretrain import MixedBatchSampler, PretrainDataModule
from c2ser.inference.emotion2vec_s import extract
from c2ser.models.emotion2vec_s import Emotion2VecS, tiny_config
from c2ser.tasks.e2vs_pretrain import (
    Emotion2VecSPretrainTask,
    category_loss,
    instance_norm,
    inverse_block_mask,
    make_targets,
)
from c2ser.tasks.schedules import linear_ramp

REPO = Path(__file__).resolve().parents[2]


def make_task(**kw) -> Emotion2VecSPretrainTask:
    torch.manual_seed(0)
    return Emotion2VecSPretrainTask(
        Emotion2VecS(tiny_config()), **{"clone_batch": 3, "top_k": 2, **kw}
    )


def make_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    wav = 0.1 * torch.randn(4, 24_000, generator=g)
    pad = torch.zeros(4, 24_000, dtype=torch.bool)
    pad[1, 15_000:] = True
    return {
        "wav": wav,
        "wav_mask": pad,
        "label": torch.tensor([0, -1, 0, 3]),
        "id": list("abcd"),
    }


def tone_corpus(root: Path, per_class: int = 3, classes: int = 3) -> Path:
    """Pitch encodes the class; train/val splits."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(per_class * classes):
        k = i % classes
        t = np.arange(int(16000 * (0.8 + 0.6 * rng.random()))) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 80 * k) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(root / f"u{i}.wav", x.astype(np.float32), 16000)
        split = "val" if i >= (per_class - 1) * classes else "train"
        rows.append({"index": f"u{i}", "emotion": EMOTIONS[k], "wav": f"u{i}.wav", "split": split})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "manifest.jsonl"


def test_inverse_block_mask_keeps_equal_spans_within_lengths():
    lengths = torch.tensor([100, 60, 100, 7])
    keep = inverse_block_mask(lengths, 0.5, 5, torch.Generator().manual_seed(0))
    assert keep.shape[0] == 4 and keep.shape[1] >= 1
    for row, n in zip(keep, lengths.tolist()):
        assert torch.all(row[1:] > row[:-1]) and row.max() < n  # sorted, unique, no padding
    long = inverse_block_mask(torch.tensor([1000] * 8), 0.5, 5, torch.Generator().manual_seed(1))
    frac = long.shape[1] / 1000
    assert 0.3 < frac < 0.45  # overlapping kept spans: ~1 - e^-0.5 = 39 % kept
    runs = (long[:, 1:] - long[:, :-1] == 1).float().mean()
    assert runs > 0.7  # mostly contiguous spans, not scattered frames
    again = inverse_block_mask(torch.tensor([1000] * 8), 0.5, 5, torch.Generator().manual_seed(1))
    assert torch.equal(long, again)


def test_instance_norm_ignores_padding_and_targets_average_top_k():
    x = torch.randn(2, 12, 6)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 8:] = True
    y = instance_norm(x, pad)
    ref = F.instance_norm(x[1:, :8].transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(y[1:, :8], ref, atol=1e-5, rtol=1e-5)
    layers = [torch.randn(2, 10 + 12, 6) for _ in range(3)]
    want = torch.stack([instance_norm(t[:, 10:], pad) for t in layers[1:]]).mean(0)
    torch.testing.assert_close(make_targets(layers, 10, 2, pad), want)


def test_category_loss_rewards_same_emotion_clusters():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.randn(3, 16)
    clustered = centres[labels] + 0.01 * torch.randn(6, 16)
    mixed = centres[torch.tensor([0, 1, 2, 0, 1, 2])] + 0.01 * torch.randn(6, 16)
    assert category_loss(clustered, labels, 0.1) < 0.1 < category_loss(mixed, labels, 0.1)
    assert category_loss(torch.randn(3, 16), torch.tensor([0, 1, 2]), 0.1) == 0  # no positives
    g = torch.randn(6, 16, requires_grad=True)
    category_loss(g, labels, 0.1).backward()
    assert g.grad.abs().sum() > 0


def test_loss_components_and_gradients():
    task = make_task().train()
    out = task.losses(make_batch())
    assert set(out) >= {"loss", "loss_frame", "loss_utt", "loss_cat"}
    assert all(torch.isfinite(v) for v in out.values())
    assert 0.45 < out["masked_frac"] < 0.8 and out["labelled"] == 0.75
    want = out["loss_frame"] + 0.1 * out["loss_utt"] + 100 * out["loss_cat"]
    torch.testing.assert_close(out["loss"], want)
    out["loss"].backward()
    assert task.model.alibi_scale.grad is not None and task.model.extra_tokens.grad.abs().sum() > 0
    assert task.decoder.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in task.teacher.parameters())

    unlabelled = {**make_batch(), "label": torch.full((4,), -1)}
    assert task.losses(unlabelled)["loss_cat"] == 0


def test_ema_teacher_update_and_schedule():
    assert linear_ramp(0, 0.999, 0.99999, 100) == 0.999
    assert linear_ramp(50, 0.999, 0.99999, 100) == pytest.approx(0.999495)
    assert linear_ramp(150, 0.999, 0.99999, 100) == 0.99999
    task = make_task()
    teacher0 = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    assert all(torch.equal(v, task.model.state_dict()[k]) for k, v in teacher0.items())
    with torch.no_grad():
        for p in task.model.parameters():
            p.add_(1.0)
    task.ema_update(0.9)
    for k, v in task.teacher.state_dict().items():
        if k in dict(task.teacher.named_parameters()):
            torch.testing.assert_close(v, teacher0[k] + 0.1)


def test_init_from_a_converted_directory(tmp_path):
    torch.manual_seed(3)
    src = Emotion2VecS(tiny_config()).save_pretrained(tmp_path / "init")
    task = make_task(init_from=str(src))
    loaded = Emotion2VecS.from_pretrained(src).state_dict()
    for k, v in loaded.items():
        assert torch.equal(task.model.state_dict()[k], v) and torch.equal(
            task.teacher.state_dict()[k], v
        )
    with pytest.raises(ValueError, match="sizes differ"):
        Emotion2VecSPretrainTask(Emotion2VecS(tiny_config(dim=32)), init_from=str(src))


def test_mixed_batch_sampler_ratio_and_pairs():
    labels = [0, 0, 1, 1, 2]
    batches = list(
        MixedBatchSampler(labels, 40, batch_size=8, labelled_fraction=0.5, num_batches=30)
    )
    assert len(batches) == 30 and all(len(b) == 8 for b in batches)
    for b in batches:
        lab = b[:4]
        assert all(i < 5 for i in lab) and all(i >= 5 for i in b[4:])
        assert labels[lab[0]] == labels[lab[1]] and lab[0] != lab[1]  # same-emotion pairs
        assert labels[lab[2]] == labels[lab[3]] and lab[2] != lab[3]
    assert {i for b in batches for i in b[:4]} == {0, 1, 2, 3}  # class 2 has no partner
    plain = list(MixedBatchSampler(labels, 40, 8, 0.25, 30, pairs=False))
    assert all(sum(i < 5 for i in b) == 2 for b in plain)
    assert {i for b in plain for i in b if i < 5} == set(range(5))  # the small pool cycles
    assert all(i >= 0 for b in MixedBatchSampler([], 9, 4, 0.5, 2) for i in b)
    assert all(i < 9 for b in MixedBatchSampler([0] * 9, 0, 4, 0.5, 2) for i in b)


def test_datamodule_batches(tmp_path):
    manifest = tone_corpus(tmp_path)
    dm = PretrainDataModule(str(manifest), str(manifest), batch_size=4, crop_seconds=1.0)
    dm.setup()
    assert len(dm.pools["labelled"]) == len(dm.pools["unlabelled"]) == 6
    assert len(dm.pools["val"]) == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["wav"].shape[0] == 4 and batch["wav"].shape[1] <= 16000
    assert batch["wav_mask"].shape == batch["wav"].shape
    assert sorted(batch["label"].tolist())[:2] == [-1, -1] and (batch["label"] >= 0).sum() == 2
    val = next(iter(dm.val_dataloader()))
    assert (val["label"] >= 0).all()


def test_train_py_runs_and_writes_an_extractable_model(tmp_path):
    from c2ser.tasks.runner import train

    manifest = tone_corpus(tmp_path)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            "experiment=e2vs_pretrain", f"data.labelled={manifest}", f"data.unlabelled={manifest}",
            "data.batch_size=4", "data.crop_seconds=1.0", "trainer.max_epochs=2",
            "trainer.accelerator=cpu", "logger=none", f"paths.output_dir={tmp_path / 'run'}",
            "+trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            "callbacks.progress_bar=null", "callbacks.lr_monitor=null",
        ])  # fmt: skip
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # resolved through HydraConfig, as under @hydra.main
    metrics = train(cfg)
    assert np.isfinite(metrics["val/loss_frame"]) and np.isfinite(metrics["train/loss_frame"])
    model = Emotion2VecS.from_pretrained(tmp_path / "run" / "emotion2vec_s")
    assert extract(model, [np.zeros(8000, dtype=np.float32)])[0].shape == (24, 64)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_frame_loss_falls(tmp_path):
    """150 optimiser steps on tones: the validation frame loss drops clearly (the teacher moves
    slowly, 0.999 -> 0.9999, so the targets stay comparable)."""
    import pytorch_lightning as pl

    manifest = tone_corpus(tmp_path, per_class=6)
    dm = PretrainDataModule(str(manifest), str(manifest), batch_size=6, crop_seconds=1.0,
                            batches_per_epoch=25)  # fmt: skip
    task = make_task(lr=2e-3, ema_decay=0.999, ema_end_decay=0.9999, cat_weight=0.0)
    trainer = pl.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)  # fmt: skip
    dm.setup()
    first = trainer.validate(task, dm.val_dataloader(), verbose=False)[0]["val/loss_frame"]
    trainer.fit(task, datamodule=dm)
    last = trainer.callback_metrics["val/loss_frame"].item()
    assert last < 0.6 * first

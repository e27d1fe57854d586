"""Stage 2: the explicit-sample schedule, the mixing, init from Stage 1, teacher targets."""

import random
from types import SimpleNamespace

import pytest
import torch

from c2ser.core.errors import SkipReport
from c2ser.data.manifest import Utterance
from c2ser.data.teacher import merge_teacher_outputs
from c2ser.tasks.distill import DistillTask, mix_explicit
from c2ser.tasks.schedules import linear_ramp

from .test_cot_sft import LossLog, datamodule, fit, logits_of, make_corpus, tiny_model


def test_linear_decay_values():
    assert [linear_ramp(s, 1.0, 0.0, 10) for s in (0, 1, 5, 9, 10, 50)] == pytest.approx(
        [1.0, 0.9, 0.5, 0.1, 0.0, 0.0]
    )
    assert linear_ramp(50, 0.8, 0.2, 100) == pytest.approx(0.5)
    assert linear_ramp(3, 1.0, 0.0, 0) == 0.0


def test_explicit_prob_from_steps_or_fraction():
    task = DistillTask(tiny_model(), decay_steps=100)
    assert [task.explicit_prob(s) for s in (0, 25, 100, 200)] == pytest.approx([1, 0.75, 0, 0])
    task = DistillTask(tiny_model(), decay_fraction=0.5, explicit_start=0.6, explicit_end=0.2)
    task._trainer = SimpleNamespace(estimated_stepping_batches=400)
    assert task.decay_length() == 200
    assert [task.explicit_prob(s) for s in (0, 100, 200, 399)] == pytest.approx(
        [0.6, 0.4, 0.2, 0.2]
    )
    task._trainer = SimpleNamespace(estimated_stepping_batches=float("inf"))
    with pytest.raises(ValueError, match="decay_steps"):
        task.decay_length()
    with pytest.raises(ValueError, match="per"):
        DistillTask(tiny_model(), per="epoch")


def batch_of(n: int) -> dict:
    return {
        "prompt_ids": [[2]] * n,
        "target_ids": [[20 + i] for i in range(n)],
        "explicit_prompt_ids": [[1]] * n,
        "explicit_target_ids": [[10 + i] for i in range(n)],
        "id": [f"u{i}" for i in range(n)],
    }


def test_mix_explicit():
    batch = batch_of(400)
    out, chosen = mix_explicit(batch, 1.0, random.Random(0))
    assert all(chosen) and out["prompt_ids"] == batch["explicit_prompt_ids"]
    out, chosen = mix_explicit(batch, 0.0, random.Random(0))
    assert not any(chosen) and out["target_ids"] == batch["target_ids"]
    out, chosen = mix_explicit(batch, 0.3, random.Random(0))
    assert 0.2 < sum(chosen) / 400 < 0.4
    for i, c in enumerate(chosen):  # rows swap as pairs, the input stays untouched
        assert out["target_ids"][i] == [10 + i if c else 20 + i]
        assert out["prompt_ids"][i] == ([1] if c else [2])
    assert batch["target_ids"][0] == [20]
    fracs = {sum(mix_explicit(batch_of(8), 0.5, random.Random(k), "batch")[1]) for k in range(20)}
    assert fracs == {0, 8}


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no trainer: not logged
@pytest.mark.parametrize(
    ("prob", "trained", "other"), [(1.0, "explicit_", ""), (0.0, "", "explicit_")]
)
def test_training_step_trains_on_the_drawn_pairs(tmp_path, wav_file, prob, trained, other):
    """With the explicit chance fixed at 1 (or 0), the loss of a training step is the model's
    loss on the explicit (or implicit) prompt/target pairs, not on the batch as it came."""
    dm = datamodule(make_corpus(tmp_path, wav_file), stage=2, keep_explicit=True)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    task = DistillTask(tiny_model(), explicit_start=prob, explicit_end=prob, decay_steps=1)

    def loss_on(prefix: str) -> torch.Tensor:
        pairs = batch[f"{prefix}prompt_ids"], batch[f"{prefix}target_ids"]
        return task.model(batch["mel"], batch["mel_mask"], batch["ssl"], *pairs).loss

    with torch.no_grad():
        loss = task.training_step(batch, 0)
        assert torch.equal(loss, loss_on(trained))
        assert not torch.allclose(loss, loss_on(other))


def test_stage2_continues_stage1_and_decays(tmp_path, wav_file):
    """init_from loads the Stage 1 export (random base LLM included); the mix decays to 0."""
    manifest = make_corpus(tmp_path, wav_file)
    from c2ser.tasks.cot_sft import CotSFTTask

    stage1 = CotSFTTask(tiny_model(), lr=1e-2, val_generate=0, export_dir=str(tmp_path / "s1"))
    fit(stage1, datamodule(manifest), 2, tmp_path / "r1")
    dm = datamodule(manifest, stage=2, keep_explicit=True)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    task = DistillTask(
        tiny_model(), init_from=str(tmp_path / "s1"), lr=1e-2, decay_steps=4, val_generate=0
    )
    assert torch.equal(logits_of(task.model, batch), logits_of(stage1.model, batch))

    class Mix(LossLog):
        def __init__(self):
            super().__init__()
            self.probs = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)
            self.probs.append(float(trainer.callback_metrics["train/explicit_prob"]))

    mix = Mix()
    fit(task, dm, 6, tmp_path / "r2", callbacks=[mix])
    assert mix.probs == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    assert all(loss > 0 for loss in mix.losses)


def test_stage2_needs_explicit_pairs(tmp_path, wav_file):
    dm = datamodule(make_corpus(tmp_path, wav_file), stage=2)
    with pytest.raises(ValueError, match="keep_explicit"):
        fit(DistillTask(tiny_model(), decay_steps=2, val_generate=0), dm, 1, tmp_path)


def utt(uid, emotion="happy", **extra):
    style = {"speed": "low", "pitch": "low", "volume": "low"}
    return Utterance(
        id=uid, wav="x", emotion=emotion, text="Hi.", language="en", extra={**style, **extra}
    )


def test_merge_teacher_outputs_policies():
    teacher = {
        "ok": {"text": "Teacher says happy.", "pred_emotion": "happy"},
        "bad": {"text": "Teacher says sad.", "pred_emotion": "sad"},
        "none": {"text": "???", "pred_emotion": None},
    }

    def run(policy, **kw):
        utts = [utt("ok"), utt("bad"), utt("none"), utt("failed")]
        report = SkipReport()
        kept, counts = merge_teacher_outputs(utts, teacher, policy, report=report, **kw)
        return {u.id: u.extra for u in kept}, counts, report

    kept, counts, report = run("template")
    assert kept["ok"]["cot_target"] == "Teacher says happy."
    assert kept["ok"]["cot_source"] == "teacher"
    assert "Hi." in kept["bad"]["cot_target"] and kept["bad"]["cot_source"] == "template"
    assert kept["none"]["implicit_target"] == "The speaker's emotion is happy."
    assert counts == {"teacher": 1, "template": 2} and len(report) == 1  # "failed": no output
    kept, counts, _ = run("keep")
    assert kept["bad"]["cot_target"] == "Teacher says sad." and counts["teacher_mismatch"] == 2
    kept, counts, report = run("drop")
    assert list(kept) == ["ok"] and len(report) == 3
    with pytest.raises(ValueError):
        run("ignore")


def test_distill_targets_cli_runs_stage1_model(tmp_path, wav_file):
    """The CLI drives batched inference with a tiny Stage 1 export and writes a manifest."""
    import json

    pytest.importorskip("c2ser.evaluation.parse")

    from c2ser.cli.main import main
    from c2ser.tasks.cot_sft import CotSFTTask

    manifest = make_corpus(tmp_path, wav_file)
    stage1 = CotSFTTask(tiny_model(), val_generate=0)
    stage1.model.save_pretrained(tmp_path / "s1")
    out = tmp_path / "teacher.jsonl"
    args = ["distill-targets", "--checkpoint", str(tmp_path / "s1"), "--manifest", str(manifest),
            "--out", str(out), "--features", str(tmp_path / "ssl"), "--max-new-tokens", "3",
            "--batch-size", "3", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4  # a random model never agrees with the label: template fallbacks
    assert {r["cot_source"] for r in rows} <= {"teacher", "template"}
    teacher = (tmp_path / "teacher.jsonl.teacher.jsonl").read_text().splitlines()
    assert len(teacher) == 4
    assert main([*args, "--on-mismatch", "keep"]) == 0  # resumes: no new generation
    assert {json.loads(line)["cot_source"] for line in out.read_text().splitlines()} <= {
        "teacher",
        "teacher_mismatch",
    }

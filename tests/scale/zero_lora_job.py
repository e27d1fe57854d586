"""A LoRA C2SER trained under DeepSpeed ZeRO on CPU (run by tests/scale/test_strategies.py).

``python zero_lora_job.py OUT STAGE DEVICES [resume]``: the base LLM is a local tiny Qwen2 in
``OUT/qwen2`` (frozen, as in the paper); LoRA + the speech side train for 2 steps with
Lightning's DeepSpeed strategy on ``DEVICES`` CPU processes; the task exports the model at the end
of fit (``OUT/export``, ``save_pretrained``). Then, on every rank:

* the trainable weights are gathered with ``full_parameters`` and rank 0 writes them
  (``OUT/exported.pt``) with the teacher-forced loss of a fixed batch (``OUT/loss.json``);
* the Lightning/DeepSpeed checkpoint directory is written (``OUT/ckpt``);
* the exported weights are loaded back into the partitioned model (``modifier_rank=0``) after
  zeroing them, and the loss is recomputed (``OUT/reloaded.json``).

With ``resume``, a new process resumes fit from ``OUT/ckpt`` for one more step and exports to
``OUT/resumed``.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch

from c2ser.core.tokens import EOD_ID
from c2ser.models.c2ser_llm import C2SER
from c2ser.models.checkpoint import load_trainable_state, trainable_state
from c2ser.tasks.cot_sft import CotSFTTask
from c2ser.tasks.schedules import linear_warmup
from c2ser.tasks.strategies import PortableDeepSpeedStrategy, full_parameters

TINY = dict(
    encoder_dim=32, encoder_layers=1, encoder_heads=2, encoder_ffn=64, connector_layers=1,
    connector_heads=2, connector_ffn=64, ssl_dim=32, dropout=0.0, lora_dropout=0.0, lora_r=4,
    llm_dtype="float32",
)  # fmt: skip


def tiny_model(llm_dir: Path) -> C2SER:
    torch.manual_seed(0)
    return C2SER(llm_path=str(llm_dir), **TINY)


def batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = (120, 90)
    mel = torch.randn(len(lengths), max(lengths), 80, generator=g)
    mask = torch.arange(max(lengths))[None, :] >= torch.tensor(lengths)[:, None]
    return dict(
        mel=mel.masked_fill(mask[..., None], 0.0),
        mel_mask=mask,
        ssl=torch.randn(len(lengths), 10, 32, generator=g),
        prompt_ids=[[9707, 1879, 13], [9707, 13]],
        target_ids=[[100 + seed, 200, EOD_ID], [300, EOD_ID]],
        id=["a", "b"],
    )


def loss_of(model: torch.nn.Module, b: dict) -> float:
    with torch.no_grad():
        out = model(b["mel"], b["mel_mask"], b["ssl"], b["prompt_ids"], b["target_ids"])
    return float(out.loss)


class Batches(pl.LightningDataModule):
    def train_dataloader(self) -> torch.utils.data.DataLoader:
        rank = self.trainer.global_rank
        return torch.utils.data.DataLoader(
            [batch(10 * rank + i) for i in range(4)], batch_size=None
        )


def fit(out: Path, stage: int, devices: int, steps: int, export: str, ckpt=None):
    model = tiny_model(out / "qwen2")
    task = CotSFTTask(
        model, lr=1e-2, scheduler=partial(linear_warmup, warmup_steps=1), val_generate=0,
        export_dir=str(out / export),
    )  # fmt: skip
    strategy = PortableDeepSpeedStrategy(stage=stage, logging_batch_size_per_gpu=1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_steps=steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=str(out),
    )  # fmt: skip
    trainer.fit(task, datamodule=Batches(), ckpt_path=ckpt)
    return model, trainer


def main(out: Path, stage: int, devices: int) -> None:
    model, trainer = fit(out, stage, devices, steps=2, export="export")
    rank0 = trainer.is_global_zero
    model.eval()
    # ZeRO-3 leaves only empty placeholders outside forward; a plain state_dict() would save them
    partitioned = any(p.data.numel() == 0 for p in model.parameters())
    with full_parameters(model):  # collective: every rank enters
        state = {k: v.detach().clone() for k, v in trainable_state(model).items()}
    loss = loss_of(model, batch(99))  # ZeRO-3 hooks gather each layer in forward
    if rank0:
        torch.save(state, out / "exported.pt")
        (out / "loss.json").write_text(json.dumps({"loss": loss, "partitioned": partitioned}))
    trainer.save_checkpoint(out / "ckpt")

    with full_parameters(model, modifier_rank=0):
        if rank0:
            for p in model.parameters():
                if p.requires_grad:
                    p.data.zero_()
            load_trainable_state(model, torch.load(out / "exported.pt"))
    reloaded = loss_of(model, batch(99))
    if rank0:
        (out / "reloaded.json").write_text(json.dumps({"loss": reloaded}))


if __name__ == "__main__":
    out, stage, devices = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if sys.argv[4:] == ["resume"]:
        fit(out, stage, devices, steps=3, export="resumed", ckpt=str(out / "ckpt"))
    else:
        main(out, stage, devices)

"""DDP on CPU (gloo): 2 processes x batch B train the same model as 1 process x batch 2B.

The setup makes the two runs compute the same gradient up to float rounding:
* every utterance has the same length (0.5 s), so batches carry no padding and a batch's
  composition cannot change the model's output for an utterance;
* the 8 training utterances form exactly one batch per epoch in 1 process (max_frames 400) and
  one batch per rank in 2 processes (max_frames 200 each: the sampler shards batches by rank),
  so both see the whole training set at every step, whatever the shuffle;
* no dropout, no validation; warmup 1 step so that the 6 AdamW steps move the weights.
DDP averages the ranks' mean losses' gradients (= the mean over all 8); the only difference is
the order of float32 sums. Tolerance: 1e-5 absolute on every parameter at every step (measured:
at most 7.5e-7 after 6 steps, while the weights move by ~5e-3), except the attention key bias
(see :func:`without_key_bias`).

Evaluation under DDP scores every validation and test utterance once, although the sampler
repeats batches so that both ranks get as many.
"""

from __future__ import annotations

import json

import torch

from c2ser.data.batching import DynamicBucketSampler
from tests.scale.conftest import finish, run_train, start_train

COMMON = (
    "experiment=demo",
    "model.dim=32",
    "model.layers=1",
    "model.dropout=0.0",
    "task.scheduler.warmup_steps=1",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=6",
    "trainer.limit_val_batches=0",
    "trainer.enable_model_summary=false",
    "test=false",
    "optimized_metric=null",
    "callbacks.model_checkpoint.save_top_k=-1",
    "~callbacks.progress_bar",
)


def weights_per_step(root, name: str) -> dict[int, dict[str, torch.Tensor]]:
    """{step: state_dict} of the per-epoch checkpoints (save_top_k=-1: one per epoch)."""
    out = {}
    for ckpt in (root / "logs" / "demo" / "runs" / name / "checkpoints").glob("epoch*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        out[state["global_step"]] = state["state_dict"]
    return out


def without_key_bias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the key third of the attention input bias: its gradient is exactly zero in exact
    arithmetic (softmax ignores a shift shared by all keys), so it only ever receives float
    rounding noise, which AdamW normalises into +-lr steps of random sign. It has no effect on
    the model's outputs; every other parameter is compared."""
    out = dict(state)
    for name, value in state.items():
        if name.endswith("self_attn.in_proj_bias"):
            q, _, v = value.chunk(3)
            out[name] = torch.cat([q, v])
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    a, b = without_key_bias(a), without_key_bias(b)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_ddp_two_processes_equal_one_process_with_double_batch(tmp_path, corpus):
    manifest = corpus(8, seconds=0.5)
    data = f"data.manifest={manifest}"
    single_run = start_train(tmp_path, *COMMON, data, "data.max_frames=400", "run_name=single")
    finish(
        start_train(
            tmp_path,
            *COMMON,
            data,
            "data.max_frames=200",
            "run_name=ddp",
            "strategy=ddp",
            "trainer.devices=2",
        )
    )
    finish(single_run)
    single, ddp = weights_per_step(tmp_path, "single"), weights_per_step(tmp_path, "ddp")
    assert sorted(single) == sorted(ddp) == [1, 2, 3, 4, 5, 6]
    moved = max_difference(single[1], single[6])
    worst = max(max_difference(single[s], ddp[s]) for s in single)
    print(f"weights moved {moved:.2e} from step 1 to 6; DDP vs single: {worst:.2e} at most")
    assert moved > 1e-3
    assert worst < 1e-5


def test_ddp_scores_every_validation_and_test_utterance_once(tmp_path, corpus):
    """9 utterances of 0.5 s, 2 per batch: 5 batches, which the sampler pads to 6 for 2 ranks by
    repeating one. The reports still count each of the 9 utterances once."""
    per_rank = [len(DynamicBucketSampler([50] * 9, 100, shuffle=False, num_replicas=2, rank=r))
                for r in (0, 1)]  # fmt: skip
    assert per_rank == [3, 3]  # 6 batches served for 5: one is scored twice unless deduplicated
    manifest = corpus(8, n_val=9, seconds=0.5)  # no test split: the baseline tests on val
    args = (
        "experiment=demo", "model.dim=32", "model.layers=1", "trainer.accelerator=cpu",
        "trainer.max_epochs=1", "trainer.enable_model_summary=false", "~callbacks.progress_bar",
        f"data.manifest={manifest}", "data.max_frames=100", "strategy=ddp", "trainer.devices=2",
    )  # fmt: skip
    run_train(tmp_path, *args, "run_name=ddp_eval")
    run = tmp_path / "logs" / "demo" / "runs" / "ddp_eval"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/n"] == metrics["test/n"] == 9
    rows = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == sorted(f"u{i}" for i in range(8, 17))
    assert sum(map(sum, json.loads((run / "test_report.json").read_text())["confusion"])) == 9

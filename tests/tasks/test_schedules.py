"""Optimisers and schedulers as partial config entries (c2ser.tasks.schedules)."""

from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from c2ser.tasks.schedules import (
    build_optimizer,
    build_scheduler,
    linear_decay,
    linear_decay_factor,
    warmup_lr,
)

REPO = Path(__file__).resolve().parents[2]


def params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(2, 2).parameters())


def test_lr_shortcut_and_a_contradicting_entry_are_refused():
    opt = build_optimizer(partial(torch.optim.AdamW, lr=1e-3), params(), lr=1e-3)
    assert opt.defaults["lr"] == 1e-3
    assert build_optimizer(torch.optim.AdamW, params(), lr=2e-3).defaults["lr"] == 2e-3
    with pytest.raises(ValueError, match=r"task.lr=0.002 but task.optimizer.lr=0.001"):
        build_optimizer(partial(torch.optim.AdamW, lr=1e-3), params(), lr=2e-3)


def test_total_steps_are_injected_unless_the_entry_sets_them():
    opt = torch.optim.SGD(params(), lr=1.0)
    sched = build_scheduler(partial(linear_decay, warmup_steps=2), opt, lambda: 10)
    assert sched.lr_lambdas[0](5) == linear_decay_factor(5, 2, 10)
    fixed = build_scheduler(partial(linear_decay, warmup_steps=2, total_steps=4), opt, lambda: 10)
    assert fixed.lr_lambdas[0](3) == linear_decay_factor(3, 2, 4)
    with pytest.raises(ValueError, match="linear_decay needs trainer"):
        build_scheduler(partial(linear_decay, warmup_steps=2), opt, lambda: float("inf"))
    assert build_scheduler(partial(warmup_lr, warmup_steps=4), opt, lambda: 1 / 0) is not None
    assert build_scheduler(None, opt, lambda: 10) is None


@pytest.mark.parametrize("task", ["classify", "cot_sft", "distill", "e2vs_pretrain", "probe"])
def test_task_entries_read_the_lr_shortcut(task):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}", "task.lr=0.123"])
    assert cfg.task.optimizer._partial_ and cfg.task.optimizer.lr == 0.123
    factory = instantiate(cfg.task.optimizer)
    assert factory(params()).defaults["lr"] == 0.123
    if cfg.task.get("scheduler") is not None:
        assert cfg.task.scheduler._partial_ and callable(instantiate(cfg.task.scheduler))

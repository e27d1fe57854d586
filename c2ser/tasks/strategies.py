"""Strategy factories for ``conf/strategy`` (each config entry instantiates one of these).

* :func:`named`: a strategy Lightning knows by name (``auto``, ``ddp``, ...).
* :class:`PortableDeepSpeedStrategy`: Lightning's ``DeepSpeedStrategy`` that also runs on CPU, so
  that the ZeRO-2/3 code paths (sharded optimiser states, partitioned parameters, sharded
  checkpoints) are exercised by CPU tests and not only on a GPU cluster.
* :func:`full_parameters`: gather ZeRO-3-partitioned parameters around code that reads or writes
  whole tensors (exporting LoRA + speech-side weights, loading them back).
* :func:`gather_unique`: collect per-utterance evaluation rows from every rank, each utterance
  once, so that validation and test scores do not count the batches a sampler repeats.

bf16 is the trainer's ``precision`` (``trainer.precision=bf16-mixed``; DeepSpeed derives its
``bf16.enabled`` from it); gradient checkpointing is a model flag
(``model.gradient_checkpointing=true`` for the C2SER models).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from pytorch_lightning.strategies import DDPStrategy, DeepSpeedStrategy
from torch import nn


def named(name: str) -> str:
    """A strategy Lightning knows by name (``auto``, ``ddp``, ...), kept behind ``_target_`` so
    that every strategy config has the same shape."""
    return name


class PortableDeepSpeedStrategy(DeepSpeedStrategy):
    """``DeepSpeedStrategy`` that also accepts ``accelerator=cpu`` (gloo + DeepSpeed's CPU backend).

    On CUDA it is Lightning's strategy unchanged. On CPU, Lightning refuses DeepSpeed although
    DeepSpeed itself runs ZeRO-2 and ZeRO-3 there; three of Lightning's environment checks assume
    CUDA and are relaxed here:

    1. ``setup_environment`` raises for any non-CUDA accelerator: skipped on CPU;
    2. device indices must equal local ranks, but CPU devices carry no index, and
    3. ``deepspeed.initialize`` receives ``device_rank=root_device.index`` (``None`` on CPU fails
       a comparison): both are met by numbering the CPU devices by local rank (``cpu:0``,
       ``cpu:1``, ...), which torch treats as plain ``cpu``.

    Use it for tests and for debugging a DeepSpeed config without a GPU; CPU DeepSpeed is slow.

    ``config_overrides`` is merged (recursively) into the DeepSpeed config that Lightning builds
    from the other arguments, for keys Lightning has no argument for (e.g.
    ``zero_force_ds_cpu_optimizer``); a full ``config`` replaces Lightning's instead.
    """

    def __init__(self, *args: Any, config_overrides: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _merge(self.config, config_overrides or {})

    def setup_environment(self) -> None:
        if self.root_device.type == "cpu":
            DDPStrategy.setup_environment(self)  # DeepSpeedStrategy's override only adds the check
        else:
            super().setup_environment()

    @property
    def parallel_devices(self) -> list[torch.device] | None:
        return self._parallel_devices

    @parallel_devices.setter
    def parallel_devices(self, devices: list[torch.device] | None) -> None:
        if devices and all(d.type == "cpu" for d in devices):
            devices = [torch.device("cpu", i) for i in range(len(devices))]
        self._parallel_devices = devices


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def is_zero3_partitioned(module: nn.Module) -> bool:
    """Whether ``module`` holds ZeRO-3 partitioned parameters (DeepSpeed tags them ``ds_id``)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


@contextmanager
def full_parameters(module: nn.Module, modifier_rank: int | None = None) -> Iterator[None]:
    """Make every parameter of ``module`` whole inside the block (a no-op without ZeRO-3).

    Under ZeRO-3 each rank keeps only a shard and ``p.data`` is empty outside forward/backward, so
    ``state_dict()`` or ``save_pretrained`` would write empty tensors. This is a collective call:
    every rank must enter it. ``modifier_rank=None`` gathers read-only; ``modifier_rank=0`` lets
    rank 0 write (e.g. ``load_state_dict``) and re-partitions its values to all ranks on exit.
    """
    params = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank):
        yield


def gather_unique(
    rows: Sequence[dict[str, Any]], key: str, world_size: int
) -> list[dict[str, Any]]:
    """Every rank's ``rows`` (a collective call: every rank must enter), the first row per
    ``row[key]`` kept, in rank order.

    Under DDP the evaluation samplers hand every rank the same number of batches, so batches are
    repeated to fill the last round (:class:`~c2ser.data.batching.DynamicBucketSampler`) or
    every rank sees the whole set (a plain loader without a distributed sampler). Scoring the
    gathered rows as they come would count those utterances twice; ids are unique per manifest.
    """
    parts: list[Any] = [list(rows)]
    if world_size > 1:
        parts = [None] * world_size
        torch.distributed.all_gather_object(parts, list(rows))
    unique: dict[Any, dict[str, Any]] = {}
    for part in parts:
        for row in part:
            unique.setdefault(row[key], row)
    return list(unique.values())

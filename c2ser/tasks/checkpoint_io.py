"""Fault-tolerant checkpoints: atomic files, and the RNG state a bit-identical resume needs.

* :class:`AtomicCheckpointIO` (``conf/plugins/default.yaml``): Lightning's checkpoint writer,
  but each file goes to a temporary name in the target directory, is fsynced and then renamed
  over the old one. A ``kill -9``, a node failure or a SLURM time limit during a save leaves the
  previous ``last.ckpt`` intact instead of a truncated file that ``ckpt_path=auto`` would choke
  on. (DeepSpeed strategies write their own checkpoint directories and do not use it.)
* :class:`RNGStateCheckpoint` (a callback): Lightning checkpoints hold model, optimizer,
  scheduler, loop progress and stateful dataloaders, but not the random generators; dropout
  after a resume would then differ from the uninterrupted run. This callback stores the python,
  numpy and torch (and CUDA) generator states of every rank and restores them on resume.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states
from pytorch_lightning.plugins.io import TorchCheckpointIO

from c2ser.core.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` through :func:`c2ser.core.io.atomic_write` (temporary file beside the
    target, fsync, ``os.replace``, fsync of the directory). Remote (``scheme://``) paths fall
    back to Lightning's writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_write(path, lambda f: torch.save(checkpoint, f), sync_dir=True)


class RNGStateCheckpoint(pl.Callback):
    """Save every rank's generator states with each checkpoint; restore them on resume.

    Checkpoints are assembled on all ranks at once, so the states are gathered there; a resume
    with a different world size gives each rank the state of ``rank % saved_ranks``.
    """

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states(include_cuda=torch.cuda.is_available())
        # numpy's key array as a tensor: checkpoints stay loadable with torch.load(weights_only)
        name, keys, *rest = states["numpy"]
        states["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), *rest)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            return {"ranks": gathered}
        return {"ranks": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict["ranks"]
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        states = dict(ranks[rank % len(ranks)])
        name, keys, *rest = states["numpy"]
        states["numpy"] = (name, keys.numpy().astype(np.uint32), *rest)
        if not torch.cuda.is_available():
            states.pop("torch.cuda", None)
        _set_rng_states(states)

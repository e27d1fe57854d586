"""C2SER's save and load rules, in one place (as torchtune's checkpointer): what a checkpoint
holds, how a model directory is written and read, and how weights go into an existing model.

The training task (Lightning ``.ckpt`` files, ``init_from``, the export at the end of ``fit``),
the converter of the official release and inference all call these functions; the model's
``save_pretrained`` / ``from_pretrained`` are the same functions.

The rules:

* The **trainable state** (:func:`trainable_state`) is the whole speech side plus LoRA (small,
  and needed to rebuild the model whatever was frozen), plus the base LLM when it is fine-tuned
  (the ``llm`` group). A frozen base LLM is never copied: it is referenced by its ``llm_path``.
* A **training checkpoint** (:func:`checkpoint_keys`) keeps the trainable state, or every weight
  when the base LLM is random (no ``llm_path``): then it exists nowhere else.
* A **model directory** holds ``config.json`` (the :class:`C2SERConfig`) and
  ``model.safetensors`` (everything but the base LLM). The base LLM is written once into
  ``<dir>/llm`` when it has no path, was fine-tuned, or ``trainable_only=False``; the config then
  says ``llm_path: llm``, resolved against the directory when read.
* **Loading into a model** (:func:`load_weights`) takes a model directory or a Lightning
  ``.ckpt``. Missing or unexpected keys fail loudly; a base LLM saved with the source is taken
  from it too, so Stage 2 continues the very model Stage 1 trained. Only the
  :data:`RUNTIME_FIELDS` of the receiving model's config are kept (they change no weight shape).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from c2ser.core.errors import BadInputError, reading
from c2ser.core.io import atomic_write_path, atomic_write_text
from c2ser.models.c2ser_llm import C2SER, C2SERConfig

CONFIG_FILE, WEIGHTS_FILE, LLM_SUBDIR = "config.json", "model.safetensors", "llm"
PT = {"format": "pt"}  # the safetensors metadata transformers expects
STATE_PREFIX = "model."  # the task's attribute name: Lightning state-dict keys are model.<key>
RUNTIME_FIELDS = (
    "llm_dtype",
    "attn_implementation",
    "gradient_checkpointing",
    "trainable",
    "dropout",
)


def is_base_llm_key(key: str) -> bool:
    """A weight of the base LLM itself (not LoRA, not the speech side)."""
    return key.startswith("llm.") and "lora_" not in key


def trainable_state(model: C2SER) -> dict[str, torch.Tensor]:
    """The model's trainable state (see the module doc)."""
    state = model.state_dict()
    if model.trains_llm:
        return state
    return {k: v for k, v in state.items() if not is_base_llm_key(k)}


def load_trainable_state(model: C2SER, state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`trainable_state`; fails loudly on missing or unexpected keys."""
    expected = set(trainable_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(f"checkpoint mismatch: missing {missing[:8]}, unexpected {unexpected[:8]}")
    model.load_state_dict(state, strict=False)


def checkpoint_keys(model: C2SER) -> set[str]:
    """State-dict keys a training checkpoint must hold to rebuild ``model`` from its config."""
    if model.config.llm_path is None:
        return set(model.state_dict())
    return set(trainable_state(model))


def lightning_state(model: C2SER, state_dict: dict[str, Any]) -> dict[str, Any]:
    """The entries of a task's Lightning ``state_dict`` that its checkpoint keeps."""
    keep = {STATE_PREFIX + k for k in checkpoint_keys(model)}
    return {k: v for k, v in state_dict.items() if k in keep}


# config fields a resumed run may change: runtime switches, and where weights were first read from
RESUMABLE_FIELDS = (*RUNTIME_FIELDS, "encoder_init", "llm_path")
_RESTART = "continue it with the settings it was started with, or start a new run (another "
_RESTART += "run_name or hydra.run.dir; make demo: --fresh)"


def check_lightning_state(model: C2SER, checkpoint: dict[str, Any]) -> None:
    """Refuse to resume a Lightning checkpoint written by a different model: a changed config
    field (named, old -> new; fields a checkpoint predates count as their defaults) or missing
    trainable weights. One :class:`BadInputError` line, not a ``KeyError`` from deep inside."""
    saved = checkpoint.get("c2ser_config")
    if saved is not None:
        old = config_dict(C2SERConfig(**{k: v for k, v in saved.items() if k in _FIELDS}))
        new = config_dict(model.config)
        changed = [
            f"{k}: {old[k]!r} -> {new[k]!r}"
            for k in new
            if k not in RESUMABLE_FIELDS and old[k] != new[k]
        ]
        if changed:
            raise BadInputError(
                f"the run's checkpoint was written by a different model ({'; '.join(changed)}); "
                + _RESTART
            )
    need = {STATE_PREFIX + k for k in trainable_state(model)}
    missing = sorted(need - set(checkpoint["state_dict"]))
    if missing:
        raise BadInputError(
            f"the run's checkpoint lacks {len(missing)} model weights, e.g. {missing[:4]}; "
            + _RESTART
        )


_FIELDS = {f.name for f in dataclasses.fields(C2SERConfig)}


def config_dict(config: C2SERConfig, **changes: Any) -> dict[str, Any]:
    """The JSON form of a config, as ``config.json`` stores it."""
    return {**dataclasses.asdict(config), **changes}


def write_model_files(
    out_dir: str | os.PathLike, config: dict[str, Any], state: dict[str, torch.Tensor]
) -> Path:
    """``config.json`` + ``model.safetensors`` (the base LLM's keys are never written here)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in state.items() if not is_base_llm_key(k)}
    atomic_write_path(out / WEIGHTS_FILE, lambda p: save_file(weights, str(p), metadata=PT))
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return out


def read_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a model directory (raw); a :class:`BadInputError` when the
    directory or its config is missing or unreadable."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise BadInputError(f"{model_dir}: no {CONFIG_FILE}; not a c2ser model directory")
    with reading(path, "c2ser model config"):
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError(f"expected a JSON object, got {type(config).__name__}")
    return config


def save_pretrained(model: C2SER, out_dir: str | os.PathLike, trainable_only: bool = True) -> Path:
    """Write a model directory (see the module doc)."""
    out = Path(out_dir)
    cfg = model.config
    if cfg.llm_path is None or model.trains_llm or not trainable_only:
        save_base_llm(model.base_llm(), out / LLM_SUBDIR)
        config = config_dict(cfg, llm_path=LLM_SUBDIR, llm_config=None)
    else:
        config = config_dict(cfg, llm_path=str(Path(cfg.llm_path).resolve()))
    return write_model_files(out, config, model.state_dict())


def from_pretrained(
    model_dir: str | os.PathLike, device: str | torch.device | None = None, **overrides: Any
) -> C2SER:
    """Load a model directory written by :func:`save_pretrained` or ``c2ser convert c2ser-llm``.

    ``overrides`` replace config fields (e.g. ``llm_dtype="float32"``, ``llm_path=...``).
    A relative ``llm_path`` is resolved against ``model_dir``.
    """
    model_dir = Path(model_dir)
    known = {f.name for f in dataclasses.fields(C2SERConfig)}
    cfg = {k: v for k, v in read_config(model_dir).items() if k in known} | overrides
    if cfg.get("llm_path") and not Path(cfg["llm_path"]).is_absolute():
        cfg["llm_path"] = str(model_dir / cfg["llm_path"])
    cfg["encoder_init"] = None  # the saved weights hold the whole speech side
    with reading(model_dir, "c2ser model directory"):
        model = C2SER(C2SERConfig(**cfg))
        state = _load_safetensors(model_dir / WEIGHTS_FILE)
        if model.trains_llm:  # the fine-tuned base LLM came from model_dir/llm
            state |= {k: v for k, v in model.state_dict().items() if is_base_llm_key(k)}
        load_trainable_state(model, state)
    return model.to(device) if device is not None else model


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path``; a missing or truncated file is one line naming it."""
    from safetensors.torch import load_file

    with reading(path, "safetensors weights file"):
        return load_file(str(path))


def load_weights(model: C2SER, path: str | os.PathLike) -> None:
    """Load a model directory or a Lightning ``.ckpt`` into ``model`` (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        with reading(path, "c2ser model directory (init_from)"):
            if model.config.llm_path is None or (path / LLM_SUBDIR).is_dir():
                runtime = {name: getattr(model.config, name) for name in RUNTIME_FIELDS}
                model.load_state_dict(from_pretrained(path, **runtime).state_dict())
            else:
                load_trainable_state(model, _load_safetensors(path / WEIGHTS_FILE))
        return
    if not path.is_file():
        raise BadInputError(f"{path}: init_from is neither a model directory nor a .ckpt")
    with reading(path, "Lightning checkpoint (init_from)"):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = {k.removeprefix(STATE_PREFIX): v for k, v in ckpt["state_dict"].items()}
        if model.config.llm_path is None:
            model.load_state_dict(state)
        else:
            wanted = set(trainable_state(model))
            load_trainable_state(model, {k: v for k, v in state.items() if k in wanted})


def save_base_llm(llm: nn.Module, out_dir: str | os.PathLike) -> Path:
    """Write the base weights of a (possibly LoRA-wrapped) causal LM as a HF directory."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k.replace(".base_layer", ""): v.detach().contiguous().cpu()
        for k, v in llm.state_dict().items()
        if "lora_" not in k
    }
    if llm.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    llm.config.save_pretrained(out)
    atomic_write_path(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=PT))
    return out


def load_whisper_encoder(encoder: nn.Module, whisper_dir: str | os.PathLike) -> None:
    """Copy the encoder of a transformers Whisper directory (safetensors) into ``encoder``
    (``C2SERConfig.encoder_init``)."""
    from safetensors import safe_open

    path = Path(whisper_dir) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; convert a Whisper model first, e.g. "
            f"`c2ser convert whisper-ct2 {whisper_dir}` for the bundled tiny.en"
        )
    state = {}
    with safe_open(str(path), "pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
            for prefix in ("model.encoder.", "encoder."):
                if key.startswith(prefix):
                    state[key[len(prefix) :]] = f.get_tensor(key)
    encoder.load_state_dict(state, strict=True)

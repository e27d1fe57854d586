"""What produced a results file, so that a resumed run never mixes in stale rows.

``c2ser infer`` and ``evaluate.py`` resume into an existing results file by skipping the ids
already in it. That is only right when the rows came from the same model and settings: after a
new checkpoint or another decoding, the old rows would be served as if they were new. So every
run records, in ``<out>.run.json`` beside the results, what its rows depend on (the model's
files by content, stage, prompt, decoding, seed when it samples, features folder, model
overrides) and :func:`check_provenance` refuses to resume under a different record.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from c2ser.core.errors import BadInputError
from c2ser.models.c2ser_llm import C2SER
from c2ser.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE


def provenance_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.run.json")


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """sha256 of the directory's config and weights (the speech side and LoRA; the base LLM is
    named by ``llm_path`` in the config). A retrained model in the same folder differs."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = Path(model_dir) / name
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
    return digest.hexdigest()


def provenance(
    model: C2SER | str | os.PathLike,
    stage: int,
    prompt: str,
    generation: dict[str, Any],
    seed: int,
    features: str | os.PathLike | None,
    model_overrides: dict[str, Any],
    extractor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of a run. An in-memory model (tests, the evaluate runner's callers) has no
    files to name, so it is recorded as ``null`` and a resume compares only the settings.
    ``extractor`` describes the model that computes the features during the run (a bundle's
    Emotion2Vec-S, whose directory is then ``features``), recorded as ``features_from``; runs
    that read feature files have no such entry, as before."""
    on_disk = not isinstance(model, C2SER)
    extra = {"features_from": dict(sorted(extractor.items()))} if extractor else {}
    return {
        "model": str(Path(model).resolve()) if on_disk else None,
        "model_sha256": model_fingerprint(model) if on_disk else None,
        "model_overrides": dict(sorted(model_overrides.items())),
        "stage": stage,
        "prompt": prompt,
        "generation": dict(sorted(generation.items())),
        "seed": seed if generation.get("do_sample") else None,  # greedy/beam ignore it
        "features": str(Path(features).resolve()) if features is not None else None,
        **extra,
    }


def check_provenance(out: str | os.PathLike, record: dict[str, Any]) -> None:
    """Refuse to resume into ``out`` when its rows were produced under another record.

    Results written before records existed (rows, no ``.run.json``) are resumed with a warning:
    nothing says what made them.
    """
    out, meta = Path(out), provenance_path(out)
    if meta.is_file():
        try:
            old = json.loads(meta.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise BadInputError(f"{meta}: corrupt run record; delete it and {out}") from None
        changed = list(_differences(old, record))
        if changed:
            what = "; ".join(changed)
            raise BadInputError(
                f"{out}: its results were produced with other settings ({what}); resuming would "
                f"mix them. Write to another --out, or delete {out} and {meta.name} to redo them"
            )
    elif out.is_file() and out.stat().st_size:
        warnings.warn(
            f"{out} has results but no record of what produced them ({meta.name}); resuming "
            "as if they came from this model and these settings",
            stacklevel=3,
        )


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """``key: old -> new`` for every differing entry, nested dicts key by key
    (``generation.num_beams: 1 -> 4``)."""
    for key in [*new, *(k for k in old if k not in new)]:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}: {_short(a)} -> {_short(b)}"


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:  # a sha256: its head tells them apart
        value = value[:12]
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."

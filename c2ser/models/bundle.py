"""A model bundle: one directory that goes from audio to an emotion (``c2ser predict``,
:class:`c2ser.inference.pipeline.Pipeline`), in HF style (configs + safetensors)::

    bundle/
      bundle.json        what the parts need to agree on: the Emotion2Vec-S utterance features
                         the C2SER-LLM was trained on (``utterance_mode``, ``ssl_tokens`` rows),
                         how the bundle was made (``source``) and its ``metrics`` when known
      README.md          the model card (how it was trained or converted, metrics, usage)
      c2ser/             a C2SER-LLM model directory (:mod:`c2ser.models.checkpoint`):
                         config.json, model.safetensors, and llm/ or a recorded ``llm_path``
      emotion2vec_s/     Emotion2Vec-S (config.json with that utterance_mode, model.safetensors);
                         absent when the model reads no Emotion2Vec-S features (``use_ssl=false``)

Why the features are recorded: a C2SER-LLM reads a fixed number of Emotion2Vec-S rows of one
kind, the first 10 frames for the release (``official``), one frame mean for the demo model
(``mean``), and fed other rows it still answers, wrongly and silently. The bundle is
checked when it is written (the Emotion2Vec-S width equals the model's ``ssl_dim``, the mode gives
exactly ``ssl_tokens`` rows) and the pipeline extracts with the recorded mode.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from c2ser.core.errors import BadInputError, reading
from c2ser.core.io import atomic_directory, atomic_write_text
from c2ser.models.c2ser_llm import C2SER
from c2ser.models.checkpoint import (
    CONFIG_FILE,
    LLM_SUBDIR,
    WEIGHTS_FILE,
    from_pretrained,
    read_config,
)
from c2ser.models.emotion2vec_s import Emotion2VecS

BUNDLE_FILE, CARD_FILE = "bundle.json", "README.md"
C2SER_SUBDIR, E2VS_SUBDIR = "c2ser", "emotion2vec_s"
FORMAT, VERSION = "c2ser-bundle", 1


@dataclass
class BundleConfig:
    """``bundle.json``. ``source`` says how the bundle was made (``kind``: ``converted`` or
    ``trained``, and the files it came from); ``metrics`` are evaluation scores (fractions) of
    the model, per set, when known."""

    utterance_mode: str | None
    ssl_tokens: int
    source: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    format: str = FORMAT
    version: int = VERSION


def is_bundle(path: str | os.PathLike) -> bool:
    return (Path(path) / BUNDLE_FILE).is_file()


def read_bundle_config(path: str | os.PathLike) -> BundleConfig:
    """The ``bundle.json`` of ``path``; one :class:`BadInputError` line when it is not a bundle."""
    file = Path(path) / BUNDLE_FILE
    if not file.is_file():
        hint = " (a C2SER-LLM model directory: make a bundle with `c2ser bundle`)"
        raise BadInputError(
            f"{path}: no {BUNDLE_FILE}; not a c2ser model bundle"
            + (hint if (Path(path) / CONFIG_FILE).is_file() else "")
        )
    with reading(file, "c2ser bundle config"):
        raw = json.loads(file.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
        return BundleConfig(**{k: raw[k] for k in BundleConfig.__dataclass_fields__ if k in raw})


def load_bundle(
    path: str | os.PathLike, device: str | torch.device | None = None, **overrides: Any
) -> tuple[C2SER, Emotion2VecS | None, BundleConfig]:
    """(C2SER-LLM, Emotion2Vec-S or None, config) of a bundle, in eval mode on ``device``;
    ``overrides`` go to the C2SER-LLM config (e.g. ``llm_dtype="float32"``)."""
    path = Path(path)
    cfg = read_bundle_config(path)
    model = from_pretrained(path / C2SER_SUBDIR, device, **overrides).eval()
    e2vs = None
    if (path / E2VS_SUBDIR).is_dir():
        e2vs = Emotion2VecS.from_pretrained(path / E2VS_SUBDIR, utterance_mode=cfg.utterance_mode)
        e2vs = e2vs.to(device) if device is not None else e2vs
    if model.config.use_ssl and e2vs is None:
        raise BadInputError(
            f"{path}: the model reads Emotion2Vec-S features but has no {E2VS_SUBDIR}/"
        )
    return model, e2vs, cfg


def save_bundle(
    out: str | os.PathLike,
    c2ser_dir: str | os.PathLike,
    emotion2vec_dir: str | os.PathLike | None,
    source: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    utterance_mode: str | None = None,
) -> Path:
    """Write a bundle at ``out`` (absent or empty) from a C2SER-LLM model directory and an
    Emotion2Vec-S directory (or a pretraining run holding one); all or nothing."""
    c2ser_dir = Path(c2ser_dir)
    read_config(c2ser_dir)  # one clear line when it is not a model directory
    check_empty(out)
    with atomic_directory(out) as tmp:
        shutil.copytree(c2ser_dir, tmp / C2SER_SUBDIR, ignore=_only_model_files)
        complete_bundle(tmp, emotion2vec_dir, source, metrics, utterance_mode)
    return Path(out)


def _only_model_files(folder: str, names: list[str]) -> list[str]:
    """``copytree`` ignore rule for a model directory: config, weights and the saved base LLM."""
    if Path(folder).name == LLM_SUBDIR:
        return []
    return [n for n in names if n not in (CONFIG_FILE, WEIGHTS_FILE, LLM_SUBDIR)]


def check_empty(out: str | os.PathLike) -> None:
    """Refuse an output directory that already holds something (nothing is overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out} exists and is not empty; remove it or choose another --out")


def complete_bundle(
    folder: str | os.PathLike,
    emotion2vec_dir: str | os.PathLike | None,
    source: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    utterance_mode: str | None = None,
) -> BundleConfig:
    """Add Emotion2Vec-S, ``bundle.json`` and the model card to a folder that holds the
    C2SER-LLM in ``c2ser/`` (what ``c2ser convert c2ser-llm --emotion2vec`` has just written).

    ``utterance_mode`` None: the one that gives the model's ``ssl_tokens`` rows (the
    Emotion2Vec-S config's own when it does); :class:`BadInputError` when the parts disagree.
    """
    folder = Path(folder)
    model = read_config(folder / C2SER_SUBDIR)
    tokens = int(model.get("ssl_tokens", 10))
    uses_ssl = model.get("use_ssl", True)
    if uses_ssl and emotion2vec_dir is None:
        raise BadInputError(
            "this C2SER-LLM reads Emotion2Vec-S features: give its Emotion2Vec-S (--emotion2vec)"
        )
    mode = None
    if uses_ssl:
        e2vs_dir = _emotion2vec_dir(emotion2vec_dir)
        e2vs = json.loads((e2vs_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        if e2vs.get("dim") != model.get("ssl_dim"):
            raise BadInputError(
                f"{e2vs_dir}: Emotion2Vec-S gives {e2vs.get('dim')}-d features but the C2SER-LLM "
                f"reads ssl_dim={model.get('ssl_dim')}; they were not trained together"
            )
        mode = _utterance_mode(e2vs, tokens, utterance_mode)
        shutil.copytree(e2vs_dir, folder / E2VS_SUBDIR, ignore=_only_model_files)
        atomic_write_text(
            folder / E2VS_SUBDIR / CONFIG_FILE,
            json.dumps({**e2vs, "utterance_mode": mode}, indent=2) + "\n",
        )
    cfg = BundleConfig(mode, tokens, source, metrics)
    atomic_write_text(folder / BUNDLE_FILE, json.dumps(asdict(cfg), indent=2) + "\n")
    atomic_write_text(folder / CARD_FILE, model_card(cfg, model))
    return cfg


def _emotion2vec_dir(path: str | os.PathLike) -> Path:
    """An Emotion2Vec-S directory, or the one inside a pretraining run (``<run>/emotion2vec_s``)."""
    path = Path(path)
    if (path / E2VS_SUBDIR / CONFIG_FILE).is_file():
        path = path / E2VS_SUBDIR
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise BadInputError(
            f"{path}: not an Emotion2Vec-S model directory (config.json + model.safetensors; "
            "convert a released checkpoint with `c2ser convert emotion2vec-s CKPT OUT`)"
        )
    return path


def _utterance_mode(e2vs: dict[str, Any], tokens: int, given: str | None) -> str:
    """The utterance mode whose rows the C2SER-LLM reads (see :func:`complete_bundle`)."""
    rows = {
        "official": int(e2vs.get("utterance_rows", 10)),
        "extra_tokens": int(e2vs.get("num_extra_tokens", 10)),
        "mean": 1,
    }
    if given is not None:
        if rows.get(given) != tokens:
            raise BadInputError(
                f"utterance mode {given!r} gives {rows.get(given)} Emotion2Vec-S rows but the "
                f"C2SER-LLM reads ssl_tokens={tokens}"
            )
        return given
    own = e2vs.get("utterance_mode", "official")
    if rows.get(own) == tokens:
        return own
    fits = [m for m, n in rows.items() if n == tokens]
    if len(fits) != 1:
        raise BadInputError(
            f"the C2SER-LLM reads {tokens} Emotion2Vec-S rows; say which features it was trained "
            f"on with --utterance-mode ({' or '.join(fits) or 'none fits'})"
        )
    return fits[0]


def model_card(cfg: BundleConfig, model: dict[str, Any]) -> str:
    """The bundle's README.md: what it is, how it was made, its metrics, how to use it."""
    src = cfg.source
    lines = [
        "# C2SER model bundle",
        "",
        "Speech emotion recognition with an audio language model (C²SER): a Whisper-style "
        f"encoder and Emotion2Vec-S features in front of a Qwen2 LLM with LoRA (c2ser `{FORMAT}` "
        f"v{cfg.version}).",
        "",
        "## How it was made",
        "",
    ]
    lines += [f"- {k}: `{v}`" for k, v in src.items() if v is not None]
    lines += [
        "",
        "## Parts",
        "",
        f"- `{C2SER_SUBDIR}/`: C2SER-LLM, encoder {model.get('encoder_dim')} wide x "
        f"{model.get('encoder_layers')} layers, downsampler `{model.get('downsampler')}`, "
        + _llm_line(model),
        f"- `{E2VS_SUBDIR}/`: Emotion2Vec-S, utterance features `{cfg.utterance_mode}` "
        f"({cfg.ssl_tokens} row(s) per utterance, as the C2SER-LLM was trained)"
        if cfg.utterance_mode
        else "- no Emotion2Vec-S: the model reads the Whisper path only",
        "",
        "## Metrics",
        "",
    ]
    lines += _metric_lines(cfg.metrics)
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "c2ser predict audio/ --model THIS_DIR --out results.jsonl   # label + probability per file",
        "```",
        "",
        "```python",
        "from c2ser import Pipeline",
        "pipe = Pipeline.from_pretrained('THIS_DIR', device='cpu')",
        "pipe('speech.wav')  # {'emotion': ..., 'scores': {7 labels: p}, 'text': ..., 'language': ...}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _llm_line(model: dict[str, Any]) -> str:
    path = model.get("llm_path")
    if path == LLM_SUBDIR:
        return f"base LLM in `{C2SER_SUBDIR}/{LLM_SUBDIR}/`"
    if path:
        return f"base LLM read from `{path}` (not copied: it must be there)"
    return "random base LLM built from its config"


def _metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return ["Not measured for this bundle."]
    lines = [f"Set `{metrics.get('dataset')}`, {metrics.get('source', '')}.", ""]
    lines += ["| set | n | WA % | UA % | macro-F1 % |", "|---|---:|---:|---:|---:|"]
    for name, rep in (metrics.get("sets") or {}).items():
        cells = [
            f"{100 * rep[k]:.1f}" if rep.get(k) is not None else "—" for k in ("wa", "ua", "f1")
        ]
        lines.append(f"| {name} | {rep.get('n', '—')} | " + " | ".join(cells) + " |")
    return lines


def evaluation_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The part of an ``evaluate.py`` ``metrics.json`` a model card shows: set, source, and
    WA / UA / macro-F1 / n overall and per language."""
    path = Path(path)
    with reading(path, "evaluate.py metrics.json"):
        raw = json.loads(path.read_text(encoding="utf-8"))
        sets = {"all": raw["overall"], **raw.get("languages", {})}
    keep = ("n", "wa", "ua", "f1")
    return {
        "dataset": raw.get("dataset"),
        "split": raw.get("split"),
        "stage": raw.get("stage"),
        "source": raw.get("source"),
        "sets": {name: {k: rep.get(k) for k in keep} for name, rep in sets.items()},
    }


def trained_source(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``source`` of a bundle made from a training export (``<run>/model``): the model and,
    when the run's resolved ``config.yaml`` is beside it, its task and data stage."""
    model_dir = Path(model_dir).resolve()
    source: dict[str, Any] = {"kind": "trained with c2ser (train.py)", "model": str(model_dir)}
    run_cfg = model_dir.parent / "config.yaml"
    if run_cfg.is_file():
        import yaml

        cfg = yaml.safe_load(run_cfg.read_text(encoding="utf-8")) or {}
        task = cfg.get("task") or {}
        source |= {
            "run": str(model_dir.parent),
            "task_name": cfg.get("task_name"),
            "task": str(task.get("_target_", "")).rsplit(".", 1)[-1] or None,
            "stage": (cfg.get("data") or {}).get("stage"),
            "init_from": task.get("init_from"),
        }
    return source

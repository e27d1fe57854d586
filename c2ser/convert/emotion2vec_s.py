"""Official Emotion2Vec-S fairseq checkpoint -> an :class:`Emotion2VecS` ``from_pretrained`` dir.

The ``.pt`` is read with the safe unpickler (no fairseq, no pickled code runs); sizes come from
its ``cfg`` (model + ``modalities.audio``), and the switches this port implements are asserted
(ALiBi with one learned scale per head, 10 extra tokens, post-LN, layer-norm CNN). Key map
(spec section 5), with ``P = modality_encoders.AUDIO.``::

    P local_encoder.conv_layers.{i}.0.weight      -> feature_extractor.{i}.conv.weight
    P local_encoder.conv_layers.{i}.2.1.*         -> feature_extractor.{i}.norm.*
    P project_features.1.* / .2.*                 -> feature_norm.* / feature_proj.*
    P relative_positional_encoder.{j}.0.*         -> pos_conv.{j-1}.conv.*
    P alibi_scale (1,1,H,1,1; 4-D in old files)   -> alibi_scale (H,)
    P extra_tokens (1,E,D)                        -> extra_tokens (E,D)
    P context_encoder.norm.* / .blocks.{i}.*      -> prenet_norm.* / prenet.{i}.*
    blocks.{i}.*                                  -> blocks.{i}.*

Dropped on purpose: ``_ema`` (an EMA teacher, absent from the release) and ``P decoder.*``
(pretraining only). Any other key, and any expected key or shape not found, is an error.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import torch

from c2ser.convert.safe_pickle import load_checkpoint, to_plain
from c2ser.core.errors import BadInputError, reading
from c2ser.models.emotion2vec_s import Emotion2VecS, Emotion2VecSConfig

P = "modality_encoders.AUDIO."
DROPPED = re.compile(rf"^(_ema(\..*)?|{re.escape(P)}decoder\..*)$")
RULES: list[tuple[str, Any]] = [
    (r"local_encoder\.conv_layers\.(\d+)\.0\.weight$", r"feature_extractor.\1.conv.weight"),
    (r"local_encoder\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$", r"feature_extractor.\1.norm.\2"),
    (r"project_features\.1\.(weight|bias)$", r"feature_norm.\1"),
    (r"project_features\.2\.(weight|bias)$", r"feature_proj.\1"),
    (r"relative_positional_encoder\.(\d+)\.0\.(weight|bias)$",
     lambda m: f"pos_conv.{int(m[1]) - 1}.conv.{m[2]}"),
    (r"context_encoder\.norm\.(weight|bias)$", r"prenet_norm.\1"),
    (r"context_encoder\.blocks\.(.+)$", r"prenet.\1"),
    (r"(extra_tokens|alibi_scale)$", r"\1"),
]  # fmt: skip

# Switches the port implements (value of the released cfg, else fairseq's default must match).
EXPECTED_AUDIO = {
    "num_extra_tokens": (10, 0),
    "use_alibi_encoder": (True, False),
    "learned_alibi_scale": (True, False),
    "learned_alibi_scale_per_head": (True, False),
    "learned_alibi_scale_per_layer": (False, False),
    "learned_alibi": (False, False),
    "extractor_mode": ("layer_norm", "layer_norm"),
    "conv_pos_pre_ln": (False, False),
}
EXPECTED_MODEL = {"layer_norm_first": (False, False), "norm_affine": (True, True)}
DEFAULT_SPEC = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"


def rename(key: str) -> str | None:
    """fairseq key -> c2ser key; None for a key no rule knows."""
    if key.startswith("blocks."):
        return key
    if key.startswith(P):
        rest = key[len(P) :]
        for pattern, repl in RULES:
            if re.match(pattern, rest):
                return re.sub(pattern, repl, rest)
    return None


def parse_conv_spec(spec: str) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's ``feature_encoder_spec`` ("[(512,10,5)] + [(512,3,2)] * 4 ...") without
    ``eval``: only list/tuple literals of ints, ``+`` and ``* int`` are accepted."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported feature_encoder_spec {spec!r}")

    layers = ev(ast.parse(spec, mode="eval").body)
    return [tuple(int(v) for v in layer) for layer in layers]


def config_from_cfg(cfg: dict[str, Any]) -> Emotion2VecSConfig:
    """Build the port's config from the checkpoint's fairseq ``cfg`` (asserting the switches)."""
    model = cfg.get("model") or {}
    audio = (model.get("modalities") or {}).get("audio")
    if audio is None:
        raise ValueError("checkpoint cfg has no model.modalities.audio: not a data2vec 2.0 model")
    for section, expected in (
        ("model", EXPECTED_MODEL),
        ("model.modalities.audio", EXPECTED_AUDIO),
    ):
        values = model if section == "model" else audio
        for name, (want, default) in expected.items():
            got = values.get(name, default)
            if got != want:
                raise ValueError(
                    f"checkpoint cfg {section}.{name} = {got!r}, this port needs {want!r}"
                )
    decoder = audio.get("decoder") or {}
    return Emotion2VecSConfig(
        dim=model.get("embed_dim", 768),
        heads=model.get("num_heads", 12),
        depth=model.get("depth", 8),
        prenet_depth=audio.get("prenet_depth", 4),
        mlp_ratio=float(model.get("mlp_ratio", 4.0)),
        norm_eps=float(model.get("norm_eps", 1e-6)),
        conv_layers=parse_conv_spec(audio.get("feature_encoder_spec", DEFAULT_SPEC)),
        conv_pos_width=audio.get("conv_pos_width", 95),
        conv_pos_depth=audio.get("conv_pos_depth", 5),
        conv_pos_groups=audio.get("conv_pos_groups", 16),
        num_extra_tokens=audio["num_extra_tokens"],
        dropout=float(model.get("encoder_dropout", 0.1)),
        attention_dropout=float(model.get("attention_dropout", 0.1)),
        layerdrop=float(model.get("layerdrop", 0.0)),
        prenet_dropout=float(audio.get("prenet_dropout", 0.0)),
        prenet_layerdrop=float(audio.get("prenet_layerdrop", 0.0)),
        decoder_dim=decoder.get("decoder_dim", 384),
        decoder_groups=decoder.get("decoder_groups", 16),
        decoder_kernel=decoder.get("decoder_kernel", 5),
        decoder_layers=decoder.get("decoder_layers", 5),
    )


def map_state_dict(state: dict[str, Any], config: Emotion2VecSConfig) -> dict[str, torch.Tensor]:
    """Rename and reshape every tensor; raise on any unknown, missing or mis-shaped key."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if DROPPED.match(key):
            continue
        new = rename(key)
        if new is None or not isinstance(value, torch.Tensor):
            unknown.append(key)
            continue
        value = value.float()
        if new == "alibi_scale":
            if value.dim() == 4:  # fairseq's upgrade hook for older files
                value = value.unsqueeze(0)
            if value.shape != (1, 1, config.heads, 1, 1):
                raise ValueError(f"{key}: shape {tuple(value.shape)}, expected one scale per head")
            value = value.reshape(config.heads)
        elif new == "extra_tokens":
            value = value.reshape(value.shape[-2:])
        out[new] = value
    expected = Emotion2VecS(config).state_dict()
    missing = sorted(set(expected) - set(out))
    unknown += sorted(set(out) - set(expected))
    shapes = [
        f"{k}: {tuple(out[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in out and out[k].shape != v.shape
    ]
    problems = [
        ("unexpected checkpoint keys", unknown),
        ("missing weights", missing),
        ("shape mismatches (checkpoint vs cfg)", shapes),
    ]
    lines = [f"{what} ({len(ks)}): {', '.join(ks[:8])}" for what, ks in problems if ks]
    if lines:
        raise ValueError("cannot convert the Emotion2Vec-S checkpoint:\n  " + "\n  ".join(lines))
    return out


def convert(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a released Emotion2Vec-S ``.pt`` into ``out_dir`` (config.json + safetensors)."""
    with reading(checkpoint, "Emotion2Vec-S checkpoint"):
        ck = load_checkpoint(checkpoint)
        if not isinstance(ck, dict) or "model" not in ck or "cfg" not in ck:
            raise BadInputError(
                f"{checkpoint}: not a fairseq checkpoint (no 'model' and 'cfg' entries)"
            )
        config = config_from_cfg(to_plain(ck["cfg"]))
        model = Emotion2VecS(config)
        model.load_state_dict(map_state_dict(ck["model"], config), strict=True)
    return model.save_pretrained(out_dir)

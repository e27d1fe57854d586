"""Test factories: tiny random Qwen2 models that share the real Qwen2 tokenizer, a tiny
Emotion2Vec-S and random waveforms. Their sizes are the models' ``tiny`` presets (the ones
``conf/model/c2ser_tiny.yaml`` and ``emotion2vec_s_tiny.yaml`` name), not a copy.

Tests load the Qwen2s with ``AutoModelForCausalLM.from_pretrained`` exactly like a real Qwen2
checkpoint, so the whole pipeline (tokenizer ids, special tokens, LoRA targets) runs on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from c2ser.data.tokenizer import load_tokenizer
from c2ser.models.c2ser_llm import PRESETS
from c2ser.models.emotion2vec_s import Emotion2VecS, tiny_config

TINY_QWEN2 = PRESETS["tiny"]["llm_config"]  # the tiny C2SER's random Qwen2
TINY_VOCAB_SIZE = TINY_QWEN2["vocab_size"]  # Qwen2-0.5B's padded table: every tokenizer id
_SHORT = dict(
    hidden="hidden_size",
    layers="num_hidden_layers",
    heads="num_attention_heads",
    kv_heads="num_key_value_heads",
    intermediate="intermediate_size",
)


def tiny_qwen2_config(**overrides) -> dict:
    """The tiny C2SER's Qwen2 config dict (shaped like Qwen2-7B's: GQA, RoPE 1e6, RMSNorm 1e-6),
    with overrides by Qwen2 name or short name (``hidden``, ``layers``, ``heads``, ``kv_heads``,
    ``intermediate``)."""
    return TINY_QWEN2 | {_SHORT.get(k, k): v for k, v in overrides.items()}


def make_tiny_qwen2(out_dir: str | os.PathLike, seed: int = 0, **config) -> Path:
    """Save a random tiny ``Qwen2ForCausalLM`` + this tokenizer as a local HF directory.

    ``config`` overrides :func:`tiny_qwen2_config` (e.g. ``hidden=32``).
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**tiny_qwen2_config(**config)))
    out = Path(out_dir)
    model.save_pretrained(out)
    load_tokenizer().save_pretrained(out)
    return out


def tiny_emotion2vec_s() -> Emotion2VecS:
    """A seeded random Emotion2Vec-S of ``tiny_config()`` in eval mode."""
    torch.manual_seed(0)
    return Emotion2VecS(tiny_config()).eval()


def waves(*seconds: float, seed: int = 0) -> list[torch.Tensor]:
    """Seeded white-noise waveforms at 16 kHz, one per duration."""
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(int(s * 16000), generator=g) for s in seconds]

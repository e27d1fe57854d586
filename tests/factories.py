"""Test factories: tiny random Qwen2 models that share the real Qwen2 tokenizer, a tiny
Emotion2Vec-S and random waveforms.

Tests load the Qwen2s with ``AutoModelForCausalLM.from_pretrained`` exactly like a real Qwen2
checkpoint, so the whole pipeline (tokenizer ids, special tokens, LoRA targets) runs on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from c2ser.core.tokens import EOD_ID
from c2ser.data.tokenizer import load_tokenizer
from c2ser.models.emotion2vec_s import Emotion2VecS, tiny_config

TINY_VOCAB_SIZE = 151_936  # Qwen2-0.5B's padded table: covers every tokenizer id incl. [PAD]


def tiny_qwen2_config(
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = TINY_VOCAB_SIZE,
    tie_word_embeddings: bool = True,
    **overrides,
) -> dict:
    """A Qwen2 config dict shaped like Qwen2-7B's (GQA, RoPE 1e6, RMSNorm 1e-6) but tiny."""
    config = dict(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=EOD_ID,
        eos_token_id=EOD_ID,
    )
    return config | overrides


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

"""Tiny C2SER-LLM builders shared by model, inference and training tests.

``make_tiny_c2ser`` returns a CPU-sized model (encoder 64 wide, 2 layers; Qwen2 hidden 64, 2
layers, real 151,936-token vocabulary) whose weights are re-drawn at a larger scale, so that
outputs depend on the inputs (a freshly initialised Qwen2 emits one token forever, which would
make equality tests vacuous). ``make_batch`` builds a batch in the model's batch contract.
"""

from __future__ import annotations

import pytest
import torch

from c2ser.core.tokens import EOD_ID
from c2ser.models.c2ser_llm import C2SER, C2SERConfig
from tests.factories import tiny_qwen2_config

TINY = dict(
    encoder_dim=64,
    encoder_layers=2,
    encoder_heads=4,
    encoder_ffn=128,
    connector_layers=2,
    connector_ffn=128,
    ssl_dim=32,
    llm_dtype="float32",
)


def tiny_config(**overrides) -> C2SERConfig:
    return C2SERConfig(**{**TINY, "llm_config": tiny_qwen2_config(), **overrides})


def scramble_(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Re-draw every weight at unit-variance-preserving scale (norm gains around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue
            std = p.shape[-1] ** -0.5 if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * std + ("norm" in name and p.dim() == 1))
    return model


def make_tiny_c2ser(seed: int = 0, scramble: bool = True, **overrides) -> C2SER:
    torch.manual_seed(seed)
    model = C2SER(tiny_config(**overrides))
    return scramble_(model, seed + 1) if scramble else model


def make_batch(
    lengths=(300, 157, 220), ssl_dim: int = 32, seed: int = 0, targets: bool = True
) -> dict:
    """A batch in the C2SER batch contract with random mel/ssl and short prompts/targets."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    mel = torch.randn(len(lengths), t, 80, generator=g)
    mask = torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]
    mel[mask] = 0.0
    prompts = [[*[9707, 1879, 11][: 1 + i % 3], 13] for i in range(len(lengths))]
    batch = dict(
        mel=mel,
        mel_mask=mask,
        ssl=torch.randn(len(lengths), 10, ssl_dim, generator=g),
        prompt_ids=prompts,
        id=[f"u{i}" for i in range(len(lengths))],
        emotion=["happy"] * len(lengths),
        language=["en"] * len(lengths),
    )
    if targets:
        batch["target_ids"] = [
            [*[100 + i, 200 + i, 300][: 1 + i % 3], EOD_ID] for i in range(len(lengths))
        ]
    return batch


@pytest.fixture(scope="module")
def tiny_c2ser() -> C2SER:
    return make_tiny_c2ser().eval()

"""The EmoBox downstream probe: a one-hidden-layer head over frozen frame features.

Per frame ``Linear(D -> hidden) -> ReLU``, then a masked mean over time, then
``Linear(hidden -> classes)`` (EmoBox ``examples/sb/classifier_head.py``, ``SuperbBaseModel``;
the parameter names ``pre_net``/``post_net`` are kept so its state dicts load as they are).

EmoBox infers padding from the data: a frame whose features sum to exactly 0 counts as padding.
That also drops genuine all-zero frames and breaks on features that are zero-padded *inside* an
utterance, so here the padding mask comes explicitly from the batch collator instead.
"""

from __future__ import annotations

import torch
from torch import nn


class ProbeHead(nn.Module):
    """Frame-level MLP + masked mean pooling + linear classifier.

    Args:
        input_dim: feature width D (768 for Emotion2Vec-S, 80 for log-mel).
        num_classes: number of emotion classes.
        hidden_size: the single hidden width (EmoBox sweeps 128 and 256).
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 256) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.pre_net = nn.Linear(input_dim, hidden_size)
        self.post_net = nn.Linear(hidden_size, num_classes)

    def forward(
        self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """feats (B, T, D), padding_mask (B, T) True=pad (or None) -> logits (B, num_classes)."""
        x = torch.relu(self.pre_net(feats))
        if padding_mask is None:
            return self.post_net(x.mean(dim=1))
        keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return self.post_net(pooled)

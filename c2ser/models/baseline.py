"""A small log-mel SER classifier: the framework's first baseline and a sanity check for the data.

conv front-end (2 x stride-2, 100 Hz -> 25 Hz) -> a few transformer layers with a key-padding
mask -> masked mean + std pooling -> linear. Small enough to train on CPU in a minute.
"""

from __future__ import annotations

import torch
from torch import nn


class LogMelClassifier(nn.Module):
    def __init__(
        self,
        num_classes: int,
        n_mels: int = 80,
        dim: int = 128,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, dim, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(dim, dim, 3, stride=2, padding=1),
            nn.GELU(),
        )
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.LayerNorm(2 * dim), nn.Dropout(dropout), nn.Linear(2 * dim, num_classes)
        )

    def forward(self, mel: torch.Tensor, mel_mask: torch.Tensor) -> torch.Tensor:
        """mel (B, T, n_mels), mel_mask (B, T) True=pad -> logits (B, num_classes)."""
        x = self.conv(mel.transpose(1, 2)).transpose(1, 2)  # (B, T/4, dim)
        mask = mel_mask[:, ::4][:, : x.shape[1]]
        x = self.encoder(x, src_key_padding_mask=mask)
        keep = (~mask).unsqueeze(-1).float()
        n = keep.sum(1).clamp(min=1.0)
        mean = (x * keep).sum(1) / n
        std = (((x - mean[:, None]) ** 2 * keep).sum(1) / n).clamp(min=1e-6).sqrt()
        return self.head(torch.cat([mean, std], dim=-1))

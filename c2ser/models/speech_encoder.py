"""Whisper encoder on unpadded, variable-length log-mel with a key-padding mask.

The official C2SER encoder (wenet ``TransformerEncoder``, ``conv1d2`` subsampling,
``abs_pos_whisper``) has exactly the shapes and maths of Whisper's encoder and its weights map 1:1
onto transformers' :class:`WhisperEncoder`; only the behaviour differs: C2SER feeds each utterance
at its own length with key masking, while Whisper pads every input to 30 s. This subclass keeps
Whisper's modules (so Whisper checkpoints load unchanged) and replaces ``forward``:

* positions are sliced to the subsampled length T' = ceil(T / 2);
* padded frames are zeroed after the first convolution, so a batch row equals the same utterance
  encoded alone (the second convolution sees the zeros it would see at a real sequence end);
* input longer than Whisper's window (2 x ``max_source_positions`` frames = 30 s) is cut into 30 s
  chunks that are encoded independently and concatenated in time, instead of failing;
* at inference (eval mode under ``torch.inference_mode``) everything runs on the valid frames
  only, packed into one (N, d) matrix: the convolutions as products over their input windows,
  the layers with attention per utterance (:func:`packed_layer`). It is the same maths as the
  masked batch without the padding: the encoder is most of a C2SER batch's compute on CPU, and
  a batch of utterances of 2-5 s is a third padding. Training and ``no_grad`` passes keep the
  batched path unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperEncoderLayer


def encoder_config(
    d_model: int = 1024,
    layers: int = 24,
    heads: int = 16,
    ffn: int = 4096,
    n_mels: int = 80,
    max_source_positions: int = 1500,
    dropout: float = 0.1,
) -> WhisperConfig:
    """A ``WhisperConfig`` for the encoder only (defaults: Whisper-medium = the C2SER encoder)."""
    return WhisperConfig(
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        max_source_positions=max_source_positions,
        dropout=dropout,
        activation_dropout=dropout,
        attention_dropout=0.0,
        activation_function="gelu",
    )


class SpeechEncoder(WhisperEncoder):
    """``(B, T, n_mels)`` mel + ``(B, T)`` padding mask -> ``(B, T', d)`` states + ``(B, T')`` mask."""

    @property
    def window(self) -> int:
        """Frames per encoder window (3000 = 30 s for Whisper)."""
        return self.max_source_positions * self.conv1.stride[0] * self.conv2.stride[0]

    def forward(  # type: ignore[override]
        self, mel: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode; ``padding_mask`` is True at padded frames (both in and out)."""
        lengths = (~padding_mask).sum(1)
        b, t, c = mel.shape
        w = self.window
        if t <= w:
            x = self._encode(mel, lengths)
        else:  # 30 s chunks as extra batch rows; all-padding chunks are skipped, then zeros
            n = -(-t // w)
            chunks = F.pad(mel, (0, 0, 0, n * w - t)).reshape(b * n, w, c)
            starts = torch.arange(n, device=mel.device) * w
            chunk_len = (lengths[:, None] - starts).clamp(0, w).reshape(-1)
            keep = chunk_len > 0
            x = mel.new_zeros(b * n, w // 2, self.config.d_model)
            x[keep] = self._encode(chunks[keep], chunk_len[keep]).to(x.dtype)
            x = x.reshape(b, n * (w // 2), -1)  # full chunks give w/2 frames: no holes
        out_len = (lengths + 1) // 2
        x = x[:, : int(out_len.max())]
        return x, torch.arange(x.shape[1], device=x.device)[None, :] >= out_len[:, None]

    def _encode(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One window (T <= ``self.window``) per row; rows are right-padded to a common T."""
        if torch.is_inference_mode_enabled() and not self.training:
            return self._encode_packed(mel, lengths)
        valid = torch.arange(mel.shape[1], device=mel.device)[None, :] < lengths[:, None]
        x = (mel * valid[..., None]).transpose(1, 2).to(self.conv1.weight.dtype)
        x = F.gelu(self.conv1(x)) * valid[:, None, :]
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.embed_positions.weight[: x.shape[1]]
        x = F.dropout(x, p=self.dropout, training=self.training)
        pad = torch.arange(x.shape[1], device=x.device)[None, :] >= ((lengths + 1) // 2)[:, None]
        bias = torch.zeros(pad.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(pad, torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:  # transformers >= 5.4: (hidden, mask) -> hidden
            x = layer(x, bias)
        return self.layer_norm(x)

    def _encode_packed(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """:meth:`_encode` at inference, on the valid frames only (module doc); padded positions
        of the result are zeros (nothing downstream reads them).

        The convolutions are matrix products over each valid output frame's input window (the
        padded batch's windows, so a window past an utterance's end reads the zeros a padded
        row has): only valid frames are computed, at the speed of oneDNN's convolution or
        better (1.6x for the first one, 1 CPU thread).
        """
        b, t, _ = mel.shape
        d = self.config.d_model
        valid = torch.arange(t, device=mel.device)[None, :] < lengths[:, None]
        x = (mel * valid[..., None]).to(self.conv1.weight.dtype)
        h = torch.zeros(b, t, d, dtype=x.dtype, device=x.device)
        h[valid] = F.gelu(_conv_frames(self.conv1, x, valid))
        out_len = (lengths + 1) // 2
        keep = torch.arange((t + 1) // 2, device=mel.device)[None, :] < out_len[:, None]
        x = F.gelu(_conv_frames(self.conv2, h, keep))
        x = x + self.embed_positions.weight[keep.nonzero()[:, 1]]
        sizes = out_len.tolist()  # x is (N, d): row 0's frames, then row 1's, ...
        for layer in self.layers:
            x = packed_layer(layer, x, sizes)
        out = torch.zeros(b, keep.shape[1], d, dtype=x.dtype, device=x.device)
        out[keep] = self.layer_norm(x)
        return out


def _conv_frames(conv: torch.nn.Conv1d, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``conv`` (zero padding, no dilation or groups) of (B, T, C) ``x`` at the output frames
    where ``keep`` (B, T_out) is True, as one (N, C * k) x (C * k, C_out) product."""
    (k,), (stride,), (pad,) = conv.kernel_size, conv.stride, conv.padding
    windows = F.pad(x, (0, 0, pad, pad)).unfold(1, k, stride)[keep]  # (N, C, k)
    return F.linear(windows.flatten(1), conv.weight.flatten(1), conv.bias)


def packed_layer(layer: WhisperEncoderLayer, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """One ``WhisperEncoderLayer`` (eval mode) on packed utterances: ``x`` (N, d) holds the
    frames of utterances of ``sizes`` one after another. Per-frame parts (norms, projections,
    feed-forward) run on all N frames at once; attention runs per utterance over its own
    frames, which is what the masked batch computes (a masked key's weight is exactly 0)."""
    attn = layer.self_attn
    h = layer.self_attn_layer_norm(x)
    # as WhisperAttention: q is scaled before the product, the product itself is unscaled
    q, k, v = attn.q_proj(h) * attn.scaling, attn.k_proj(h), attn.v_proj(h)
    heads = [
        F.scaled_dot_product_attention(
            *(t.view(n, attn.num_heads, attn.head_dim).transpose(0, 1) for t in qkv), scale=1.0
        )
        .transpose(0, 1)
        .reshape(n, -1)
        for n, *qkv in zip(sizes, q.split(sizes), k.split(sizes), v.split(sizes), strict=True)
    ]
    x = x + attn.out_proj(torch.cat(heads))
    x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
    if x.dtype == torch.float16:  # as WhisperEncoderLayer
        clamp = torch.finfo(x.dtype).max - 1000
        x = x.clamp(-clamp, clamp)
    return x

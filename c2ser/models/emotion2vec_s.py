"""Emotion2Vec-S: a fairseq-free port of the data2vec 2.0 audio encoder released with C2SER.

Shapes for a (B, L) 16 kHz waveform (base sizes; spec ``emotion2vec_s.md`` sections 1-2)::

    feature_extractor   7 x [conv (no bias) -> fp32 LayerNorm -> GELU]  (B, 512, T), 50 Hz
    feature_norm/proj   LayerNorm(512) -> Linear(512, 768)               (B, T, 768)
    pos_conv            5 x [grouped conv k19 -> LayerNorm -> GELU]      added once: x + pos(x)
    extra_tokens        10 learned vectors prepended                     (B, 10 + T, 768)
    prenet              LayerNorm -> dropout -> 4 post-LN blocks
    blocks              8 post-LN blocks, no final norm                  x = (B, T, 768) without tokens

``T = floor((L - k) / s) + 1`` applied per conv layer (4.101 s -> 204 frames, 11.392 s -> 569).
Every attention adds ALiBi, ``-m_h * |i - j| * max(s_h, 0)``, with one learned scale per head
shared by all 12 blocks, zero for the extra tokens, and masks padded keys.

Two behaviours of the official extractor (``speech_feature_extraction.py``) are documented, not
copied:

* **Utterance feature.** It slices ``x[:, :10]`` *after* removing the extra tokens: the first 10
  frames (200 ms), not the tokens and not a pooled vector. The released C2SER-LLM was trained on
  these rows, so ``utterance_mode="official"`` (the default) reproduces the quirk;
  ``"extra_tokens"`` gives the 10 token outputs and ``"mean"`` the (1, D) frame mean (emotion2vec's
  own utterance feature).
* **Train mode.** The official script never calls ``.eval()`` or ``no_grad``: its reference
  features come with dropout and LayerDrop on, so they are stochastic. Extraction
  (:mod:`c2ser.inference.emotion2vec_s`) always runs in eval mode under
  ``torch.inference_mode()``; compare with the references by cosine similarity.

A padded batch gives every utterance the features it gets alone: the CNN has no cross-frame
normalisation, so its valid frames never see padding, and the positional conv zeroes padded frames
before every layer, which is exactly the zero padding a single utterance gets at its end. File
reading, batch planning and chunking of long audio are not the network's business: they live in
:mod:`c2ser.inference.emotion2vec_s`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from c2ser.core.errors import BadInputError, reading
from c2ser.core.io import atomic_write_path, atomic_write_text

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
UTTERANCE_MODES = ("official", "extra_tokens", "mean")
BASE_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass
class Emotion2VecSConfig:
    """Sizes and switches. Defaults: the released checkpoint (``conf/model/emotion2vec_s_base``).

    ``conv_layers`` are (channels, kernel, stride). The decoder fields size the light conv
    decoder used only by pretraining (:class:`Decoder`); released weights do not include it.
    """

    dim: int = 768
    heads: int = 12
    depth: int = 8
    prenet_depth: int = 4
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    conv_layers: Sequence[Sequence[int]] = BASE_CONV
    conv_pos_width: int = 95
    conv_pos_depth: int = 5
    conv_pos_groups: int = 16
    num_extra_tokens: int = 10
    dropout: float = 0.1  # attention output and FFN output (train mode only)
    attention_dropout: float = 0.1
    layerdrop: float = 0.05
    prenet_dropout: float = 0.1
    prenet_layerdrop: float = 0.05
    utterance_mode: str = "official"
    utterance_rows: int = 10
    decoder_dim: int = 384
    decoder_groups: int = 16
    decoder_kernel: int = 7
    decoder_layers: int = 4

    def __post_init__(self) -> None:
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)
        if self.utterance_mode not in UTTERANCE_MODES:
            raise ValueError(f"utterance_mode must be one of {UTTERANCE_MODES}")

    @property
    def stride(self) -> int:
        return math.prod(s for _, _, s in self.conv_layers)

    @property
    def receptive_field(self) -> int:
        rf = 1
        for _, k, s in reversed(self.conv_layers):
            rf = (rf - 1) * s + k
        return rf


def tiny_config(**overrides: Any) -> Emotion2VecSConfig:
    """A CPU-test size (preset ``tiny``, ``conf/model/emotion2vec_s_tiny``): base strides and
    kernels (same T), 10 extra tokens, 64 wide, 1 + 2 blocks."""
    tiny = dict(
        dim=64, heads=4, depth=2, prenet_depth=1, conv_layers=tuple((32, k, s) for _, k, s in BASE_CONV),
        conv_pos_width=10, conv_pos_depth=2, conv_pos_groups=4, decoder_dim=32, decoder_groups=4,
        decoder_kernel=7, decoder_layers=2,
    )  # fmt: skip
    return Emotion2VecSConfig(**(tiny | overrides))


# Named sizes, the one place they are written (``preset:`` of conf/model/emotion2vec_s_*.yaml and
# ``c2ser extract --random-init --size``): base is the release (the Emotion2VecSConfig defaults).
PRESETS = {"base": Emotion2VecSConfig, "tiny": tiny_config}


def preset_config(preset: str = "base", **overrides: Any) -> Emotion2VecSConfig:
    """The config of a named size with ``overrides`` (flat fields, e.g. ``utterance_mode``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown Emotion2Vec-S preset {preset!r}; known: {sorted(PRESETS)}")
    return PRESETS[preset](**overrides)


def alibi_slopes(heads: int) -> Tensor:
    """ALiBi head slopes; for 12 heads 2^-1..2^-8, then the interleaved 2^-0.5, 2^-1.5, ..."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return torch.tensor(power_of_2(heads))
    closest = 2 ** math.floor(math.log2(heads))
    extra = alibi_slopes(2 * closest)[0::2][: heads - closest]
    return torch.cat([torch.tensor(power_of_2(closest)), extra])


class LayerNorm32(nn.LayerNorm):
    """LayerNorm with float32 weights and statistics (the CNN's norms, fairseq ``Fp32LayerNorm``).
    PyTorch's bf16/fp16 kernels already accumulate in float32, so a low-precision input needs no
    upcast copy (which costs as much as the CNN's convolutions)."""

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.weight.float(), self.bias.float()
        return F.layer_norm(x, self.normalized_shape, w, b, self.eps)


def conv_nlc(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """Apply a ``Conv1d`` to (B, L, C) without transposing: the input is viewed as a channels-last
    (B, C, 1, L) image, which oneDNN/cuDNN convolve in place (transposes cost as much as the
    convolutions themselves in the CNN). Returns (B, L', C')."""
    b, n, c = x.shape
    y = F.conv2d(
        x.reshape(b, 1, n, c).permute(0, 3, 1, 2),
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        groups=conv.groups,
    )
    return y.permute(0, 2, 3, 1).reshape(b, y.shape[-1], y.shape[1])


class ConvLayer(nn.Module):
    """One CNN feature-extractor layer: (B, L, C_in) -> (B, L', C_out)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, bias=False)
        self.norm = LayerNorm32(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.norm(conv_nlc(self.conv, x)))


class ConvBlock(nn.Module):
    """Grouped 'same' conv -> LayerNorm (no affine) -> GELU on (B, T, C): positional conv and
    decoder layers. Even kernels drop the last output frame (fairseq ``SamePad``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, groups=groups)
        self.norm = nn.LayerNorm(c_out, elementwise_affine=False)

    def forward(self, x: Tensor) -> Tensor:
        y = conv_nlc(self.conv, x)
        if self.conv.kernel_size[0] % 2 == 0:
            y = y[:, :-1]
        return F.gelu(self.norm(y))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        self.heads, self.attn_drop = heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """x (B, N, D); bias (B or 1, H, N, N) additive: ALiBi + -inf on padded keys."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.attn_drop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, d)))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Post-LN transformer block (data2vec 2.0 ``AltBlock``); also returns the raw FFN output,
    which is what the teacher's targets are made of."""

    def __init__(self, cfg: Emotion2VecSConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.attention_dropout, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.dim, int(cfg.dim * cfg.mlp_ratio))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm1(x + self.attn(x, bias))
        ffn = self.mlp(x)
        return self.norm2(x + self.drop(ffn)), ffn


class Decoder(nn.Module):
    """data2vec 2.0's light conv decoder (pretraining only): (B, T, D) -> (B, T, D) predictions.
    Each layer adds its input back when the widths match (all but the first)."""

    def __init__(self, cfg: Emotion2VecSConfig) -> None:
        super().__init__()
        dims = [cfg.dim] + [cfg.decoder_dim] * cfg.decoder_layers
        self.blocks = nn.ModuleList(
            ConvBlock(a, b, cfg.decoder_kernel, cfg.decoder_groups) for a, b in pairwise(dims)
        )
        self.proj = nn.Linear(cfg.decoder_dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            y = block(x)
            x = y + x if y.shape == x.shape else y
        return self.proj(x)


class Emotion2VecS(nn.Module):
    """The encoder (shapes in the module docstring). Built from an :class:`Emotion2VecSConfig`, or
    flat keywords over a named size (``preset``, see :data:`PRESETS`), the way
    ``conf/model/emotion2vec_s_*.yaml`` configure it, as C2SER is."""

    def __init__(
        self, config: Emotion2VecSConfig | None = None, preset: str = "base", **kwargs: Any
    ) -> None:
        super().__init__()
        c = self.config = config or preset_config(preset, **kwargs)
        chans = [1] + [ch for ch, _, _ in c.conv_layers]
        self.feature_extractor = nn.ModuleList(
            ConvLayer(a, b, k, s) for a, (b, k, s) in zip(chans, c.conv_layers)
        )
        self.feature_norm = nn.LayerNorm(chans[-1])
        self.feature_proj = nn.Linear(chans[-1], c.dim)
        k = max(3, c.conv_pos_width // c.conv_pos_depth)
        self.pos_conv = nn.ModuleList(
            ConvBlock(c.dim, c.dim, k, c.conv_pos_groups) for _ in range(c.conv_pos_depth)
        )
        self.alibi_scale = nn.Parameter(torch.ones(c.heads))
        self.register_buffer("alibi_slopes", alibi_slopes(c.heads), persistent=False)
        self.extra_tokens = nn.Parameter(torch.zeros(c.num_extra_tokens, c.dim))
        self.prenet_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.prenet = nn.ModuleList(Block(c) for _ in range(c.prenet_depth))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self._init_weights()

    def _init_weights(self) -> None:
        """data2vec 2.0 init: BERT-style N(0, 0.02) linears, Kaiming CNN, first extra token 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear) and m is not self.feature_proj:
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for layer in self.feature_extractor:
            nn.init.kaiming_normal_(layer.conv.weight)
        nn.init.normal_(self.extra_tokens.data[1:])

    # -- stages -----------------------------------------------------------------------------

    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Frames the CNN makes from each sample count (the conv formula, per layer)."""
        n = num_samples
        for _, k, s in self.config.conv_layers:
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def frame_padding_mask(self, padding_mask: Tensor | None, frames: int) -> Tensor | None:
        """Sample-level (B, L) True=pad -> frame-level (B, T); None when nothing is padded."""
        if padding_mask is None or not padding_mask.any():
            return None
        lengths = self.num_frames((~padding_mask).sum(-1))
        return torch.arange(frames, device=lengths.device)[None] >= lengths[:, None]

    def local_features(self, wav: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """(B, L) waveform (+ (B, L) True=pad) -> (B, T, D) projected CNN features.

        Valid frames never see padding (no cross-frame normalisation). For inference with
        padding, each utterance runs through the CNN alone over its own samples (padded frames
        are zeros): the CNN gains nothing from batching, and its 3.2 kHz first layers would
        otherwise allocate (B, 3200 s, 512) tensors whose page faults dominate on CPU.
        Training keeps one batched pass (one graph for the backward).
        """
        batched = torch.is_grad_enabled() or padding_mask is None or not padding_mask.any()
        if not batched:
            lengths = (~padding_mask).sum(-1).tolist()
            feats = [self.local_features(w[None, :n])[0] for w, n in zip(wav, lengths)]
            return nn.utils.rnn.pad_sequence(feats, batch_first=True)
        x = wav.unsqueeze(-1)
        for layer in self.feature_extractor:
            x = layer(x)
        return self.feature_proj(self.feature_norm(x))

    def alibi(self, positions: Tensor) -> Tensor:
        """(B or 1, N) frame positions -> (B or 1, H, N, N) ALiBi bias."""
        dist = (positions[:, None, :] - positions[:, :, None]).abs().float()
        slope = self.alibi_slopes * self.alibi_scale.float().clamp_min(0)
        return -slope[None, :, None, None] * dist[:, None]

    def contextualize(
        self, x: Tensor, padding_mask: Tensor | None = None, keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Positional conv, extra tokens and prenet.

        x: (B, T, D) local features; padding_mask: (B, T) True=pad; keep: (B, N) sorted indices
        of the frames the student sees (pretraining: the other frames are zeroed for the
        positional conv, then dropped). Returns (B, E + N, D) and the attention bias that every
        later block reuses.
        """
        b, t, _ = x.shape
        pos = x
        if keep is not None:
            dropped = torch.ones(b, t, dtype=torch.bool, device=x.device).scatter(1, keep, False)
            pos = pos.masked_fill(dropped[..., None], 0.0)
        for layer in self.pos_conv:
            if padding_mask is not None:
                pos = pos.masked_fill(padding_mask[..., None], 0.0)
            pos = layer(pos)
        x = x + pos
        positions = torch.arange(t, device=x.device)[None]
        if keep is not None:
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
            positions = keep
            padding_mask = padding_mask.gather(1, keep) if padding_mask is not None else None

        e = self.config.num_extra_tokens
        x = torch.cat([self.extra_tokens.to(x.dtype).expand(b, -1, -1), x], dim=1)
        bias = F.pad(self.alibi(positions), (e, 0, e, 0))
        if padding_mask is not None:
            pad = F.pad(padding_mask, (e, 0), value=False)
            bias = bias.masked_fill(pad[:, None, None, :], float("-inf"))
        bias = bias.to(x.dtype)

        x = F.dropout(self.prenet_norm(x), self.config.prenet_dropout, self.training)
        for block in self.prenet:
            if not self._layerdrop(self.config.prenet_layerdrop):
                x, _ = block(x, bias)
        return x, bias

    def encode(self, x: Tensor, bias: Tensor, return_layers: bool = True) -> tuple[Tensor, list]:
        """The main blocks; returns the output and each block's FFN output (extra tokens kept)."""
        layers = []
        for block in self.blocks:
            if self._layerdrop(self.config.layerdrop):
                continue
            x, ffn = block(x, bias)
            if return_layers:
                layers.append(ffn)
        return x, layers

    def _layerdrop(self, p: float) -> bool:
        return self.training and p > 0 and bool(torch.rand(()) < p)

    def utterance(
        self, x: Tensor, tokens: Tensor, padding_mask: Tensor | None, mode: str | None = None
    ) -> Tensor:
        """Utterance features from frames x (B, T, D) and extra-token outputs (B, E, D).

        ``official``: the first ``utterance_rows`` frames (padded frames and missing rows of
        utterances shorter than 200 ms are zeros), (B, 10, D); ``extra_tokens``: (B, E, D);
        ``mean``: the mean over valid frames, (B, 1, D).
        """
        mode = mode or self.config.utterance_mode
        if mode == "extra_tokens":
            return tokens
        valid = torch.ones_like(x[..., 0], dtype=torch.bool)
        if padding_mask is not None:
            valid = ~padding_mask
        if mode == "mean":
            w = valid[..., None].to(x.dtype)
            return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
        if mode != "official":
            raise ValueError(f"utterance_mode must be one of {UTTERANCE_MODES}, got {mode!r}")
        rows = self.config.utterance_rows
        u = (x * valid[..., None].to(x.dtype))[:, :rows]
        return F.pad(u, (0, 0, 0, rows - u.shape[1]))

    def extract_features(
        self,
        wav: Tensor,
        padding_mask: Tensor | None = None,
        utterance_mode: str | None = None,
        return_layers: bool = True,
    ) -> dict[str, Any]:
        """(B, L) waveform (+ (B, L) True=pad) -> ``x`` (B, T, D) frames without the extra
        tokens, ``utt_x`` (see :meth:`utterance`), ``padding_mask`` (B, T) or None, ``tokens``
        (B, E, D) extra-token outputs, ``layer_results`` (each main block's FFN output)."""
        x = self.local_features(wav, padding_mask)
        frame_mask = self.frame_padding_mask(padding_mask, x.shape[1])
        x, bias = self.contextualize(x, frame_mask)
        x, layers = self.encode(x, bias, return_layers)
        e = self.config.num_extra_tokens
        tokens, x = x[:, :e], x[:, e:]
        return {
            "x": x,
            "utt_x": self.utterance(x, tokens, frame_mask, utterance_mode),
            "padding_mask": frame_mask,
            "tokens": tokens,
            "layer_results": layers,
        }

    # -- persistence ------------------------------------------------------------------------

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (what :meth:`from_pretrained` reads)."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_path(
            out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"})
        )
        atomic_write_text(out / CONFIG_FILE, json.dumps(asdict(self.config), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **overrides: Any) -> Emotion2VecS:
        """Load a directory written by :meth:`save_pretrained` or ``c2ser convert emotion2vec-s``
        (strict: every weight must be present). Returned in eval mode. ``overrides`` replace
        config fields, e.g. ``utterance_mode="mean"``."""
        from safetensors.torch import load_file

        model_dir = Path(model_dir)
        if not (model_dir / CONFIG_FILE).is_file():
            raise BadInputError(
                f"{model_dir}: no {CONFIG_FILE}; not an Emotion2Vec-S model directory "
                "(convert a released checkpoint with `c2ser convert emotion2vec-s CKPT OUT`)"
            )
        with reading(model_dir, "Emotion2Vec-S model directory"):
            raw = json.loads((model_dir / CONFIG_FILE).read_text())
            known = {f.name for f in fields(Emotion2VecSConfig)}
            model = cls(
                Emotion2VecSConfig(**({k: v for k, v in raw.items() if k in known} | overrides))
            )
            model.load_state_dict(load_file(str(model_dir / WEIGHTS_FILE)))
        return model.eval()

"""Emotion2Vec-S features of waveforms and audio files: what the network itself does not do.

:class:`~c2ser.models.emotion2vec_s.Emotion2VecS` maps a padded waveform batch to features. Here:

* :func:`load_emotion2vec_s`: a converted or pretrained model (or a random one for tests) on a
  device and dtype, with a warning when bfloat16 would be emulated on this CPU;
* :func:`chunks`: audio longer than ``max_samples`` is cut into pieces whose CNN frames tile the
  whole file's frames exactly, so long audio is never truncated;
* :func:`extract_batch`: several waveforms in one padded forward pass (eval mode, inference
  mode), frame level (T, D) or utterance level (rows, D);
* :func:`extract`: audio files or waveforms in input order, sorted into padded batches by
  :func:`c2ser.data.batching.plan_batches`; ``c2ser extract`` over a manifest
  (:func:`c2ser.inference.extract.extract_manifest`) plans with the same :func:`frame_count`
  and refuses audio by the same :func:`too_short` rule;
* :class:`Emotion2VecSFeatures`: a ``wav -> (rows, D)`` callable, what
  :class:`~c2ser.data.sft.SFTDataModule` takes as ``ssl_extractor`` to compute features on the
  fly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from c2ser.core.errors import BadInputError
from c2ser.data.audio import SAMPLE_RATE, load_audio
from c2ser.data.batching import plan_batches
from c2ser.inference import hardware
from c2ser.models.emotion2vec_s import Emotion2VecS, preset_config

LEVELS = ("frame", "utterance")


def load_emotion2vec_s(
    checkpoint: str | os.PathLike | None,
    random_init: bool = False,
    size: str = "base",
    device: str = "cpu",
    dtype: str = "float32",
) -> Emotion2VecS:
    """An :class:`Emotion2VecS` in eval mode on ``device``/``dtype``.

    ``checkpoint``: a converted directory (``c2ser convert emotion2vec-s``), a pretraining run
    directory (its ``emotion2vec_s/`` subfolder is used) or None with ``random_init`` (tests and
    benchmarks only: the features mean nothing).
    """
    hardware.resolve_device(device)  # before any loading: a clean error without CUDA
    if checkpoint is None:
        if not random_init:
            raise BadInputError(
                "no --checkpoint given: pass a converted Emotion2Vec-S directory "
                "(`c2ser convert emotion2vec-s CHECKPOINT.pt OUT_DIR`) or a pretraining run "
                "directory; --random-init extracts with random weights (tests/benchmarks only)"
            )
        torch.manual_seed(0)
        model = Emotion2VecS(preset_config(size)).eval()
    else:
        path = Path(checkpoint)
        if (path / "emotion2vec_s").is_dir():
            path = path / "emotion2vec_s"
        if path.is_file():
            raise BadInputError(
                f"{path}: a file; --checkpoint takes a model directory. Convert a released "
                f"fairseq checkpoint first: c2ser convert emotion2vec-s {path} OUT_DIR"
            )
        model = Emotion2VecS.from_pretrained(path)
    if device == "cpu" and dtype == "bfloat16" and not hardware.cpu_has_native_bf16():
        warnings.warn(
            "bfloat16 on a CPU without AVX512-BF16 or AMX is emulated and several times slower "
            "than float32 (6.5x measured on AVX2, BENCHMARKS.md); use --dtype float32 here",
            RuntimeWarning,
            stacklevel=2,
        )
    return model.to(device=device, dtype=getattr(torch, dtype))


def frame_count(model: Emotion2VecS, num_samples: int) -> int:
    """Feature frames of ``num_samples`` of audio (the CNN's formula; at least 1), the unit of
    ``batch_frames`` budgets."""
    return max(1, int(model.num_frames(torch.tensor(num_samples))))


def too_short(model: Emotion2VecS, num_samples: int) -> str | None:
    """Why audio of ``num_samples`` cannot be extracted (shorter than the CNN's receptive field,
    400 samples = 25 ms), or None."""
    field = model.config.receptive_field
    if num_samples >= field:
        return None
    return f"audio of {num_samples} samples is shorter than one frame ({field} samples)"


def chunks(model: Emotion2VecS, wav: Tensor, max_samples: int | None) -> list[Tensor]:
    """Split audio longer than ``max_samples`` into pieces whose CNN frames tile the full run's
    frames exactly: piece i covers frames [i*m, (i+1)*m), i.e. samples [i*m*stride,
    (i+1)*m*stride + receptive_field - stride). Attention context is limited to each piece; the
    frame count equals that of the whole file."""
    c = model.config
    if max_samples is None or len(wav) <= max_samples:
        return [wav]
    m = max(1, (max_samples - c.receptive_field) // c.stride + 1)
    total = int(model.num_frames(torch.tensor(len(wav))))
    extra = c.receptive_field - c.stride
    return [wav[i * c.stride : min(i + m, total) * c.stride + extra] for i in range(0, total, m)]


def extract_batch(
    model: Emotion2VecS,
    wavs: Sequence[Tensor | np.ndarray],
    level: str = "frame",
    utterance_mode: str | None = None,
    max_samples: int | None = None,
) -> list[Tensor]:
    """Features of several 16 kHz mono waveforms in one padded forward pass (eval mode,
    inference mode, the model's device and dtype). Returns float32 CPU tensors: ``frame``
    (T_i, D) or ``utterance`` (rows, D). Long audio is split by :func:`chunks`; an utterance's
    extra-token outputs are then the frame-weighted mean over its pieces."""
    if level not in LEVELS:
        raise ValueError(f"level must be 'frame' or 'utterance', got {level!r}")
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            pieces, owner = [], []
            for i, w in enumerate(wavs):
                w = torch.as_tensor(w, dtype=torch.float32)
                reason = too_short(model, len(w))
                if reason:
                    raise ValueError(reason)
                split = chunks(model, w, max_samples)
                pieces += split
                owner += [i] * len(split)
            lengths = torch.tensor([len(w) for w in pieces])
            wav = nn.utils.rnn.pad_sequence(pieces, batch_first=True)
            mask = torch.arange(wav.shape[1])[None] >= lengths[:, None]
            out = model.extract_features(
                wav.to(p.device, p.dtype), mask.to(p.device), return_layers=False
            )
            frames = model.num_frames(lengths).tolist()
            results = []
            for i in range(len(wavs)):
                idx = [j for j, o in enumerate(owner) if o == i]
                x = torch.cat([out["x"][j, : frames[j]] for j in idx])
                if level == "frame":
                    results.append(x.float().cpu())
                    continue
                w = torch.tensor([frames[j] for j in idx], dtype=x.dtype, device=x.device)
                tokens = (out["tokens"][idx] * w[:, None, None]).sum(0) / w.sum()
                u = model.utterance(x[None], tokens[None], None, utterance_mode)
                results.append(u[0].float().cpu())
            return results
    finally:
        model.train(was_training)


def extract(
    model: Emotion2VecS,
    inputs: Sequence[str | os.PathLike | np.ndarray | Tensor],
    level: str = "frame",
    utterance_mode: str | None = None,
    batch_frames: int = 6000,
    max_seconds: float | None = 60.0,
    max_padding: float | None = None,
) -> list[np.ndarray]:
    """Features of audio files or 16 kHz waveforms, in input order, as float32 arrays.

    Inputs are sorted by length and cut into padded batches of at most ``batch_frames`` frames
    (50 per second), at most ``max_padding`` of them padding (:func:`plan_batches`); audio
    longer than ``max_seconds`` is processed in chunks (:func:`chunks`). Paths are decoded with
    :func:`c2ser.data.audio.load_audio` (mono, resampled to 16 kHz, no normalisation, as the
    official script).
    """
    wavs = [
        load_audio(x) if isinstance(x, str | os.PathLike) else torch.as_tensor(x) for x in inputs
    ]
    max_samples = int(max_seconds * SAMPLE_RATE) if max_seconds else None
    out: list[np.ndarray | None] = [None] * len(wavs)
    lengths = [frame_count(model, len(w)) for w in wavs]
    for batch in plan_batches(lengths, batch_frames, max_padding):
        feats = extract_batch(model, [wavs[i] for i in batch], level, utterance_mode, max_samples)
        for i, f in zip(batch, feats, strict=True):
            out[i] = f.numpy()
    return out  # type: ignore[return-value]


class Emotion2VecSFeatures:
    """``wav -> (rows, D)`` float32 features of one utterance: an ``ssl_extractor`` for
    :class:`~c2ser.data.sft.SFTDataModule` (which then needs no import of the model)."""

    def __init__(
        self,
        model: Emotion2VecS,
        level: str = "utterance",
        utterance_mode: str | None = None,
        max_seconds: float | None = 60.0,
    ) -> None:
        self.model, self.level, self.utterance_mode = model, level, utterance_mode
        self.max_samples = int(max_seconds * SAMPLE_RATE) if max_seconds else None

    def __call__(self, wav: np.ndarray | Tensor) -> np.ndarray:
        (feats,) = extract_batch(
            self.model, [wav], self.level, self.utterance_mode, self.max_samples
        )
        return feats.numpy()

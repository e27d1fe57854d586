"""Whisper-compatible 80-bin log-mel spectrogram, without Whisper's 30-second padding.

Same maths as ``WhisperFeatureExtractor`` (and the official C2SER ``compute_log_mel_spectrogram``):
centred STFT (n_fft 400, hop 160, periodic Hann, reflect padding) -> power -> Slaney mel filters
-> log10 clamped at 1e-10 -> floor at (utterance max - 8) -> (x + 4) / 4. The last STFT frame is
dropped, so ``T = len(wav) // 160`` (100 frames per second).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

N_FFT, HOP = 400, 160


@lru_cache(maxsize=4)
def _filters(n_mels: int, sr: int) -> torch.Tensor:
    fb = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sr / 2,
        sampling_rate=sr,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(fb.astype(np.float32))  # (freq, n_mels)


def log_mel(wav: np.ndarray | torch.Tensor, n_mels: int = 80, sr: int = 16_000) -> torch.Tensor:
    """(L,) waveform -> (T, n_mels) float32 log-mel with ``T = L // 160``."""
    x = torch.as_tensor(wav, dtype=torch.float32)
    if x.dim() != 1:
        raise ValueError(f"log_mel expects a 1-D waveform, got shape {tuple(x.shape)}")
    if x.numel() < N_FFT // 2 + 1:  # reflect padding needs more samples than half a window
        x = torch.nn.functional.pad(x, (0, N_FFT // 2 + 1 - x.numel()))
    stft = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[:, :-1].abs() ** 2  # (freq, T)
    mel = _filters(n_mels, sr).T @ power
    logmel = torch.clamp(mel, min=1e-10).log10()
    logmel = torch.maximum(logmel, logmel.max() - 8.0)
    return ((logmel + 4.0) / 4.0).T.contiguous()[: len(wav) // HOP]

r"""torchaudio's default resampler (``torchaudio.transforms.Resample``), in plain torch.

Why: the official C2SER code resamples non-16 kHz audio with torchaudio's default ``Resample``
(wenet's ``processor.resample``), so a converted official checkpoint only sees the inputs it was
trained on if we resample the same way; soxr's filter differs by up to 0.09 in waveform on 48 kHz
speech. torchaudio itself does not install beside this project's torch, hence this copy of its
maths (``_get_sinc_resample_kernel`` / ``_apply_sinc_resample_kernel``, ``sinc_interp_hann``).

The formula. Reduce the rates by their gcd, :math:`o = f_\text{orig}/g`, :math:`n = f_\text{new}/g`.
With the cut-off :math:`b = \rho \min(o, n)` (``rolloff`` :math:`\rho = 0.99`, in units of the
reduced rates) and the zero crossings kept on each side :math:`w = 6` (``lowpass_filter_width``),
the filter reaches :math:`W = \lceil w\,o/b \rceil` input samples to either side. Output phase
:math:`j \in [0, n)` has the taps :math:`k \in [-W, W + o)`

.. math::

    t_{jk} = \operatorname{clamp}\Big(b\,\big(\tfrac{k}{o} - \tfrac{j}{n}\big), -w, w\Big),\qquad
    h_j[k] = \frac{b}{o}\,\operatorname{sinc}(\pi t_{jk})\,\cos^2\!\Big(\frac{\pi t_{jk}}{2w}\Big)

(:math:`\operatorname{sinc} x = \sin x / x`, 1 at 0; times in units of :math:`1/g` seconds):
an ideal low-pass at :math:`\rho` times the lower Nyquist frequency (:math:`b g / 2` Hz), shifted
by the output sample's fractional position and tapered by a Hann window spanning :math:`\pm w`
zero crossings. The kernel is built in float64 (only :math:`j/n` in float32, as torchaudio's
code does) and cast to the waveform's dtype. The signal is zero-padded by :math:`W` on the left
and :math:`W + o` on the right, and one ``conv1d`` with stride :math:`o` and the :math:`n`
phases as output channels gives :math:`y[m n + j] = \sum_k h_j[k]\, x[m o + k]`; the interleaved
phases are cut to :math:`\lceil n L / o \rceil` samples, the ceiling taken on a float32 value as
torchaudio does. The kernel's phases sum to 1 within 1e-3 (the window's truncation), so the DC
gain is 1 to that accuracy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@lru_cache(maxsize=16)
def sinc_resample_kernel(
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> tuple[Tensor, int]:
    """The (n, 1, 2W + o) float64 polyphase kernel and its half-width ``W`` (module doc).

    Cached because building it costs more than applying it to a short clip; callers cast it.
    """
    if orig_freq <= 0 or new_freq <= 0 or lowpass_filter_width <= 0:
        raise ValueError(
            f"rates and filter width must be positive, got {orig_freq}, {new_freq}, "
            f"{lowpass_filter_width}"
        )
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    # torchaudio divides the output phases in float32 (an integer arange over an int) before
    # adding the float64 taps; the same arithmetic, step for step, gives the same kernel
    phase = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new
    t = phase.double() + idx
    t = (t * base).clamp_(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t)
    return kernel * (window * (base / orig)), width


def resample_sinc(wav: Tensor, orig_freq: int, new_freq: int) -> Tensor:
    """``(..., L)`` floating waveform at ``orig_freq`` -> ``(..., ceil(L * new / orig))``.

    Equals ``torchaudio.transforms.Resample(orig_freq, new_freq)(wav)`` (defaults); computed in
    ``wav``'s dtype on its device, so float32 input gives torchaudio's float32 result.
    """
    if not wav.is_floating_point():
        raise TypeError(f"expected a floating-point waveform, got {wav.dtype}")
    if orig_freq == new_freq:
        return wav
    kernel, width = sinc_resample_kernel(orig_freq, new_freq)
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1])
    x = torch.nn.functional.pad(x, (width, width + orig))
    y = torch.nn.functional.conv1d(x, kernel.to(wav.device, wav.dtype), stride=orig)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    # torchaudio rounds the length through a float32 tensor; doing the same keeps it sample-exact
    target = math.ceil(np.float32(new * shape[-1] / orig))
    return y[:, :target].reshape(*shape[:-1], -1)

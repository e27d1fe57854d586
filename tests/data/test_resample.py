"""torchaudio's default resampler in torch: the official front end's numbers and its properties."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from c2ser.data.audio import RESAMPLER_ENV, load_audio, resample
from c2ser.data.mel import log_mel
from c2ser.data.resample import resample_sinc, sinc_resample_kernel

# downsampling by integer and non-integer ratios, and upsampling
RATES = [(48000, 16000), (44100, 16000), (22050, 16000), (11025, 16000), (16000, 48000)]


@pytest.fixture(autouse=True)
def default_resampler(monkeypatch):
    """The tests of the default must not see a ``$C2SER_RESAMPLER`` set in the caller's shell."""
    monkeypatch.delenv(RESAMPLER_ENV, raising=False)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["4YJy1uDx0jM_769", "vo_EQAST002_1_paimon_07"])  # 48k, 16k
def test_default_front_end_equals_the_official_one(shared_dir, name):
    """The waveform and log-mel the official C2SER code fed its model (torchaudio Resample)."""
    samples = shared_dir / "data" / "official-samples"
    wav = load_audio(samples / "wav" / f"{name}.wav")
    ref_wav = np.load(samples / "frontend" / f"{name}.wav16k.npy")
    ref_mel = np.load(samples / "frontend" / f"{name}.mel.npy")
    assert wav.shape == ref_wav.shape
    np.testing.assert_allclose(wav, ref_wav, rtol=0, atol=1e-6)  # measured: 0 (bit-exact)
    np.testing.assert_allclose(log_mel(wav).numpy(), ref_mel, rtol=0, atol=1e-5)  # 1.2e-7


def test_identity_at_equal_rates():
    x = torch.randn(2, 1000)
    assert resample_sinc(x, 16000, 16000) is x
    y = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    for resampler in ("sinc", "soxr"):
        np.testing.assert_array_equal(resample(y, 16000, 16000, resampler), y)


@pytest.mark.parametrize(("orig", "new"), RATES)
def test_band_limited_sine_matches_the_analytic_sine(orig, new):
    """Away from the edges (the filter's reach, W input samples), only the passband ripple of the
    Hann-windowed sinc is left; a wrong phase alignment or gain would be far larger."""
    freq = 0.15 * min(orig, new)  # 30 % of the lower Nyquist: inside the passband
    x = np.sin(2 * np.pi * freq * np.arange(orig // 2) / orig + 0.3)
    y = resample_sinc(torch.from_numpy(x), orig, new).numpy()
    assert len(y) == math.ceil(len(x) * new / orig)
    ref = np.sin(2 * np.pi * freq * np.arange(len(y)) / new + 0.3)
    edge = math.ceil(sinc_resample_kernel(orig, new)[1] * new / orig) + 1
    np.testing.assert_allclose(y[edge:-edge], ref[edge:-edge], rtol=0, atol=2e-3)


@pytest.mark.parametrize(("orig", "new"), RATES)
def test_kernel_is_an_even_function_of_time(orig, new):
    """Phase j, tap k sits at k/o - j/n: h_0 is symmetric about tap 0, h_j mirrors h_{n-j}."""
    kernel, width = sinc_resample_kernel(orig, new)
    gcd = math.gcd(orig, new)
    o, n = orig // gcd, new // gcd
    h = kernel[:, 0]
    assert h.shape == (n, 2 * width + o) and h.dtype == torch.float64
    torch.testing.assert_close(h[0, : 2 * width + 1], h[0, : 2 * width + 1].flip(0))
    # torchaudio rounds the phase j/n to float32 and then scales it by the cut-off b = 0.99 min(o, n),
    # which moves t by up to b * 2**-24: the mirror pairs agree to that, not to float64
    atol = 0.99 * min(o, n) * 2**-22
    k = torch.arange(1 - width, width + o)  # taps k whose mirror o - k is a tap too
    for j in range(1, n):
        torch.testing.assert_close(h[j, k + width], h[n - j, o - k + width], rtol=0, atol=atol)


@pytest.mark.parametrize(("orig", "new"), RATES)
def test_kernel_is_normalised_to_unit_dc_gain(orig, new):
    """Every phase sums to 1 up to the Hann window's truncation (5e-4 to 9e-4 at width 6), so a
    constant stays constant away from the zero-padded edges."""
    kernel, _ = sinc_resample_kernel(orig, new)
    torch.testing.assert_close(kernel.sum(-1), torch.ones_like(kernel.sum(-1)), rtol=0, atol=1e-3)
    y = resample_sinc(torch.ones(orig // 10), orig, new)
    torch.testing.assert_close(y[50:-50], torch.ones_like(y[50:-50]), rtol=0, atol=1e-3)


def test_batches_dtypes_and_lengths():
    x = torch.randn(3, 2, 4410, dtype=torch.float64)
    y = resample_sinc(x, 44100, 16000)
    assert y.shape == (3, 2, 1600) and y.dtype == torch.float64
    torch.testing.assert_close(y[1, 0], resample_sinc(x[1, 0], 44100, 16000))
    assert resample_sinc(torch.zeros(7), 48000, 16000).shape == (3,)  # ceil(7 / 3)
    with pytest.raises(TypeError, match="floating-point"):
        resample_sinc(torch.zeros(10, dtype=torch.int16), 48000, 16000)
    with pytest.raises(ValueError, match="positive"):
        sinc_resample_kernel(0, 16000)


def test_soxr_stays_selectable(tmp_path, monkeypatch):
    """Per call with ``resampler=`` or per process with ``$C2SER_RESAMPLER``; sinc by default."""
    x = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", x, 48000, subtype="FLOAT")
    sinc = resample_sinc(torch.from_numpy(x), 48000, 16000).numpy()
    soxr_ = load_audio(tmp_path / "a.wav", resampler="soxr")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), sinc)
    assert not np.array_equal(soxr_, sinc) and np.abs(soxr_ - sinc)[100:-100].max() < 1e-2
    monkeypatch.setenv(RESAMPLER_ENV, "soxr")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), soxr_)
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav", resampler="sinc"), sinc)
    monkeypatch.setenv(RESAMPLER_ENV, "linear")
    with pytest.raises(ValueError, match="unknown resampler 'linear'"):
        load_audio(tmp_path / "a.wav")

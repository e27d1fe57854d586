"""The speech encoder's packed inference path computes what its batched (training) path does."""

from __future__ import annotations

import pytest
import torch

from tests.models.conftest import make_tiny_c2ser


def _mel(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    mel = torch.randn(len(lengths), t, 80, generator=g)
    mask = torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]
    mel[mask] = 0.0
    return mel, mask


@pytest.mark.parametrize(
    "window, lengths",
    [
        (1500, [300, 157, 220, 1]),  # odd and one-frame utterances, one window
        (50, [250, 90, 100, 7]),  # 100-frame windows: chunked rows, a full last chunk
    ],
)
def test_packed_inference_equals_the_batched_path(window, lengths):
    model = make_tiny_c2ser(encoder_max_positions=window, max_audio_seconds=5.0).eval()
    enc = model.encoder
    mel, mask = _mel(lengths)
    with torch.no_grad():  # the batched path (training's)
        ref, ref_pad = enc(mel, mask)
    with torch.inference_mode():  # the packed path
        got, pad = enc(mel, mask)
    assert torch.equal(pad, ref_pad) and got.shape == ref.shape
    torch.testing.assert_close(got[~pad], ref[~pad], atol=1e-5, rtol=1e-5)
    assert not got[pad].any()  # padded positions are zeros


def test_packed_path_is_inference_only():
    """Train mode under inference_mode (and no_grad in eval) keeps the batched layers: training
    and the pool downsampler's statistics are computed as before."""
    enc = make_tiny_c2ser().encoder
    mel, mask = _mel([40, 23])
    calls = []
    enc._encode_packed = lambda *a: calls.append(a) or torch.zeros(2, 20, 64)
    with torch.inference_mode():
        enc.train()(mel, mask)
    with torch.no_grad():
        enc.eval()(mel, mask)
    assert not calls
    with torch.inference_mode():
        enc.eval()(mel, mask)
    assert len(calls) == 1

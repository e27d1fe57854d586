import json
from pathlib import Path

import numpy as np
import pytest

from c2ser.cli.main import main
from c2ser.core.labels import EMOTIONS
from c2ser.data.audio import load_audio
from c2ser.data.demo import build_demo_corpus
from c2ser.data.demo.corpus import load_sentences
from c2ser.data.demo.espeak import synthesize
from c2ser.data.manifest import read_manifest
from c2ser.data.style import f0_median, loudness


@pytest.mark.parametrize("voice, text", [("en-us", "Good morning."), ("cmn", "早上好。")])
def test_espeak_speaks_both_languages(voice, text):
    wav, sr = synthesize(text, voice)
    assert sr == 22050 and wav.dtype == np.float32 and len(wav) > 0.3 * sr
    assert 0.05 < np.abs(wav).max() <= 1.0


def test_sentence_files_cover_every_emotion():
    for lang in ("en", "zh"):
        sentences = load_sentences(lang)
        assert set(sentences) == set(EMOTIONS)
        assert sum(len(v) for v in sentences.values()) >= 200
        assert len(sentences["neutral"]) >= 150
        assert all(len(set(v)) == len(v) for v in sentences.values())


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return build_demo_corpus(out, size=3, seed=5, num_speakers=3, workers=1, progress=False)


def test_schema_splits_and_speaker_independence(tiny_corpus):
    utts = read_manifest(tiny_corpus, labels=EMOTIONS)
    assert len(utts) == 2 * 7 * 3
    rows = [json.loads(line) for line in tiny_corpus.read_text().splitlines()]
    assert not rows[0]["wav"].startswith("/")  # portable: relative to the manifest
    for u in utts:
        assert {"speed", "pitch", "volume"} <= set(u.extra)
        assert {u.extra[k] for k in ("speed", "pitch", "volume")} <= {"low", "medium", "high"}
        assert u.language in ("en", "zh") and u.id.startswith(u.language.upper())
        assert load_audio(u.wav).size / 16000 == pytest.approx(u.extra["duration"], abs=1e-3)
    speakers = {s: {u.speaker for u in utts if u.split == s} for s in ("train", "val", "test")}
    assert all(speakers.values())
    assert not (speakers["train"] & speakers["test"]) and not (speakers["val"] & speakers["test"])
    assert {u.fold for u in utts} == {1, 2, 3}
    assert all(
        len({u.fold for u in utts if u.speaker == s}) == 1 for s in {u.speaker for u in utts}
    )


def test_deterministic_and_resumable(tiny_corpus, tmp_path):
    again = build_demo_corpus(tmp_path, size=3, seed=5, num_speakers=3, workers=2, progress=False)
    assert again.read_text() == tiny_corpus.read_text()
    for u in read_manifest(again):
        twin = tiny_corpus.parent / u.wav.split(str(tmp_path) + "/")[1]
        assert twin.read_bytes() == Path(u.wav).read_bytes()
    gone, stale = tmp_path / "wav/en/EN_S01_sad_0000.wav", tmp_path / "wav/zh/ZH_S02_happy_0001.wav"
    originals = {p: p.read_bytes() for p in (gone, stale)}
    others = {p: p.stat().st_mtime_ns for p in (tmp_path / "wav").rglob("*.wav")}
    gone.unlink()
    stale.write_bytes(gone.with_name("EN_S02_sad_0001.wav").read_bytes())  # valid wav, wrong spec
    others.pop(gone), others.pop(stale)
    build_demo_corpus(tmp_path, size=3, seed=5, num_speakers=3, workers=1, progress=False)
    assert all(p.read_bytes() == b for p, b in originals.items())
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())
    assert again.read_text() == tiny_corpus.read_text()


def test_emotions_differ_acoustically(tmp_path):
    from c2ser.data.demo.corpus import Job, _render
    from c2ser.data.demo.prosody import Speaker
    from c2ser.data.manifest import Utterance

    speaker = Speaker("EN_S01", "en-us+m3", pitch_shift=0.0, rate_scale=1.0, gain_db=0.0)

    def measure(emotion):
        u = Utterance(
            f"EN_S01_{emotion}_0000", "", emotion, "The bus leaves at half past eight.", "en"
        )
        wav = _render(Job(u, speaker, 0))
        return f0_median(wav), loudness(wav)

    (f_angry, l_angry), (f_sad, l_sad), (f_happy, _) = map(measure, ("angry", "sad", "happy"))
    assert f_happy > f_sad + 20 and f_angry > f_sad + 10 and l_angry > l_sad + 10


def test_cli(tmp_path, capsys):
    args = ["demo-corpus", "--out", str(tmp_path), "--languages", "zh", "--workers", "1"]
    assert main([*args, "--size", "3", "--speakers", "3"]) == 0
    out = capsys.readouterr().out
    assert "21 utterances" in out and f"manifest: {tmp_path / 'manifest.jsonl'}" in out
    assert main([*args, "--size", "3", "--speakers", "2"]) == 2
    err = capsys.readouterr().err
    assert "speakers per language must be 3 to 6" in err and "Traceback" not in err
